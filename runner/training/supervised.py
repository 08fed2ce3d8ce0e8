"""The supervised recipe (full, freeze, lora, qlora, prompt_tuning): the transformers Trainer on tokenised rows.

Top to bottom: load the tokenizer, prepare the data (runner/data/prepare.py), find where to start
(runner/training/resume.py), load and wrap the model for its method, build the Trainer and train it
(runner/training/trainer.py), save the final weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.experiments.schema import Spec
from tunelab.runner.data.fingerprint import fingerprint_prepared
from tunelab.runner.data.packing import PackedCollator
from tunelab.runner.data.prepare import prepare_data
from tunelab.runner.training.checkpoint_identity import identity_for
from tunelab.runner.training.methods import apply_method, loraplus_optimizer
from tunelab.runner.training.models import load_base, load_tokenizer, resolve_model_path, torch_dtype
from tunelab.runner.training.options import steering_callbacks
from tunelab.runner.training.resume import finished_outcome, resume_point
from tunelab.runner.training.trackers import tracker_runs
from tunelab.runner.training.trainer import (
    VALIDATION_MARK,
    TokenCounter,
    TrainHooks,
    TrainOutcome,
    registry_callback,
    run_trainer,
    staged_trainer_class,
    training_arguments,
)


class _ListDataset:
    """A plain indexable dataset; the Trainer needs nothing more. Validation examples carry a mark."""

    def __init__(self, features: list[dict[str, list[int]]], *, validation: bool = False) -> None:
        self.features = features
        self.validation = validation

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        feature = self.features[index]
        return {**feature, VALIDATION_MARK: True} if self.validation else feature


def _data_collator(spec: Spec, tokenizer):
    """Padding, or for [data] packing the block-diagonal attention that keeps packed examples apart."""
    from transformers import DataCollatorForSeq2Seq

    if spec.data.packing:
        return PackedCollator(pad_token_id=tokenizer.pad_token_id, dtype=torch_dtype(spec.model.dtype))
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)


def train_supervised(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str) -> TrainOutcome:
    """Train per `spec` on `device`; relative paths resolve against `workdir`; files go under `output_dir`.

    Continues from the last complete checkpoint under `output_dir`, if there is one.
    """
    from transformers import set_seed

    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    data = prepare_data(spec, tokenizer, workdir, should_stop=hooks.should_stop)
    data_facts = {"num_examples": data.num_examples, "data_fingerprint": fingerprint_prepared(data),
                  "data_stats": data.stats.to_dict() if data.stats else None}
    checkpoints_dir = output_dir / "checkpoints"
    final_dir = output_dir / "final"
    identity = identity_for(spec, tokenizer, data_facts["data_fingerprint"])
    finished = finished_outcome(spec, model_path, tokenizer, output_dir, hooks, device, identity, **data_facts)
    if finished is not None:
        return finished

    resume_from = resume_point(checkpoints_dir, identity, hooks)
    model = apply_method(load_base(model_path, spec, device), spec, model_path=model_path)

    collator = TokenCounter(_data_collator(spec, tokenizer))
    callback = registry_callback(hooks, spec.train.keep_checkpoints, collator)
    arguments = training_arguments(spec, checkpoints_dir, device)
    optimizer = loraplus_optimizer(model, spec.method, arguments) if spec.method.loraplus_lr_ratio else None
    trainer = staged_trainer_class()(
        model=model,
        args=arguments,
        optimizers=(optimizer, None),
        train_dataset=_ListDataset(data.train),
        eval_dataset=_ListDataset(data.validation, validation=True) if data.validation else None,
        data_collator=collator,
        callbacks=[callback, *steering_callbacks(spec)],
    )
    with tracker_runs(spec, output_dir, trainer):
        return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                           final_dir=final_dir, validate=bool(data.validation), **data_facts)
