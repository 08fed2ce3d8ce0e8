"""A model's headline values with their average, and the members of a group (MMLU's subjects) side by side.

The benchmarks, their order and titles, and the leaderboard average are experiments/benchmarks.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tunelab.experiments.benchmarks import with_average
from tunelab.registry.run_records import MemberScore
from tunelab.registry.scores import Score, headline_rows
from tunelab.reports.marks import delta_class, delta_text


def headline_scores(rows: Iterable[Score], model_kind: str) -> dict[str, float]:
    """Headline values by task, with the leaderboard "average" where a leaderboard benchmark is present."""
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
        return delta_text(self.delta)

    @property
    def delta_class(self) -> str:
        return delta_class(self.delta)


def group_scores(rows: Iterable[Score | MemberScore], model_kind: str, group: str = "mmlu") -> dict[str, float]:
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
