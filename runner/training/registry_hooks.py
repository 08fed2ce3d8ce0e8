"""Training's reports written into the registry: metrics, checkpoints, progress, a resume's rewind, pruning.

The worker (runner/execute.py) and the first process of a multi-GPU run (runner/training/distributed_train.py)
both hand these hooks to training; the recipes themselves know nothing of the registry.
"""

from __future__ import annotations

import json
import time

from tunelab.registry.db import Registry
from tunelab.registry.recording import (
    KeptCheckpoint,
    MetricPoint,
    ensure_held,
    forget_checkpoints,
    record_checkpoint,
    record_metrics,
    rewind,
    update_run,
)
from tunelab.runner.training.checkpoints import CompleteCheckpoint
from tunelab.runner.training.progress import RunProgress, TrainingProgress
from tunelab.runner.training.trainer import TrainHooks

# Training's figures go to the registry at most this often (and at the last step).
PROGRESS_WRITE_SECONDS = 2.0


def registry_hooks(registry: Registry, run_id: int, progress: RunProgress, held_by: str | None = None) -> TrainHooks:
    """Training's reports written into the registry (metrics, checkpoints, resume, pruning); progress shown.

    `held_by`: the worker that holds the run; every write, and every checkpoint or final weights put in place, is
    fenced by it (registry/recording.py), so training for a run another worker took over writes nothing.
    """
    def on_start(step: int, on_disk: list[CompleteCheckpoint]) -> None:
        kept = [KeptCheckpoint(c.step, c.loss, str(c.path)) for c in on_disk]
        dropped = rewind(registry, run_id, step, kept, held_by=held_by)
        if step:
            progress.resumed(step, dropped)

    last_written = [float("-inf")]

    def on_progress(figures: TrainingProgress) -> None:
        progress.training(figures)
        # For people reading `tunelab show`: a write every few seconds (and the last step) is plenty,
        # and keeps the registry out of a fast training loop.
        now = time.monotonic()
        if now - last_written[0] >= PROGRESS_WRITE_SECONDS or figures.step >= figures.total:
            update_run(registry, run_id, held_by=held_by, progress_json=json.dumps(figures.to_json()))
            last_written[0] = now

    return TrainHooks(
        on_metrics=lambda m: record_metrics(registry, run_id, [MetricPoint(**m)], held_by=held_by),
        on_checkpoint=lambda step, loss, path: record_checkpoint(registry, run_id, step, loss, str(path),
                                                                 held_by=held_by),
        on_progress=on_progress,
        on_start=on_start,
        on_pruned=lambda steps: forget_checkpoints(registry, run_id, steps, held_by=held_by),
        before_publish=lambda: ensure_held(registry, run_id, held_by),
    )
