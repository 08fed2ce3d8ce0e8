"""The Open LLM Leaderboard v1 benchmarks as lm-eval tasks, and where their data is in a local benchmarks directory.

The benchmarks themselves (names, shots, metrics, the official lm-eval task each is) are experiments/benchmarks.py.

Every benchmark task `include:`s the official YAML shipped with the installed lm-eval (so prompts, few-shot rules
and metrics are lm-eval's own) and overrides only its name, its few-shot count and, with a local benchmarks
directory, where the data comes from. The local layout of each benchmark is one table (LOCAL_LAYOUTS): the
reader that points a task at its files and the list `tunelab doctor` checks both derive from it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.experiments.benchmarks import LEADERBOARD, LEADERBOARD_FEWSHOT_SEED, Benchmark
from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import EvalSection
from tunelab.runner.errors import EvaluationError, EvaluationSpecError
from tunelab.runner.evaluation.tasks import TASK_PREFIX, GeneratedTask, TaskPlan, write_task_yaml

PROFILE = "openllm-v1"
# The profile a fingerprint names when a benchmark was not evaluated as the leaderboard evaluates it (profile_of).
CUSTOM_PROFILE = "custom"
# Where a local copy of the benchmarks is when the spec names none ([eval] benchmarks_dir).
BENCHMARKS_DIR_ENV = "TUNELAB_BENCHMARKS_DIR"


def official_tasks_dir() -> Path:
    """The `lm_eval/tasks` directory of the installed lm-eval."""
    # Found without importing lm-eval (seconds), so planning and cache look-ups stay instant.
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError("lm-eval is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "tasks"


def mmlu_subjects(official: Path) -> list[str]:
    """The 57 MMLU subjects, as the installed lm-eval names them."""
    # The subject list is lm-eval's own, so it always matches the official tasks it includes.
    prefix = "mmlu_"
    subjects = sorted(p.stem[len(prefix) :] for p in (official / "mmlu" / "default").glob(f"{prefix}*.yaml"))
    if not subjects:
        raise EvaluationError(f"no MMLU subject tasks found under {official / 'mmlu' / 'default'}")
    return subjects


def shot_overrides(settings: EvalSection) -> dict[str, int]:
    """The benchmarks evaluated with other shots than the profile's, and their shots."""
    asked = {t if t in LEADERBOARD else "mmlu" for t in settings.tasks if t in LEADERBOARD or t.startswith("mmlu_")}
    return {name: shots for name, shots in settings.num_fewshot.items()
            if name in LEADERBOARD and name in asked and shots != LEADERBOARD[name].num_fewshot}


def profile_of(header: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[str]]:
    """What a result is, from its fingerprint's shared settings and task entries (runner/evaluation/harness.py):
    PROFILE when every leaderboard benchmark in it was evaluated as the leaderboard evaluates it, else
    CUSTOM_PROFILE with what departs from that (a limit, another few-shot seed, other shots, shots from another
    split, part of MMLU, prompts cut to the model's context, or no leaderboard benchmark at all)."""
    deviations = []
    if header.get("limit"):
        deviations.append(f"limit {header['limit']} items per task")
    seed = header.get("fewshot_seed", LEADERBOARD_FEWSHOT_SEED)
    if seed != LEADERBOARD_FEWSHOT_SEED:
        deviations.append(f"few-shot seed {seed} (the leaderboard's: {LEADERBOARD_FEWSHOT_SEED})")
    benchmarks = {name: entry for name, entry in tasks.items() if name in LEADERBOARD}
    if not benchmarks:
        deviations.append("no leaderboard benchmark")
    for name, entry in benchmarks.items():
        shots = LEADERBOARD[name].num_fewshot
        if entry.get("num_fewshot", shots) != shots:
            deviations.append(f"{name} {entry['num_fewshot']}-shot (the leaderboard's: {shots})")
        elif entry.get("leaderboard_settings") is False:
            deviations.append("part of mmlu" if name == "mmlu"
                              else f"{name} shots from the {entry.get('fewshot_split')} split")
        if entry.get("truncated_items"):
            deviations.append(f"{name}: {entry['truncated_items']} item(s) longer than the model's context")
    return (CUSTOM_PROFILE if deviations else PROFILE), deviations


# ---------------------------------------------------------------- local benchmark data


@dataclass(frozen=True)
class LocalFile:
    """One split of a benchmark as a JSONL file of a local benchmarks directory."""

    split: str
    path: str  # relative to the benchmarks directory; MMLU's name their subject as {subject}
    required: bool = True


@dataclass(frozen=True)
class WithoutOptional:
    """How a benchmark's task changes when its optional file is not there."""

    overrides: dict[str, Any]  # task keys set in its YAML
    leaderboard_settings: bool = True
    fewshot_split: str | None = None  # None: the layout's own


@dataclass(frozen=True)
class LocalLayout:
    """Where a benchmark's splits are in a local benchmarks directory, and which of them give shots and are scored."""

    files: tuple[LocalFile, ...]
    fewshot_split: str = "train"  # where the shots come from...
    scored_split: str = "test"  # ...and what is scored: the same split means an item is left out of its own shots
    without_optional: WithoutOptional = field(default_factory=lambda: WithoutOptional({}))


# The one description of the local layout (the layout of examples/benchmarks): the reader below and the file list
# `tunelab doctor` checks (runner/evaluation/planning.py required_local_files) both come from it.
LOCAL_LAYOUTS: dict[str, LocalLayout] = {
    "arc_challenge": LocalLayout(
        (LocalFile("train", "arc_challenge/train.jsonl"), LocalFile("test", "arc_challenge/test.jsonl"),
         LocalFile("validation", "arc_challenge/validation.jsonl", required=False)),
        without_optional=WithoutOptional({"validation_split": None}),
    ),
    "hellaswag": LocalLayout(
        (LocalFile("train", "hellaswag/train.jsonl", required=False),
         LocalFile("validation", "hellaswag/validation.jsonl")),
        scored_split="validation",
        # No train split: shots come from validation, the split being scored. lm-eval only keeps an item out of its
        # own shots when the few-shot split is the task's `test_split` (the official hellaswag has none), so the
        # validation split is named the test split too; the scored items are the same either way.
        without_optional=WithoutOptional({"training_split": None, "fewshot_split": "validation",
                                          "test_split": "validation"},
                                         leaderboard_settings=False, fewshot_split="validation"),
    ),
    "mmlu": LocalLayout(
        (LocalFile("test", "mmlu/{subject}/test.jsonl"), LocalFile("dev", "mmlu/{subject}/dev.jsonl"),
         LocalFile("validation", "mmlu/{subject}/validation.jsonl", required=False)),
        fewshot_split="dev",
    ),
    "truthfulqa_mc2": LocalLayout(
        (LocalFile("validation", "truthfulqa/mc_validation.jsonl"),), fewshot_split="validation",
        scored_split="validation",
    ),
}


def local_files(benchmark: str, subjects: list[str] | None = None) -> list[str]:
    """The files (relative to a benchmarks directory) a benchmark cannot run without; MMLU's for `subjects`."""
    required = [entry.path for entry in LOCAL_LAYOUTS[benchmark].files if entry.required]
    if "{subject}" not in "".join(required):
        return required
    return [path.format(subject=subject) for subject in subjects or [] for path in required]


def resolve_benchmarks_dir(settings: EvalSection, base_dir: Path, environ: Mapping[str, str]) -> Path | None:
    """The local benchmark directory: the spec's, else $TUNELAB_BENCHMARKS_DIR, else None (hub datasets)."""
    raw = settings.benchmarks_dir or environ.get(BENCHMARKS_DIR_ENV, "")
    if not raw:
        return None
    path = spec_path(raw, base_dir).resolve()
    if not path.is_dir():
        if settings.benchmarks_dir:  # the spec's own: another attempt would not find it either
            raise EvaluationSpecError(f"benchmarks directory {path} (from [eval] benchmarks_dir) does not exist")
        # The worker's environment: a shared disk may be mounted again by the next attempt.
        raise EvaluationError(f"benchmarks directory {path} (from {BENCHMARKS_DIR_ENV}) does not exist")
    return path


@dataclass(frozen=True)
class _LocalData:
    """Local JSONL files standing in for a hub dataset, plus the task keys that change with them."""

    files: dict[str, Path]  # split name -> file
    overrides: dict[str, Any]
    leaderboard_settings: bool = True
    fewshot_split: str = "train"  # where the shots come from...
    scored_split: str = "test"  # ...and what is scored: the same split means an item is left out of its own shots


# TruthfulQA has a single split. Its leaderboard setting is 0-shot (the prompt carries six fixed examples); other
# shots come from that split, so it is named the test split too and lm-eval leaves each item out of its own shots.
_TRUTHFULQA_SHOTS = {"fewshot_split": "validation", "test_split": "validation"}


def _local_data(benchmark: str, benchmarks_dir: Path, subject: str | None = None) -> _LocalData:
    """A benchmark's files in `benchmarks_dir`, as LOCAL_LAYOUTS places them; a missing required file fails."""
    layout = LOCAL_LAYOUTS[benchmark]
    files = {}
    for entry in layout.files:
        path = _find(benchmarks_dir, entry.path.format(subject=subject), required=entry.required)
        if path is not None:
            files[entry.split] = path
    if len(files) == len(layout.files):
        return _LocalData(files, {}, fewshot_split=layout.fewshot_split, scored_split=layout.scored_split)
    fallback = layout.without_optional
    return _LocalData(files, dict(fallback.overrides), leaderboard_settings=fallback.leaderboard_settings,
                      fewshot_split=fallback.fewshot_split or layout.fewshot_split, scored_split=layout.scored_split)


def _find(benchmarks_dir: Path, rel: str, *, required: bool = True) -> Path | None:
    path = benchmarks_dir / rel
    if path.is_file():
        return path.resolve()
    if required:
        raise EvaluationError(f"benchmark file {path} is missing (benchmarks_dir is {benchmarks_dir})")
    return None


def plan_benchmark(
    bench: Benchmark, official: Path, benchmarks_dir: Path | None, out_dir: Path, subjects: list[str] | None,
    shots: int,
) -> TaskPlan:
    """Write the task YAML of a benchmark (one per MMLU subject, `subjects` or all), with local data if given."""
    if bench.name == "mmlu":
        tasks = tuple(
            _write_benchmark_task(
                bench,
                official / bench.official_yaml.format(subject=subject),
                f"mmlu_{subject}",
                "mmlu",
                _local_data("mmlu", benchmarks_dir, subject) if benchmarks_dir else None,
                out_dir,
                shots,
            )
            for subject in (subjects if subjects is not None else mmlu_subjects(official))
        )
        return TaskPlan("mmlu", tasks, complete=subjects is None)
    data = _local_data(bench.name, benchmarks_dir) if benchmarks_dir else None
    task = _write_benchmark_task(bench, official / bench.official_yaml, bench.name, None, data, out_dir, shots)
    return TaskPlan(bench.name, (task,))


def _write_benchmark_task(
    bench: Benchmark, official_yaml: Path, reported: str, task_group: str | None, data: _LocalData | None,
    out_dir: Path, shots: int,
) -> GeneratedTask:
    lm_name = TASK_PREFIX + reported
    config: dict[str, Any] = {
        "include": str(official_yaml),
        "task": lm_name,
        # The official YAML's tags would add our copy to lm-eval's own tag groups.
        "tag": None,
        # Per task, not simple_evaluate's global num_fewshot: each benchmark has its own.
        "num_fewshot": shots,
    }
    if bench.name == "truthfulqa_mc2" and shots:
        config |= _TRUTHFULQA_SHOTS
    if data is not None:
        _check_shot_rows(reported, bench.name, data, shots)
        config |= {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(path) for split, path in data.files.items()}},
        }
        config |= data.overrides
    path = out_dir / f"{lm_name}.yaml"
    write_task_yaml(path, config)
    return GeneratedTask(
        lm_name=lm_name,
        reported=reported,
        task_group=task_group,
        lm_metric=bench.lm_metric,
        metric=bench.metric,
        num_fewshot=shots,
        leaderboard_settings=(data.leaderboard_settings if data else True) and shots == bench.num_fewshot,
        yaml_path=path,
        data_files=tuple(data.files.values()) if data else (),
    )


def _check_shot_rows(task: str, key: str, data: _LocalData, shots: int) -> None:
    """Fail before any model runs when a local few-shot split is too small for the shots asked for."""
    if not shots or data.fewshot_split not in data.files:
        return
    path = data.files[data.fewshot_split]
    need = shots + (data.fewshot_split == data.scored_split)
    with path.open(encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip())
    if rows < need:
        raise EvaluationSpecError(f"{task}: {shots}-shot needs {need} rows in {path} (the {data.fewshot_split} split), "
                              f"it has {rows}; lower [eval.num_fewshot] {key}")
