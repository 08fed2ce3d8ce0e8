"""Write the lm-eval task YAMLs for one evaluation: the Open LLM Leaderboard v1 tasks and the spec's custom tasks.

Every leaderboard task `include:`s the official YAML shipped with the installed lm-eval (so prompts, few-shot
rules and metrics are lm-eval's own) and overrides only its name, its few-shot count and, with a local
benchmarks directory, where the data comes from. Custom tasks are whole `multiple_choice` tasks of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.schema import CustomTask, EvalSection

PROFILE = "openllm-v1"
# Our generated tasks get a prefix so they never collide with an lm-eval task or a user's custom task name.
TASK_PREFIX = "tunelab_"
# The prompt the instruction fine-tunes are trained on (the spec's `alpaca` template), so a custom task scores
# a fine-tuned model on its own format.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{{question}}\n\n### Response:\n"
)


class EvaluationError(Exception):
    """An evaluation cannot run: unknown task, missing or malformed data, data not reachable offline."""


@dataclass(frozen=True)
class Benchmark:
    """One Open LLM Leaderboard v1 benchmark: which official lm-eval task, how many shots, which metric."""

    name: str
    official_yaml: str  # relative to lm_eval/tasks; for mmlu, one per subject (see _mmlu_subjects)
    num_fewshot: int
    lm_metric: str  # the metric's key in lm-eval's results
    metric: str  # the name we report it under


LEADERBOARD: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("arc_challenge", "arc/arc_challenge.yaml", 25, "acc_norm", "acc_norm"),
        Benchmark("hellaswag", "hellaswag/hellaswag.yaml", 10, "acc_norm", "acc_norm"),
        Benchmark("mmlu", "mmlu/default/mmlu_{subject}.yaml", 5, "acc", "acc"),
        # lm-eval's truthfulqa_mc2 reports the MC2 score (probability mass on true answers) as `acc`.
        Benchmark("truthfulqa_mc2", "truthfulqa/truthfulqa_mc2.yaml", 0, "acc", "mc2"),
    )
}


@dataclass(frozen=True)
class GeneratedTask:
    """One lm-eval task we wrote a YAML for, and how its result is reported."""

    lm_name: str  # the name lm-eval knows it by
    reported: str  # the TaskScore.task name
    group: str | None
    lm_metric: str
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


def official_tasks_dir() -> Path:
    """The `lm_eval/tasks` directory of the installed lm-eval."""
    import importlib.util

    # Found without importing lm-eval (seconds), so planning and cache look-ups stay instant.
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError("lm-eval is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "tasks"


def plan_tasks(settings: EvalSection, *, benchmarks_dir: Path | None, base_dir: Path, out_dir: Path) -> list[TaskPlan]:
    """Check the requested tasks and their data, write one YAML per lm-eval task into `out_dir`, return the plans.

    `benchmarks_dir` None means the official hub datasets.
    """
    official = official_tasks_dir()
    requested = benchmark_requests(settings.tasks, official)
    names = list(requested) + [c.name for c in settings.custom]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise EvaluationError(f"custom task name(s) {', '.join(clashes)} already used by another eval task")

    out_dir.mkdir(parents=True, exist_ok=True)
    # lm-eval indexes every YAML in the directory: drop what an earlier evaluation left there.
    for stale in out_dir.glob(f"{TASK_PREFIX}*.yaml"):
        stale.unlink()
    plans = [
        _plan_benchmark(LEADERBOARD[name], official, benchmarks_dir, out_dir, subjects)
        for name, subjects in requested.items()
    ]
    plans += [_plan_custom(custom, base_dir, out_dir) for custom in settings.custom]
    return plans


def benchmark_requests(tasks: list[str], official: Path | None = None) -> dict[str, list[str] | None]:
    """Check `[eval] tasks`; return each benchmark to run, in order, with its MMLU subjects (None = all).

    Besides the four benchmark names, `mmlu_<subject>` asks for single MMLU subjects (for quick runs); they are
    scored together as a partial MMLU, which is never leaderboard-comparable.
    """
    subjects = _mmlu_subjects(official or official_tasks_dir()) if any(t.startswith("mmlu_") for t in tasks) else []
    unknown = [t for t in tasks if t not in LEADERBOARD and not (t.startswith("mmlu_") and t[5:] in subjects)]
    if unknown:
        raise EvaluationError(
            f"unknown eval task(s) {', '.join(map(repr, unknown))}; known: {', '.join(LEADERBOARD)} or "
            "mmlu_<subject> (own data goes in [[eval.custom]])"
        )
    requested: dict[str, list[str] | None] = {}
    for task in dict.fromkeys(tasks):
        if task in LEADERBOARD:
            if task == "mmlu" and requested.get("mmlu"):
                raise EvaluationError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
            requested[task] = None
        elif requested.get("mmlu", []) is None:
            raise EvaluationError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
        else:
            requested.setdefault("mmlu", []).append(task.removeprefix("mmlu_"))
    return requested


def _plan_benchmark(
    bench: Benchmark, official: Path, benchmarks_dir: Path | None, out_dir: Path, subjects: list[str] | None = None
) -> TaskPlan:
    if bench.name == "mmlu":
        tasks = tuple(
            _write_benchmark_task(
                bench,
                official / bench.official_yaml.format(subject=subject),
                f"mmlu_{subject}",
                "mmlu",
                _mmlu_data(benchmarks_dir, subject) if benchmarks_dir else None,
                out_dir,
            )
            for subject in (subjects if subjects is not None else _mmlu_subjects(official))
        )
        return TaskPlan("mmlu", tasks, complete=subjects is None)
    data = _LOCAL_DATA[bench.name](benchmarks_dir) if benchmarks_dir else None
    task = _write_benchmark_task(bench, official / bench.official_yaml, bench.name, None, data, out_dir)
    return TaskPlan(bench.name, (task,))


@dataclass(frozen=True)
class _LocalData:
    """Local JSONL files standing in for a hub dataset, plus the task keys that change with them."""

    files: dict[str, Path]  # split name -> file
    overrides: dict[str, Any]
    leaderboard_settings: bool = True


def _write_benchmark_task(
    bench: Benchmark, official_yaml: Path, reported: str, group: str | None, data: _LocalData | None, out_dir: Path
) -> GeneratedTask:
    lm_name = TASK_PREFIX + reported
    config: dict[str, Any] = {
        "include": str(official_yaml),
        "task": lm_name,
        # The official YAML's tags would add our copy to lm-eval's own tag groups.
        "tag": None,
        # Per task, not simple_evaluate's global num_fewshot: each benchmark has its own.
        "num_fewshot": bench.num_fewshot,
    }
    if data is not None:
        config |= {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(path) for split, path in data.files.items()}},
        }
        config |= data.overrides
    path = out_dir / f"{lm_name}.yaml"
    _write_yaml(path, config)
    return GeneratedTask(
        lm_name=lm_name,
        reported=reported,
        group=group,
        lm_metric=bench.lm_metric,
        metric=bench.metric,
        num_fewshot=bench.num_fewshot,
        leaderboard_settings=data.leaderboard_settings if data else True,
        yaml_path=path,
        data_files=tuple(data.files.values()) if data else (),
    )


def _find(benchmarks_dir: Path, rel: str, *, required: bool = True) -> Path | None:
    path = benchmarks_dir / rel
    if path.is_file():
        return path.resolve()
    if required:
        raise EvaluationError(f"benchmark file {path} is missing (benchmarks_dir is {benchmarks_dir})")
    return None


def _arc_data(benchmarks_dir: Path) -> _LocalData:
    files = {
        "train": _find(benchmarks_dir, "arc_challenge/train.jsonl"),
        "test": _find(benchmarks_dir, "arc_challenge/test.jsonl"),
    }
    validation = _find(benchmarks_dir, "arc_challenge/validation.jsonl", required=False)
    if validation:
        return _LocalData({**files, "validation": validation}, {})
    return _LocalData(files, {"validation_split": None})


def _hellaswag_data(benchmarks_dir: Path) -> _LocalData:
    validation = _find(benchmarks_dir, "hellaswag/validation.jsonl")
    train = _find(benchmarks_dir, "hellaswag/train.jsonl", required=False)
    if train:
        return _LocalData({"train": train, "validation": validation}, {})
    # No train split: shots come from validation, the split being scored. lm-eval only keeps an item out of its
    # own shots when the few-shot split is the task's `test_split` (the official hellaswag has none), so the
    # validation split is named the test split too; the scored items are the same either way.
    return _LocalData(
        {"validation": validation},
        {"training_split": None, "fewshot_split": "validation", "test_split": "validation"},
        leaderboard_settings=False,
    )


def _truthfulqa_data(benchmarks_dir: Path) -> _LocalData:
    return _LocalData({"validation": _find(benchmarks_dir, "truthfulqa/mc_validation.jsonl")}, {})


def _mmlu_data(benchmarks_dir: Path, subject: str) -> _LocalData:
    files = {
        "test": _find(benchmarks_dir, f"mmlu/{subject}/test.jsonl"),
        "dev": _find(benchmarks_dir, f"mmlu/{subject}/dev.jsonl"),
    }
    validation = _find(benchmarks_dir, f"mmlu/{subject}/validation.jsonl", required=False)
    if validation:
        files["validation"] = validation
    return _LocalData(files, {})


_LOCAL_DATA = {"arc_challenge": _arc_data, "hellaswag": _hellaswag_data, "truthfulqa_mc2": _truthfulqa_data}

# The files each benchmark reads from a local benchmarks directory, required then optional, as the readers above
# look for them (tests check the two agree); `tunelab doctor` lists the missing ones before any run starts.
LOCAL_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "arc_challenge": (("arc_challenge/train.jsonl", "arc_challenge/test.jsonl"), ("arc_challenge/validation.jsonl",)),
    "hellaswag": (("hellaswag/validation.jsonl",), ("hellaswag/train.jsonl",)),
    "mmlu": (("mmlu/{subject}/test.jsonl", "mmlu/{subject}/dev.jsonl"), ("mmlu/{subject}/validation.jsonl",)),
    "truthfulqa_mc2": (("truthfulqa/mc_validation.jsonl",), ()),
}


def required_local_files(tasks: list[str]) -> dict[str, list[str]]:
    """Per benchmark of `[eval] tasks`, the files (relative to a benchmarks directory) it cannot run without."""
    official = official_tasks_dir()
    required: dict[str, list[str]] = {}
    for name, subjects in benchmark_requests(tasks, official).items():
        patterns = LOCAL_FILES[name][0]
        if name == "mmlu":
            chosen = subjects if subjects is not None else _mmlu_subjects(official)
            required[name] = [p.format(subject=s) for s in chosen for p in patterns]
        else:
            required[name] = list(patterns)
    return required


def mmlu_subjects(official: Path | None = None) -> list[str]:
    """The 57 MMLU subjects, as the installed lm-eval names them."""
    return _mmlu_subjects(official or official_tasks_dir())


def _mmlu_subjects(official: Path) -> list[str]:
    # The subject list is lm-eval's own, so it always matches the official tasks it includes.
    prefix = "mmlu_"
    subjects = sorted(p.stem[len(prefix) :] for p in (official / "mmlu" / "default").glob(f"{prefix}*.yaml"))
    if not subjects:
        raise EvaluationError(f"no MMLU subject tasks found under {official / 'mmlu' / 'default'}")
    return subjects


def _plan_custom(custom: CustomTask, base_dir: Path, out_dir: Path) -> TaskPlan:
    path = (base_dir / custom.path).resolve()
    rows = check_custom_rows(path)
    if custom.num_fewshot >= rows:
        raise EvaluationError(
            f"custom task {custom.name}: num_fewshot = {custom.num_fewshot} needs more than {rows} row(s) in {path}"
        )
    lm_name = f"{TASK_PREFIX}custom_{custom.name}"
    config: dict[str, Any] = {
        "task": lm_name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": ALPACA_PROMPT,
        "doc_to_target": "answer",
        "doc_to_choice": "choices",
        # The response follows the template's "### Response:\n" directly, as in training.
        "target_delimiter": "",
        "num_fewshot": custom.num_fewshot,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    if custom.num_fewshot:
        # Shots from the same file; lm-eval leaves an item out of its own shots when fewshot_split == test_split.
        config["fewshot_split"] = "test"
    yaml_path = out_dir / f"{lm_name}.yaml"
    _write_yaml(yaml_path, config)
    task = GeneratedTask(
        lm_name=lm_name,
        reported=custom.name,
        group=None,
        lm_metric="acc",
        metric="acc",
        num_fewshot=custom.num_fewshot,
        leaderboard_settings=True,
        yaml_path=yaml_path,
        data_files=(path,),
    )
    return TaskPlan(custom.name, (task,), custom=True)


def check_custom_rows(path: Path) -> int:
    """Validate a custom task's JSONL (rows of question, choices, answer index); return the number of rows."""
    if not path.is_file():
        raise EvaluationError(f"custom task file {path} is missing")
    rows = 0
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvaluationError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            problem = _custom_row_problem(row)
            if problem:
                raise EvaluationError(f"{path}:{number}: {problem}")
            rows += 1
    if rows == 0:
        raise EvaluationError(f"custom task file {path} has no rows")
    return rows


def _custom_row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object with question, choices and answer"
    if not isinstance(row.get("question"), str):
        return "`question` must be a string"
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        return "`choices` must be a list of at least two strings"
    answer = row.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return f"`answer` must be the index (0-{len(choices) - 1}) of the right choice"
    return None


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
