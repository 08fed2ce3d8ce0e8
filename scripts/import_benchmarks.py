#!/usr/bin/env python3
"""Import a copy of the benchmarks into the layout tunelab reads (`[eval] benchmarks_dir`): one JSONL per split.

    python scripts/import_benchmarks.py SRC DEST

SRC holds one directory per benchmark, named as in the layout or as on the hub: `arc_challenge` (or
`ARC-Challenge`, `ai2_arc/ARC-Challenge`), `hellaswag`, `mmlu` (or `cais_mmlu`), `truthfulqa` (or
`truthful_qa/multiple_choice`). In a benchmark directory each split is any of:
- a file `<split>.jsonl`, `<split>.json` (a JSON list, or JSON Lines) or `<split>.parquet`, also hub-style
  `<split>-00000-of-00001.parquet` and files under `data/`;
- a `datasets` `save_to_disk` directory: a DatasetDict (`dataset_dict.json`) or one Dataset per split;
- for MMLU, one directory per subject holding its splits, or splits holding every subject (a `subject` column).
Rows are checked against, and converted to, the schemas of the Hugging Face datasets lm-eval's official tasks
load (see the README of a benchmarks directory): the original AI2 ARC layout, MMLU answer letters and the original
TruthfulQA `{answer: label}` targets are converted; anything else missing a column is an error naming the file.
Splits are named as the hub names them: `val`/`dev` become `validation`, except MMLU's `dev` (its few-shot split).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

BENCHMARK_ALIASES = {
    "arc_challenge": ("arc_challenge", "ARC-Challenge", "ai2_arc/ARC-Challenge", "allenai_ai2_arc/ARC-Challenge"),
    "hellaswag": ("hellaswag", "Rowan_hellaswag"),
    "mmlu": ("mmlu", "cais_mmlu", "hails_mmlu_no_train"),
    "truthfulqa": ("truthfulqa", "truthful_qa", "truthful_qa/multiple_choice", "truthfulqa_truthful_qa"),
}
_SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "dev": "validation",
                "test": "test", "mc_validation": "validation"}


class ImportProblem(Exception):
    """Input that cannot become a benchmark file: a missing column, an unknown layout."""


# ---------------------------------------------------------------- reading splits


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _split_of(path: Path) -> str | None:
    stem = path.name
    for suffix in (".jsonl", ".json", ".parquet"):
        stem = stem.removesuffix(suffix)
    return stem.split("-")[0] if stem.split("-")[0] in _SPLIT_NAMES else None


def read_splits(directory: Path) -> dict[str, list[dict]]:
    """Every split found in a benchmark directory, by its file's split name (not yet normalised)."""
    splits: dict[str, list[dict]] = {}
    if (directory / "dataset_dict.json").is_file():
        return _from_disk(directory)
    if (directory / "state.json").is_file():  # one saved Dataset: the directory names its split
        return {directory.name: _from_disk(directory)["_"]}
    candidates = sorted(p for p in [*directory.glob("*"), *directory.glob("data/*")] if p.is_file())
    for path in candidates:
        split = _split_of(path)
        if split is not None and path.suffix in (".jsonl", ".json", ".parquet"):
            splits.setdefault(split, []).extend(_read_rows(path))
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and (p / "state.json").is_file()):
        if sub.name in _SPLIT_NAMES:
            splits.setdefault(sub.name, []).extend(_from_disk(sub)["_"])
    return splits


def _from_disk(directory: Path) -> dict[str, list[dict]]:
    from datasets import Dataset, load_from_disk

    loaded = load_from_disk(str(directory))
    if isinstance(loaded, Dataset):
        return {"_": loaded.to_list()}
    return {name: split.to_list() for name, split in loaded.items()}


# ---------------------------------------------------------------- converting rows to the official schemas


def _need(row: dict, keys: Iterable[str], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ImportProblem(f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(sorted(row))})")


def arc_row(row: dict, where: str) -> dict:
    if isinstance(row.get("question"), dict):  # the original AI2 layout: question.stem, question.choices[]
        question = row["question"]
        row = dict(row, question=question["stem"], choices={
            "text": [c["text"] for c in question["choices"]], "label": [c["label"] for c in question["choices"]]})
    if isinstance(row.get("choices"), list):  # a list of {text, label}
        row = dict(row, choices={"text": [c["text"] for c in row["choices"]],
                                 "label": [c["label"] for c in row["choices"]]})
    _need(row, ("id", "question", "choices", "answerKey"), where)
    if row["answerKey"] not in row["choices"]["label"]:
        raise ImportProblem(f"{where}: answerKey {row['answerKey']!r} is not one of {row['choices']['label']}")
    return {"id": row["id"], "question": row["question"],
            "choices": {"text": list(row["choices"]["text"]), "label": list(row["choices"]["label"])},
            "answerKey": row["answerKey"]}


_HELLASWAG_KEYS = ("ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id", "split", "split_type",
                   "label")


def hellaswag_row(row: dict, where: str) -> dict:
    _need(row, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), where)
    converted = {key: row[key] for key in _HELLASWAG_KEYS if key in row}
    converted["label"] = str(row["label"])  # the hub's label is a string, "0".."3"
    converted.setdefault("ctx", f"{row['ctx_a']} {row['ctx_b']}".strip())
    return converted


def mmlu_row(row: dict, where: str, subject: str | None) -> dict:
    if "choices" not in row and all(k in row for k in "ABCD"):
        row = dict(row, choices=[row[k] for k in "ABCD"])
    _need(row, ("question", "choices", "answer"), where)
    answer = row["answer"]
    if isinstance(answer, str):
        answer = "ABCD".index(answer.strip()) if answer.strip() in "ABCD" else int(answer)
    subject = row.get("subject") or subject
    if not subject:
        raise ImportProblem(f"{where}: no subject (a `subject` column, or a directory per subject)")
    return {"question": row["question"], "subject": subject, "choices": list(row["choices"]), "answer": answer}


def truthfulqa_row(row: dict, where: str) -> dict:
    _need(row, ("question", "mc1_targets", "mc2_targets"), where)
    converted = {"question": row["question"]}
    for key in ("mc1_targets", "mc2_targets"):
        targets = row[key]
        if "choices" not in targets:  # the original mc_task.json: {answer: label}, in file order
            targets = {"choices": list(targets), "labels": list(targets.values())}
        converted[key] = {"choices": list(targets["choices"]), "labels": [int(v) for v in targets["labels"]]}
    return converted


# ---------------------------------------------------------------- the import


def _find(src: Path, aliases: Iterable[str]) -> Path | None:
    for alias in aliases:
        for candidate in (src / alias, src / alias.lower()):
            if candidate.is_dir():
                return candidate
    return None


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _convert(rows: list[dict], convert: Callable[[dict, str], dict], where: str) -> list[dict]:
    return [convert(row, f"{where} row {i + 1}") for i, row in enumerate(rows)]


def import_benchmarks(src: Path, dest: Path) -> dict[str, int]:
    """Import every benchmark found under `src` into `dest`; return rows written per output file."""
    written: dict[str, int] = {}

    def emit(rel: str, rows: list[dict]) -> None:
        _write(dest / rel, rows)
        written[rel] = len(rows)

    simple = {"arc_challenge": arc_row, "hellaswag": hellaswag_row, "truthfulqa": truthfulqa_row}
    for name, convert in simple.items():
        directory = _find(src, BENCHMARK_ALIASES[name])
        if directory is None:
            continue
        for split, rows in read_splits(directory).items():
            target = _SPLIT_NAMES.get(split, split)
            if name == "truthfulqa":
                emit("truthfulqa/mc_validation.jsonl", _convert(rows, convert, f"{directory}/{split}"))
            else:
                emit(f"{name}/{target}.jsonl", _convert(rows, convert, f"{directory}/{split}"))
    mmlu = _find(src, BENCHMARK_ALIASES["mmlu"])
    if mmlu is not None:
        for subject, split, rows in _mmlu_splits(mmlu):
            for subj, subject_rows in _by_subject(rows, subject, f"{mmlu}/{split}").items():
                emit(f"mmlu/{subj}/{split}.jsonl", subject_rows)
    if not written:
        raise ImportProblem(f"no benchmark directory found under {src} (looked for {', '.join(BENCHMARK_ALIASES)})")
    return written


def _mmlu_splits(directory: Path) -> Iterator[tuple[str | None, str, list[dict]]]:
    # MMLU keeps `dev` (its five few-shot rows per subject) apart from `validation`.
    mmlu_split = {"dev": "dev", "val": "validation", "validation": "validation", "test": "test", "train": "train"}
    top = read_splits(directory)
    for split, rows in top.items():
        if split != "auxiliary_train":  # the hub's extra training data; no task reads it
            yield None, mmlu_split.get(split, split), rows
    if not top:
        for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
            for split, rows in read_splits(sub).items():
                yield sub.name, mmlu_split.get(split, split), rows


def _by_subject(rows: list[dict], subject: str | None, where: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        converted = mmlu_row(row, f"{where} row {i + 1}", subject)
        grouped.setdefault(converted["subject"], []).append(converted)
    return grouped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="your copy of the benchmarks")
    parser.add_argument("dest", type=Path, help="the benchmarks directory to write (tunelab's layout)")
    args = parser.parse_args(argv)
    try:
        written = import_benchmarks(args.src, args.dest)
    except (ImportProblem, OSError, ValueError) as err:
        print(f"import_benchmarks: {err}", file=sys.stderr)
        return 1
    for rel, count in sorted(written.items()):
        print(f"{count:>7}  {args.dest / rel}")
    print(f"wrote {len(written)} file(s); point [eval] benchmarks_dir (or TUNELAB_BENCHMARKS_DIR) at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
