"""The online RL recipe (`[method] kind = "rloo"` or `"grpo"`): the policy generates completions to the prompts of a
`format = "prompt"` file, a reward source scores them (runner/training/rewards.py), and trl's RLOOTrainer or
GRPOTrainer updates the policy (a LoRA adapter or every weight), held near the reference model by `beta`.

Top to bottom as the other recipes: load the tokenizer, render the prompts (runner/data/prompts.py), find where to
start (runner/training/resume.py), load the policy and the reward, build the staged Trainer with the registry
callback and train (runner/training/trainer.py), save the final weights. A second callback records the RL figures
of each step (reward mean and spread, KL to the reference, completion length).

Resume: a checkpoint holds the policy (adapter or weights), the optimizer and scheduler, the RNG states (Python,
NumPy, torch: the sampling of completions) and the trainer state. Completions are generated once per optimizer step
(trl's steps_per_generation is [train] grad_accum), so no generated batch is ever half used at a checkpoint, and
prompts are drawn in an order fixed by the seed and the epoch alone: a resumed run generates, scores and trains
exactly what an uninterrupted one does.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.runner.data.prompts import fingerprint_prompts, one_data_file, prompt_dataset, read_prompts
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoint_identity import identity_for
from tunelab.runner.training.methods import lora_config
from tunelab.runner.training.models import load_base, load_tokenizer, resolve_model_path
from tunelab.runner.training.resume import finished_outcome, resume_point
from tunelab.runner.training.rewards import KeepingSamples, RewardSource, reward_function
from tunelab.runner.training.trainer import (
    TrainHooks,
    TrainOutcome,
    registry_callback,
    run_trainer,
    staged_trainer_class,
    training_arguments,
)

# trl's names of the figures recorded per step, by the registry's.
RL_FIGURES = {"reward": "reward", "reward_std": "reward_std", "kl": "kl",
              "completion_length": "completions/mean_length"}


def rl_figures_callback(hooks: TrainHooks):
    """Records the RL figures trl logs at each logging step, on metric rows of their own."""
    from transformers import TrainerCallback

    class RLFigures(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs and state.is_world_process_zero:
                hooks.on_metrics({"step": state.global_step,
                                  **{ours: logs.get(theirs) for ours, theirs in RL_FIGURES.items()}})

    return RLFigures()


def _trainer_class(kind: str):
    """trl's trainer for `kind`, staged, drawing prompts in an order that depends on the seed and the epoch alone.

    trl's sampler draws each epoch's order from one generator that runs on from epoch to epoch, and the Trainer never
    replays the epochs a resume skips, so a run resumed in its second epoch would see the first epoch's order again.
    Seeding the generator afresh with seed + epoch at every epoch (the Trainer announces each one through set_epoch)
    gives both the same order.
    """
    from trl import GRPOTrainer, RLOOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochSeededSampler(RepeatSampler):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            if self.shuffle:
                self.generator.manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class OnlineRLTrainer(staged_trainer_class(RLOOTrainer if kind == "rloo" else GRPOTrainer)):
        def _get_train_sampler(self, dataset=None):
            return EpochSeededSampler(
                data_source=self.train_dataset if dataset is None else dataset,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset, seed=self.args.seed)

    return OnlineRLTrainer


def _arguments(spec: Spec, checkpoints_dir: Path, device: str):
    from trl import GRPOConfig, RLOOConfig

    method = spec.method
    return training_arguments(
        spec, checkpoints_dir, device, RLOOConfig if method.kind == "rloo" else GRPOConfig,
        beta=method.beta, num_generations=method.num_generations, max_completion_length=method.max_new_tokens,
        temperature=method.temperature, activation_checkpointing=False,
        # One generation per optimizer step ([train] batch_size x grad_accum completions): a checkpoint never
        # falls inside a generated batch.
        steps_per_generation=spec.train.grad_accum,
    )


def train_online_rl(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str,
                    reward: RewardSource | None = None) -> TrainOutcome:
    """Train per `spec` with RLOO or GRPO on `device`, the completions scored by `reward`."""
    from transformers import set_seed

    if reward is None:
        raise RunFailed(f'method.kind = "{spec.method.kind}" trains against a reward source, and none was resolved')
    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    rows = read_prompts(one_data_file(spec, workdir), tokenizer, spec.data.template)
    data_fingerprint = fingerprint_prompts(rows, tokenizer)
    identity = identity_for(spec, tokenizer, data_fingerprint, reward=reward.digest or reward.name)
    finished = finished_outcome(spec, model_path, tokenizer, output_dir, hooks, device, identity,
                                num_examples=len(rows), data_fingerprint=data_fingerprint)
    if finished is not None:
        return finished

    checkpoints_dir = output_dir / "checkpoints"
    resume_from = resume_point(checkpoints_dir, identity, hooks)
    model = load_base(model_path, spec, device)
    originals = {row.prompt: row.original for row in rows}
    scorer = KeepingSamples(reward_function(reward, device, originals), hooks.on_samples, originals)
    callback = registry_callback(hooks, spec.train.keep_checkpoints)
    try:
        trainer = _trainer_class(spec.method.kind)(
            model=model, reward_funcs=scorer, args=_arguments(spec, checkpoints_dir, device),
            train_dataset=prompt_dataset(rows), processing_class=tokenizer,
            peft_config=lora_config(spec.method) if spec.method.trains_lora else None,
            callbacks=[callback, rl_figures_callback(hooks)],
        )
    except ValueError as exc:  # trl's checks of the model, adapter and batch shapes
        raise RunFailed(f"{spec.method.kind}: {exc}") from None
    return run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                       final_dir=output_dir / "final", num_examples=len(rows), data_fingerprint=data_fingerprint)


def fingerprint_prompt_data(spec: Spec, tokenizer, workdir: Path) -> str:
    """The data fingerprint an online RL run records, without training."""
    return fingerprint_prompts(read_prompts(one_data_file(spec, workdir), tokenizer, spec.data.template), tokenizer)
