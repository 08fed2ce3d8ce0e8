"""The Trainer every recipe builds and runs: its arguments from the spec, staged checkpoints, the callback that
reports to the worker (metrics, checkpoints, progress, stop and pause), and what follows training.

A recipe (runner/training/supervised.py, runner/training/preference.py) prepares its data and model, builds a
Trainer from `staged_trainer_class` with `training_arguments` and `registry_callback`, and hands it to
`run_trainer`, which trains from the checkpoint it resumes from and saves the final weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.schema import Spec
from tunelab.runner.errors import RunCancelled, RunFailed
from tunelab.runner.training.checkpoint_identity import TrainingIdentity
from tunelab.runner.training.checkpoints import (
    CompleteCheckpoint,
    disk_failure,
    is_complete,
    prune,
    publish,
    staging_dir,
)
from tunelab.runner.training.final_weights import save_final_once
from tunelab.runner.training.methods import optimizer_arguments
from tunelab.runner.training.options import best_checkpoint_step, point_best_at_published, train_option_arguments
from tunelab.runner.training.progress import TrainingProgress
from tunelab.runner.training.trackers import tracker_arguments

# Set on validation examples (see runner/training/supervised.py) so the token counter leaves them out of tokens trained.
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
    # Raises when the run is no longer this worker's (runner/training/registry_hooks.py): called just before a
    # checkpoint or the final weights are renamed into place, so a stale owner publishes no file.
    before_publish: Callable[[], None] = lambda: None
    # A search's trial: asked at each validation loss (step, loss) before the last step; True stops training
    # there, with a checkpoint at that step (runner/search.py decides).
    should_prune: Callable[[int, float], bool] | None = None
    # Online RL: completions kept to be shown (prompt, completion, reward dicts), for the step they train.
    on_samples: Callable[[int, list[dict[str, Any]]], None] | None = None
    # on_metrics and on_progress run inside every logged step, so they may only buffer; this writes what they
    # buffered. Called before each checkpoint is written: a checkpoint on disk never lacks a row up to its step.
    flush: Callable[[], None] = lambda: None
    # Entered around training and the validation after it; buffered reports are written while inside (in the
    # background) and on leaving.
    recording: Callable[[], AbstractContextManager] = contextlib.nullcontext


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
    pruned: bool = False  # stopped early by should_prune, with a checkpoint at global_step
    # What became of the data files' rows (runner/data/prepare.py DataStats), for the registry.
    data_stats: dict[str, Any] | None = None
    # Hash of the features trained on (runner/data/fingerprint.py); None: the caller computes it from the spec.
    data_fingerprint: str | None = None
    # [train] load_best: the step whose checkpoint became the final weights; None when not steering by validation.
    best_step: int | None = None


def training_arguments(spec: Spec, checkpoints_dir: Path, device: str, arguments_class=None, **extra: Any):
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
        warmup_steps=train.warmup_steps or train.warmup_ratio,  # transformers takes a float below 1 as a share
        weight_decay=train.weight_decay,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_every,
        seed=spec.experiment.seed,
        data_seed=spec.experiment.seed,
        **tracker_arguments(spec, checkpoints_dir.parent),
        use_cpu=device == "cpu",
        bf16=device == "cuda" and spec.model.dtype == "bfloat16",
        fp16=device == "cuda" and spec.model.dtype == "float16",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Processes launched by torchrun on CPUs (the distributed path's tests) talk over gloo; GPUs over NCCL.
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        **_evaluation_arguments(spec),
        # A trainer's own configuration (`extra`) has the last word.
        **{**optimizer_arguments(spec.method, device), **train_option_arguments(spec), **extra},
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


def _evaluate_at_end(trainer) -> None:
    """The validation loss of the final weights, unless eval_every just measured it."""
    state = trainer.state
    if not any(entry.get("step") == state.global_step and "eval_loss" in entry for entry in state.log_history):
        trainer.evaluate()


def registry_callback(hooks: TrainHooks, keep_checkpoints: int, counter: TokenCounter | None = None):
    """The Trainer callback that reports to `hooks` (the registry, for the worker) and obeys stop and pause."""
    from transformers import TrainerCallback

    class RegistryCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_loss: float | None = None
            self.paused = False
            self.pruned = False
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
                if (hooks.should_prune is not None and state.global_step < state.max_steps
                        and hooks.should_prune(state.global_step, float(logs["eval_loss"]))):
                    # Evaluation runs before the step's save: this checkpoint is the pruned trial's last.
                    control.should_save = True
                    control.should_training_stop = True
                    self.pruned = True
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
            elif (state.global_step >= state.max_steps and state.global_step % args.save_steps
                  and not args.load_best_model_at_end):  # the last step's evaluation may be the best
                # The flow callback also checkpoints the last step (weights and optimizer state: gigabytes, inside
                # the timed loop). final/ is written right after, so only [train] save_every's checkpoints are.
                control.should_save = False

        def on_save(self, args, state, control, **kwargs):
            checkpoint_dir = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if is_complete(checkpoint_dir) and state.is_world_process_zero:
                hooks.on_checkpoint(state.global_step, self.last_loss, checkpoint_dir)
                pruned = prune(Path(args.output_dir), keep_checkpoints, keep_step=state.best_global_step)
                if pruned and hooks.on_pruned:
                    hooks.on_pruned(pruned)

    return RegistryCallback()


def staged_trainer_class(base=None):
    from transformers import Trainer

    class StagedTrainer(base or Trainer):
        """A Trainer whose checkpoints appear whole or not at all (see runner/training/checkpoints.py).

        The stock `_save_checkpoint` writes everything under `_get_output_dir()`; pointing that
        at the staging directory while it runs, then publishing the result, is the whole change.
        """

        _staging: Path | None = None
        # Written into each checkpoint's marker (runner/training/checkpoint_identity.py); set by the recipe.
        identity: dict | None = None
        # Called before a checkpoint is written (TrainHooks.flush); set by run_trainer.
        before_checkpoint: Callable[[], None] | None = None
        # TrainHooks.before_publish; set by run_trainer.
        before_publish: Callable[[], None] = staticmethod(lambda: None)

        def _get_output_dir(self, trial) -> str:
            return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial) -> None:
            root = Path(self.args.output_dir)
            step = self.state.global_step
            if self.before_checkpoint is not None:
                self.before_checkpoint()  # this step's logs are in: the Trainer logs before it saves
            self._staging = staging_dir(root)
            staged = self._staging / f"checkpoint-{step}"
            try:
                super()._save_checkpoint(model, trial)
                point_best_at_published(self.state, root, staged)
                # Under torchrun every process writes its part (its RNG state) into the one staging
                # directory; the first publishes once all are done, and none goes on before that.
                self.accelerator.wait_for_everyone()
                if self.is_world_process_zero():
                    losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
                    self.before_publish()
                    publish(staged, root, step=step, loss=losses[-1] if losses else None, identity=self.identity)
                self.accelerator.wait_for_everyone()
            except Exception as exc:
                reason = disk_failure(exc, root)
                shutil.rmtree(staged, ignore_errors=True)
                if reason is None:
                    raise
                raise RunFailed(f"cannot write the checkpoint at step {step} under {root}: {reason}; "
                                "earlier checkpoints are intact") from exc
            finally:
                self._staging = None

    return StagedTrainer


def _trained_to_the_end(trainer, checkpoint: CompleteCheckpoint) -> bool:
    """Whether `checkpoint` is at (or past) the last step: the attempt that wrote it died before final/ existed."""
    return 0 < trainer.args.max_steps <= checkpoint.step


def _finish_from(trainer, checkpoint: CompleteCheckpoint) -> float | None:
    """Take the weights and state of a checkpoint at the last step, without training: the Trainer, resumed there,
    would train one step more before it looks at max_steps (unless the step ends an epoch). Returns its loss."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(str(checkpoint.path))
    trainer.state = TrainerState.load_from_json(str(checkpoint.path / "trainer_state.json"))
    return checkpoint.loss


def run_trainer(trainer, callback, hooks: TrainHooks, *, resume_from: CompleteCheckpoint | None,
                identity: TrainingIdentity, tokenizer, final_dir: Path, validate: bool = False,
                **data_facts: Any) -> TrainOutcome:
    """What every recipe does once its Trainer is built: train (from `resume_from`), stop when cancelled,
    measure the final validation loss (`validate`), and save the final weights unless paused."""
    from transformers import PrinterCallback

    trainer.identity = identity.to_json()
    trainer.before_checkpoint = hooks.flush
    trainer.before_publish = hooks.before_publish
    # Our own progress bar and the registry carry the logs; the Trainer's printer would repeat them.
    trainer.remove_callback(PrinterCallback)
    with hooks.recording():
        started = time.perf_counter()
        if resume_from is not None and _trained_to_the_end(trainer, resume_from):
            training_loss = _finish_from(trainer, resume_from)
        else:
            with hooks.polling():
                result = trainer.train(resume_from_checkpoint=str(resume_from.path) if resume_from else None)
            training_loss = float(result.training_loss)
        seconds = time.perf_counter() - started
        if hooks.should_stop():
            raise RunCancelled("cancelled while training")
        if validate and not callback.paused and not callback.pruned:
            _evaluate_at_end(trainer)
    final_loss = callback.last_loss if callback.last_loss is not None else training_loss
    outcome = TrainOutcome(model=trainer.model, tokenizer=tokenizer, final_dir=final_dir,
                           global_step=trainer.state.global_step, final_loss=final_loss, train_seconds=seconds,
                           resumed_from=resume_from.step if resume_from else 0, interrupted=callback.paused,
                           pruned=callback.pruned, best_step=best_checkpoint_step(trainer), **data_facts)
    if not outcome.interrupted and not outcome.pruned:
        save_final_once(trainer, tokenizer, final_dir,
                        {"global_step": outcome.global_step, "final_loss": final_loss, "train_seconds": seconds,
                         "identity": identity.to_json(), "best_step": outcome.best_step},
                        before_rename=hooks.before_publish)
    return outcome
