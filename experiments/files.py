"""The files, directories and eval tasks a spec names, checked against the filesystem before anything is stored
or trained: each file found, of the right kind and readable, each directory too, and each eval task known.

`tunelab submit` (and `run`, and `submit --dry-run`) refuse a spec that fails here, naming its file, line and
field; a worker calls `check_spec_files` on a stored spec before it trains, so files that vanished since submit
fail the run at once instead of after training.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunelab.experiments.benchmarks import LEADERBOARD, MMLU_SUBJECTS
from tunelab.experiments.errors import SpecError
from tunelab.experiments.eval_tasks import TaskIndex, index_task_directory, unknown_task_message
from tunelab.experiments.paths import file_kind, locate_model, spec_path
from tunelab.experiments.schema import Spec

Loc = tuple[str | int, ...]
# Where a field of the spec was written: its file and line (None when not known).
Locate = Callable[[Loc], tuple[Path | None, int | None]]


@dataclass(frozen=True)
class NamedPath:
    """A path a spec names, where, and what it must be."""

    loc: Loc  # ("data", "train", 0, "path")
    raw: str  # as written
    expects: Literal["file", "directory", "model"]  # "model": a local model directory, run:ID or a hub id

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.loc)


def named_paths(spec: Spec) -> list[NamedPath]:
    """Every file and directory the spec names, in the order of the spec."""
    paths = [NamedPath(("model", "base"), spec.model.base, "model")]
    train = spec.data.train
    if isinstance(train, str):
        paths.append(NamedPath(("data", "train"), train, "file"))
    else:
        paths += [NamedPath(("data", "train", i, "path"), source.path, "file") for i, source in enumerate(train)]
    if isinstance(spec.data.validation, str):
        paths.append(NamedPath(("data", "validation"), spec.data.validation, "file"))
    paths += [NamedPath(("eval", "custom", i, "path"), task.path, "file") for i, task in enumerate(spec.eval.custom)]
    if spec.eval.include_path:
        paths.append(NamedPath(("eval", "include_path"), spec.eval.include_path, "directory"))
    if spec.eval.benchmarks_dir:
        paths.append(NamedPath(("eval", "benchmarks_dir"), spec.eval.benchmarks_dir, "directory"))
    return paths


def local_target(named: NamedPath, workdir: Path) -> Path | None:
    """The local path `named` points at, `..` folded; None for a model that is a hub id or an earlier run."""
    if named.expects == "model" and locate_model(named.raw, workdir).kind in ("run", "hub"):
        return None
    return Path(os.path.normpath(spec_path(named.raw, workdir)))


def check_spec_files(spec: Spec, workdir: Path, *, path: Path | str | None = None,
                     locate: Locate | None = None) -> None:
    """Raise SpecError for the first path of `spec` that is missing, of the wrong kind or unreadable, or the first
    `[eval] tasks` name that is no task; relative paths are taken from `workdir` (the directory submit ran in).

    `locate` says where each field was written (file and line); without it errors name `path` (the spec file).
    """

    def fail(loc: Loc, message: str) -> None:
        file, line = locate(loc) if locate is not None else (path, None)
        raise SpecError(file, message, line=line, field=".".join(str(part) for part in loc))

    for named in named_paths(spec):
        problem = _problem(named, workdir)
        if problem is not None:
            fail(named.loc, problem)
    index = None
    if spec.eval.include_path:
        index = index_task_directory(spec_path(spec.eval.include_path, workdir))
    problem = tasks_problem(spec, index)
    if problem is not None:
        fail(*problem)


def tasks_problem(spec: Spec, index: TaskIndex | None) -> tuple[Loc, str] | None:
    """Where and what is wrong with the eval tasks (an unknown name, MMLU both whole and by subject, a custom task
    named like another task), or None. `index`: the tasks of the spec's include_path."""
    custom = [task.name for task in spec.eval.custom]
    if not spec.eval.tasks and not custom:
        return ("eval", "tasks"), "names no task and there is no [[eval.custom]] task: nothing would be evaluated"
    included = set(index.tasks if index is not None else ())
    for i, name in enumerate(custom):
        if _is_benchmark(name) or name in included:
            what = "a task of include_path" if name in included else "a leaderboard benchmark"
            return ("eval", "custom", i, "name"), f'"{name}" is the name of {what}: give the custom task another'
    known = included | set(custom)
    for name in spec.eval.tasks:
        if name not in known and not _is_benchmark(name):
            return ("eval", "tasks"), unknown_task_message(name, custom, index)
    subjects = [t for t in spec.eval.tasks if t.startswith("mmlu_") and t not in known]
    if "mmlu" in spec.eval.tasks and subjects:
        return ("eval", "tasks"), (f"names both mmlu (all 57 subjects) and single subjects ({', '.join(subjects)}): "
                                   "keep one or the other")
    return None


def _is_benchmark(name: str) -> bool:
    return name in LEADERBOARD or (name.startswith("mmlu_") and name[5:] in MMLU_SUBJECTS)


def _problem(named: NamedPath, workdir: Path) -> str | None:
    if named.expects == "model":
        location = locate_model(named.raw, workdir)
        if location.kind in ("run", "hub"):
            return None
        full = spec_path(named.raw, workdir)
        if location.kind == "missing" and not full.exists():
            return f"base model directory not found: {full}"
        return _directory_problem(full, "base model directory")
    full = spec_path(named.raw, workdir)
    if named.expects == "directory":
        return _directory_problem(full, "directory")
    return _file_problem(full)


def _file_problem(full: Path) -> str | None:
    try:
        mode = os.stat(full).st_mode
    except FileNotFoundError:
        return f"file not found: {full}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror}): {full}"
    if not stat.S_ISREG(mode):
        return f"is {file_kind(mode)}, not a file: {full}"
    try:
        # O_NONBLOCK: never wait on a FIFO swapped in since the stat.
        os.close(os.open(full, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        return f"cannot be read ({exc.strerror}): {full}"
    return None


def _directory_problem(full: Path, what: str) -> str | None:
    try:
        mode = os.stat(full).st_mode
    except FileNotFoundError:
        return f"{what} not found: {full}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror}): {full}"
    if not stat.S_ISDIR(mode):
        return f"is {file_kind(mode)}, not a {what}: {full}"
    try:
        with os.scandir(full) as entries:
            next(entries, None)
    except OSError as exc:
        return f"cannot be read ({exc.strerror}): {full}"
    return None

