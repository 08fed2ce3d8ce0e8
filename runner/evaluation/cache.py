"""The evaluation cache: one benchmark's result, stored in the registry under a key made of its content.

A benchmark's key (arc_challenge, hellaswag, mmlu, truthfulqa_mc2 or a custom task) is the sha256 of:
- the model: its weight, config and tokenizer files (the base's and the adapter's), hashed by content;
- the task definition: the YAML tunelab generated, with every path replaced by the content it points to (the
  official lm-eval YAMLs it includes, or the include_path task's YAML and the YAMLs it includes in turn, the
  Python helpers beside each, the local data files or dataset directory);
- the few-shot count, the item limit, the batch size, the dtype, the device (cpu, cuda, mps), the seed, the
  few-shot seed and the lm-eval version.
Evaluating the same thing again is a look-up; changing any of these evaluates again. Hub datasets are known by
name only (lm-eval does not pin their revision either). Large model files are hashed once: their digest is
remembered by path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from tunelab.experiments.schema import EvalSection
from tunelab.registry.db import Registry
from tunelab.registry.queries import cached_evaluations, known_file_digest
from tunelab.registry.recording import forget_cached_evaluations, record_cached_evaluation, record_file_digest
from tunelab.registry.scores import Score
from tunelab.runner.errors import EvaluationError, EvaluationSpecError
from tunelab.runner.evaluation.harness import (
    EvalOutcome,
    evaluate,
    evaluation_device,
    fingerprint_header,
    plan_limit,
    with_profile,
)
from tunelab.runner.evaluation.include_path import data_files_under, map_data_files, task_yaml_loader
from tunelab.runner.evaluation.leaderboard import PROFILE, resolve_benchmarks_dir
from tunelab.runner.evaluation.planning import NOTHING_TO_EVALUATE, plan_tasks
from tunelab.runner.evaluation.tasks import TaskPlan

# Bump when the key's recipe or the payload's shape changes: older entries then simply stop matching.
# 2: the device is part of the key; include_path tasks. 3: the few-shot seed; truncated items in the fingerprint.
CACHE_VERSION = 3
# What a model directory holds that changes its scores; README, generation config and optimizer state do not.
_MODEL_CONFIG_FILES = (
    "config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
)
_NOT_WEIGHTS = {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"}


def lm_eval_version() -> str:
    """The installed lm-eval's version, read without importing it (which takes seconds)."""
    return version("lm-eval")


# ---------------------------------------------------------------- what a model is


def model_files(directory: Path) -> list[Path]:
    """The files of a model (or adapter) directory that decide its scores: weights, config, tokenizer."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EvaluationError(f"model directory {directory} does not exist")
    weights = sorted(directory.glob("*.safetensors")) or sorted(
        p for p in directory.glob("*.bin") if p.name not in _NOT_WEIGHTS
    )
    if not weights:
        raise EvaluationError(f"no model weights (*.safetensors or *.bin) in {directory}")
    return weights + [directory / name for name in _MODEL_CONFIG_FILES if (directory / name).is_file()]


def file_sha256(path: Path, registry: Registry | None = None) -> str:
    """sha256 of a file's content; with a registry, remembered by (path, size, mtime) so it is read once."""
    real = Path(path).resolve()  # hub caches link snapshot names to content-addressed blobs
    stat = real.stat()
    if registry is not None:
        known = known_file_digest(registry, str(real), stat.st_size, stat.st_mtime_ns)
        if known is not None:
            return known
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    sha = digest.hexdigest()
    if registry is not None:
        record_file_digest(registry, path=str(real), size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha)
    return sha


def model_digest(directories: Sequence[Path], registry: Registry | None = None) -> str:
    """The content hash of a model: its base directory, then its adapter directory if it has one."""
    digest = hashlib.sha256()
    for role, directory in enumerate(directories):
        digest.update(f"[{role}]\n".encode())
        for path in model_files(directory):
            digest.update(f"{path.name}\0{file_sha256(path, registry)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- what a benchmark is


def task_digest(plan: TaskPlan) -> str:
    """The content hash of a benchmark's task definitions: generated YAMLs with paths replaced by content."""
    configs = []
    for task in plan.tasks:
        config = yaml.safe_load(task.yaml_path.read_text(encoding="utf-8"))
        if "include" in config:
            config["include"] = _include_digest(Path(config["include"]))
        files = (config.get("dataset_kwargs") or {}).get("data_files")
        if files:
            config["dataset_kwargs"] = dict(config["dataset_kwargs"], data_files=map_data_files(
                files, lambda path: file_sha256(Path(path))))
        dataset = Path(str(config.get("dataset_path", "")))
        if dataset.is_absolute() and dataset.is_dir():  # an include_path task's local dataset directory
            config["dataset_path"] = _directory_digest(dataset)
        configs.append(config)
    return _sha256_json(configs)


def _include_digest(path: Path, seen: frozenset[Path] = frozenset()) -> str:
    """A task YAML, the YAMLs it includes in turn, and the Python helpers beside them, as one hash."""
    path = path.resolve()
    if path in seen:
        raise EvaluationSpecError(f"lm-eval task YAML {path} includes itself")
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8"))
    for helper in sorted(path.parent.glob("*.py")):
        digest.update(f"{helper.name}\0{file_sha256(helper)}\n".encode())
    for include in _includes(path):
        digest.update(_include_digest(path.parent / include, seen | {path}).encode())
    return digest.hexdigest()


def _includes(path: Path) -> list[str]:
    """The files a task YAML includes, as written in it."""
    try:
        # Read without following includes (those are hashed one by one) and with `!function` kept as text.
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=task_yaml_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise EvaluationSpecError(f"lm-eval task YAML {path} cannot be read: {err}") from err
    include = config.get("include") if isinstance(config, dict) else None
    return [] if include is None else [str(i) for i in (include if isinstance(include, list) else [include])]


def _directory_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in data_files_under(directory):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def plan_key(
    plan: TaskPlan, settings: EvalSection, *, model: str, seed: int, dtype: str, device: str, lm_eval: str
) -> str:
    """The cache key of one benchmark evaluated on one model, on one device."""
    return _sha256_json(
        {
            "cache": CACHE_VERSION,
            "profile": PROFILE,
            "task": plan.name,
            "definition": task_digest(plan),
            "model": model,
            "num_fewshot": [task.num_fewshot for task in plan.tasks],
            "limit": plan_limit(plan, settings) or 0,
            "batch_size": settings.batch_size,
            "dtype": dtype,
            "device": device,
            "seed": seed,
            "fewshot_seed": settings.fewshot_seed,
            "lm_eval": lm_eval,
        }
    )


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- evaluate through the cache


@dataclass(frozen=True)
class _CachedPlan:
    scores: list[Score]  # as measured: whose scores they are is set when they are recorded
    samples: dict[str, list[dict]]
    fingerprint: dict


def evaluate_cached(
    registry: Registry,
    load_model: Callable[[], tuple[Any, Any]],
    digest: str | None,
    settings: EvalSection,
    *,
    workdir: Path,
    base_dir: Path,
    seed: int,
    dtype: str,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
    refresh: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> EvalOutcome:
    """`evaluate` (runner/evaluation/harness.py), answering from the registry's cache each benchmark evaluated before.

    `load_model` is called only when some benchmark must really run; `digest` is the model's content hash
    (`model_digest`), None to evaluate without the cache. `device` is where the model is evaluated (None: this
    machine's `evaluation_device`); it is part of the key, since the numbers differ slightly from device to device.
    `refresh` evaluates everything again and replaces the cached results. `should_stop`: see `evaluate`. The
    outcome's `cached` names the benchmarks that came from the cache.
    """
    device = device or evaluation_device()
    if digest is None:
        model, tokenizer = load_model()
        return evaluate(model, tokenizer, settings, workdir=workdir, base_dir=base_dir, seed=seed, dtype=dtype,
                        device=device, progress=progress, should_stop=should_stop)
    say = progress or (lambda message: None)
    benchmarks_dir = resolve_benchmarks_dir(settings, base_dir, os.environ)
    plans = plan_tasks(
        settings, benchmarks_dir=benchmarks_dir, base_dir=base_dir, out_dir=Path(workdir) / "lm_eval_tasks"
    )
    if not plans:
        raise EvaluationSpecError(NOTHING_TO_EVALUATE)
    version = lm_eval_version()
    keys = {plan.name: plan_key(plan, settings, model=digest, seed=seed, dtype=dtype, device=device, lm_eval=version)
            for plan in plans}
    if refresh:
        forget_cached_evaluations(registry, keys.values())
    stored = cached_evaluations(registry, list(keys.values()))
    found = {plan.name: _restore(stored[keys[plan.name]]) for plan in plans if keys[plan.name] in stored}
    for name, hit in found.items():
        headline = hit.scores[0]
        say(f"{name}: cached ({headline.metric} = {headline.value:.4f})")

    missing = [plan for plan in plans if plan.name not in found]
    if missing:
        model, tokenizer = load_model()
        fresh = evaluate(model, tokenizer, _only(settings, missing), workdir=workdir, base_dir=base_dir, seed=seed,
                         dtype=dtype, device=device, progress=progress, should_stop=should_stop)
        for plan in missing:
            result = _extract(plan, fresh)
            record_cached_evaluation(registry, key=keys[plan.name], task=plan.name, model_digest=digest,
                                     lm_eval_version=version, payload=_payload(result))
            found[plan.name] = result

    ordered = [found[plan.name] for plan in plans]
    header = fingerprint_header(settings, seed=seed, dtype=dtype, device=device, local=benchmarks_dir is not None,
                                lm_eval_version=version)
    return EvalOutcome(
        scores=[score for result in ordered for score in result.scores],
        lm_eval_version=version,
        fingerprint=with_profile(header, {plan.name: found[plan.name].fingerprint for plan in plans}),
        samples={task: rows for result in ordered for task, rows in result.samples.items()},
        cached=tuple(plan.name for plan in plans if plan.name not in {p.name for p in missing}),
    )


def _only(settings: EvalSection, plans: list[TaskPlan]) -> EvalSection:
    """The settings narrowed to the tasks of `plans` (mmlu_<subject> entries belong to the "mmlu" plan)."""
    asked = {task for plan in plans for task in plan.requested}
    custom = {plan.name for plan in plans if plan.custom}
    return settings.model_copy(update={"tasks": [t for t in settings.tasks if t in asked],
                                       "custom": [c for c in settings.custom if c.name in custom]})


def _extract(plan: TaskPlan, outcome: EvalOutcome) -> _CachedPlan:
    reported = {plan.name} | {task.reported for task in plan.tasks}
    return _CachedPlan(
        scores=[score for score in outcome.scores if score.task in reported],
        samples={task: rows for task, rows in outcome.samples.items() if task in reported},
        fingerprint=outcome.fingerprint["tasks"][plan.name],
    )


def _payload(result: _CachedPlan) -> dict:
    return {"scores": [asdict(s) for s in result.scores], "samples": result.samples, "fingerprint": result.fingerprint}


def _restore(payload: dict) -> _CachedPlan:
    return _CachedPlan(
        scores=[Score(**score) for score in payload["scores"]],
        samples=payload["samples"],
        fingerprint=payload["fingerprint"],
    )
