"""The data fingerprint: a hash of the processed token stream a run trains on.

It changes when the data file, the template, the tokenizer or max_seq_len change (anything that
changes what the model sees) and not when, say, the file is merely copied elsewhere. It hashes the
very features training uses (runner/data/prepare.py prepare_data): the training stream in order (packed rows
with their example boundaries), then the validation examples. A plain one-file run without validation
or packing hashes exactly as before those existed, so fingerprints recorded then still compare.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tunelab.experiments.schema import Spec
from tunelab.runner.data.preference import data_path, fingerprint_pairs, read_pairs
from tunelab.runner.data.prepare import PreparedData, prepare_data

_KEYS = ("input_ids", "labels", "seq_lengths")


def _update(digest, features: list[dict[str, list[int]]]) -> None:
    for feature in features:
        for key in _KEYS:
            if key not in feature:
                continue
            digest.update(key.encode())
            digest.update(b",".join(str(token).encode() for token in feature[key]))
            digest.update(b";")


def fingerprint_features(features: list[dict[str, list[int]]],
                         validation: list[dict[str, list[int]]] | None = None) -> str:
    digest = hashlib.sha256()
    _update(digest, features)
    if validation:
        digest.update(b"validation;")
        _update(digest, validation)
    return digest.hexdigest()


def fingerprint_prepared(prepared: PreparedData) -> str:
    """The fingerprint of prepared supervised data."""
    return fingerprint_features(prepared.train, prepared.validation)


def fingerprint_data(spec: Spec, tokenizer: Any, workdir: Path) -> str:
    """Prepare the spec's data as its recipe would, with `tokenizer`, and fingerprint it (no model is loaded)."""
    if spec.data.format == "preference" and isinstance(spec.data.train, str):
        # Preference pairs are read by the preference recipe; its own fingerprint is what training records.
        return fingerprint_pairs(read_pairs(data_path(spec, workdir), tokenizer, spec.data.template), tokenizer)
    return fingerprint_prepared(prepare_data(spec, tokenizer, workdir))
