"""The [train] options that reach the Trainer as they are: gradient checkpointing, the optimizer, warmup, clipping,
the attention kernel, and steering by validation (early stopping, the best checkpoint).

`check_options` refuses at submit what the installed packages cannot do (an optimizer the installed transformers
does not name, flash-attn missing) and what the spec asks of a validation set it does not have; `check_cuda_options`
refuses at the start of a run, in one line and before anything is loaded, what needs a CUDA GPU where there is none.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tunelab.experiments.errors import SpecError
from tunelab.experiments.schema import Spec
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.methods import require_bitsandbytes
from tunelab.runner.training.strategies import strategy_problem
from tunelab.runner.training.trackers import tracker_problem

# Parts of an optimizer name that mean bitsandbytes (its 8-bit and paged optimizers), which needs CUDA.
_BITSANDBYTES_MARKS = ("8bit", "paged", "bnb")


def trainer_optimizer_names() -> list[str]:
    """The optimizer names the installed transformers' Trainer takes (its OptimizerNames)."""
    from transformers.training_args import OptimizerNames

    return [name.value for name in OptimizerNames]


def needs_bitsandbytes(optimizer: str | None) -> bool:
    return optimizer is not None and any(mark in optimizer for mark in _BITSANDBYTES_MARKS)


def option_problem(spec: Spec) -> tuple[tuple[str, ...], str] | None:
    """Where and what is wrong with the [train] options of `spec` on this installation, or None."""
    train = spec.train
    if train.optimizer is not None:
        names = trainer_optimizer_names()
        if train.optimizer not in names:
            import difflib

            close = difflib.get_close_matches(train.optimizer, names, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            return ("train", "optimizer"), (f"unknown optimizer {train.optimizer!r}: not one of the installed "
                                            f"transformers' OptimizerNames{hint}")
        if spec.method.paged_optimizer:
            return ("train", "optimizer"), "set train.optimizer or method.paged_optimizer, not both"
    if train.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return ("train", "attn_implementation"), ('"flash_attention_2" needs the flash-attn package, which is not '
                                                  'installed (use "sdpa")')
    if spec.method.loraplus_lr_ratio and spec.method.kind == "dpo":
        return ("method", "loraplus_lr_ratio"), 'applies to kind = "lora" and "qlora", not "dpo"'
    for key in ("early_stopping_patience", "load_best"):
        if getattr(train, key) and spec.method.kind == "dpo":
            return ("train", key), 'steers by the validation loss of the supervised kinds, not kind = "dpo"'
        if getattr(train, key) and spec.data.validation is None:
            return ("train", key), "needs [data] validation (the loss it steers by)"
    return tracker_problem(spec) or strategy_problem(spec)


def check_options(loaded: list) -> None:
    """Raise SpecError (file, line, field) for the first option of the loaded specs (experiments/loader.py
    LoadedSpec) that this installation cannot honour: what `submit` and `run` refuse before storing anything."""
    for item in loaded:
        problem = option_problem(item.spec)
        if problem is not None:
            loc, message = problem
            file, line = item.locate(loc)
            raise SpecError(file, message, line=line, field=".".join(loc))


def check_cuda_options(spec: Spec, device: str) -> None:
    """Refuse, in one line, [train] options that need a CUDA GPU when there is none."""
    if device == "cuda":
        if needs_bitsandbytes(spec.train.optimizer):
            require_bitsandbytes(f'train.optimizer = "{spec.train.optimizer}"')
        return
    if needs_bitsandbytes(spec.train.optimizer):
        raise RunFailed(f'train.optimizer = "{spec.train.optimizer}" needs a CUDA GPU (bitsandbytes); none is '
                        'available (use "adamw_torch")')
    if spec.train.attn_implementation == "flash_attention_2":
        raise RunFailed('train.attn_implementation = "flash_attention_2" needs a CUDA GPU; none is available '
                        '(use "sdpa")')


def train_option_arguments(spec: Spec) -> dict[str, Any]:
    """TrainingArguments for the [train] options beyond the basics (runner/training/trainer.py has those)."""
    train = spec.train
    arguments: dict[str, Any] = {"max_grad_norm": train.max_grad_norm}
    if train.optimizer is not None:
        arguments["optim"] = train.optimizer
    if train.gradient_checkpointing:
        # Non-reentrant checkpointing also passes gradients through frozen inputs (LoRA, prompt tuning).
        arguments.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
    if (train.load_best or train.early_stopping_patience) and spec.data.validation is not None:
        arguments.update(load_best_model_at_end=train.load_best, metric_for_best_model="eval_loss",
                         greater_is_better=False)
    if train.early_stopping_patience and spec.data.validation is not None:
        # The early-stopping counter is in each checkpoint's trainer state; this makes a resume read it back.
        arguments["restore_callback_states_from_checkpoint"] = True
    return arguments


def steering_callbacks(spec: Spec) -> list:
    """transformers' EarlyStoppingCallback when [train] early_stopping_patience is set. Its counter is part of each
    checkpoint's trainer state, so a resumed run goes on counting where it stopped."""
    if not spec.train.early_stopping_patience or spec.data.validation is None:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=spec.train.early_stopping_patience,
                                  early_stopping_threshold=spec.train.early_stopping_threshold)]


def best_checkpoint_step(trainer) -> int | None:
    """The step whose checkpoint became the final weights under [train] load_best; None otherwise."""
    if not trainer.args.load_best_model_at_end:
        return None
    return trainer.state.best_global_step or None


def point_best_at_published(state, checkpoints_root, staged) -> None:
    """Point the trainer state's best checkpoint at where it is published, not at the staging directory it was
    written in (runner/training/checkpoints.py), and rewrite the staged state to match, so that the end of training
    and a resumed run find it."""
    if not state.best_global_step or state.best_global_step != state.global_step:
        return  # the Trainer pointed it at an earlier, published checkpoint (or at none)
    state.best_model_checkpoint = str(checkpoints_root / f"checkpoint-{state.best_global_step}")
    state_file = staged / "trainer_state.json"
    if state_file.is_file():
        state.save_to_json(str(state_file))
