"""Training's reports written into the registry: metrics, checkpoints, progress, a resume's rewind, pruning,
sample completions.

The worker (runner/execute.py) and the first process of a multi-GPU run (runner/training/distributed_train.py)
both hand these hooks to training; the recipes themselves know nothing of the registry.

Nothing in a training step waits for the registry: a step's metrics and progress are kept in memory
(BufferedReports) and written in batches, by a background thread every REPORT_SECONDS, before each checkpoint
is written (so a checkpoint on disk never lacks a metric row up to its step, whatever kills the worker after
it), with each validation loss, and when training ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator

from tunelab.registry.db import Registry
from tunelab.registry.errors import RunNotHeld, full_disk_cause
from tunelab.registry.recording import (
    KeptCheckpoint,
    MetricPoint,
    SampleCompletion,
    ensure_held,
    forget_checkpoints,
    record_checkpoint,
    record_completions,
    record_metrics,
    rewind,
    update_run,
)
from tunelab.registry.roots import Roots
from tunelab.runner.training.checkpoints import CompleteCheckpoint
from tunelab.runner.training.progress import RunProgress, TrainingProgress
from tunelab.runner.training.trainer import TrainHooks

log = logging.getLogger(__name__)

# How often the background thread writes what training reported (`tunelab show` lags by at most this much);
# TUNELAB_REPORT_SECONDS sets it (a dashboard that wants fresher figures; tests that watch a run step by step).
REPORT_SECONDS = float(os.environ.get("TUNELAB_REPORT_SECONDS", "2.0"))


class BufferedReports:
    """Metric rows and the latest progress figures of a run, held until the next write to the registry.

    `add` and `set_progress` only touch memory (the training loop calls them at every logged step); `flush`
    writes everything pending in one batch. Inside `background()` a thread flushes every `every_seconds`;
    leaving it flushes the rest. A write that fails keeps its rows for the next one.

    Every write is fenced by `held_by` (registry/recording.py). A background write refused for good (the run is no
    longer this worker's, the registry's disk is full) is not retried: the thread stops and the training loop's
    next report raises that error, as a write of its own would have, so training ends and the worker hears why.
    """

    def __init__(self, registry: Registry, run_id: int, every_seconds: float = REPORT_SECONDS, *,
                 held_by: str | None = None) -> None:
        self.registry = registry
        self.run_id = run_id
        self.every_seconds = every_seconds
        self.held_by = held_by
        self._pending = threading.Lock()  # guards the three fields below, never held while writing
        self._metrics: list[MetricPoint] = []
        self._progress: TrainingProgress | None = None
        self._refused: BaseException | None = None  # what stopped the background thread, for the training loop
        self._writing = threading.Lock()  # one write at a time, so rows and figures land in the order reported

    def add(self, point: MetricPoint) -> None:
        with self._pending:
            self._raise_refused()
            self._metrics.append(point)

    def set_progress(self, figures: TrainingProgress) -> None:
        with self._pending:
            self._raise_refused()
            self._progress = figures

    def _raise_refused(self) -> None:
        if self._refused is not None:
            refused, self._refused = self._refused, None  # raised once: leaving background() may write again
            raise refused

    def flush(self) -> None:
        """Write the pending metric rows (one transaction) and the latest figures; raises if the registry fails."""
        with self._writing:
            with self._pending:
                metrics, self._metrics = self._metrics, []
                figures, self._progress = self._progress, None
            if metrics:
                try:
                    record_metrics(self.registry, self.run_id, metrics, held_by=self.held_by)
                except BaseException:
                    self._put_back(metrics, figures)
                    raise
            if figures is not None:
                try:
                    update_run(self.registry, self.run_id, held_by=self.held_by,
                               progress_json=json.dumps(figures.to_json()))
                except BaseException:
                    self._put_back([], figures)
                    raise

    def _put_back(self, metrics: list[MetricPoint], figures: TrainingProgress | None) -> None:
        with self._pending:
            self._metrics[:0] = metrics
            if self._progress is None:  # figures reported since are newer
                self._progress = figures

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """Flush every `every_seconds` in a thread while inside; flush what is left on the way out."""
        stop = threading.Event()
        thread = threading.Thread(target=self._flush_until, args=(stop,), daemon=True,
                                  name=f"tunelab-reports-{self.run_id}")
        thread.start()
        try:
            yield
        except BaseException:
            self._stop(stop, thread)
            # The error that ended training is the one to report; the rows are kept if they can be.
            try:
                self.flush()
            except Exception as exc:
                log.warning("run %s: could not record its last training metrics", self.run_id,
                            exc_info=not _refused_for_good(exc))
            raise
        self._stop(stop, thread)
        self.flush()

    def _flush_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_seconds):
            try:
                self.flush()
            except Exception as exc:
                if _refused_for_good(exc):
                    with self._pending:
                        self._refused = exc
                    return
                # A checkpoint's flush, or the last one, raises; this one just tries again later.
                log.warning("run %s: writing training metrics failed; retrying", self.run_id, exc_info=True)

    @staticmethod
    def _stop(stop: threading.Event, thread: threading.Thread) -> None:
        stop.set()
        thread.join()


def _refused_for_good(exc: BaseException) -> bool:
    """A write no retry of the same attempt gets through: the run is another worker's, or the registry's disk is
    full (the worker releases the run and stops, runner/execute.py)."""
    return isinstance(exc, RunNotHeld) or full_disk_cause(exc) is not None


def registry_hooks(registry: Registry, run_id: int, progress: RunProgress, roots: Roots, held_by: str | None = None,
                   report_seconds: float = REPORT_SECONDS) -> TrainHooks:
    """Training's reports written into the registry (metrics, checkpoints, resume, pruning); progress shown.
    Checkpoint paths are stored relative to `roots`' artifact root.

    `held_by`: the worker that holds the run; every write, and every checkpoint or final weights put in place, is
    fenced by it (registry/recording.py), so training for a run another worker took over writes nothing.
    """
    reports = BufferedReports(registry, run_id, report_seconds, held_by=held_by)

    def on_start(step: int, on_disk: list[CompleteCheckpoint]) -> None:
        kept = [KeptCheckpoint(c.step, c.loss, roots.stored(c.path)) for c in on_disk]
        dropped = rewind(registry, run_id, step, kept, held_by=held_by)
        if step:
            progress.resumed(step, dropped)

    def on_metrics(metrics: dict) -> None:
        point = MetricPoint(**metrics)
        reports.add(point)
        if point.eval_loss is not None:
            # A validation loss is written at once, with what is pending: whatever decides on it next (a search's
            # pruner) reads it back from the registry, and an evaluation is rare and slow beside one write.
            reports.flush()

    def on_progress(figures: TrainingProgress) -> None:
        progress.training(figures)
        reports.set_progress(figures)

    return TrainHooks(
        on_metrics=on_metrics,
        on_checkpoint=lambda step, loss, path: record_checkpoint(registry, run_id, step, loss, roots.stored(path),
                                                                 held_by=held_by),
        on_progress=on_progress,
        on_start=on_start,
        on_pruned=lambda steps: forget_checkpoints(registry, run_id, steps, held_by=held_by),
        on_samples=lambda step, samples: record_completions(registry, run_id, step,
                                                            [SampleCompletion(**sample) for sample in samples],
                                                            held_by=held_by),
        flush=reports.flush,
        recording=reports.background,
        before_publish=lambda: ensure_held(registry, run_id, held_by),
    )
