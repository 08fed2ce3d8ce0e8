"""Execute one claimed run: train, checkpoint, evaluate (fine-tuned and base), record, finish.

How an attempt ends:
- succeeded / cancelled: as the run says;
- an error: `failed` with its text, or back to the queue while `[resources] max_retries` allows
  and the error is not the run's own (a RunFailed such as bad data or a full disk, or an
  invalid spec, would only fail again);
- interrupted (the worker got SIGTERM/SIGINT): a checkpoint at the current step, then back to
  the queue (`queued`, not counted as a retry);
- lost (the run was re-queued as stale while this worker stalled, and someone else holds it):
  this worker stops and writes nothing more.
The caller (a worker) goes on to the next run, or stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.registry.db import Registry
from tunelab.registry.queries import experiment_for_run, find_base_scores
from tunelab.registry.queue import beat, mark_succeeded, update_run
from tunelab.registry.recording import ScoreRecord, record_scores
from tunelab.registry.recovery import forget_scores, requeue_interrupted, retry_or_fail
from tunelab.runner.devices import check_run_gpus, cuda_device_count
from tunelab.runner.environment import snapshot
from tunelab.runner.errors import RunCancelled, RunFailed, retryable
from tunelab.runner.evaluation.cache import evaluate_cached, lm_eval_version
from tunelab.runner.evaluation.harness import EvalOutcome
from tunelab.runner.evaluation.targets import base_model_digest, settings_key, trained_model_digest
from tunelab.runner.lineage import resolve_start
from tunelab.runner.training.checkpoints import latest_complete
from tunelab.runner.training.distributed import train_distributed
from tunelab.runner.training.models import load_model, load_tokenizer, resolve_model_path
from tunelab.runner.training.preload import prepare_process
from tunelab.runner.training.progress import RunProgress
from tunelab.runner.training.recipes import fingerprint_spec_data, train
from tunelab.runner.training.registry_hooks import registry_hooks
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 15.0


@dataclass
class RunResult:
    run_id: int
    status: str  # succeeded | failed | cancelled | queued (interrupted or re-queued after an error) | lost
    error: str | None = None


class RunInterrupted(Exception):
    """The worker was asked to stop while a run executed; the run goes back to the queue."""


class RunLost(Exception):
    """The run is no longer this worker's (re-queued as stale and claimed elsewhere)."""


class StopRequest:
    """A request to stop, made from a signal handler (runner/worker.py).

    Training polls it at every step and stops after saving a checkpoint. Elsewhere in a run
    (loading, evaluation) nothing polls, so a request there interrupts the run on the spot;
    between runs it only sets the flag, which the worker loop reads before each claim.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.signum: int | None = None
        self.event = threading.Event()  # set with the request: an idle worker's sleep ends at once
        self._in_run = False
        self._polled = 0

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str, signum: int | None = None) -> None:
        self.reason, self.signum = reason, signum
        self.event.set()
        if self._in_run and not self._polled:
            raise RunInterrupted(reason)

    def check(self) -> None:
        if self.requested:
            raise RunInterrupted(self.reason)

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        self.check()
        self._in_run = True
        try:
            yield
        finally:
            self._in_run = False

    @contextlib.contextmanager
    def polled(self) -> Iterator[None]:
        self._polled += 1
        try:
            yield
        finally:
            self._polled -= 1


class _Heartbeat:
    """Beats into the registry while a run executes, so a dead worker can be told from a slow one.

    A beat also tells this worker whether the run is still its own: cancelled, or lost to
    another worker after being re-queued as stale.
    """

    def __init__(self, registry: Registry, run_id: int, worker: str | None,
                 interval: float = HEARTBEAT_SECONDS) -> None:
        self._stop = threading.Event()
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._beat, args=(registry, run_id, worker), daemon=True)

    def _beat(self, registry: Registry, run_id: int, worker: str | None) -> None:
        while not self._stop.wait(self._interval):
            try:
                status = beat(registry, run_id, worker)
            except Exception:  # a missed beat must not kill the run; the next one retries
                log.warning("heartbeat for run %s failed", run_id, exc_info=True)
                continue
            if status == "running":
                continue
            # Training polls these and stops at the next step.
            (self.cancelled if status == "cancelled" else self.lost).set()
            return

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or self.lost.is_set()

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def eval_key(spec: Spec, lm_eval_version: str) -> str:
    """What makes two evaluations of the same model interchangeable (runner/evaluation/targets.py settings_key)."""
    return settings_key(spec.eval, dtype=spec.model.dtype, seed=spec.experiment.seed,
                        lm_eval_version=lm_eval_version)


def _score_records(outcome: EvalOutcome, *, model_kind: str, model_name: str, key: str) -> list[ScoreRecord]:
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


def _evaluate_base(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path,
                   progress: RunProgress) -> None:
    key = eval_key(spec, lm_eval_version())
    digest = base_model_digest(registry, spec.model.base, workdir=workdir, revision=spec.model.revision)
    # With the weights' content hash the eval cache answers (it also sees edited task files and data);
    # without one, an earlier identical evaluation of the same base name is the best there is.
    cached = find_base_scores(registry, spec.model.base, key) if digest is None else None
    if cached:
        progress.note(f"base model {spec.model.base}: scores reused from an identical earlier evaluation")
        record_scores(registry, run_id, _copy_rows(cached))
        return

    def load():  # only when some benchmark is not in the cache
        model_path = resolve_model_path(spec.model.base, workdir)
        model = load_model(model_path, spec.model.dtype, spec.model.revision)
        return model.eval(), load_tokenizer(model_path, spec.model.revision)

    outcome = evaluate_cached(registry, load, digest, spec.eval,
                              workdir=output_dir / "eval-base", base_dir=workdir, seed=spec.experiment.seed,
                              dtype=spec.model.dtype, progress=progress.note)
    record_scores(registry, run_id, _score_records(outcome, model_kind="base", model_name=spec.model.base,
                                                   key=key))


def _make_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFailed(f"cannot create the run's output directory {output_dir}: {exc.strerror or exc}") from None


def _write_traceback(output_dir: Path) -> None:
    try:
        (output_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:  # the output directory may be the very thing that failed; the registry has the error
        log.warning("could not write %s", output_dir / "error.txt")


def execute_run(
    registry: Registry, run_id: int, *, home: Path, show_progress: bool = True,
    heartbeat_seconds: float = HEARTBEAT_SECONDS, stop: StopRequest | None = None,
) -> RunResult:
    """Run a claimed run to the end of this attempt; never raises for a failure of the run itself."""
    stop = stop or StopRequest()
    run, experiment = experiment_for_run(registry, run_id)
    worker = run.worker
    output_dir = (home / "runs" / str(run_id)).resolve()
    progress = RunProgress(run_id, experiment.name, enabled=show_progress)
    try:
        with stop.run():
            prepare_process()  # imports and all: a worker that waited for this run did it while idle
            _make_output_dir(output_dir)
            with _Heartbeat(registry, run_id, worker, heartbeat_seconds) as heart, progress:
                _execute(registry, run_id, Spec.model_validate(json.loads(experiment.resolved_json)),
                         Path(experiment.workdir), output_dir, progress, heart, stop)
    except RunInterrupted as exc:
        latest = latest_complete(output_dir / "checkpoints")
        where = f"resumes from {latest.name}" if latest else "no checkpoint yet, starts over"
        note = f"interrupted ({exc}); re-queued, {where}"
        if not requeue_interrupted(registry, run_id, worker, note):
            return RunResult(run_id, "lost", "the run was no longer this worker's")
        return RunResult(run_id, "queued", note)
    except RunCancelled:
        return RunResult(run_id, "cancelled")
    except RunLost as exc:
        return RunResult(run_id, "lost", str(exc))
    except Exception as exc:  # the run fails (or is re-queued), the worker lives on
        error = f"{type(exc).__name__}: {exc}"
        _write_traceback(output_dir)
        status = retry_or_fail(registry, run_id, worker, error, retryable=retryable(exc))
        return RunResult(run_id, status, error)
    # Still ours? A cancel, or a stale re-queue while this worker stalled, must not be overwritten.
    status = beat(registry, run_id, worker)
    if status != "running":
        return RunResult(run_id, "cancelled" if status == "cancelled" else "lost")
    mark_succeeded(registry, run_id)
    return RunResult(run_id, "succeeded")


def _record_environment(registry: Registry, run_id: int, workdir: Path) -> None:
    update_run(registry, run_id, environment_json=json.dumps(snapshot(workdir).to_dict(), sort_keys=True))


def _training_hooks(registry: Registry, run_id: int, progress: RunProgress, heart: _Heartbeat,
                    stop: StopRequest) -> TrainHooks:
    return dataclasses.replace(registry_hooks(registry, run_id, progress), should_stop=heart.should_stop,
                               should_pause=lambda: stop.requested, polling=stop.polled)


def _check_still_ours(heart: _Heartbeat) -> None:
    if heart.lost.is_set():
        raise RunLost("the run was re-queued while this worker stalled; another worker holds it")
    if heart.cancelled.is_set():
        raise RunCancelled("cancelled")


def _train(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, hooks: TrainHooks,
           progress: RunProgress) -> TrainOutcome:
    """Training in this process, or for [resources] gpus = N > 1 in N processes under torchrun."""
    gpus = spec.resources.gpus
    if gpus:
        check_run_gpus(gpus, cuda_device_count())
    if gpus <= 1:
        return train(spec, workdir=workdir, output_dir=output_dir, hooks=hooks, device="cuda" if gpus else None)
    return train_distributed(registry, run_id, spec, workdir=workdir, output_dir=output_dir, hooks=hooks,
                             nproc=gpus, device="cuda", progress=progress)


def _execute(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, progress: RunProgress,
             heart: _Heartbeat, stop: StopRequest) -> None:
    update_run(registry, run_id, output_dir=str(output_dir))
    _record_environment(registry, run_id, workdir)
    # A run:ID base becomes that run's final weights (an adapter merged into its base) from here on.
    spec = resolve_start(registry, run_id, spec, workdir=workdir, output_dir=output_dir)
    forget_scores(registry, run_id)  # an earlier attempt's partial evaluation is redone from the start
    try:
        outcome = _train(registry, run_id, spec, workdir, output_dir,
                         _training_hooks(registry, run_id, progress, heart, stop), progress)
    except RunCancelled:
        _check_still_ours(heart)  # stopped because the run was lost, not cancelled: say so
        raise
    _check_still_ours(heart)
    if outcome.interrupted:
        raise RunInterrupted(f"{stop.reason} at step {outcome.global_step}")
    update_run(registry, run_id, train_seconds=outcome.train_seconds, final_loss=outcome.final_loss,
               num_train_examples=outcome.num_examples,
               data_fingerprint=outcome.data_fingerprint or fingerprint_spec_data(spec, workdir),
               data_stats_json=json.dumps(outcome.data_stats) if outcome.data_stats is not None else None)
    stop.check()  # a request that came as training finished: evaluation would not poll it

    key = eval_key(spec, lm_eval_version())
    outcome.model.eval()
    digest = trained_model_digest(registry, outcome.final_dir, base=spec.model.base, workdir=workdir,
                                  revision=spec.model.revision)
    # Default arguments, not a closure: nothing may keep the model alive after `del outcome` below.
    result = evaluate_cached(registry, lambda m=outcome.model, t=outcome.tokenizer: (m, t), digest, spec.eval,
                             workdir=output_dir / "eval", base_dir=workdir, seed=spec.experiment.seed,
                             dtype=spec.model.dtype, progress=progress.note)
    record_scores(registry, run_id, _score_records(result, model_kind="finetuned",
                                                   model_name=f"run:{run_id}", key=key))
    del outcome
    _check_still_ours(heart)
    if spec.eval.baseline:
        _evaluate_base(registry, run_id, spec, workdir, output_dir, progress)
