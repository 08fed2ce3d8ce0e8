"""Rebuild the bundled tiny Llama in examples/models/tiny-llama from the demo data and benchmark sample.

Usage: python examples/build_tiny_model.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus  # noqa: E402


def main() -> None:
    corpus = default_corpus(REPO_ROOT)
    out = build_tiny_model(REPO_ROOT / "examples" / "models" / "tiny-llama", corpus)
    print(f"built {out.relative_to(REPO_ROOT)} from {len(corpus)} corpus strings")


if __name__ == "__main__":
    main()
