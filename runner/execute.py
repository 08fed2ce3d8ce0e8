"""Execute one claimed run: train, checkpoint, evaluate (fine-tuned and base), record, finish.

How an attempt ends:
- succeeded / cancelled: as the run says;
- an error: `failed` with its text, or back to the queue while `[resources] max_retries` allows
  and the error is not the run's own (a RunFailed such as bad data or a full disk, or an
  invalid spec, would only fail again);
- interrupted (the worker got SIGTERM/SIGINT): a checkpoint at the current step, then back to
  the queue (`queued`, not counted as a retry);
- lost (the run was re-queued as stale while this worker stalled, and someone else holds it):
  this worker stops and writes nothing more;
- pruned (a search's trial its pruner stopped, runner/search.py): a checkpoint at that step, no evaluation.
A reward model (kind = "reward") is scored by its held-out pairwise accuracy instead of the lm-eval evaluation.
A run that succeeded, failed or was pruned is then told to its [notify] targets (runner/notify.py), and a search's
trial to its search, which may then be over. The caller (a worker) goes on to the next run, or stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.benchmarks import leaderboard_average
from tunelab.experiments.files import check_spec_files
from tunelab.experiments.schema import NotifySection, Spec, stored_spec
from tunelab.registry.db import Registry
from tunelab.registry.errors import RegistryUnwritable, RunNotHeld, database_failure, full_disk_cause
from tunelab.registry.queries import checkpoint_steps, experiment_for_run, find_base_scores
from tunelab.registry.recording import forget_samples, forget_scores, record_samples, record_scores, update_run
from tunelab.registry.roots import Roots
from tunelab.registry.run_records import headline_values
from tunelab.registry.run_state import beat, prune, requeue_interrupted, retry_or_fail, succeed
from tunelab.registry.run_status import RunStatus
from tunelab.registry.search_records import SearchRecord
from tunelab.runner.data.sample_prompts import SamplePrompt
from tunelab.runner.devices import check_run_gpus, cuda_device_count
from tunelab.runner.environment import snapshot
from tunelab.runner.errors import RunCancelled, RunFailed, retryable
from tunelab.runner.evaluation.cache import evaluate_cached, lm_eval_version
from tunelab.runner.evaluation.planning import check_evaluation
from tunelab.runner.evaluation.samples import (
    GenerationStopped,
    as_texts,
    generate_cached,
    recorded_settings,
    sample_prompts,
    seed_of,
)
from tunelab.runner.evaluation.targets import base_model_digest, settings_key, trained_model_digest
from tunelab.runner.lineage import resolve_start, submit_dir
from tunelab.runner.notify import Event, notify, targets_of
from tunelab.runner.reward_source import resolve_reward_source
from tunelab.runner.search import pruning_check, trial_ended
from tunelab.runner.slurm.job import current_job
from tunelab.runner.slurm.nodes import check_run_nodes
from tunelab.runner.training.checkpoints import complete_checkpoints, latest_complete
from tunelab.runner.training.distributed import train_distributed
from tunelab.runner.training.models import load_model, load_tokenizer, resolve_model_path
from tunelab.runner.training.preload import prepare_process
from tunelab.runner.training.progress import RunProgress
from tunelab.runner.training.recipes import fingerprint_spec_data, train
from tunelab.runner.training.registry_hooks import registry_hooks
from tunelab.runner.training.reward_model import RewardOutcome, accuracy_score
from tunelab.runner.training.rewards import RewardSource
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 15.0
# While the registry's disk is full, how often a worker tries again to release its run.
RELEASE_RETRY_SECONDS = 10.0


@dataclass
class RunResult:
    run_id: int
    status: str  # succeeded | failed | cancelled | queued (interrupted or re-queued after an error) | lost
    error: str | None = None


class RunInterrupted(Exception):
    """The worker was asked to stop while a run executed; the run goes back to the queue."""


class RunLost(Exception):
    """The run is no longer this worker's (re-queued as stale and claimed elsewhere)."""


class TrialPruned(Exception):
    """The search's pruner stopped the trial; its checkpoints stay."""


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
            except Exception as exc:  # a missed beat must not kill the run; the next one retries
                # A full registry disk is said once, by the worker, when the run's own write fails too.
                log.warning("heartbeat for run %s failed", run_id, exc_info=full_disk_cause(exc) is None)
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


def _evaluate_base(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path,
                   progress: RunProgress, prompts: list[SamplePrompt] | None, heart: _Heartbeat,
                   held_by: str | None) -> None:
    key = eval_key(spec, lm_eval_version())
    digest = base_model_digest(registry, spec.model.base, workdir=workdir, revision=spec.model.revision)
    load = _base_loader(spec, workdir)
    # With the weights' content hash the eval cache answers (it also sees edited task files and data);
    # without one, an earlier identical evaluation of the same base name is the best there is.
    cached = find_base_scores(registry, spec.model.base, key) if digest is None else None
    if cached:
        progress.note(f"base model {spec.model.base}: scores reused from an identical earlier evaluation")
        record_scores(registry, run_id, cached, held_by=held_by)
    else:
        outcome = evaluate_cached(registry, load, digest, spec.eval,
                                  workdir=output_dir / "eval-base", base_dir=workdir, seed=spec.experiment.seed,
                                  dtype=spec.model.dtype, progress=progress.note, should_stop=heart.should_stop)
        record_scores(registry, run_id, outcome.recorded_as(model_kind="base", model_name=spec.model.base,
                                                            eval_key=key), held_by=held_by)
    if prompts:
        _write_samples(registry, run_id, "base", spec, prompts, load, digest, progress, heart, held_by)


def _base_loader(spec: Spec, workdir: Path) -> Callable[[], tuple[Any, Any]]:
    """Loads the base model and tokenizer on the first call only (benchmarks and samples may both need it)."""
    loaded: list[tuple[Any, Any]] = []

    def load() -> tuple[Any, Any]:
        if not loaded:
            model_path = resolve_model_path(spec.model.base, workdir)
            model = load_model(model_path, spec.model.dtype, spec.model.revision)
            loaded.append((model.eval(), load_tokenizer(model_path, spec.model.revision)))
        return loaded[0]

    return load


def _check_sample_prompts(spec: Spec, workdir: Path) -> None:
    """A prompts file that is missing or has a bad row fails the run before training, not after it."""
    samples = spec.eval.samples
    if samples is not None and samples.prompts is not None:
        sample_prompts(spec, load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision),
                       workdir)


def _write_samples(registry: Registry, run_id: int, model_kind: str, spec: Spec, prompts: list[SamplePrompt],
                   load: Callable[[], tuple[Any, Any]], digest: str | None, progress: RunProgress,
                   heart: _Heartbeat, held_by: str | None) -> None:
    """[eval.samples]: what one of the run's models writes for its prompts (from the cache where it can)."""
    label = "fine-tuned model" if model_kind == "finetuned" else f"base model {spec.model.base}"
    try:
        generated = generate_cached(registry, load, digest, prompts, spec.eval.samples, seed=seed_of(spec),
                                    dtype=spec.model.dtype, should_stop=heart.should_stop, progress=progress.note,
                                    label=label)
    except GenerationStopped:
        _check_still_ours(heart)  # cancelled or lost: say which
        raise
    record_samples(registry, run_id, model_kind, as_texts(prompts, generated.outputs),
                   settings=recorded_settings(spec), model_digest=digest, held_by=held_by)


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
    registry: Registry, run_id: int, *, roots: Roots, show_progress: bool = True,
    heartbeat_seconds: float = HEARTBEAT_SECONDS, stop: StopRequest | None = None,
    notify_also: NotifySection | None = None,
) -> RunResult:
    """Run a claimed run to the end of this attempt; never raises for a failure of the run itself. A registry
    whose disk is full raises RegistryUnwritable, once the run is released (see `_release_when_writable`).

    Its files go under `roots.artifacts` (runs/ID), where an attempt on another machine that sees the same storage
    left its checkpoints; the spec's relative paths resolve through `roots` too. Its end (succeeded, failed, pruned)
    is told to the spec's [notify] and to `notify_also` (the worker's).
    """
    result = _attempt(registry, run_id, roots=roots, show_progress=show_progress, heartbeat_seconds=heartbeat_seconds,
                      stop=stop or StopRequest())
    if result.status in (RunStatus.succeeded.value, RunStatus.failed.value, RunStatus.pruned.value):
        _after_run(registry, result, notify_also)
    return result


def _after_run(registry: Registry, result: RunResult, notify_also: NotifySection | None) -> None:
    """Tell the run's end, and its search when it is a trial (which may end the search). Never raises: the run's
    own record is complete whatever happens here."""
    try:
        _, experiment = experiment_for_run(registry, result.run_id)
        spec = json.loads(experiment.resolved_json)
        targets = targets_of(spec, notify_also)

        record = trial_ended(registry, result.run_id, notify_also)
        notify(targets, Event("run", result.run_id, experiment.name, result.status,
                              _objective_of(registry, result.run_id, record), {"error": result.error}))
    except Exception:  # a notification or a search's bookkeeping never fails the run
        log.warning("after run %s: could not finish its bookkeeping", result.run_id, exc_info=True)


def _objective_of(registry: Registry, run_id: int, record: SearchRecord | None) -> dict | None:
    """The run's search objective (a trial), else its leaderboard average when it has one."""
    if record is not None:
        trial = next((t for t in record.trials if t.run_id == run_id), None)
        return {"name": record.objective, "value": trial.objective if trial else None}
    average = leaderboard_average(headline_values(registry, [run_id]).get(run_id, {}))
    return None if average is None else {"name": "average", "value": average}


def _attempt(registry: Registry, run_id: int, *, roots: Roots, show_progress: bool, heartbeat_seconds: float,
             stop: StopRequest) -> RunResult:
    run, experiment = experiment_for_run(registry, run_id)
    worker = run.worker
    output_dir = roots.run_dir(run_id)
    progress = RunProgress(run_id, experiment.name, enabled=show_progress)
    try:
        with stop.run():
            prepare_process()  # imports and all: a worker that waited for this run did it while idle
            _record_placement(registry, run_id)
            _make_output_dir(output_dir)
            with _Heartbeat(registry, run_id, worker, heartbeat_seconds) as heart, progress:
                _execute(registry, run_id, stored_spec(experiment.resolved_json),
                         submit_dir(roots, experiment.workdir), output_dir, roots, progress, heart, stop,
                         spec_file=experiment.spec_path, held_by=worker)
    except RunInterrupted as exc:
        latest = latest_complete(output_dir / "checkpoints")
        where = f"resumes from {latest.name}" if latest else "no checkpoint yet, starts over"
        note = f"interrupted ({exc}); re-queued, {where}"
        if not requeue_interrupted(registry, run_id, worker, note):
            return RunResult(run_id, "lost", "the run was no longer this worker's")
        return RunResult(run_id, "queued", note)
    except RunCancelled:
        return RunResult(run_id, "cancelled")
    except (RunLost, RunNotHeld) as exc:  # RunNotHeld: a fenced write refused (registry/recording.py)
        return RunResult(run_id, "lost", str(exc))
    except TrialPruned as exc:
        status = prune(registry, run_id, worker)  # "pruned", or what a cancel or a stale re-queue made of it
        return RunResult(run_id, status, str(exc))
    except Exception as exc:  # the run fails (or is re-queued), the worker lives on
        if full_disk_cause(exc) is not None:
            raise _release_when_writable(registry, run_id, worker, stop, exc) from None
        error = f"{type(exc).__name__}: {exc}"
        _write_traceback(output_dir)
        try:
            status = retry_or_fail(registry, run_id, worker, error, retryable=retryable(exc))
        except Exception as failed:
            if full_disk_cause(failed) is None:
                raise
            raise _release_when_writable(registry, run_id, worker, stop, failed) from None
        return RunResult(run_id, status, error)
    # Only while still ours: a cancel, or a stale re-queue while this worker stalled, is not overwritten.
    status = succeed(registry, run_id, worker)
    if status != "succeeded":
        return RunResult(run_id, "cancelled" if status == "cancelled" else "lost")
    return RunResult(run_id, "succeeded")


def _release_when_writable(registry: Registry, run_id: int, worker: str | None, stop: StopRequest,
                           full: BaseException) -> RegistryUnwritable:
    """The registry's disk is full: put the run back in the queue (not a retry: nothing is wrong with it) as soon as
    the registry takes the write, trying every RELEASE_RETRY_SECONDS until then or until the worker is asked to
    stop (the run is then left to the stale-run recovery of another worker). Returns the error that stops the
    worker, in one line."""
    url = registry.engine.url.render_as_string()
    why = database_failure(full_disk_cause(full) or full, url) or f"the registry {url} cannot be written"
    note = f"released: {why}; resumes from its last checkpoint"
    while True:
        try:
            released = requeue_interrupted(registry, run_id, worker, note)
            break
        except Exception as again:
            if full_disk_cause(again) is None:
                raise
            if stop.event.wait(RELEASE_RETRY_SECONDS):
                return RegistryUnwritable(f"{why} (run {run_id} is left running, for another worker to recover "
                                          "once the registry can be written; the worker stops)")
    what = "went back to the queue" if released else "was no longer this worker's"
    return RegistryUnwritable(f"{why} (run {run_id} {what}; the worker stops)")


def _record_environment(registry: Registry, run_id: int, workdir: Path, held_by: str | None) -> None:
    update_run(registry, run_id, held_by=held_by,
               environment_json=json.dumps(snapshot(workdir).to_dict(), sort_keys=True))


def _record_placement(registry: Registry, run_id: int) -> None:
    """The Slurm job and node this attempt runs in (none outside Slurm), for `tunelab ls` and `show`."""
    job = current_job()
    update_run(registry, run_id, slurm_job=job.label if job else None, slurm_node=job.node if job else None)


def _check_checkpoints_visible(registry: Registry, run_id: int, output_dir: Path) -> None:
    """A run that recorded checkpoints resumes from them: when this machine sees none of them, its artifact root is
    not where the earlier attempt wrote, and starting over would throw the recorded training away."""
    recorded = checkpoint_steps(registry, run_id)
    if recorded and not complete_checkpoints(output_dir / "checkpoints"):
        steps = ", ".join(map(str, recorded))
        raise RunFailed(f"the run recorded checkpoints (step {steps}) that are not under {output_dir} on this "
                        "machine: point TUNELAB_ARTIFACTS (or --artifacts) at the storage the earlier attempt "
                        "wrote to, then tunelab retry it")


def _training_hooks(registry: Registry, run_id: int, spec: Spec, progress: RunProgress, heart: _Heartbeat,
                    stop: StopRequest, roots: Roots, held_by: str | None) -> TrainHooks:
    return dataclasses.replace(registry_hooks(registry, run_id, progress, roots, held_by),
                               should_stop=heart.should_stop,
                               should_pause=lambda: stop.requested, polling=stop.polled,
                               should_prune=pruning_check(registry, run_id, spec.train.eval_every))


def _check_still_ours(heart: _Heartbeat) -> None:
    if heart.lost.is_set():
        raise RunLost("the run was re-queued while this worker stalled; another worker holds it")
    if heart.cancelled.is_set():
        raise RunCancelled("cancelled")


def _train(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, roots: Roots,
           hooks: TrainHooks, progress: RunProgress, reward: RewardSource | None, held_by: str | None) -> TrainOutcome:
    """Training in this process; for [resources] gpus = N > 1 in N processes under torchrun; for nodes = M > 1 in
    M torchruns started by srun over this Slurm job's allocation (never online RL, whose spec keeps it to one
    process)."""
    gpus, nodes = spec.resources.gpus, spec.resources.nodes
    if gpus:
        check_run_gpus(gpus, cuda_device_count())
    if nodes > 1:
        check_run_nodes(nodes, current_job())
        return train_distributed(registry, run_id, spec, workdir=workdir, output_dir=output_dir, roots=roots,
                                 hooks=hooks, nproc=max(gpus, 1), device="cuda" if gpus else "cpu",
                                 progress=progress, nodes=nodes)
    if gpus <= 1:
        return train(spec, workdir=workdir, output_dir=output_dir, hooks=hooks, device="cuda" if gpus else None,
                     reward=reward)
    return train_distributed(registry, run_id, spec, workdir=workdir, output_dir=output_dir, roots=roots, hooks=hooks,
                             nproc=gpus, device="cuda", progress=progress, held_by=held_by)


def _execute(registry: Registry, run_id: int, spec: Spec, workdir: Path, output_dir: Path, roots: Roots,
             progress: RunProgress, heart: _Heartbeat, stop: StopRequest, *, spec_file: str | None = None,
             held_by: str | None = None) -> None:
    _check_checkpoints_visible(registry, run_id, output_dir)
    update_run(registry, run_id, held_by=held_by, output_dir=roots.stored(output_dir))
    _record_environment(registry, run_id, workdir, held_by)
    # What the spec names (files, tasks, the rows its shots need) is checked before any training: a run whose
    # files vanished since submit, or whose evaluation cannot work, fails now, once, not after training.
    check_spec_files(spec, workdir, path=spec_file)
    check_evaluation(spec.eval, base_dir=workdir, out_dir=output_dir / "eval" / "lm_eval_tasks")
    # A run:ID base becomes that run's final weights (an adapter merged into its base) from here on.
    spec = resolve_start(registry, run_id, spec, workdir=workdir, output_dir=output_dir, roots=roots, held_by=held_by)
    # Online RL: the reward run, judge or function that scores the completions, recorded on the run.
    reward = resolve_reward_source(registry, run_id, spec, workdir=workdir, output_dir=output_dir, roots=roots,
                                   held_by=held_by)
    forget_scores(registry, run_id, held_by=held_by)  # an earlier attempt's partial evaluation is redone from the start
    forget_samples(registry, run_id, held_by=held_by)
    _check_sample_prompts(spec, workdir)
    try:
        outcome = _train(registry, run_id, spec, workdir, output_dir, roots,
                         _training_hooks(registry, run_id, spec, progress, heart, stop, roots, held_by), progress,
                         reward, held_by)
    except RunCancelled:
        _check_still_ours(heart)  # stopped because the run was lost, not cancelled: say so
        raise
    _check_still_ours(heart)
    if outcome.interrupted:
        raise RunInterrupted(f"{stop.reason} at step {outcome.global_step}")
    update_run(registry, run_id, held_by=held_by, train_seconds=outcome.train_seconds, final_loss=outcome.final_loss,
               num_train_examples=outcome.num_examples, best_step=outcome.best_step,
               data_fingerprint=outcome.data_fingerprint or fingerprint_spec_data(spec, workdir),
               data_stats_json=json.dumps(outcome.data_stats) if outcome.data_stats is not None else None)
    if outcome.pruned:
        raise TrialPruned(f"pruned at step {outcome.global_step}")
    if isinstance(outcome, RewardOutcome) and outcome.accuracy is not None:
        # A reward model is scored by its held-out pairwise accuracy, not by lm-eval (it generates no text).
        record_scores(registry, run_id, [accuracy_score(outcome.accuracy, run_id=run_id,
                                                        data_fingerprint=outcome.data_fingerprint)],
                      held_by=held_by)
        return
    stop.check()  # a request that came as training finished: evaluation would not poll it

    key = eval_key(spec, lm_eval_version())
    outcome.model.eval()
    digest = trained_model_digest(registry, outcome.final_dir, base=spec.model.base, workdir=workdir,
                                  revision=spec.model.revision)
    try:  # a cancel is honoured while evaluating and generating too (lm-eval's loop asks at every batch)
        # Default arguments, not a closure: nothing may keep the model alive after `del outcome` below.
        result = evaluate_cached(registry, lambda m=outcome.model, t=outcome.tokenizer: (m, t), digest, spec.eval,
                                 workdir=output_dir / "eval", base_dir=workdir, seed=spec.experiment.seed,
                                 dtype=spec.model.dtype, progress=progress.note, should_stop=heart.should_stop)
        record_scores(registry, run_id, result.recorded_as(model_kind="finetuned", model_name=f"run:{run_id}",
                                                           eval_key=key), held_by=held_by)
        prompts = sample_prompts(spec, outcome.tokenizer, workdir) if spec.eval.samples is not None else None
        if prompts:
            _write_samples(registry, run_id, "finetuned", spec, prompts,
                           lambda m=outcome.model, t=outcome.tokenizer: (m, t), digest, progress, heart, held_by)
        del outcome
        _check_still_ours(heart)
        if spec.eval.baseline:
            _evaluate_base(registry, run_id, spec, workdir, output_dir, progress, prompts, heart, held_by)
        elif prompts:  # no base scores asked for, but samples are side by side with the base's
            _write_samples(registry, run_id, "base", spec, prompts, _base_loader(spec, workdir),
                           base_model_digest(registry, spec.model.base, workdir=workdir, revision=spec.model.revision),
                           progress, heart, held_by)
    except RunCancelled:
        _check_still_ours(heart)  # stopped because the run was lost, not cancelled: say so
        raise
