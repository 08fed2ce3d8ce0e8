"""The data fingerprint: a hash of the processed token stream a run trains on.

It changes when the data file, the template, the tokenizer or max_seq_len change (anything that
changes what the model sees) and not when, say, the file is merely copied elsewhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from experiments.schema import Spec


def fingerprint_features(features: list[dict[str, list[int]]]) -> str:
    digest = hashlib.sha256()
    for feature in features:
        for key in ("input_ids", "labels"):
            digest.update(key.encode())
            digest.update(b",".join(str(token).encode() for token in feature[key]))
            digest.update(b";")
    return digest.hexdigest()


def fingerprint_spec_data(spec: Spec, workdir: Path) -> str:
    """Tokenise the spec's training data as training would, and fingerprint it (no model is loaded)."""
    from runner.data import read_instruction_jsonl, tokenize_examples
    from runner.training import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision)
    path = Path(spec.data.train) if Path(spec.data.train).is_absolute() else workdir / spec.data.train
    features = tokenize_examples(read_instruction_jsonl(path), tokenizer, max_seq_len=spec.data.max_seq_len,
                                 train_on_prompt=spec.data.train_on_prompt)
    return fingerprint_features(features)
