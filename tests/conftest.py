"""Shared fixtures: offline environment, a tiny model built once per session, registries in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never reach the network: a hub download attempt must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO_ROOT.parent / "shared" / "benchmarks"
EXAMPLE_BENCHMARKS = REPO_ROOT / "examples" / "benchmarks"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (2,048-token context) with a BPE tokenizer trained offline on the example data."""
    from runner.tiny_model import build_tiny_model, default_corpus

    out = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_model(out, default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=32, num_layers=2,
                            num_heads=2, seed=0)


@pytest.fixture
def registry(tmp_path):
    from registry.db import default_url, open_registry

    return open_registry(default_url(tmp_path))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
