"""Fine-tune a model as a spec says: transformers Trainer, with peft for LoRA.

A readable top-to-bottom recipe: load tokenizer and model, wrap for the method,
tokenise the data, train with callbacks that write metrics and checkpoints into the
registry, save the final weights atomically.

Resuming is part of the recipe: a run that starts again continues from its last complete
checkpoint (model, optimizer, scheduler, RNG and data position, so the result is the same
as an uninterrupted run), or skips training altogether when its final weights are on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.schema import RUN_BASE, Spec
from tunelab.runner.checkpoint_identity import TrainingIdentity, check_resumable, identity_for
from tunelab.runner.checkpoints import (
    CompleteCheckpoint,
    complete_checkpoints,
    discard_incomplete,
    fsync_tree,
    is_complete,
    prune,
    publish,
    staging_dir,
)
from tunelab.runner.data import prepare_data
from tunelab.runner.errors import RunCancelled, RunFailed
from tunelab.runner.methods import apply_method, check_device, load_base, load_trained, optimizer_arguments

# Written into final/ last: its presence means training finished and the weights are whole.
FINAL_FACTS = "tunelab-train.json"
# Below this much free space, a failed write is put down to a full disk (torch and safetensors
# report ENOSPC as their own exception types, not as OSError).
LOW_DISK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands, as the progress bar and `tunelab show` give it."""

    step: int
    total: int
    loss: float | None
    tokens_per_second: float | None  # non-padding tokens, all processes together, since this attempt began
    eta_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Set on validation examples (see _ListDataset) so the token counter leaves them out of tokens trained.
VALIDATION_MARK = "tunelab_validation"


class TokenCounter:
    """Wraps the data collator to count the non-padding training tokens handed to the model (packed rows
    too, whose block-diagonal mask the Trainer's own counter would misread); validation batches, which go
    through the same collator, are told apart by their mark and not counted."""

    def __init__(self, collate) -> None:
        self.collate = collate
        self.tokens = 0

    def __call__(self, features):
        if features and VALIDATION_MARK in features[0]:
            return self.collate([{k: v for k, v in f.items() if k != VALIDATION_MARK} for f in features])
        self.tokens += sum(len(feature["input_ids"]) for feature in features)
        return self.collate(features)


@dataclass
class TrainHooks:
    """How training reports back; the worker points these at the registry."""

    on_metrics: Callable[[dict[str, Any]], None]
    on_checkpoint: Callable[[int, float | None, Path], None]
    on_progress: Callable[[TrainingProgress], None] | None = None
    # Cancelled (or the run was taken away): stop at the next step, no checkpoint.
    should_stop: Callable[[], bool] = lambda: False
    # The worker is shutting down: save a checkpoint at the next step, then stop.
    should_pause: Callable[[], bool] = lambda: False
    # Entered around the training loop, the only stretch where the two above are polled.
    polling: Callable[[], AbstractContextManager] = contextlib.nullcontext
    # Training (re)starts at this step with these checkpoints on disk; 0 and [] on a fresh start.
    on_start: Callable[[int, list[CompleteCheckpoint]], None] | None = None
    # Checkpoints deleted by [train] keep_checkpoints.
    on_pruned: Callable[[list[int]], None] | None = None


@dataclass
class TrainOutcome:
    model: Any
    tokenizer: Any
    final_dir: Path
    global_step: int
    final_loss: float | None
    train_seconds: float
    num_examples: int
    resumed_from: int = 0  # the step training continued from; 0 = from the start
    interrupted: bool = False  # stopped early by should_pause, with a checkpoint at global_step
    # What became of the data files' rows (runner/data.py DataStats), for the registry.
    data_stats: dict[str, Any] | None = None
    # Hash of the features trained on (runner/data_fingerprint.py); None: the caller computes it from the spec.
    data_fingerprint: str | None = None


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_model_path(base: str, workdir: Path) -> str:
    """A local directory (relative to the submit directory) or, failing that, a hub id."""
    if RUN_BASE.fullmatch(base):
        # Only the registry knows where a run's weights are: runner.lineage resolves these before training.
        raise RunFailed(f'model.base = "{base}" names a run; it is resolved through the registry (runner/lineage.py)')
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


def _training_arguments(spec: Spec, checkpoints_dir: Path, device: str, arguments_class=None, **extra: Any):
    """The Trainer's arguments from the spec; `arguments_class` (a TrainingArguments subclass) and `extra`
    serve trainers with their own configuration (trl's DPOConfig)."""
    from transformers import TrainingArguments

    train = spec.train
    arguments = (arguments_class or TrainingArguments)(
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
        # Processes launched by torchrun on CPUs (the distributed path's tests) talk over gloo; GPUs over NCCL.
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        **_evaluation_arguments(spec),
        **optimizer_arguments(spec.method, device),
        **extra,
    )
    return one_gpu_per_process(arguments)


def one_gpu_per_process(arguments, world_size: int | None = None):
    """A training process uses one GPU: several GPUs are `[resources] gpus = N` (one torchrun process each),
    never the Trainer's single-process DataParallel, whose batch would grow with the GPUs the worker has
    (and change a run's result with the machine that claimed it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if world_size <= 1 and arguments.n_gpu > 1:
        arguments._n_gpu = 1  # read by Trainer to decide on DataParallel and the effective batch size
    return arguments


def _evaluation_arguments(spec: Spec) -> dict[str, Any]:
    """Validation loss every [train] eval_every steps; without validation data, none."""
    if spec.data.validation is None:
        return {}
    every = spec.train.eval_every
    # Only the loss is wanted: keeping every batch's logits would cost memory for nothing.
    return {"eval_strategy": "steps" if every else "no", "eval_steps": every or None,
            "per_device_eval_batch_size": spec.train.batch_size, "prediction_loss_only": True}


def _data_collator(spec: Spec, tokenizer):
    """Padding, or for [data] packing the block-diagonal attention that keeps packed examples apart."""
    from transformers import DataCollatorForSeq2Seq

    if spec.data.packing:
        from tunelab.runner.packing import PackedCollator

        return PackedCollator(pad_token_id=tokenizer.pad_token_id, dtype=torch_dtype(spec.model.dtype))
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)


def _evaluate_at_end(trainer) -> None:
    """The validation loss of the final weights, unless eval_every just measured it."""
    state = trainer.state
    if not any(entry.get("step") == state.global_step and "eval_loss" in entry for entry in state.log_history):
        trainer.evaluate()


def _registry_callback(hooks: TrainHooks, keep_checkpoints: int, counter: TokenCounter | None = None):
    from transformers import TrainerCallback

    class RegistryCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_loss: float | None = None
            self.paused = False
            self.started: tuple[float, int, int] | None = None  # time, step and tokens when this attempt began

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = (time.perf_counter(), state.global_step, counter.tokens if counter else 0)

        def progress(self, args, state) -> TrainingProgress:
            rate = eta = None
            if self.started is not None:
                began, first_step, first_tokens = self.started
                elapsed = time.perf_counter() - began
                steps = state.global_step - first_step
                if elapsed > 0 and steps > 0:
                    eta = (state.max_steps - state.global_step) * elapsed / steps
                    if counter is not None:  # each process counts its own batches
                        rate = (counter.tokens - first_tokens) * args.world_size / elapsed
            return TrainingProgress(state.global_step, state.max_steps, self.last_loss, rate, eta)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.last_loss = float(logs["loss"])
                hooks.on_metrics({"step": state.global_step, "epoch": state.epoch, "loss": self.last_loss,
                                  "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm")})
            if "eval_loss" in logs:
                hooks.on_metrics({"step": state.global_step, "epoch": state.epoch,
                                  "eval_loss": float(logs["eval_loss"])})
            if hooks.on_progress and state.is_world_process_zero and "loss" in logs:
                hooks.on_progress(self.progress(args, state))

        def on_step_end(self, args, state, control, **kwargs):
            if hooks.should_stop():
                control.should_training_stop = True
            elif hooks.should_pause():
                # Runs after the Trainer's own flow callback, so this save happens at this very step.
                control.should_save = True
                control.should_training_stop = True
                self.paused = state.global_step < state.max_steps
            elif state.global_step >= state.max_steps and state.global_step % args.save_steps:
                # The flow callback also checkpoints the last step (weights and optimizer state: gigabytes, inside
                # the timed loop). final/ is written right after, so only [train] save_every's checkpoints are.
                control.should_save = False

        def on_save(self, args, state, control, **kwargs):
            checkpoint_dir = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if is_complete(checkpoint_dir) and state.is_world_process_zero:
                hooks.on_checkpoint(state.global_step, self.last_loss, checkpoint_dir)
                pruned = prune(Path(args.output_dir), keep_checkpoints)
                if pruned and hooks.on_pruned:
                    hooks.on_pruned(pruned)

    return RegistryCallback()


def _disk_failure(exc: BaseException, where: Path) -> str | None:
    """Why a write under `where` failed, when the cause is the disk (full, read-only, no permission)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                  errno.EPERM):
        return exc.strerror or os.strerror(exc.errno)
    text = str(exc)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    if "No space left on device" in text or "os error 28" in text or (free is not None and free < LOW_DISK_BYTES):
        return f"{os.strerror(errno.ENOSPC)} ({free} bytes free)" if free is not None else os.strerror(errno.ENOSPC)
    return None


def _staged_trainer_class(base=None):
    from transformers import Trainer

    class StagedTrainer(base or Trainer):
        """A Trainer whose checkpoints appear whole or not at all (see runner/checkpoints.py).

        The stock `_save_checkpoint` writes everything under `_get_output_dir()`; pointing that
        at the staging directory while it runs, then publishing the result, is the whole change.
        """

        _staging: Path | None = None
        # Written into each checkpoint's marker (runner/checkpoint_identity.py); set by the recipe.
        identity: dict | None = None

        def _get_output_dir(self, trial) -> str:
            return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial) -> None:
            root = Path(self.args.output_dir)
            step = self.state.global_step
            self._staging = staging_dir(root)
            staged = self._staging / f"checkpoint-{step}"
            try:
                super()._save_checkpoint(model, trial)
                # Under torchrun every process writes its part (its RNG state) into the one staging
                # directory; the first publishes once all are done, and none goes on before that.
                self.accelerator.wait_for_everyone()
                if self.is_world_process_zero():
                    losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
                    publish(staged, root, step=step, loss=losses[-1] if losses else None, identity=self.identity)
                self.accelerator.wait_for_everyone()
            except Exception as exc:
                reason = _disk_failure(exc, root)
                shutil.rmtree(staged, ignore_errors=True)
                if reason is None:
                    raise
                raise RunFailed(f"cannot write the checkpoint at step {step} under {root}: {reason}; "
                                "earlier checkpoints are intact") from exc
            finally:
                self._staging = None

    return StagedTrainer


def save_final(model, tokenizer, final_dir: Path, facts: dict[str, Any]) -> None:
    """Write the final weights to a staging directory, then rename it into place.

    `facts` (step, loss, time) go in last, as FINAL_FACTS: a later attempt that finds them
    skips training and goes straight to evaluation.
    """
    staging = final_dir.with_name(final_dir.name + ".staging")
    try:
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / FINAL_FACTS).write_text(json.dumps(facts), encoding="utf-8")
        fsync_tree(staging)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(staging, final_dir)
    except Exception as exc:
        reason = _disk_failure(exc, final_dir.parent)
        shutil.rmtree(staging, ignore_errors=True)
        if reason is None:
            raise
        raise RunFailed(f"cannot write the final model to {final_dir}: {reason}") from exc


def save_final_once(trainer, tokenizer, final_dir: Path, facts: dict[str, Any]) -> None:
    """save_final from the first process only (under torchrun all of them get here), the others waiting."""
    if trainer.is_world_process_zero():
        save_final(trainer.model, tokenizer, final_dir, facts)
    trainer.accelerator.wait_for_everyone()


def finished_outcome(spec: Spec, model_path: str, tokenizer, output_dir: Path, hooks: TrainHooks, device: str,
                     identity: TrainingIdentity, **data_facts: Any) -> TrainOutcome | None:
    """The outcome of an attempt that finished training but died later (e.g. in evaluation): no retraining.

    Final weights trained with another spec, tokenizer or data are refused, as a checkpoint would be.
    """
    final_dir, checkpoints_dir = output_dir / "final", output_dir / "checkpoints"
    if not (final_dir / FINAL_FACTS).is_file():
        return None
    facts = json.loads((final_dir / FINAL_FACTS).read_text(encoding="utf-8"))
    check_resumable(final_dir, facts.get("identity"), identity)
    if hooks.on_start:
        hooks.on_start(facts["global_step"], complete_checkpoints(checkpoints_dir))
    return TrainOutcome(model=load_trained(spec, model_path, final_dir, device), tokenizer=tokenizer,
                        final_dir=final_dir, global_step=facts["global_step"], final_loss=facts["final_loss"],
                        train_seconds=facts["train_seconds"], resumed_from=facts["global_step"], **data_facts)


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


def train(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str | None = None) -> TrainOutcome:
    """Train per `spec`; relative paths resolve against `workdir`; files go under `output_dir`.

    Continues from the last complete checkpoint under `output_dir`, if there is one. `device`
    ("cpu" or "cuda"; default: a GPU when there is one) is where the model trains.
    """
    from transformers import set_seed
    from tunelab.runner.data_fingerprint import fingerprint_prepared

    device = device or pick_device()
    check_device(spec, device)
    if spec.method.kind == "dpo":
        from tunelab.runner.preference import train_preference

        return train_preference(spec, workdir=workdir, output_dir=output_dir, hooks=hooks, device=device)
    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    data = prepare_data(spec, tokenizer, workdir)
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
    callback = _registry_callback(hooks, spec.train.keep_checkpoints, collator)
    trainer = _staged_trainer_class()(
        model=model,
        args=_training_arguments(spec, checkpoints_dir, device),
        train_dataset=_ListDataset(data.train),
        eval_dataset=_ListDataset(data.validation, validation=True) if data.validation else None,
        data_collator=collator,
        callbacks=[callback],
    )
    return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                       final_dir=final_dir, validate=bool(data.validation), **data_facts)


def run_trainer(trainer, callback, hooks: TrainHooks, *, resume_from: CompleteCheckpoint | None,
                identity: TrainingIdentity, tokenizer, final_dir: Path, validate: bool = False,
                **data_facts: Any) -> TrainOutcome:
    """What every recipe does once its Trainer is built: train (from `resume_from`), stop when cancelled,
    measure the final validation loss (`validate`), and save the final weights unless paused."""
    from transformers import PrinterCallback

    trainer.identity = identity.to_json()
    # Our own progress bar and the registry carry the logs; the Trainer's printer would repeat them.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with hooks.polling():
        result = trainer.train(resume_from_checkpoint=str(resume_from.path) if resume_from else None)
    seconds = time.perf_counter() - started
    if hooks.should_stop():
        raise RunCancelled("cancelled while training")
    if validate and not callback.paused:
        _evaluate_at_end(trainer)
    final_loss = callback.last_loss if callback.last_loss is not None else float(result.training_loss)
    outcome = TrainOutcome(model=trainer.model, tokenizer=tokenizer, final_dir=final_dir,
                           global_step=trainer.state.global_step, final_loss=final_loss, train_seconds=seconds,
                           resumed_from=resume_from.step if resume_from else 0, interrupted=callback.paused,
                           **data_facts)
    if not outcome.interrupted:
        save_final_once(trainer, tokenizer, final_dir,
                        {"global_step": outcome.global_step, "final_loss": final_loss, "train_seconds": seconds,
                         "identity": identity.to_json()})
    return outcome
