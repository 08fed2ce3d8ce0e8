"""What one evaluation runs: the lm-eval tasks tunelab writes a YAML for, grouped by the task they report.

The leaderboard benchmarks (runner/evaluation/leaderboard.py), the spec's custom tasks (custom_tasks.py) and the
tasks of its include_path (include_path.py) are each planned into a TaskPlan; planning.py puts one evaluation's
plans together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Our generated tasks get a prefix so they never collide with an lm-eval task or a user's custom task name.
TASK_PREFIX = "tunelab_"


@dataclass(frozen=True)
class GeneratedTask:
    """One lm-eval task we wrote a YAML for, and how its result is reported."""

    lm_name: str  # the name lm-eval knows it by
    reported: str  # the task its Score is recorded under
    task_group: str | None  # the Score's task_group: "mmlu" for an MMLU subject
    lm_metric: str  # "" for an include_path task without a metric_list: lm-eval's first metric is reported
    metric: str
    num_fewshot: int
    # False when the setting departs from the leaderboard's (few-shot drawn from the evaluated split).
    leaderboard_settings: bool
    yaml_path: Path
    data_files: tuple[Path, ...]  # local files it reads; empty for hub datasets


@dataclass(frozen=True)
class TaskPlan:
    """What one reported task (arc_challenge, mmlu, a custom task...) runs: one or more lm-eval tasks."""

    name: str
    tasks: tuple[GeneratedTask, ...]
    custom: bool = False
    # False for MMLU over a chosen few subjects (tasks = ["mmlu_anatomy", ...]): not the leaderboard's MMLU.
    complete: bool = True
    included: bool = False  # a task of the spec's include_path
    requested: tuple[str, ...] = ()  # the [eval] tasks entries it answers (empty for a custom task)


def write_task_yaml(path: Path, config: dict[str, Any]) -> None:
    """Write one generated lm-eval task YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
