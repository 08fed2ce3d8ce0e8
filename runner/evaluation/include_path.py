"""Tasks of the spec's `[eval] include_path`: a directory of the user's own lm-eval task YAMLs.

They are indexed as lm-eval indexes them, without importing lm-eval. A task named in `[eval] tasks` is wrapped
in a YAML that includes the user's and overrides its name, the shots the spec asks for, and local data paths
made absolute (so the worker's directory never matters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tunelab.experiments.eval_tasks import task_yaml_files, task_yaml_loader
from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import EvalSection
from tunelab.runner.errors import EvaluationSpecError
from tunelab.runner.evaluation.tasks import TASK_PREFIX, GeneratedTask, TaskPlan, write_task_yaml

# `datasets`' packaged loaders that read local files named by data_files (a hub dataset's data_files are not local).
LOCAL_LOADERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas"})
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
    path = spec_path(settings.include_path, base_dir).resolve()
    if not path.is_dir():
        raise EvaluationSpecError(f"task directory {path} (from [eval] include_path) does not exist")
    return path


def task_directory(settings: EvalSection, base_dir: Path) -> TaskDirectory | None:
    """The tasks of the spec's include_path, or None when it sets none."""
    path = resolve_include_path(settings, base_dir)
    return read_task_directory(path) if path is not None else None


def read_task_directory(path: Path) -> TaskDirectory:
    """Index the task YAMLs under `path` without importing lm-eval (planning and `tunelab doctor` stay quick)."""
    tasks: dict[str, IncludedTask] = {}
    others: dict[str, str] = {}
    unreadable: dict[Path, str] = {}
    for yaml_path in task_yaml_files(path):
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


def plan_included(task: IncludedTask, shots: int | None, base_dir: Path, out_dir: Path) -> TaskPlan:
    """Write the YAML that runs an include_path task under our name, with the spec's shots and absolute data."""
    lm_name = f"{TASK_PREFIX}include_{task.name}"
    config: dict[str, Any] = {"include": str(task.yaml_path), "task": lm_name, "tag": None}
    if shots is not None:
        config["num_fewshot"] = shots
    overrides, files = included_task_data(task, base_dir)
    config |= overrides
    yaml_path = out_dir / f"{lm_name}.yaml"
    write_task_yaml(yaml_path, config)
    metric = _first_metric(task.config)
    generated = GeneratedTask(
        lm_name=lm_name,
        reported=task.name,
        task_group=None,
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
            raise EvaluationSpecError(f"task {task.name} ({task.yaml_path}): dataset_path {dataset} needs "
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
        local = spec_path(dataset, base_dir)
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
    return None if spec_path(dataset, base_dir).is_dir() else dataset


def _local_files(task: IncludedTask, path: str, base_dir: Path) -> list[Path]:
    """The files a data_files entry names (a glob pattern may name several)."""
    full = spec_path(path, base_dir)
    if _GLOB_CHARS & set(path):
        files = sorted(p.resolve() for p in Path(full.anchor).glob(str(full.relative_to(full.anchor))) if p.is_file())
    else:
        files = [full.resolve()] if full.is_file() else []
    if not files:
        raise EvaluationSpecError(f"task {task.name} ({task.yaml_path}): data file {path} not found (relative paths "
                                  f"are looked for beside the YAML, then in {base_dir})")
    return files


def python_helpers(task: IncludedTask) -> list[Path]:
    """The Python files lm-eval imports, and so runs as the worker's user, to load `task`: for each `!function
    module.name` in its YAML or in the YAMLs it includes, `module.py` beside the YAML that names it (lm-eval's
    rule). Files that cannot be read are left out: reading them fails the evaluation, and doctor, on its own."""
    found: dict[Path, None] = {}

    def walk(path: Path, seen: frozenset[Path]) -> None:
        path = path.resolve()
        if path in seen:
            return
        try:
            config = yaml.load(path.read_text(encoding="utf-8"), Loader=task_yaml_loader())  # noqa: S506
        except (OSError, ValueError, yaml.YAMLError):
            return
        for value in _strings(config):
            if value.startswith("!function "):
                module = value.removeprefix("!function ").strip().rpartition(".")[0]
                found[(path.parent / f"{module}.py").resolve()] = None
        includes = config.get("include") if isinstance(config, dict) else None
        for include in [] if includes is None else includes if isinstance(includes, list) else [includes]:
            walk(path.parent / Path(str(include)).expanduser(), seen | {path})

    walk(task.yaml_path, frozenset())
    return list(found)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _first_metric(config: dict[str, Any]) -> str:
    metrics = config.get("metric_list")
    if isinstance(metrics, list) and metrics and isinstance(metrics[0], dict):
        return str(metrics[0].get("metric", ""))
    return ""
