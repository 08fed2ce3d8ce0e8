"""Plan one evaluation: check `[eval] tasks` and the custom tasks, and write the lm-eval task YAMLs for them.

The Open LLM Leaderboard v1 benchmarks come from runner/evaluation/leaderboard.py, the spec's custom tasks from
custom_tasks.py and the tasks of its include_path from include_path.py. Every YAML goes into one directory,
which the evaluation hands to lm-eval's TaskManager.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.schema import EvalSection
from tunelab.runner.errors import EvaluationSpecError
from tunelab.runner.evaluation.custom_tasks import plan_custom
from tunelab.runner.evaluation.include_path import TaskDirectory, plan_included, task_directory
from tunelab.runner.evaluation.leaderboard import (
    local_files,
    mmlu_subjects,
    official_tasks_dir,
    plan_benchmark,
    resolve_benchmarks_dir,
)
from tunelab.runner.evaluation.tasks import TASK_PREFIX, TaskPlan


def plan_tasks(settings: EvalSection, *, benchmarks_dir: Path | None, base_dir: Path, out_dir: Path) -> list[TaskPlan]:
    """Check the requested tasks and their data, write one YAML per lm-eval task into `out_dir`, return the plans.

    `benchmarks_dir` None means the official hub datasets. Plans follow the order of `[eval] tasks` (MMLU where
    its first subject is named), then the custom tasks.
    """
    official = official_tasks_dir()
    directory = task_directory(settings, base_dir)
    included = directory.tasks if directory else {}
    tasks = settings.harness_tasks
    requested = benchmark_requests(tasks, official, directory)
    names = list(requested) + [t for t in dict.fromkeys(tasks) if t in included and t not in requested]
    names += [c.name for c in settings.custom]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise EvaluationSpecError(f"custom task name(s) {', '.join(clashes)} already used by another eval task")

    out_dir.mkdir(parents=True, exist_ok=True)
    # lm-eval indexes every YAML in the directory: drop what an earlier evaluation left there.
    for stale in out_dir.glob(f"{TASK_PREFIX}*.yaml"):
        stale.unlink()
    plans: dict[str, TaskPlan] = {}
    for task in tasks:
        name = task if task in requested or task in included else "mmlu"
        if name in plans:
            continue
        if name in requested:
            bench = LEADERBOARD[name]
            shots = settings.num_fewshot.get(name, bench.num_fewshot)
            plan = plan_benchmark(bench, official, benchmarks_dir, out_dir, requested[name], shots)
            asked = tuple(t for t in tasks
                          if t == name or (name == "mmlu" and t.startswith("mmlu_") and t not in included))
        else:
            plan = plan_included(included[name], settings.num_fewshot.get(name), base_dir, out_dir)
            asked = (name,)
        plans[name] = replace(plan, requested=tuple(dict.fromkeys(asked)))
    return list(plans.values()) + [plan_custom(custom, base_dir, out_dir) for custom in settings.custom]


def check_evaluation(settings: EvalSection, *, base_dir: Path, out_dir: Path) -> None:
    """Check all an evaluation of `settings` can be checked for without a model (its tasks, their files, the rows
    the shots need), writing its task YAMLs into `out_dir`: a worker calls it before training, so a spec that
    cannot be evaluated fails at once rather than after training."""
    benchmarks_dir = resolve_benchmarks_dir(settings, base_dir, os.environ)
    if not plan_tasks(settings, benchmarks_dir=benchmarks_dir, base_dir=base_dir, out_dir=out_dir):
        raise EvaluationSpecError(NOTHING_TO_EVALUATE)


NOTHING_TO_EVALUATE = "nothing to evaluate: [eval] tasks is empty and there are no custom tasks"


def benchmark_requests(
    tasks: list[str], official: Path | None = None, directory: TaskDirectory | None = None
) -> dict[str, list[str] | None]:
    """Check `[eval] tasks`; return each benchmark to run, in order, with its MMLU subjects (None = all).

    Besides the four benchmark names, `mmlu_<subject>` asks for single MMLU subjects (for quick runs); they are
    scored together as a partial MMLU, which is never leaderboard-comparable. Names of `directory`'s tasks (the
    spec's include_path) are accepted and left out of the answer; the benchmark names always mean the benchmarks.
    """
    subjects = mmlu_subjects(official or official_tasks_dir()) if any(t.startswith("mmlu_") for t in tasks) else []
    included = directory.tasks if directory else {}

    def is_subject(task: str) -> bool:
        return task.startswith("mmlu_") and task[5:] in subjects and task not in included

    unknown = [t for t in tasks if t not in LEADERBOARD and not is_subject(t) and t not in included]
    if unknown:
        raise EvaluationSpecError(_unknown_tasks_message(unknown, directory))
    requested: dict[str, list[str] | None] = {}
    for task in dict.fromkeys(tasks):
        if task in LEADERBOARD:
            if task == "mmlu" and requested.get("mmlu"):
                raise EvaluationSpecError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
            requested[task] = None
        elif not is_subject(task):
            continue  # an include_path task
        elif requested.get("mmlu", []) is None:
            raise EvaluationSpecError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
        else:
            requested.setdefault("mmlu", []).append(task.removeprefix("mmlu_"))
    return requested


def _unknown_tasks_message(unknown: list[str], directory: TaskDirectory | None) -> str:
    names = ", ".join(map(repr, unknown))
    if directory is None:
        return (f"unknown eval task(s) {names}; known: {', '.join(LEADERBOARD)} or mmlu_<subject> (own data goes in "
                "[[eval.custom]], own lm-eval task YAMLs in a directory named by [eval] include_path)")
    found = ", ".join(sorted(directory.tasks)) or "none"
    why = [f"{name!r} is {what}; name its tasks instead" for name, what in directory.others.items() if name in unknown]
    why += [f"{path} could not be read: {error}" for path, error in directory.unreadable.items()]
    return (f"unknown eval task(s) {names}: not a benchmark ({', '.join(LEADERBOARD)}, mmlu_<subject>) nor a task "
            f"of include_path {directory.path} (its tasks: {found})" + "".join(f"; {line}" for line in why))


def required_local_files(tasks: list[str], directory: TaskDirectory | None = None) -> dict[str, list[str]]:
    """Per benchmark of `[eval] tasks`, the files (relative to a benchmarks directory) it cannot run without."""
    official = official_tasks_dir()
    required = {}
    for name, subjects in benchmark_requests(tasks, official, directory).items():
        if name == "mmlu" and subjects is None:
            subjects = mmlu_subjects(official)
        required[name] = local_files(name, subjects)
    return required
