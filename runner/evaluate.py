"""Evaluate any model into the registry (`tunelab eval TARGET`): a run's final weights, a local directory, a hub id.

The target resolves to a ModelSource (runner/evaluation/targets.py). Its scores are recorded as model_kind
"eval", under the run's id when the target is a run and with no run otherwise, named by the target ("run:3", an
absolute path, a hub id) and by the content hash of the weights. Evaluation goes through the cache
(runner/evaluation/cache.py), so evaluating the same weights again is a look-up.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tunelab.experiments.schema import EvalSection, stored_spec
from tunelab.registry.db import Registry
from tunelab.registry.queries import experiment_for_run, model_evaluations
from tunelab.registry.recording import record_scores
from tunelab.registry.roots import Roots
from tunelab.registry.scores import Score
from tunelab.runner.evaluation.cache import evaluate_cached, model_digest
from tunelab.runner.evaluation.harness import EvalOutcome
from tunelab.runner.evaluation.targets import (
    EvalTargetError,
    ModelSource,
    hub_model_dir,
    load_source,
    model_dir_for,
    settings_key,
    trained_source,
)
from tunelab.runner.lineage import base_model_dir, submit_dir
from tunelab.runner.training.models import locate_model

_RUN_TARGET = re.compile(r"^(?:run:)?(\d+)$")


@dataclass(frozen=True)
class TargetEvaluation:
    """What one `tunelab eval` did: the model, its content hash, the settings' key and the outcome."""

    source: ModelSource
    digest: str
    eval_key: str
    outcome: EvalOutcome
    recorded: bool  # False when an identical evaluation was already in the registry

    @property
    def scores(self) -> list[Score]:
        """The outcome's scores as the registry records them: model_kind "eval", named by the target."""
        return self.outcome.recorded_as(model_kind="eval", model_name=self.source.label, eval_key=self.eval_key,
                                        model_digest=self.digest)


def resolve_target(registry: Registry, target: str, *, roots: Roots, cwd: Path, dtype: str | None = None,
                   revision: str | None = None, environ: Mapping[str, str] = os.environ) -> ModelSource:
    """`run:ID` or ID (a run's final weights, under this machine's artifact root), a local model or adapter
    directory, or a hub model id."""
    location = locate_model(target, cwd)
    match = _RUN_TARGET.match(target)
    if match and location.kind != "directory":
        return _run_source(registry, int(match.group(1)), roots=roots, dtype=dtype, environ=environ)
    if location.kind == "missing":
        raise EvalTargetError(f"model directory {location.path} does not exist")
    if location.kind != "directory":
        return ModelSource(target, hub_model_dir(target, revision, environ=environ), None, dtype or "float32")
    path = location.path
    if (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = config.get("base_model_name_or_path")
        if not base:
            raise EvalTargetError(f"adapter {path} does not name its base model (base_model_name_or_path)")
        base_dir = model_dir_for(base, workdir=path, revision=revision, environ=environ)
        return ModelSource(str(path), base_dir, path, dtype or "float32")
    return ModelSource(str(path), path, None, dtype or "float32")


def _run_source(registry: Registry, run_id: int, *, roots: Roots, dtype: str | None,
                environ: Mapping[str, str]) -> ModelSource:
    run, experiment = experiment_for_run(registry, run_id)
    spec = stored_spec(experiment.resolved_json)
    output_dir = roots.run_output(run.output_dir, run_id)
    final_dir = output_dir / "final"
    if not final_dir.is_dir():
        raise EvalTargetError(f"run {run_id} has no final weights at {final_dir} (status {run.status})")
    workdir = submit_dir(roots, experiment.workdir)
    base = spec.model.base
    if (final_dir / "adapter_config.json").is_file():
        # A run:ID base is that run's whole model, which training merged under the run's own output directory.
        base = base_model_dir(registry, base, workdir, roots, scratch=output_dir / "base")
    return trained_source(final_dir, base=base, workdir=workdir, dtype=dtype or spec.model.dtype,
                          revision=spec.model.revision, run_id=run_id, environ=environ)


def run_eval_settings(registry: Registry, run_id: int) -> tuple[EvalSection, int]:
    """A run's own [eval] section and seed: the defaults for evaluating its weights again."""
    _, experiment = experiment_for_run(registry, run_id)
    spec = stored_spec(experiment.resolved_json)
    return spec.eval, spec.experiment.seed


def evaluate_target(
    registry: Registry,
    source: ModelSource,
    settings: EvalSection,
    *,
    roots: Roots,
    base_dir: Path,
    seed: int,
    refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TargetEvaluation:
    """Evaluate `source` as `settings` ask (through the cache) and record its scores as model_kind "eval"; its files
    go under the artifact root's evals/."""
    digest = model_digest(source.directories, registry)
    outcome = evaluate_cached(
        registry, lambda: load_source(source), digest, settings, workdir=roots.evals_dir() / digest[:16],
        base_dir=base_dir, seed=seed, dtype=source.dtype, progress=progress, refresh=refresh,
    )
    key = settings_key(settings, dtype=source.dtype, seed=seed, lm_eval_version=outcome.lm_eval_version)
    tasks = {s.task for s in outcome.scores}
    already = any(
        e.eval_key == key and e.model_digest == digest and {s.task for s in e.scores} >= tasks
        for e in model_evaluations(registry, model_name=source.label)
    )
    if already and len(outcome.cached) == len(outcome.fingerprint["tasks"]):
        return TargetEvaluation(source, digest, key, outcome, recorded=False)
    done = TargetEvaluation(source, digest, key, outcome, recorded=True)
    record_scores(registry, source.run_id, done.scores)
    return done
