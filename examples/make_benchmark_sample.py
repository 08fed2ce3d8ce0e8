"""Copy a small, fixed slice of the four Open LLM Leaderboard v1 benchmarks into examples/benchmarks/.

The slice is just big enough for the demo and the tests to run every task with its official few-shot
setting (25-shot ARC, 5-shot MMLU) in seconds. Rows are copied byte for byte, so the schemas stay
those of the full offline copies.

Usage: python examples/make_benchmark_sample.py SOURCE_DIR [--out examples/benchmarks]
"""

from __future__ import annotations

import argparse
import shutil
from itertools import islice
from pathlib import Path

# (file relative to the benchmark root, number of leading rows kept)
FLAT_FILES: list[tuple[str, int]] = [
    ("arc_challenge/train.jsonl", 30),  # 25-shot needs at least 25 training rows
    ("arc_challenge/validation.jsonl", 10),
    ("arc_challenge/test.jsonl", 20),
    ("hellaswag/validation.jsonl", 40),
    ("truthfulqa/mc_validation.jsonl", 20),
]
# Kept for every MMLU subject; dev keeps all 5 rows because they are the 5 shots.
MMLU_SPLITS: list[tuple[str, int]] = [("dev.jsonl", 5), ("validation.jsonl", 2), ("test.jsonl", 5)]


def copy_head(source: Path, target: Path, rows: int) -> int:
    """Copy the first `rows` lines of a JSONL file; return how many were copied."""
    with source.open("rb") as f:
        lines = list(islice(f, rows))
    if len(lines) < rows:
        raise SystemExit(f"{source}: wanted {rows} rows, found only {len(lines)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    return len(lines)


def make_sample(source: Path, out: Path) -> dict[str, int]:
    """Write the sample under `out`; return rows copied per file (relative path → count)."""
    counts: dict[str, int] = {}
    for rel, rows in FLAT_FILES:
        counts[rel] = copy_head(source / rel, out / rel, rows)
    subjects = sorted(p.name for p in (source / "mmlu").iterdir() if p.is_dir())
    if len(subjects) != 57:
        raise SystemExit(f"{source / 'mmlu'}: expected 57 subjects, found {len(subjects)}")
    for subject in subjects:
        for name, rows in MMLU_SPLITS:
            rel = f"mmlu/{subject}/{name}"
            counts[rel] = copy_head(source / rel, out / rel, rows)
    licences = out / "LICENSES"
    licences.mkdir(parents=True, exist_ok=True)
    for licence in sorted((source / "LICENSES").iterdir()):
        shutil.copyfile(licence, licences / licence.name)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="directory holding the full benchmark copies")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "benchmarks",
        help="where to write the sample (default: examples/benchmarks)",
    )
    args = parser.parse_args()
    counts = make_sample(args.source, args.out)
    mmlu_rows = sum(n for rel, n in counts.items() if rel.startswith("mmlu/"))
    for rel, n in counts.items():
        if not rel.startswith("mmlu/"):
            print(f"{rel}: {n} rows")
    print(f"mmlu: {mmlu_rows} rows over 57 subjects")


if __name__ == "__main__":
    main()
