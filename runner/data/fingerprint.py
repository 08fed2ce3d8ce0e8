"""The data fingerprint: a hash of the processed token stream a run trains on.

It changes when the data file, the template, the tokenizer or max_seq_len change (anything that
changes what the model sees) and not when, say, the file is merely copied elsewhere. It hashes the
very features training uses (runner/data.py prepare_data): the training stream in order (packed rows
with their example boundaries), then the validation examples. A plain one-file run without validation
or packing hashes exactly as before those existed, so fingerprints recorded then still compare.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tunelab.experiments.schema import Spec

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


def fingerprint_prepared(prepared) -> str:
    """The fingerprint of a runner.data.PreparedData."""
    return fingerprint_features(prepared.train, prepared.validation)


def fingerprint_spec_data(spec: Spec, workdir: Path) -> str:
    """Prepare the spec's data as training would, and fingerprint it (no model is loaded)."""
    from tunelab.runner.data.prepare import prepare_data
    from tunelab.runner.training.trainer import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision)
    if spec.data.format == "preference" and isinstance(spec.data.train, str):
        # Preference pairs are read by the preference recipe; its own fingerprint is what training records.
        from tunelab.runner.training.preference import data_path, fingerprint_pairs, read_pairs

        return fingerprint_pairs(read_pairs(data_path(spec, workdir), tokenizer, spec.data.template), tokenizer)
    return fingerprint_prepared(prepare_data(spec, tokenizer, workdir))
