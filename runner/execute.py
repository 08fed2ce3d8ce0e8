"""Execute one claimed run: train, checkpoint, evaluate (fine-tuned and base), record, finish.

Anything that goes wrong ends the run `failed` with its error text; the caller (a worker)
goes on to the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from experiments.canonical import canonical_json
from experiments.schema import Spec
from registry.db import Registry
from registry.queries import experiment_for_run, find_base_scores
from registry.queue import heartbeat, mark_failed, mark_succeeded, update_run
from registry.recording import MetricPoint, ScoreRecord, record_checkpoint, record_metrics, record_scores
from registry.run_control import is_cancelled
from runner.errors import RunCancelled
from runner.progress import RunProgress

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 15.0


@dataclass
class RunResult:
    run_id: int
    status: str
    error: str | None = None


class _Heartbeat:
    """Beats into the registry while a run executes, so a dead worker can be told from a slow one."""

    def __init__(self, registry: Registry, run_id: int, interval: float = HEARTBEAT_SECONDS) -> None:
        self._stop = threading.Event()
        self.cancelled = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._beat, args=(registry, run_id), daemon=True)

    def _beat(self, registry: Registry, run_id: int) -> None:
        while not self._stop.wait(self._interval):
            try:
                if is_cancelled(registry, run_id):
                    self.cancelled.set()  # training polls this and stops at the next step
                    return
                heartbeat(registry, run_id)
            except Exception:  # a missed beat must not kill the run; the next one retries
                log.warning("heartbeat for run %s failed", run_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def eval_key(spec: Spec, lm_eval_version: str) -> str:
    """What makes two evaluations of the same model interchangeable."""
    settings = spec.eval.model_dump(mode="json")
    settings.pop("baseline", None)
    payload = {"eval": settings, "dtype": spec.model.dtype, "lm_eval": lm_eval_version, "seed": spec.experiment.seed}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def _score_records(outcome, *, model_kind: str, model_name: str, key: str) -> list[ScoreRecord]:
    fingerprint = dict(outcome.fingerprint, eval_key=key)
    return [
        ScoreRecord(
            model_kind=model_kind,
            model_name=model_name,
            task=score.task,
            metric=score.metric,
            value=score.value,
            stderr=score.stderr,
            num_fewshot=score.num_fewshot,
            limit=score.limit,
            n_samples=score.n_samples,
            task_group=score.group,
            comparable=score.comparable,
            lm_eval_version=outcome.lm_eval_version,
            fingerprint=fingerprint,
            samples=outcome.samples.get(score.task),
        )
        for score in outcome.scores
    ]


def _copy_rows(rows, run_model_kind: str = "base") -> list[ScoreRecord]:
    return [
        ScoreRecord(model_kind=run_model_kind, model_name=r.model_name, task=r.task, metric=r.metric, value=r.value,
                    stderr=r.stderr, num_fewshot=r.num_fewshot, limit=r.limit, n_samples=r.n_samples,
                    task_group=r.task_group, comparable=r.comparable, lm_eval_version=r.lm_eval_version,
                    fingerprint=r.fingerprint)
        for r in rows
    ]


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm-eval")


def _evaluate_base(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, progress) -> None:
    from runner.evaluation import evaluate
    from runner.training import load_model, load_tokenizer, resolve_model_path

    key = eval_key(spec, _lm_eval_version())
    cached = find_base_scores(registry, spec.model.base, key)
    if cached:
        progress.note(f"base model {spec.model.base}: scores reused from an identical earlier evaluation")
        record_scores(registry, run_id, _copy_rows(cached))
        return
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    model = load_model(model_path, spec.model.dtype, spec.model.revision)
    model.eval()
    outcome = evaluate(model, tokenizer, spec.eval, workdir=output_dir / "eval-base", base_dir=workdir,
                       seed=spec.experiment.seed, dtype=spec.model.dtype, progress=progress.note)
    record_scores(registry, run_id, _score_records(outcome, model_kind="base", model_name=spec.model.base,
                                                   key=key))


def execute_run(
    registry: Registry, run_id: int, *, home: Path, show_progress: bool = True,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> RunResult:
    """Run a claimed run to the end; never raises for a failure of the run itself."""
    run, experiment = experiment_for_run(registry, run_id)
    output_dir = (home / "runs" / str(run_id)).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = RunProgress(run_id, experiment.name, enabled=show_progress)
    try:
        with _Heartbeat(registry, run_id, heartbeat_seconds) as beat, progress:
            _execute(registry, run_id, Spec.model_validate(json.loads(experiment.resolved_json)),
                     Path(experiment.workdir), output_dir, progress, beat.cancelled.is_set)
    except RunCancelled:
        return RunResult(run_id, "cancelled")
    except Exception as exc:  # the run fails, the worker lives on
        error = f"{type(exc).__name__}: {exc}"
        (output_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        mark_failed(registry, run_id, error)
        return RunResult(run_id, "failed", error)
    if is_cancelled(registry, run_id):
        return RunResult(run_id, "cancelled")
    mark_succeeded(registry, run_id)
    return RunResult(run_id, "succeeded")


def _execute(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, progress,
             cancelled) -> None:
    from runner.evaluation import evaluate
    from runner.training import TrainHooks, train

    update_run(registry, run_id, output_dir=str(output_dir))
    hooks = TrainHooks(
        on_metrics=lambda m: record_metrics(registry, run_id, [MetricPoint(**m)]),
        on_checkpoint=lambda step, loss, path: record_checkpoint(registry, run_id, step, loss, str(path)),
        on_progress=progress.training,
        should_stop=cancelled,
    )
    outcome = train(spec, workdir=workdir, output_dir=output_dir, hooks=hooks)
    update_run(registry, run_id, train_seconds=outcome.train_seconds, final_loss=outcome.final_loss,
               num_train_examples=outcome.num_examples)

    key = eval_key(spec, _lm_eval_version())
    outcome.model.eval()
    result = evaluate(outcome.model, outcome.tokenizer, spec.eval, workdir=output_dir / "eval", base_dir=workdir,
                      seed=spec.experiment.seed, dtype=spec.model.dtype, progress=progress.note)
    record_scores(registry, run_id, _score_records(result, model_kind="finetuned",
                                                   model_name=f"run:{run_id}", key=key))
    del outcome
    if cancelled():
        raise RunCancelled("cancelled")
    if spec.eval.baseline:
        _evaluate_base(registry, run_id, spec, workdir, output_dir, progress)
