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
    forget_checkpoints,
    record_checkpoint,
    record_metrics,
    rewind,
    update_run,
)
from tunelab.registry.roots import Roots
from tunelab.runner.training.checkpoints import CompleteCheckpoint
from tunelab.runner.training.progress import RunProgress, TrainingProgress
from tunelab.runner.training.trainer import TrainHooks

# Training's figures go to the registry at most this often (and at the last step).
PROGRESS_WRITE_SECONDS = 2.0


def registry_hooks(registry: Registry, run_id: int, progress: RunProgress, roots: Roots) -> TrainHooks:
    """Training's reports written into the registry (metrics, checkpoints, resume, pruning); progress shown.
    Checkpoint paths are stored relative to `roots`' artifact root."""
    def on_start(step: int, on_disk: list[CompleteCheckpoint]) -> None:
        kept = [KeptCheckpoint(c.step, c.loss, roots.stored(c.path)) for c in on_disk]
        dropped = rewind(registry, run_id, step, kept)
        if step:
            progress.resumed(step, dropped)

    last_written = [float("-inf")]

    def on_progress(figures: TrainingProgress) -> None:
        progress.training(figures)
        # For people reading `tunelab show`: a write every few seconds (and the last step) is plenty,
        # and keeps the registry out of a fast training loop.
        now = time.monotonic()
        if now - last_written[0] >= PROGRESS_WRITE_SECONDS or figures.step >= figures.total:
            update_run(registry, run_id, progress_json=json.dumps(figures.to_json()))
            last_written[0] = now

    return TrainHooks(
        on_metrics=lambda m: record_metrics(registry, run_id, [MetricPoint(**m)]),
        on_checkpoint=lambda step, loss, path: record_checkpoint(registry, run_id, step, loss, roots.stored(path)),
        on_progress=on_progress,
        on_start=on_start,
        on_pruned=lambda steps: forget_checkpoints(registry, run_id, steps),
    )
