"""The models an evaluation is run on: a run's final weights, a local model or adapter directory, or a hub id.

A model resolves to a `ModelSource`: the directory of full weights, plus a LoRA adapter directory where there is
one, and its content hash (the key of the evaluation cache, runner/evaluation/cache.py). `tunelab eval TARGET`
(runner/evaluate.py) and the worker's evaluations (runner/execute.py) both find their models here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from pydantic import ValidationError
from tunelab.experiments.canonical import canonical_json
from tunelab.experiments.schema import EvalSection
from tunelab.registry.db import Registry
from tunelab.runner.errors import EvaluationError, RunFailed
from tunelab.runner.evaluation.cache import model_digest
from tunelab.runner.offline import hub_offline, hub_unreachable, unreachable_hub_remedy
from tunelab.runner.training.methods import trim_virtual_token_logits
from tunelab.runner.training.models import load_model, load_tokenizer, locate_model

log = logging.getLogger(__name__)
# What a model needs from the hub to be evaluated: config, tokenizer and safetensors weights; *.bin weights only for
# a model that has no safetensors (most hub models ship both, and one copy is enough).
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt"]


class EvalTargetError(RunFailed):
    """A target that cannot be evaluated: no such run, no final weights, a path or hub id that is not a model."""


@dataclass(frozen=True)
class ModelSource:
    """Where the weights of one evaluation target are, and how to load them."""

    label: str  # the registry's model_name: "run:3", an absolute path, or a hub id
    model_dir: Path  # full weights: the model itself, or the base model under an adapter
    adapter_dir: Path | None
    dtype: str
    run_id: int | None = None
    base_dir: Path | None = None  # where relative paths in the run's eval settings point (its submit directory)

    @property
    def directories(self) -> list[Path]:
        """What the model's content hash covers: the weights, then the adapter."""
        return [self.model_dir] + ([self.adapter_dir] if self.adapter_dir else [])

    @property
    def tokenizer_dir(self) -> Path:
        # Training saves the tokenizer beside the adapter; a bare adapter uses its base model's.
        if self.adapter_dir and any((self.adapter_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
            return self.adapter_dir
        return self.model_dir


def hf_caches(environ: Mapping[str, str] = os.environ) -> tuple[Path, Path]:
    """The hub cache and the datasets cache, found from the environment as huggingface_hub and datasets do."""
    home = Path(environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    hub_cache = Path(environ.get("HF_HUB_CACHE", home / "hub")).expanduser()
    return hub_cache, Path(environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser()


def hub_model_dir(repo_id: str, revision: str | None = None, *, environ: Mapping[str, str] = os.environ,
                  download: bool = True) -> Path:
    """The local snapshot of a hub model: from the cache, downloaded first unless hub access is off (or
    `download` is False: the cache only, as a worker hashing a model it already loaded wants)."""
    offline = hub_offline(environ) or not download
    # An unreachable hub: the cache or one line at once, not a minute of retries per file.
    unreachable = None if offline else hub_unreachable(environ)
    offline = offline or unreachable is not None
    try:
        cache = hf_caches(environ)[0]
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES,
                                          local_files_only=offline, cache_dir=cache))
        if not any(snapshot.glob("*.safetensors")):
            snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[*_HUB_FILES, "*.bin"],
                                              local_files_only=offline, cache_dir=cache))
        return snapshot
    except LocalEntryNotFoundError:
        if unreachable is not None:
            raise EvalTargetError(f"the hub cannot be reached ({unreachable}): "
                                  f"{unreachable_hub_remedy(f'model {repo_id!r}')}") from None
        raise EvalTargetError(
            f"hub model {repo_id!r} is not in the local cache and hub access is off (HF_HUB_OFFLINE); "
            "download it once online, or give a local directory"
        ) from None
    except HFValidationError:
        raise EvalTargetError(f"{repo_id!r} is neither a directory nor a hub model id") from None
    except OSError as err:  # network and HTTP errors from the hub client
        raise EvalTargetError(f"cannot fetch hub model {repo_id!r}: {err}") from None


def model_dir_for(base: str, *, workdir: Path, revision: str | None = None,
                  environ: Mapping[str, str] = os.environ, download: bool = True) -> Path:
    """A spec's `model.base` (a directory relative to `workdir`, or a hub id) as a local directory."""
    location = locate_model(base, workdir)
    if location.kind == "directory":
        return location.path
    if location.kind == "missing":
        raise EvalTargetError(f"model directory {location.path} does not exist")
    if location.kind == "run":
        raise EvalTargetError(f"{base} names a run: its weights are found through the registry (runner/lineage.py)")
    return hub_model_dir(base, revision, environ=environ, download=download)


def trained_source(final_dir: Path, *, base: str, workdir: Path, dtype: str, revision: str | None = None,
                   run_id: int | None = None, environ: Mapping[str, str] = os.environ,
                   download: bool = True) -> ModelSource:
    """A run's final weights: the full model, or its base plus the adapter training saved."""
    final_dir = Path(final_dir)
    label = f"run:{run_id}" if run_id is not None else str(final_dir)
    if (final_dir / "adapter_config.json").is_file():
        base_dir = model_dir_for(base, workdir=workdir, revision=revision, environ=environ, download=download)
        return ModelSource(label, base_dir, final_dir.resolve(), dtype, run_id, Path(workdir))
    return ModelSource(label, final_dir.resolve(), None, dtype, run_id, Path(workdir))


def load_source(source: ModelSource) -> tuple[Any, Any]:
    """Load the model (with its adapter applied, not merged) and its tokenizer, ready to evaluate."""
    tokenizer = load_tokenizer(str(source.tokenizer_dir))
    model = load_model(str(source.model_dir), source.dtype)
    if source.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(source.adapter_dir))
        if model.active_peft_config.is_prompt_learning:
            # As the worker evaluates it: lm-eval reads logits by input position.
            model = trim_virtual_token_logits(model)
    model.eval()
    return model, tokenizer


def settings_key(settings: EvalSection, *, dtype: str, seed: int, lm_eval_version: str) -> str:
    """What makes two evaluations of one model interchangeable (the worker's and `tunelab eval`'s alike)."""
    values = settings.model_dump(mode="json")
    values.pop("baseline", None)
    values.pop("samples", None)  # generations, not scores: the samples' own cache key covers them
    # The few-shot seed is named even at its default (which the spec's canonical form leaves out): evaluations
    # from before it existed drew their shots with the training seed.
    payload = {"eval": values, "dtype": dtype, "lm_eval": lm_eval_version, "seed": seed,
               "fewshot_seed": settings.fewshot_seed}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def settings_from_options(
    defaults: EvalSection,
    *,
    cwd: Path,
    tasks: list[str] | None = None,
    limit: int | None = None,
    benchmarks_dir: str | None = None,
    custom: list[tuple[str, str]] | None = None,
    batch_size: int | str | None = None,
) -> EvalSection:
    """`defaults` (a run's [eval], or the spec defaults) with the options given on the command line applied.

    Paths from the command line are made absolute against `cwd`, so the recorded settings name real files.
    """
    changes: dict[str, Any] = {}
    if tasks is not None:
        changes["tasks"] = tasks
    if limit is not None:
        changes["limit"] = limit
    if benchmarks_dir is not None:
        changes["benchmarks_dir"] = str((Path(cwd) / Path(benchmarks_dir).expanduser()).resolve())
    if custom:
        changes["custom"] = [{"name": name, "path": str((Path(cwd) / path).resolve())} for name, path in custom]
    if batch_size is not None:
        changes["batch_size"] = batch_size
    # Validate as a whole, so a bad value fails as the spec would.
    try:
        return type(defaults).model_validate(defaults.model_dump() | changes)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"] if part != "[key]")
        raise EvalTargetError(f"eval.{where}: {error['msg'].removeprefix('Value error, ')}") from None


def base_model_digest(registry: Registry, base: str, *, workdir: Path, revision: str | None = None) -> str | None:
    """The content hash of a spec's base model, or None (evaluate without the cache) where its files are not
    on this machine as a directory (a model the loader found some other way)."""
    try:
        return model_digest([model_dir_for(base, workdir=workdir, revision=revision, download=False)], registry)
    except (EvalTargetError, EvaluationError, OSError) as err:
        log.warning("base model %s: evaluating without the cache (%s)", base, err)
        return None


def trained_model_digest(registry: Registry, final_dir: Path, *, base: str, workdir: Path,
                         revision: str | None = None) -> str | None:
    """The content hash of a run's final weights (with its base model, for an adapter), or None as above."""
    try:
        source = trained_source(final_dir, base=base, workdir=workdir, dtype="float32", revision=revision,
                                download=False)
        return model_digest(source.directories, registry)
    except (EvalTargetError, EvaluationError, OSError) as err:
        log.warning("%s: evaluating without the cache (%s)", final_dir, err)
        return None
