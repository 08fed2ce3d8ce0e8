"""Check that every queued run will find its files, before a worker takes a GPU for it (`tunelab doctor`).

Per run: the base model and its tokenizer (a local directory, or the hub cache), the training data, the benchmark
data of each eval task (the files in the benchmarks directory, or the hub datasets' cache when offline), the
custom tasks' files, and the spec's include_path: that it exists, that it defines the tasks [eval] tasks names,
and their data; and it lists the Python files those tasks import (`!function`), which run as the worker's user.
Nothing is loaded and nothing is downloaded; only files are looked at (and, when something must come from the
hub, whether the hub answers).

Every path is looked at as this machine sees it (registry/roots.py): run on a cluster's worker node, doctor names
what a queued run needs that the node cannot see: files under a project root it does not name, a run:ID base's
weights or an interrupted run's checkpoints outside its artifact root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from pydantic import ValidationError
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import Spec, stored_spec
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.queries import checkpoint_steps, experiment_for_run, list_runs
from tunelab.registry.roots import ProjectRootMissing, Roots
from tunelab.runner.devices import cuda_device_count
from tunelab.runner.errors import EvaluationError
from tunelab.runner.evaluation.custom_tasks import check_custom_rows
from tunelab.runner.evaluation.include_path import (
    TaskDirectory,
    hub_dataset_of,
    included_task_data,
    python_helpers,
    task_directory,
)
from tunelab.runner.evaluation.leaderboard import (
    BENCHMARKS_DIR_ENV,
    official_tasks_dir,
    resolve_benchmarks_dir,
)
from tunelab.runner.evaluation.planning import benchmark_requests, required_local_files
from tunelab.runner.evaluation.targets import hf_caches
from tunelab.runner.offline import hub_offline, hub_unreachable, unreachable_hub_remedy
from tunelab.runner.training.checkpoints import complete_checkpoints
from tunelab.runner.training.models import locate_model

_WEIGHTS = ("*.safetensors", "*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
_DATASET_LINE = re.compile(r"""^["']?dataset_path["']?:\s*["']?([^"'\s]+)""", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"""^["']?include["']?:\s*["']?([^"'\s]+)""", re.MULTILINE)


@dataclass(frozen=True)
class Problem:
    """One thing a run needs that is not there."""

    what: str  # "base model", "tokenizer", "train data", "benchmark data", "custom task", "eval tasks", ...
    where: str  # the path or hub id looked for
    detail: str


@dataclass
class RunCheck:
    run_id: int
    name: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fine, but worth knowing (a download will happen)
    # Python files the run's eval tasks import (`!function` helpers of include_path YAMLs): code that runs as the
    # worker's user, listed so that it can be read before any worker runs it.
    python_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_queued_runs(registry: Registry, roots: Roots, *, offline: bool = False,
                      environ: Mapping[str, str] = os.environ,
                      gpus_here: Callable[[], int] | None = None) -> list[RunCheck]:
    """One check per queued run, in queue order, of its files as this machine (`roots`) sees them. `offline` (or
    HF_*_OFFLINE) means nothing may be downloaded. `gpus_here` counts this machine's GPUs (asked only when a run
    needs some)."""
    offline = offline or hub_offline(environ, datasets=True)
    checks = []
    for summary in sorted(list_runs(registry, status="queued"), key=lambda r: r.run_id):
        run, experiment = experiment_for_run(registry, summary.run_id)
        check = RunCheck(summary.run_id, summary.name)
        checks.append(check)
        try:
            spec = stored_spec(experiment.resolved_json)
        except ValidationError as err:  # the worker would fail on it the same way
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            check.problems.append(Problem("spec", experiment.spec_path, f"{where}: {first['msg']}"))
            continue
        _check_checkpoints(run.id, roots.run_dir(run.id), check, registry)
        try:
            workdir = roots.workdir(experiment.workdir)
        except ProjectRootMissing as err:
            check.problems.append(Problem("submit directory", experiment.workdir, str(err)))
            continue
        check_spec(spec, workdir, check, registry=registry, roots=roots, offline=offline, environ=environ)
        if spec.resources.gpus:
            _note_gpus(spec.resources.gpus, check, gpus_here)
    return checks


def _note_gpus(wanted: int, check: RunCheck, gpus_here: Callable[[], int] | None) -> None:
    """Not a problem (a worker on another machine may have them), but worth saying before anyone waits."""
    here = (gpus_here or cuda_device_count)()
    if here < wanted:
        check.notes.append(f"[resources] gpus = {wanted}: this machine has {here} GPU(s); only a worker with "
                           f"{wanted} will claim the run")


def check_spec(spec: Spec, workdir: Path, check: RunCheck, *, registry: Registry, roots: Roots,
               offline: bool, environ: Mapping[str, str]) -> RunCheck:
    """Add to `check` what `spec`, submitted from `workdir`, needs and does not find."""
    _check_model(spec, workdir, check, registry, roots, offline, environ)
    for what, raw in _data_files(spec):
        path = spec_path(raw, workdir)
        if not path.is_file():
            check.problems.append(Problem(what, str(path), "file not found"))
        elif path.stat().st_size == 0:
            check.problems.append(Problem(what, str(path), "file is empty"))
    _check_benchmarks(spec, workdir, check, offline, environ)
    for custom in spec.eval.custom:
        path = spec_path(custom.path, workdir)
        try:
            check_custom_rows(path)
        except EvaluationError as err:
            check.problems.append(Problem("custom task", str(path), f"{custom.name}: {err}"))
    return check


def _data_files(spec: Spec) -> list[tuple[str, str]]:
    """The data files a spec trains and validates on: one train file or a mixture's files, a validation file."""
    train = spec.data.train
    files = [("train data", train)] if isinstance(train, str) else [("train data", source.path) for source in train]
    validation = getattr(spec.data, "validation", None)
    if isinstance(validation, str):
        files.append(("validation data", validation))
    return files


# ---------------------------------------------------------------- the base model


def _check_model(spec: Spec, workdir: Path, check: RunCheck, registry: Registry, roots: Roots, offline: bool,
                 environ: Mapping[str, str]) -> None:
    base = spec.model.base
    location = locate_model(base, workdir)
    if location.kind == "run":
        _check_run_weights(location.run_id, check, registry, roots)
    elif location.kind == "directory":
        _check_model_dir(location.path, check, str(location.path))
    elif location.kind == "missing":
        check.problems.append(Problem("base model", str(location.path), "directory not found"))
    else:
        _check_hub_model(base, spec.model.revision, check, offline, environ)


def _check_model_dir(directory: Path, check: RunCheck, label: str) -> None:
    if not (directory / "config.json").is_file():
        check.problems.append(Problem("base model", label, "no config.json"))
    if not any(p for pattern in _WEIGHTS for p in directory.glob(pattern) if p.name != "training_args.bin"):
        check.problems.append(Problem("base model", label, "no weights (*.safetensors or *.bin)"))
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        check.problems.append(Problem("tokenizer", label, f"none of {', '.join(_TOKENIZER_FILES)}"))


def _check_hub_model(repo_id: str, revision: str | None, check: RunCheck, offline: bool,
                     environ: Mapping[str, str]) -> None:
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, local_files_only=True,
                                          cache_dir=hf_caches(environ)[0]))
    except HFValidationError:
        check.problems.append(Problem("base model", repo_id, "neither a local directory nor a hub model id"))
        return
    except LocalEntryNotFoundError:
        if offline:
            check.problems.append(Problem("base model", repo_id, "not in the hub cache, and hub access is off"))
        elif (reason := hub_unreachable(environ)) is not None:
            check.problems.append(Problem("base model", repo_id, f"not in the hub cache, and the hub cannot be "
                                          f"reached ({reason}): {unreachable_hub_remedy('the model')}"))
        else:
            check.notes.append(f"base model {repo_id} is not in the hub cache: the worker will download it")
        return
    _check_model_dir(snapshot, check, f"{repo_id} (hub cache {snapshot})")


def _check_run_weights(run_id: int, check: RunCheck, registry: Registry, roots: Roots) -> None:
    base = f"run:{run_id}"
    try:
        run, _ = experiment_for_run(registry, run_id)
    except NotFound:
        check.problems.append(Problem("base model", base, f"no run {run_id}"))
        return
    if run.status != "succeeded":
        check.problems.append(Problem("base model", base, f"run {run_id} has no final weights yet ({run.status})"))
        return
    final = roots.artifact(run.output_dir or "") / "final"
    if not run.output_dir or not final.is_dir():
        check.problems.append(Problem("base model", f"{base} ({final})",
                                      "final weights not found under this machine's artifact root"))


def _check_checkpoints(run_id: int, output_dir: Path, check: RunCheck, registry: Registry) -> None:
    """A run interrupted elsewhere resumes from its recorded checkpoints: they must be visible here."""
    recorded = checkpoint_steps(registry, run_id)
    if recorded and not complete_checkpoints(output_dir / "checkpoints"):
        check.problems.append(Problem("checkpoints", str(output_dir / "checkpoints"),
                                      f"checkpoint at step {recorded[-1]} recorded, none under this machine's "
                                      "artifact root (a worker here would refuse the run)"))


# ---------------------------------------------------------------- benchmark data


def _check_benchmarks(spec: Spec, workdir: Path, check: RunCheck, offline: bool,
                      environ: Mapping[str, str]) -> None:
    tasks = spec.eval.harness_tasks
    try:
        directory = task_directory(spec.eval, workdir)
    except EvaluationError as err:
        check.problems.append(Problem("eval tasks", spec.eval.include_path, str(err)))
        # Its tasks cannot be told from typos now; check the benchmarks that are certainly asked for.
        directory, tasks = None, [t for t in tasks if t in LEADERBOARD or t.startswith("mmlu_")]
    try:
        requested = benchmark_requests(tasks, directory=directory)
    except EvaluationError as err:
        check.problems.append(Problem("eval tasks", ", ".join(tasks), str(err)))
        return
    if directory is not None:
        _check_included(directory, [t for t in dict.fromkeys(tasks) if t not in requested and t in directory.tasks],
                        workdir, check, offline, environ)
    try:
        benchmarks_dir = resolve_benchmarks_dir(spec.eval, workdir, environ)
    except EvaluationError as err:
        where = spec.eval.benchmarks_dir or environ.get(BENCHMARKS_DIR_ENV, "")
        check.problems.append(Problem("benchmark data", where, str(err)))
        return
    if benchmarks_dir is not None:
        for name, files in required_local_files(tasks, directory).items():
            missing = [rel for rel in files if not (benchmarks_dir / rel).is_file()]
            for rel in missing:
                check.problems.append(Problem("benchmark data", str(benchmarks_dir / rel), f"{name}: file not found"))
        return
    for name in requested:
        _check_hub_dataset(name, hub_dataset(name), check, offline, environ)


def _check_included(directory: TaskDirectory, names: list[str], workdir: Path, check: RunCheck, offline: bool,
                    environ: Mapping[str, str]) -> None:
    """The data of the include_path tasks a spec names: local files present, hub datasets cached when offline."""
    for name in names:
        task = directory.tasks[name]
        check.python_files += [str(path) for path in python_helpers(task) if str(path) not in check.python_files]
        try:
            included_task_data(task, workdir)
        except EvaluationError as err:
            check.problems.append(Problem("eval task data", str(task.yaml_path), str(err)))
            continue
        if (dataset := hub_dataset_of(task, workdir)) is not None:
            _check_hub_dataset(name, dataset, check, offline, environ)


def _check_hub_dataset(name: str, dataset: str, check: RunCheck, offline: bool, environ: Mapping[str, str]) -> None:
    if _dataset_cached(dataset, environ):
        return
    remedy = (f"set [eval] benchmarks_dir or {BENCHMARKS_DIR_ENV} to a local copy" if name in LEADERBOARD
              else "point its YAML at local data files")
    if offline:
        check.problems.append(Problem(
            "benchmark data", dataset, f"{name}: hub dataset not in the cache and hub access is off; {remedy}"))
    elif (reason := hub_unreachable(environ)) is not None:
        check.problems.append(Problem(
            "benchmark data", dataset, f"{name}: hub dataset not in the cache, and the hub cannot be reached "
            f"({reason}); {remedy}"))
    else:
        check.notes.append(f"{name}: hub dataset {dataset} is not cached: the worker will download it")


def hub_dataset(benchmark: str) -> str:
    """The hub dataset a benchmark's official lm-eval task loads (following its `include:` chain)."""
    official = official_tasks_dir()
    path = official / LEADERBOARD[benchmark].official_yaml.format(subject="anatomy")
    seen: set[Path] = set()
    while path not in seen:
        seen.add(path)
        text = path.read_text(encoding="utf-8")
        if found := _DATASET_LINE.search(text):
            return found.group(1)
        includes = _INCLUDE_LINE.findall(text)
        if not includes:
            break
        path = (path.parent / includes[0]).resolve()
    raise EvaluationError(f"cannot tell which hub dataset {benchmark} loads")


def _dataset_cached(dataset: str, environ: Mapping[str, str]) -> bool:
    """Whether `datasets` could load a hub dataset offline: its files in the hub cache, or its prepared arrow."""
    hub_cache, datasets_cache = hf_caches(environ)
    owner_name = dataset.split("/")
    return (hub_cache / ("datasets--" + "--".join(owner_name))).is_dir() or (
        datasets_cache / "___".join(owner_name)
    ).is_dir()
