"""Which number stands for a task (its headline metric) and the leaderboard average."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tunelab.registry.run_records import MemberScore, ScoreRow
from tunelab.reports.marks import delta_class

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


def with_average(values: dict[str, float]) -> dict[str, float]:
    """Headline values by task, with the leaderboard "average" added when a leaderboard benchmark is present."""
    mean = average(values)
    return values if mean is None else {**values, "average": mean}


def headline_scores(rows: Iterable[ScoreRow], model_kind: str) -> dict[str, float]:
    return with_average({task: row.value for task, row in headline_rows(rows, model_kind).items()})


@dataclass(frozen=True)
class SubjectDelta:
    """One subject of a group (an MMLU subject): its score before and after, and the change."""

    subject: str
    before: float | None
    after: float | None
    delta: float | None

    @property
    def label(self) -> str:
        return self.subject.replace("_", " ")

    @property
    def before_text(self) -> str:
        return "" if self.before is None else f"{self.before:.4f}"

    @property
    def after_text(self) -> str:
        return "" if self.after is None else f"{self.after:.4f}"

    @property
    def delta_text(self) -> str:
        return "" if self.delta is None else f"{self.delta:+.4f}"

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta)


def group_scores(rows: Iterable[ScoreRow | MemberScore], model_kind: str, group: str = "mmlu") -> dict[str, float]:
    """The members' scores of one group (MMLU's subjects), by task name."""
    return {row.task: row.value for row in rows if row.model_kind == model_kind and row.task_group == group}


def subject_deltas(before: dict[str, float], after: dict[str, float], prefix: str = "mmlu_") -> list[SubjectDelta]:
    """Every subject of either side, worst change first; subjects missing on one side come last."""
    rows = []
    for task in sorted(set(before) | set(after)):
        b, a = before.get(task), after.get(task)
        rows.append(SubjectDelta(task.removeprefix(prefix), b, a, a - b if a is not None and b is not None else None))
    rows.sort(key=lambda r: (r.delta is None, r.delta if r.delta is not None else 0.0, r.subject))
    return rows
