"""The eval task names a spec may use: the leaderboard benchmarks, single MMLU subjects, its custom tasks, and the
tasks defined by the lm-eval task YAMLs of its `[eval] include_path`.

The YAMLs are read for their names only (`task`, `group`, `tag`, `class`, over what they `include`), as lm-eval
indexes a directory (recursively, first name wins), without importing lm-eval: checking a spec stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tunelab.experiments.benchmarks import LEADERBOARD, MMLU_SUBJECTS
from tunelab.experiments.suggest import close_names, did_you_mean

_IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})
_NAME_KEYS = ("task", "group", "tag", "class")


@dataclass(frozen=True)
class TaskIndex:
    """The names an include_path directory defines."""

    path: Path
    tasks: dict[str, Path] = field(default_factory=dict)  # a single task -> its YAML
    others: dict[str, str] = field(default_factory=dict)  # a group, tag or Python-class task -> what it is
    unreadable: dict[Path, str] = field(default_factory=dict)  # a YAML that could not be read -> why


def task_yaml_files(directory: Path) -> list[Path]:
    """The task YAMLs under `directory`, as lm-eval finds them: recursively, caches and checkpoints left out."""
    return sorted((p for p in directory.rglob("*.yaml") if not _IGNORED_DIRS & set(p.parts)),
                  key=lambda p: p.as_posix())


def task_yaml_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        """Safe YAML, plus lm-eval's `!function module.name` tag kept as text (nothing is imported)."""

    Loader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")
    return Loader


def index_task_directory(directory: Path) -> TaskIndex:
    """The task names the YAMLs under `directory` define."""
    index = TaskIndex(directory)
    for path in task_yaml_files(directory):
        try:
            config = _name_keys(path, frozenset())
        except (OSError, ValueError, yaml.YAMLError) as err:
            index.unreadable[path] = " ".join(str(err).split())
            continue
        name = config.get("task")
        if "class" in config:
            index.others.setdefault(str(name), "a Python-class task (not supported here)")
        elif "group" in config:
            index.others.setdefault(str(config["group"]), "an lm-eval group")
        elif isinstance(name, str):
            index.tasks.setdefault(name, path)
            tags = config.get("tag") or []
            for tag in [tags] if isinstance(tags, str) else tags:
                index.others.setdefault(str(tag), "an lm-eval tag")
    for name in index.tasks:
        index.others.pop(name, None)
    return index


def _name_keys(path: Path, seen: frozenset[Path]) -> dict[str, Any]:
    """The naming keys of a task YAML, over those of the files it includes (its own win)."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"include cycle at {path}")
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=task_yaml_loader())  # noqa: S506 (a SafeLoader)
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a YAML mapping")
    own = {key: config[key] for key in _NAME_KEYS if key in config}
    includes = config.get("include")
    if includes is None:
        return own
    merged: dict[str, Any] = {}
    for include in includes if isinstance(includes, list) else [includes]:
        merged |= _name_keys(path.parent / Path(str(include)).expanduser(), seen | {path})
    return merged | own


def known_task_names(custom: list[str], index: TaskIndex | None) -> list[str]:
    """Every name `[eval] tasks` may hold, benchmarks first."""
    included = list(index.tasks) if index is not None else []
    return [*LEADERBOARD, *(f"mmlu_{subject}" for subject in MMLU_SUBJECTS), *custom, *included]


def unknown_task_message(name: str, custom: list[str], index: TaskIndex | None) -> str:
    """Why `name` is no eval task, with the nearest known name when there is one."""
    known = known_task_names(custom, index)
    close = close_names(name, known)
    message = f'unknown eval task "{name}"'
    if index is not None and name in index.others:
        return f'{message}: it is {index.others[name]} in include_path {index.path}; name its tasks instead'
    if close:
        message += f" ({did_you_mean(close)})"
    elif index is None:
        message += (f": known are {', '.join(LEADERBOARD)}, mmlu_<subject>, the [[eval.custom]] names and the tasks "
                    "of an [eval] include_path directory")
    else:
        message += f": not a benchmark, mmlu_<subject>, custom task nor a task of include_path {index.path}"
        message += f" (its tasks: {', '.join(sorted(index.tasks)) or 'none'})"
    unreadable = index.unreadable if index is not None else {}
    return message + "".join(f"; {path} could not be read: {why}" for path, why in unreadable.items())
