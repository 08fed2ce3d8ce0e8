"""Fine-tune a model as a spec says: transformers Trainer, with peft for LoRA.

A readable top-to-bottom recipe: load tokenizer and model, wrap for the method,
tokenise the data, train with callbacks that write metrics and checkpoints into the
registry, save the final weights atomically.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.schema import Spec
from runner.checkpoints import latest_complete, mark_complete
from runner.data import read_instruction_jsonl, tokenize_examples
from runner.errors import RunCancelled, RunFailed


@dataclass
class TrainHooks:
    """How training reports back; the worker points these at the registry."""

    on_metrics: Callable[[dict[str, Any]], None]
    on_checkpoint: Callable[[int, float | None, Path], None]
    on_progress: Callable[[int, int, float | None], None] | None = None
    should_stop: Callable[[], bool] = lambda: False


@dataclass
class TrainOutcome:
    model: Any
    tokenizer: Any
    final_dir: Path
    global_step: int
    final_loss: float | None
    train_seconds: float
    num_examples: int


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_model_path(base: str, workdir: Path) -> str:
    """A local directory (relative to the submit directory) or, failing that, a hub id."""
    candidate = Path(base) if Path(base).is_absolute() else workdir / base
    if candidate.is_dir():
        return str(candidate)
    if base.startswith((".", "/")) or base.count("/") > 1:
        raise RunFailed(f"base model directory not found: {candidate}")
    return base


def load_tokenizer(model_path: str, revision: str | None = None):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, revision=revision)
    except OSError as exc:
        raise RunFailed(f"cannot load tokenizer of {model_path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, dtype: str, revision: str | None = None):
    from transformers import AutoModelForCausalLM

    if dtype != "float32" and pick_device() == "cpu":
        raise RunFailed(f'model.dtype = "{dtype}" needs a GPU; none is available (use "float32" on the CPU)')
    try:
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype(dtype), revision=revision)
    except OSError as exc:
        raise RunFailed(f"cannot load model {model_path!r}: {exc}") from None


def apply_method(model, spec: Spec):
    """Wrap the model for the fine-tuning method; full fine-tuning trains it as is."""
    if spec.method.kind == "full":
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.method.r,
        lora_alpha=spec.method.alpha,
        lora_dropout=spec.method.dropout,
        target_modules=list(spec.method.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise RunFailed(f"method.target_modules: {exc}") from None


class _ListDataset:
    """A plain indexable dataset; the Trainer needs nothing more."""

    def __init__(self, features: list[dict[str, list[int]]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def _training_arguments(spec: Spec, checkpoints_dir: Path, device: str):
    from transformers import TrainingArguments

    train = spec.train
    return TrainingArguments(
        output_dir=str(checkpoints_dir),
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.learning_rate,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps if train.max_steps > 0 else -1,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_every,
        seed=spec.experiment.seed,
        data_seed=spec.experiment.seed,
        report_to=[],
        use_cpu=device == "cpu",
        bf16=device == "cuda" and spec.model.dtype == "bfloat16",
        fp16=device == "cuda" and spec.model.dtype == "float16",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def _registry_callback(hooks: TrainHooks):
    from transformers import TrainerCallback

    class RegistryCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.last_loss = float(logs["loss"])
                hooks.on_metrics({"step": state.global_step, "epoch": state.epoch, "loss": self.last_loss,
                                  "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm")})
            if hooks.on_progress:
                hooks.on_progress(state.global_step, state.max_steps, self.last_loss)

        def on_step_end(self, args, state, control, **kwargs):
            if hooks.should_stop():
                control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            checkpoint_dir = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint_dir.is_dir():
                mark_complete(checkpoint_dir, step=state.global_step, loss=self.last_loss)
                hooks.on_checkpoint(state.global_step, self.last_loss, checkpoint_dir)

    return RegistryCallback()


def save_final(model, tokenizer, final_dir: Path) -> None:
    """Write the final weights to a staging directory, then rename it into place."""
    staging = final_dir.with_name(final_dir.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(staging, final_dir)


def train(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks) -> TrainOutcome:
    """Train per `spec`; relative paths resolve against `workdir`; files go under `output_dir`."""
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, set_seed

    device = pick_device()
    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    data_path = Path(spec.data.train) if Path(spec.data.train).is_absolute() else workdir / spec.data.train
    examples = read_instruction_jsonl(data_path)
    features = tokenize_examples(
        examples, tokenizer, max_seq_len=spec.data.max_seq_len, train_on_prompt=spec.data.train_on_prompt
    )
    model = apply_method(load_model(model_path, spec.model.dtype, spec.model.revision), spec)

    checkpoints_dir = output_dir / "checkpoints"
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    callback = _registry_callback(hooks)
    trainer = Trainer(
        model=model,
        args=_training_arguments(spec, checkpoints_dir, device),
        train_dataset=_ListDataset(features),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[callback],
    )
    # Our own progress bar and the registry carry the logs; the Trainer's printer would repeat them.
    trainer.remove_callback(PrinterCallback)
    resume_from = latest_complete(checkpoints_dir)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    if hooks.should_stop():
        raise RunCancelled("cancelled while training")

    final_dir = output_dir / "final"
    save_final(trainer.model, tokenizer, final_dir)
    return TrainOutcome(
        model=trainer.model,
        tokenizer=tokenizer,
        final_dir=final_dir,
        global_step=trainer.state.global_step,
        final_loss=callback.last_loss if callback.last_loss is not None else float(result.training_loss),
        train_seconds=seconds,
        num_examples=len(features),
    )
