"""Where a recipe starts: the final weights of an attempt that already finished training, the last complete
checkpoint of one that did not, or nothing (a fresh start).

Both are refused when they were written by another training (spec, tokenizer or data): see
runner/training/checkpoint_identity.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.experiments.schema import Spec
from tunelab.runner.training.checkpoint_identity import TrainingIdentity, check_resumable
from tunelab.runner.training.checkpoints import CompleteCheckpoint, complete_checkpoints, discard_incomplete
from tunelab.runner.training.final_weights import final_facts, is_finished
from tunelab.runner.training.models import load_trained
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome


def finished_outcome(spec: Spec, model_path: str, tokenizer, output_dir: Path, hooks: TrainHooks, device: str,
                     identity: TrainingIdentity, **data_facts: Any) -> TrainOutcome | None:
    """The outcome of an attempt that finished training but died later (e.g. in evaluation): no retraining.

    Final weights trained with another spec, tokenizer or data are refused, as a checkpoint would be.
    """
    final_dir, checkpoints_dir = output_dir / "final", output_dir / "checkpoints"
    if not is_finished(final_dir):
        return None
    facts = final_facts(final_dir)
    check_resumable(final_dir, facts.get("identity"), identity)
    if hooks.on_start:
        hooks.on_start(facts["global_step"], complete_checkpoints(checkpoints_dir))
    return TrainOutcome(model=load_trained(spec, model_path, final_dir, device), tokenizer=tokenizer,
                        final_dir=final_dir, global_step=facts["global_step"], final_loss=facts["final_loss"],
                        train_seconds=facts["train_seconds"], resumed_from=facts["global_step"],
                        best_step=facts.get("best_step"), **data_facts)


def resume_point(checkpoints_dir: Path, identity: TrainingIdentity, hooks: TrainHooks) -> CompleteCheckpoint | None:
    """The complete checkpoint to continue from (None: start afresh), after clearing half-written ones.

    Refuses (IncompatibleCheckpoint) a checkpoint written with another spec, tokenizer or data.
    """
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    discard_incomplete(checkpoints_dir)
    complete = complete_checkpoints(checkpoints_dir)
    resume_from = complete[-1] if complete else None
    if resume_from is not None:
        check_resumable(resume_from.path, resume_from.identity, identity)
    if hooks.on_start:
        hooks.on_start(resume_from.step if resume_from else 0, complete)
    return resume_from
