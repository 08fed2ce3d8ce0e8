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
from typing import Any

from experiments.schema import Spec

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
    from runner.data import data_sources, prepare_data
    from runner.training import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision)
    if all(source.format == "preference" for source in data_sources(spec.data, workdir)):
        return _fingerprint_preference(spec, tokenizer, workdir)
    return fingerprint_prepared(prepare_data(spec, tokenizer, workdir))


def _fingerprint_preference(spec: Spec, tokenizer: Any, workdir: Path) -> str:
    """Preference pairs: the tokens of each prompt (chat prompts through the template), chosen and rejected."""
    from runner.data import data_sources, read_preference_rows
    from runner.data_templates import Renderer

    renderer = Renderer(spec.data.template, tokenizer)
    digest = hashlib.sha256(b"preference;")
    for source in data_sources(spec.data, workdir):
        for row in read_preference_rows(source.path):
            prompt = row.prompt if isinstance(row.prompt, str) else renderer.chat_renderer()(
                [{"role": m.role, "content": m.content} for m in row.prompt], True)
            for key, text in (("prompt", prompt), ("chosen", row.chosen), ("rejected", row.rejected)):
                digest.update(key.encode())
                tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
                digest.update(b",".join(str(token).encode() for token in tokens))
                digest.update(b";")
    return digest.hexdigest()
