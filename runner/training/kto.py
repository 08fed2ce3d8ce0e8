"""The KTO recipe (`[method] kind = "kto"`): unpaired feedback (a prompt, one answer, good or bad) trained with trl's
KTOTrainer, which needs no pairs: the good answers are pulled up and the bad ones down, each against the reference
model, weighted by desirable_weight and undesirable_weight.

The same shape as the DPO recipe (runner/training/preference.py): the same resume rules, staged checkpoints and
registry callback. The rows come from runner/data/feedback.py (feedback rows, or preference pairs unpaired). With
weights = "lora" the reference is the base with the adapter switched off; with "full", a frozen copy of the base.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.runner.data.feedback import feedback_dataset, fingerprint_feedback, read_feedback
from tunelab.runner.data.prompts import one_data_file
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoint_identity import identity_for
from tunelab.runner.training.methods import lora_config
from tunelab.runner.training.models import load_base, load_tokenizer, resolve_model_path
from tunelab.runner.training.resume import finished_outcome, resume_point
from tunelab.runner.training.trainer import (
    TrainHooks,
    TrainOutcome,
    registry_callback,
    run_trainer,
    staged_trainer_class,
    training_arguments,
)


def train_kto(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str) -> TrainOutcome:
    """Train per `spec` with KTO on `device`, as train_preference does for DPO."""
    from transformers import set_seed
    from trl import KTOConfig, KTOTrainer

    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    rows = read_feedback(one_data_file(spec, workdir), spec.data.format, tokenizer, spec.data.template)
    data_fingerprint = fingerprint_feedback(rows, tokenizer)
    identity = identity_for(spec, tokenizer, data_fingerprint)
    finished = finished_outcome(spec, model_path, tokenizer, output_dir, hooks, device, identity,
                                num_examples=len(rows), data_fingerprint=data_fingerprint)
    if finished is not None:
        return finished

    checkpoints_dir = output_dir / "checkpoints"
    resume_from = resume_point(checkpoints_dir, identity, hooks)
    model = load_base(model_path, spec, device)
    by_lora = spec.method.trains_lora
    reference = None if by_lora else load_base(model_path, spec, device)
    method = spec.method
    callback = registry_callback(hooks, spec.train.keep_checkpoints)
    arguments = training_arguments(
        spec, checkpoints_dir, device, KTOConfig, beta=method.beta, desirable_weight=method.desirable_weight,
        undesirable_weight=method.undesirable_weight, max_length=spec.data.max_seq_len, activation_checkpointing=False,
    )
    try:
        trainer = staged_trainer_class(KTOTrainer)(
            model=model, ref_model=reference, args=arguments, train_dataset=feedback_dataset(rows),
            processing_class=tokenizer, peft_config=lora_config(method) if by_lora else None, callbacks=[callback],
        )
    except ValueError as exc:  # trl's checks of the model, adapter and data
        raise RunFailed(f"kto: {exc}") from None
    return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                       final_dir=output_dir / "final", num_examples=len(rows), data_fingerprint=data_fingerprint)


def fingerprint_feedback_data(spec: Spec, tokenizer, workdir: Path) -> str:
    """The data fingerprint a KTO run records, without training."""
    rows = read_feedback(one_data_file(spec, workdir), spec.data.format, tokenizer, spec.data.template)
    return fingerprint_feedback(rows, tokenizer)
