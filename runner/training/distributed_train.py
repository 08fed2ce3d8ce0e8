"""One process of a multi-GPU run, as torchrun starts it: `python -m tunelab.runner.training.distributed_train JOB`.

Trains with the run's recipe (runner/training/recipes.py) like a single-process run; the first process (rank 0)
writes to the registry and shows progress, the others train silently. See runner/training/distributed.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.registry.db import open_registry
from tunelab.registry.roots import Roots
from tunelab.runner.errors import RunCancelled, retryable
from tunelab.runner.training.distributed import CONTROL_FILE, ERROR_FILE, REGISTRY_ENV, DistributedJob, SharedControl
from tunelab.runner.training.preload import prepare_process
from tunelab.runner.training.progress import RunProgress
from tunelab.runner.training.recipes import train
from tunelab.runner.training.registry_hooks import registry_hooks
from tunelab.runner.training.trainer import TrainHooks


def _hooks(job: DistributedJob, spec: Spec, first: bool) -> tuple[TrainHooks, RunProgress]:
    progress = RunProgress(job.run_id, spec.experiment.name, enabled=first and job.show_progress)
    if not first:
        return TrainHooks(on_metrics=lambda _m: None, on_checkpoint=lambda *_a: None), progress
    registry = open_registry(os.environ[REGISTRY_ENV], migrate=False)
    return registry_hooks(registry, job.run_id, progress, Roots(Path(job.artifacts)), held_by=job.held_by), progress


def _record_error(output_dir: Path, exc: Exception) -> None:
    path = output_dir / ERROR_FILE
    if path.exists():  # another process told first
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"type": type(exc).__name__, "message": str(exc), "retryable": retryable(exc)}),
                   encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    prepare_process()  # as a worker does: Trainer.train()'s garbage collection then skips the imported modules
    job = DistributedJob.read(Path(argv[0]))
    output_dir = Path(job.output_dir)
    spec = Spec.model_validate(job.spec)
    first = int(os.environ.get("RANK", "0")) == 0
    control = SharedControl(output_dir / CONTROL_FILE, job.worker_pid, job.worker_host)
    hooks, progress = _hooks(job, spec, first)
    hooks = dataclasses.replace(hooks, should_stop=control.should_stop, should_pause=control.should_pause)
    try:
        with progress:
            train(spec, workdir=Path(job.workdir), output_dir=output_dir, hooks=hooks, device=job.device)
    except RunCancelled:
        return 0  # the worker asked for it and knows
    except Exception as exc:
        _record_error(output_dir, exc)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
