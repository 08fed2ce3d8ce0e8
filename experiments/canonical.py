"""Canonical form and content hash of a resolved spec.

Two specs that mean the same thing (key order, 1e-4 vs 0.0001, defaults written out
or not) serialise to the same bytes and so get the same hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunelab.experiments.files import local_target, named_paths
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
    """sha256 of the canonical resolved spec, hex."""
    return hashlib.sha256(canonical_json(_identity(spec)).encode("utf-8")).hexdigest()


def _identity(spec: Spec) -> dict[str, Any]:
    """What makes a spec the experiment it is. [notify] says who hears of a run, not what it is: left out."""
    data = resolved_dict(spec)
    data.pop("notify", None)
    data.pop("track", None)  # where figures are streamed to changes no result
    return data


def relative_targets(spec: Spec, workdir: Path) -> dict[str, str]:
    """Where each path the spec writes relative (or with `~`) points from `workdir`: {"data.train": "/abs/..."}."""
    targets = {}
    for named in named_paths(spec):
        target = local_target(named, workdir)
        if target is not None and not Path(named.raw).is_absolute():
            targets[named.field] = str(target)
    return targets


def experiment_hash(spec: Spec, workdir: Path) -> str:
    """The registry's key for an experiment: the spec hash, and where the spec's relative paths point from `workdir`
    (the directory submit ran in). The same text submitted from two directories names two sets of files: two
    experiments. A spec whose paths are all absolute (or hub ids) keeps its plain spec hash."""
    targets = relative_targets(spec, workdir)
    if not targets:
        return spec_hash(spec)
    data = {"spec": _identity(spec), "paths": targets}
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
