"""Which number stands for a task (its headline metric) and the leaderboard average."""

from __future__ import annotations

from collections.abc import Iterable

from registry.queries import ScoreRow

# The Open LLM Leaderboard v1 columns, in display order, with their display names.
BENCHMARKS = {
    "arc_challenge": "ARC",
    "hellaswag": "HellaSwag",
    "mmlu": "MMLU",
    "truthfulqa_mc2": "TruthfulQA",
}


def headline_rows(rows: Iterable[ScoreRow], model_kind: str) -> dict[str, ScoreRow]:
    """One row per top-level task (MMLU subjects are folded into the `mmlu` row)."""
    return {row.task: row for row in rows if row.model_kind == model_kind and row.task_group is None}


def average(values: dict[str, float]) -> float | None:
    """Plain mean of the leaderboard benchmarks present (custom tasks don't count)."""
    present = [values[task] for task in BENCHMARKS if task in values]
    return sum(present) / len(present) if present else None


def headline_scores(rows: Iterable[ScoreRow], model_kind: str) -> dict[str, float]:
    values = {task: row.value for task, row in headline_rows(rows, model_kind).items()}
    mean = average(values)
    if mean is not None:
        values["average"] = mean
    return values
