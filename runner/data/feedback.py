"""Unpaired feedback for KTO: a prompt, one answer and whether it is good (label true) or bad (false).

Read from `format = "feedback"` rows, or from preference pairs, each of which gives a good answer (chosen) and a
bad one (rejected) to the same prompt. Prompts are rendered as every method renders them (runner/data/prompts.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tunelab.runner.data.formats import read_feedback_rows
from tunelab.runner.data.preference import read_pairs
from tunelab.runner.data.prompts import render_prompt
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError


@dataclass(frozen=True)
class FeedbackRow:
    prompt: str  # as the model sees it, template applied
    completion: str
    label: bool  # True: a good answer


def read_feedback(path: Path, data_format: str, tokenizer, template: str) -> list[FeedbackRow]:
    """The feedback rows of `path`: feedback rows as they are, or preference pairs as a good and a bad row each."""
    if data_format == "preference":
        unpaired = []
        for pair in read_pairs(path, tokenizer, template):
            unpaired += [FeedbackRow(pair.prompt, pair.chosen, True), FeedbackRow(pair.prompt, pair.rejected, False)]
        return unpaired
    renderer = Renderer(template, tokenizer)
    rows = []
    for row in read_feedback_rows(path):
        if not row.completion.strip():
            raise DataError(path, "the completion must not be empty", line=row.line)
        rows.append(FeedbackRow(render_prompt(renderer, row.prompt, path, row.line), row.completion, row.label))
    if not any(row.label for row in rows) or all(row.label for row in rows):
        raise DataError(path, "KTO learns from both good and bad answers: the file needs rows with label true and "
                        "rows with label false")
    return rows


def fingerprint_feedback(rows: list[FeedbackRow], tokenizer) -> str:
    """sha256 of the token ids KTO trains on (prompt, completion and label of every row, in order)."""
    digest = hashlib.sha256()
    for row in rows:
        for name, text in (("prompt", row.prompt), ("completion", row.completion)):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            digest.update(name.encode() + b":" + b",".join(str(i).encode() for i in ids) + b";")
        digest.update(b"label:1;" if row.label else b"label:0;")
    return digest.hexdigest()


def feedback_dataset(rows: list[FeedbackRow]):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [r.prompt for r in rows], "completion": [r.completion for r in rows],
                              "label": [r.label for r in rows]})
