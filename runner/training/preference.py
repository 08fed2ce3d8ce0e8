"""Preference optimisation (`[method] kind = "dpo"`): prompt/chosen/rejected rows, trained with trl's DPOTrainer.

The recipe mirrors runner/training.py: the same resume rules (continue from the last complete checkpoint,
or skip training when the final weights are on disk), the same staged checkpoints, and the same registry
callback, so a DPO run records metrics and checkpoints exactly as a supervised one does.

With dpo_weights = "lora" trl wraps the model in the LoRA adapter and computes the reference
log-probabilities with the adapter switched off; with "full" a second, frozen copy of the base is the
reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.runner.errors import DataError, RunFailed


@dataclass(frozen=True)
class PreferencePair:
    """One row ready for DPO: the prompt as the model sees it (template applied), and the two answers."""

    prompt: str
    chosen: str
    rejected: str


def data_path(spec: Spec, workdir: Path) -> Path:
    if spec.data.format != "preference":
        raise RunFailed(f'method.kind = "dpo" trains on preference rows: set [data] format = "preference" '
                        f'(it is "{spec.data.format}")')
    if not isinstance(spec.data.train, str):
        raise RunFailed('method.kind = "dpo" reads one preference file: [data] train must be a path, not a mixture')
    if spec.data.validation is not None:
        raise RunFailed('method.kind = "dpo" does not take [data] validation data yet; leave it unset')
    path = Path(spec.data.train)
    return path if path.is_absolute() else workdir / path


def read_pairs(path: Path, tokenizer, template: str) -> list[PreferencePair]:
    """Preference rows of `path` with their prompts rendered by `[data] template`.

    A plain-text prompt is rendered as an instruction row without input, a list of messages as a
    conversation ending in the generation prompt, so DPO sees prompts exactly as supervised training did.
    """
    from tunelab.runner.data.formats import InstructionExample, read_preference_rows
    from tunelab.runner.data.templates import Renderer

    renderer = Renderer(template, tokenizer)
    pairs = []
    for row in read_preference_rows(path):
        if isinstance(row.prompt, str):
            rendered = renderer.render(InstructionExample(row.prompt, "", row.chosen, line=row.line), path)
            prompt = "".join(segment.text for segment in takewhile(lambda s: not s.trainable, rendered.segments))
        else:
            messages = [{"role": m.role, "content": m.content} for m in row.prompt]
            prompt = renderer.chat_renderer()(messages, True)
        if not row.chosen.strip() or not row.rejected.strip():
            raise DataError(path, "chosen and rejected must not be empty", line=row.line)
        pairs.append(PreferencePair(prompt, row.chosen, row.rejected))
    return pairs


def fingerprint_pairs(pairs: list[PreferencePair], tokenizer) -> str:
    """sha256 of the token ids DPO trains on (prompt, chosen, rejected of every pair, in order)."""
    digest = hashlib.sha256()
    for pair in pairs:
        for name, text in (("prompt", pair.prompt), ("chosen", pair.chosen), ("rejected", pair.rejected)):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            digest.update(name.encode() + b":" + b",".join(str(i).encode() for i in ids) + b";")
    return digest.hexdigest()


def _dataset(pairs: list[PreferencePair]):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                              "rejected": [p.rejected for p in pairs]})


def train_preference(spec: Spec, *, workdir: Path, output_dir: Path, hooks, device: str):
    """Train per `spec` with DPO; returns a runner.training.TrainOutcome like `train` does."""
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer
    from tunelab.runner.training.checkpoint_identity import identity_for
    from tunelab.runner.training.methods import load_base, lora_config
    from tunelab.runner.training.trainer import (
        _registry_callback,
        _staged_trainer_class,
        _training_arguments,
        finished_outcome,
        load_tokenizer,
        resolve_model_path,
        resume_point,
        run_trainer,
    )

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

    callback = _registry_callback(hooks, spec.train.keep_checkpoints)
    arguments = _training_arguments(
        spec, checkpoints_dir, device, DPOConfig, beta=spec.method.beta, max_length=spec.data.max_seq_len,
        activation_checkpointing=False, precompute_ref_log_probs=False,
    )
    try:
        trainer = _staged_trainer_class(DPOTrainer)(
            model=model, ref_model=reference, args=arguments, train_dataset=_dataset(pairs), processing_class=tokenizer,
            peft_config=lora_config(spec.method) if by_lora else None, callbacks=[callback],
        )
    except ValueError as exc:  # trl's checks of the model and adapter (e.g. target_modules)
        raise RunFailed(f"dpo: {exc}") from None
    return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                       final_dir=final_dir, num_examples=len(pairs), data_fingerprint=data_fingerprint)
