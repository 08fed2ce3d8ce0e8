"""Canonical form and content hash of a resolved spec.

Two specs that mean the same thing (key order, 1e-4 vs 0.0001, defaults written out
or not) serialise to the same bytes and so get the same hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tunelab.experiments.schema import LORA_KEYS, Spec


def resolved_dict(spec: Spec) -> dict[str, Any]:
    """The fully resolved spec (defaults filled in) as plain JSON data."""
    data = spec.model_dump(mode="json")
    data["experiment"].pop("extends", None)
    if spec.method.kind == "full":
        # LoRA knobs mean nothing here; leaving them out keeps the stored spec re-validatable.
        for key in LORA_KEYS:
            data["method"].pop(key, None)
    return data


def canonical_json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_hash(spec: Spec) -> str:
    """sha256 of the canonical resolved spec, hex. [notify] says who hears of a run, not what it is: left out."""
    data = resolved_dict(spec)
    data.pop("notify", None)
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
