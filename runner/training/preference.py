"""Preference optimisation (`[method] kind = "dpo"`): prompt/chosen/rejected rows, trained with trl's DPOTrainer.

The recipe mirrors the supervised one (runner/training/supervised.py): the same resume rules (continue from the
last complete checkpoint, or skip training when the final weights are on disk), the same staged checkpoints, and
the same registry callback, so a DPO run records metrics and checkpoints exactly as a supervised one does.
The rows themselves are read and fingerprinted in runner/data/preference.py.

With dpo_weights = "lora" trl wraps the model in the LoRA adapter and computes the reference
log-probabilities with the adapter switched off; with "full" a second, frozen copy of the base is the
reference.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.runner.data.preference import PreferencePair, data_path, fingerprint_pairs, read_pairs
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoint_identity import identity_for
from tunelab.runner.training.methods import lora_config
from tunelab.runner.training.models import load_base, load_tokenizer, resolve_model_path
from tunelab.runner.training.resume import finished_outcome, resume_point
from tunelab.runner.training.trackers import tracker_runs
from tunelab.runner.training.trainer import (
    TrainHooks,
    TrainOutcome,
    registry_callback,
    run_trainer,
    staged_trainer_class,
    training_arguments,
)


def _dataset(pairs: list[PreferencePair]):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                              "rejected": [p.rejected for p in pairs]})


def train_preference(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str) -> TrainOutcome:
    """Train per `spec` with DPO on `device`, as train_supervised does for the other kinds."""
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    pairs = read_pairs(data_path(spec, workdir), tokenizer, spec.data.template)
    checkpoints_dir = output_dir / "checkpoints"
    final_dir = output_dir / "final"
    data_fingerprint = fingerprint_pairs(pairs, tokenizer)
    identity = identity_for(spec, tokenizer, data_fingerprint)
    finished = finished_outcome(spec, model_path, tokenizer, output_dir, hooks, device, identity,
                                num_examples=len(pairs), data_fingerprint=data_fingerprint)
    if finished is not None:
        return finished

    resume_from = resume_point(checkpoints_dir, identity, hooks)
    model = load_base(model_path, spec, device)
    by_lora = spec.method.trains_lora
    reference = None if by_lora else load_base(model_path, spec, device)

    callback = registry_callback(hooks, spec.train.keep_checkpoints)
    arguments = training_arguments(
        spec, checkpoints_dir, device, DPOConfig, beta=spec.method.beta, max_length=spec.data.max_seq_len,
        activation_checkpointing=spec.train.gradient_checkpointing, precompute_ref_log_probs=False,
    )
    try:
        trainer = staged_trainer_class(DPOTrainer)(
            model=model, ref_model=reference, args=arguments, train_dataset=_dataset(pairs), processing_class=tokenizer,
            peft_config=lora_config(spec.method) if by_lora else None, callbacks=[callback],
        )
    except ValueError as exc:  # trl's checks of the model and adapter (e.g. target_modules)
        raise RunFailed(f"dpo: {exc}") from None
    with tracker_runs(spec, output_dir, trainer):
        return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                           final_dir=final_dir, num_examples=len(pairs), data_fingerprint=data_fingerprint)
