"""Write the lm-eval task YAMLs for one evaluation: the Open LLM Leaderboard v1 tasks, the spec's custom tasks and
the tasks of its `include_path`.

Every leaderboard task `include:`s the official YAML shipped with the installed lm-eval (so prompts, few-shot
rules and metrics are lm-eval's own) and overrides only its name, its few-shot count and, with a local
benchmarks directory, where the data comes from. Custom tasks are whole `multiple_choice` tasks of their own.
A task from the spec's include_path is wrapped the same way: a YAML that includes the user's and overrides its
name, the shots the spec asks for, and local data paths made absolute (so the worker's directory never matters).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunelab.experiments.schema import OPENLLM_V1_SHOTS, CustomTask, EvalSection

PROFILE = "openllm-v1"
# The profile a fingerprint names when the spec changed a benchmark's shots: the numbers are not the leaderboard's.
CUSTOM_PROFILE = "custom"
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
        Benchmark("arc_challenge", "arc/arc_challenge.yaml", OPENLLM_V1_SHOTS["arc_challenge"], "acc_norm", "acc_norm"),
        Benchmark("hellaswag", "hellaswag/hellaswag.yaml", OPENLLM_V1_SHOTS["hellaswag"], "acc_norm", "acc_norm"),
        Benchmark("mmlu", "mmlu/default/mmlu_{subject}.yaml", OPENLLM_V1_SHOTS["mmlu"], "acc", "acc"),
        # lm-eval's truthfulqa_mc2 reports the MC2 score (probability mass on true answers) as `acc`.
        Benchmark("truthfulqa_mc2", "truthfulqa/truthfulqa_mc2.yaml", OPENLLM_V1_SHOTS["truthfulqa_mc2"], "acc", "mc2"),
    )
}


@dataclass(frozen=True)
class GeneratedTask:
    """One lm-eval task we wrote a YAML for, and how its result is reported."""

    lm_name: str  # the name lm-eval knows it by
    reported: str  # the TaskScore.task name
    group: str | None
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

    `benchmarks_dir` None means the official hub datasets. Plans follow the order of `[eval] tasks` (MMLU where
    its first subject is named), then the custom tasks.
    """
    official = official_tasks_dir()
    directory = task_directory(settings, base_dir)
    included = directory.tasks if directory else {}
    requested = benchmark_requests(settings.tasks, official, directory)
    names = list(requested) + [t for t in dict.fromkeys(settings.tasks) if t in included and t not in requested]
    names += [c.name for c in settings.custom]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise EvaluationError(f"custom task name(s) {', '.join(clashes)} already used by another eval task")

    out_dir.mkdir(parents=True, exist_ok=True)
    # lm-eval indexes every YAML in the directory: drop what an earlier evaluation left there.
    for stale in out_dir.glob(f"{TASK_PREFIX}*.yaml"):
        stale.unlink()
    plans: dict[str, TaskPlan] = {}
    for task in settings.tasks:
        name = task if task in requested or task in included else "mmlu"
        if name in plans:
            continue
        if name in requested:
            bench = LEADERBOARD[name]
            shots = settings.num_fewshot.get(name, bench.num_fewshot)
            plan = _plan_benchmark(bench, official, benchmarks_dir, out_dir, requested[name], shots)
            asked = tuple(t for t in settings.tasks
                          if t == name or (name == "mmlu" and t.startswith("mmlu_") and t not in included))
        else:
            plan = _plan_included(included[name], settings.num_fewshot.get(name), base_dir, out_dir)
            asked = (name,)
        plans[name] = replace(plan, requested=tuple(dict.fromkeys(asked)))
    return list(plans.values()) + [_plan_custom(custom, base_dir, out_dir) for custom in settings.custom]


def shot_overrides(settings: EvalSection) -> dict[str, int]:
    """The benchmarks evaluated with other shots than the profile's, and their shots."""
    asked = {t if t in LEADERBOARD else "mmlu" for t in settings.tasks if t in LEADERBOARD or t.startswith("mmlu_")}
    return {name: shots for name, shots in settings.num_fewshot.items()
            if name in LEADERBOARD and name in asked and shots != LEADERBOARD[name].num_fewshot}


def profile_name(settings: EvalSection) -> str:
    """openllm-v1, unless the spec changed a benchmark's shots (then the numbers are not the leaderboard's)."""
    return CUSTOM_PROFILE if shot_overrides(settings) else PROFILE


def benchmark_requests(
    tasks: list[str], official: Path | None = None, directory: TaskDirectory | None = None
) -> dict[str, list[str] | None]:
    """Check `[eval] tasks`; return each benchmark to run, in order, with its MMLU subjects (None = all).

    Besides the four benchmark names, `mmlu_<subject>` asks for single MMLU subjects (for quick runs); they are
    scored together as a partial MMLU, which is never leaderboard-comparable. Names of `directory`'s tasks (the
    spec's include_path) are accepted and left out of the answer; the benchmark names always mean the benchmarks.
    """
    subjects = _mmlu_subjects(official or official_tasks_dir()) if any(t.startswith("mmlu_") for t in tasks) else []
    included = directory.tasks if directory else {}

    def is_subject(task: str) -> bool:
        return task.startswith("mmlu_") and task[5:] in subjects and task not in included

    unknown = [t for t in tasks if t not in LEADERBOARD and not is_subject(t) and t not in included]
    if unknown:
        raise EvaluationError(_unknown_tasks_message(unknown, directory))
    requested: dict[str, list[str] | None] = {}
    for task in dict.fromkeys(tasks):
        if task in LEADERBOARD:
            if task == "mmlu" and requested.get("mmlu"):
                raise EvaluationError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
            requested[task] = None
        elif not is_subject(task):
            continue  # an include_path task
        elif requested.get("mmlu", []) is None:
            raise EvaluationError("eval tasks name both mmlu (all subjects) and single mmlu_<subject> tasks")
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


def _plan_benchmark(
    bench: Benchmark, official: Path, benchmarks_dir: Path | None, out_dir: Path, subjects: list[str] | None,
    shots: int,
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
                shots,
            )
            for subject in (subjects if subjects is not None else _mmlu_subjects(official))
        )
        return TaskPlan("mmlu", tasks, complete=subjects is None)
    data = _LOCAL_DATA[bench.name](benchmarks_dir) if benchmarks_dir else None
    task = _write_benchmark_task(bench, official / bench.official_yaml, bench.name, None, data, out_dir, shots)
    return TaskPlan(bench.name, (task,))


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


def _write_benchmark_task(
    bench: Benchmark, official_yaml: Path, reported: str, group: str | None, data: _LocalData | None, out_dir: Path,
    shots: int,
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
    _write_yaml(path, config)
    return GeneratedTask(
        lm_name=lm_name,
        reported=reported,
        group=group,
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
        raise EvaluationError(f"{task}: {shots}-shot needs {need} rows in {path} (the {data.fewshot_split} split), "
                              f"it has {rows}; lower [eval.num_fewshot] {key}")


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
        return _LocalData({"train": train, "validation": validation}, {}, scored_split="validation")
    # No train split: shots come from validation, the split being scored. lm-eval only keeps an item out of its
    # own shots when the few-shot split is the task's `test_split` (the official hellaswag has none), so the
    # validation split is named the test split too; the scored items are the same either way.
    return _LocalData(
        {"validation": validation},
        {"training_split": None, "fewshot_split": "validation", "test_split": "validation"},
        leaderboard_settings=False,
        fewshot_split="validation",
        scored_split="validation",
    )


def _truthfulqa_data(benchmarks_dir: Path) -> _LocalData:
    validation = _find(benchmarks_dir, "truthfulqa/mc_validation.jsonl")
    return _LocalData({"validation": validation}, {}, fewshot_split="validation", scored_split="validation")


def _mmlu_data(benchmarks_dir: Path, subject: str) -> _LocalData:
    files = {
        "test": _find(benchmarks_dir, f"mmlu/{subject}/test.jsonl"),
        "dev": _find(benchmarks_dir, f"mmlu/{subject}/dev.jsonl"),
    }
    validation = _find(benchmarks_dir, f"mmlu/{subject}/validation.jsonl", required=False)
    if validation:
        files["validation"] = validation
    return _LocalData(files, {}, fewshot_split="dev")


_LOCAL_DATA = {"arc_challenge": _arc_data, "hellaswag": _hellaswag_data, "truthfulqa_mc2": _truthfulqa_data}

# The files each benchmark reads from a local benchmarks directory, required then optional, as the readers above
# look for them (tests check the two agree); `tunelab doctor` lists the missing ones before any run starts.
LOCAL_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "arc_challenge": (("arc_challenge/train.jsonl", "arc_challenge/test.jsonl"), ("arc_challenge/validation.jsonl",)),
    "hellaswag": (("hellaswag/validation.jsonl",), ("hellaswag/train.jsonl",)),
    "mmlu": (("mmlu/{subject}/test.jsonl", "mmlu/{subject}/dev.jsonl"), ("mmlu/{subject}/validation.jsonl",)),
    "truthfulqa_mc2": (("truthfulqa/mc_validation.jsonl",), ()),
}


def required_local_files(tasks: list[str], directory: TaskDirectory | None = None) -> dict[str, list[str]]:
    """Per benchmark of `[eval] tasks`, the files (relative to a benchmarks directory) it cannot run without."""
    official = official_tasks_dir()
    required: dict[str, list[str]] = {}
    for name, subjects in benchmark_requests(tasks, official, directory).items():
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


# ---------------------------------------------------------------- tasks of the spec's include_path

# `datasets`' packaged loaders that read local files named by data_files (a hub dataset's data_files are not local).
LOCAL_LOADERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas"})
_IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class IncludedTask:
    """A task defined by a YAML of the spec's include_path."""

    name: str
    yaml_path: Path
    config: dict[str, Any]  # merged over what it includes; `!function` values kept as text, local paths anchored


@dataclass(frozen=True)
class TaskDirectory:
    """The lm-eval task YAMLs of an include_path, read as lm-eval indexes them (recursively, first name wins)."""

    path: Path
    tasks: dict[str, IncludedTask]
    others: dict[str, str]  # names that are not single tasks (groups, tags, Python-class tasks) -> what they are
    unreadable: dict[Path, str]


def resolve_include_path(settings: EvalSection, base_dir: Path) -> Path | None:
    """The spec's include_path as an absolute directory (relative to `base_dir`), or None when it sets none."""
    if not settings.include_path:
        return None
    path = (Path(base_dir) / Path(settings.include_path).expanduser()).resolve()
    if not path.is_dir():
        raise EvaluationError(f"task directory {path} (from [eval] include_path) does not exist")
    return path


def task_directory(settings: EvalSection, base_dir: Path) -> TaskDirectory | None:
    """The tasks of the spec's include_path, or None when it sets none."""
    path = resolve_include_path(settings, base_dir)
    return read_task_directory(path) if path is not None else None


def read_task_directory(path: Path) -> TaskDirectory:
    """Index the task YAMLs under `path` without importing lm-eval (planning and `tunelab doctor` stay quick)."""
    import yaml

    tasks: dict[str, IncludedTask] = {}
    others: dict[str, str] = {}
    unreadable: dict[Path, str] = {}
    files = sorted((p for p in path.rglob("*.yaml") if not _IGNORED_DIRS & set(p.parts)), key=lambda p: p.as_posix())
    for yaml_path in files:
        try:
            config = read_task_yaml(yaml_path)
        except (OSError, ValueError, yaml.YAMLError) as err:
            unreadable[yaml_path] = str(err).replace("\n", " ")
            continue
        name = config.get("task")
        if "class" in config:
            others.setdefault(str(name), "a Python-class task (not supported here)")
        elif "group" in config:
            others.setdefault(str(config["group"]), "an lm-eval group")
        elif isinstance(name, str):
            tasks.setdefault(name, IncludedTask(name, yaml_path.resolve(), config))
            tags = config.get("tag") or []
            for tag in [tags] if isinstance(tags, str) else tags:
                others.setdefault(str(tag), "an lm-eval tag")
        # Anything else (a shared base without `task`) is not a task, for lm-eval either.
    return TaskDirectory(path, tasks, {k: v for k, v in others.items() if k not in tasks}, unreadable)


def read_task_yaml(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """An lm-eval task YAML merged over the files it `include`s (its own keys win), as lm-eval merges them.

    Relative data files and dataset directories that exist beside the file that names them are made absolute.
    """
    import yaml

    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"include cycle at {path}")
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=task_yaml_loader())  # noqa: S506 (a SafeLoader)
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a YAML mapping")
    _anchor_local_paths(config, path.parent)
    includes = config.pop("include", None)
    if includes is None:
        return config
    merged: dict[str, Any] = {}
    for include in includes if isinstance(includes, list) else [includes]:
        included = read_task_yaml(path.parent / Path(str(include)).expanduser(), _seen | {path})
        included.pop("task_list", None)
        merged.update(included)
    return merged | config


def task_yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """Safe YAML, plus lm-eval's `!function module.name` tag kept as text (nothing is imported)."""

    Loader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")
    return Loader


def map_data_files(value: Any, convert: Callable[[str], Any]) -> Any:
    """`datasets`' data_files (a path, a list of paths, or split -> path or list) with every path converted."""
    if isinstance(value, dict):
        return {split: map_data_files(paths, convert) for split, paths in value.items()}
    if isinstance(value, list):
        return [convert(str(path)) for path in value]
    return convert(str(value))


def _anchor_local_paths(config: dict[str, Any], directory: Path) -> None:
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("data_files"):
        kwargs["data_files"] = map_data_files(kwargs["data_files"], lambda p: _anchored(p, directory))
    dataset = config.get("dataset_path")
    if isinstance(dataset, str) and dataset not in LOCAL_LOADERS and (directory / dataset).is_dir():
        config["dataset_path"] = str((directory / dataset).resolve())


def _anchored(path: str, directory: Path) -> str:
    candidate = directory / Path(path).expanduser()
    found = any(directory.glob(path)) if _GLOB_CHARS & set(path) else candidate.exists()
    return str(candidate.resolve()) if found and not Path(path).is_absolute() else path


def _plan_included(task: IncludedTask, shots: int | None, base_dir: Path, out_dir: Path) -> TaskPlan:
    lm_name = f"{TASK_PREFIX}include_{task.name}"
    config: dict[str, Any] = {"include": str(task.yaml_path), "task": lm_name, "tag": None}
    if shots is not None:
        config["num_fewshot"] = shots
    overrides, files = included_task_data(task, base_dir)
    config |= overrides
    yaml_path = out_dir / f"{lm_name}.yaml"
    _write_yaml(yaml_path, config)
    metric = _first_metric(task.config)
    generated = GeneratedTask(
        lm_name=lm_name,
        reported=task.name,
        group=None,
        lm_metric=metric,
        metric=metric,
        num_fewshot=shots if shots is not None else int(task.config.get("num_fewshot") or 0),
        leaderboard_settings=True,
        yaml_path=yaml_path,
        data_files=files,
    )
    return TaskPlan(task.name, (generated,), included=True, requested=(task.name,))


def included_task_data(task: IncludedTask, base_dir: Path) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """Where an include_path task's data is: the config keys that name it by absolute path, and the local files.

    Relative paths not found beside the YAML are looked for in `base_dir` (the directory submit ran in).
    """
    dataset = task.config.get("dataset_path")
    kwargs = task.config.get("dataset_kwargs") or {}
    if dataset in LOCAL_LOADERS:
        if not isinstance(kwargs, dict) or not kwargs.get("data_files"):
            raise EvaluationError(f"task {task.name} ({task.yaml_path}): dataset_path {dataset} needs "
                                  "dataset_kwargs.data_files")
        found: list[Path] = []

        def resolve(value: Any) -> Any:
            if isinstance(value, dict):
                return {split: resolve(paths) for split, paths in value.items()}
            files = [f for path in (value if isinstance(value, list) else [value])
                     for f in _local_files(task, str(path), base_dir)]
            found.extend(files)
            return [str(f) for f in files]

        return {"dataset_kwargs": dict(kwargs, data_files=resolve(kwargs["data_files"]))}, tuple(found)
    if isinstance(dataset, str):
        local = Path(dataset).expanduser()
        local = local if local.is_absolute() else Path(base_dir) / local
        if local.is_dir():
            return {"dataset_path": str(local.resolve())}, tuple(data_files_under(local.resolve()))
    return {}, ()


def data_files_under(directory: Path) -> list[Path]:
    """The files of a local dataset directory that `datasets` would read: hidden files and folders (.git,
    .DS_Store, editor swap files) are neither data nor a reason to evaluate again."""
    return sorted(p for p in directory.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def hub_dataset_of(task: IncludedTask, base_dir: Path) -> str | None:
    """The hub dataset an include_path task loads, or None when its data is local."""
    dataset = task.config.get("dataset_path")
    if not isinstance(dataset, str) or dataset in LOCAL_LOADERS:
        return None
    local = Path(dataset).expanduser()
    return None if (local if local.is_absolute() else Path(base_dir) / local).is_dir() else dataset


def _local_files(task: IncludedTask, path: str, base_dir: Path) -> list[Path]:
    """The files a data_files entry names (a glob pattern may name several)."""
    candidate = Path(path).expanduser()
    full = candidate if candidate.is_absolute() else Path(base_dir) / candidate
    if _GLOB_CHARS & set(path):
        files = sorted(p.resolve() for p in Path(full.anchor).glob(str(full.relative_to(full.anchor))) if p.is_file())
    else:
        files = [full.resolve()] if full.is_file() else []
    if not files:
        raise EvaluationError(f"task {task.name} ({task.yaml_path}): data file {path} not found (relative paths are "
                              f"looked for beside the YAML, then in {base_dir})")
    return files


def _first_metric(config: dict[str, Any]) -> str:
    metrics = config.get("metric_list")
    if isinstance(metrics, list) and metrics and isinstance(metrics[0], dict):
        return str(metrics[0].get("metric", ""))
    return ""


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
