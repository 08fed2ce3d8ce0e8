#!/usr/bin/env python3
"""Read whole training data sets with tunelab's own readers, to check that real corpora load row for row.

    python scripts/check_datasets.py DIR [--expect RELATIVE_PATH=ROWS ...]

Every *.jsonl and *.csv under DIR is read in full, in the format its first row's keys name (prompt/chosen/
rejected: preference; messages: chat; instruction: instruction; text: text), and its row count printed.
A malformed row is reported with its file and line; --expect checks a file's row count. The exit status is
non-zero when any file fails to read or has another count than expected. The test suite covers the formats
on data it builds; this is for larger corpora kept outside the repository, for example:

    python scripts/check_datasets.py ../shared/datasets \\
        --expect self_instruct_human/train.jsonl=427 --expect hh_rlhf_harmless_base/test.jsonl=2303
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tunelab.runner.data.formats import read_rows
from tunelab.runner.errors import DataError

# Checked in this order: a preference row may carry other keys too.
FORMAT_KEYS = (("preference", {"prompt", "chosen", "rejected"}), ("chat", {"messages"}),
               ("instruction", {"instruction"}), ("text", {"text"}))


def first_row_keys(path: Path) -> set[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            return set(next(csv.reader(handle), []))
        for line in handle:
            if line.strip():
                record = json.loads(line)
                return set(record) if isinstance(record, dict) else set()
    return set()


def detect_format(path: Path) -> str | None:
    keys = first_row_keys(path)
    return next((name for name, needed in FORMAT_KEYS if needed <= keys), None)


def check(directory: Path, expected: dict[str, int]) -> list[str]:
    """Read every data file under `directory`; returns the problems found (empty when all is well)."""
    problems: list[str] = []
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in (".jsonl", ".csv") and p.is_file())
    if not files:
        problems.append(f"{directory}: no .jsonl or .csv files")
    for path in files:
        name = path.relative_to(directory).as_posix()
        try:
            data_format = detect_format(path)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{name}: unreadable first row ({exc})")
            continue
        if data_format is None:
            problems.append(f"{name}: no known format in its first row's keys")
            continue
        try:
            rows = len(read_rows(path, data_format))
        except DataError as exc:
            problems.append(str(exc))
            continue
        print(f"{name}: {rows} {data_format} rows")
        if name in expected and expected[name] != rows:
            problems.append(f"{name}: {rows} rows, expected {expected[name]}")
    problems += [f"{name}: expected {rows} rows, but there is no such file"
                 for name, rows in expected.items() if not (directory / name).is_file()]
    return problems


def parse_expectations(values: list[str]) -> dict[str, int]:
    expected = {}
    for value in values:
        name, _, rows = value.rpartition("=")
        if not name or not rows.isdigit():
            raise SystemExit(f"--expect takes RELATIVE_PATH=ROWS, not {value!r}")
        expected[name] = int(rows)
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a folder of data sets (searched recursively)")
    parser.add_argument("--expect", action="append", default=[], metavar="RELATIVE_PATH=ROWS",
                        help="the number of rows a file must read as (may be repeated)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"{args.directory}: not a directory", file=sys.stderr)
        return 2
    problems = check(args.directory, parse_expectations(args.expect))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
