"""The reward-model recipe (`[method] kind = "reward"`): a scalar head on the base, trained on preference pairs with
trl's RewardTrainer (the chosen answer must score above the rejected one), and scored by its pairwise accuracy on the
held-out pairs.

Top to bottom as the other recipes: load the tokenizer, tokenise the pairs (runner/data/reward_pairs.py), find where
to start (runner/training/resume.py), load the base as a sequence classifier (LoRA: the adapter and the head train),
build the staged Trainer with the registry callback and train (runner/training/trainer.py), save the final weights;
then the held-out accuracy, measured on the final weights (also when an earlier attempt already trained them).
An RL run loads a reward run's weights here too (`load_reward_model`) and scores completions with `score_ids`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tunelab.experiments.benchmarks import REWARD_ACCURACY, REWARD_ACCURACY_METRIC
from tunelab.experiments.schema import Spec
from tunelab.registry.scores import Score
from tunelab.runner.data.reward_pairs import RewardData, TokenPair, reward_data
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.checkpoint_identity import check_resumable, identity_for
from tunelab.runner.training.checkpoints import complete_checkpoints
from tunelab.runner.training.final_weights import final_facts, is_finished
from tunelab.runner.training.models import load_tokenizer, resolve_model_path, torch_dtype
from tunelab.runner.training.resume import resume_point
from tunelab.runner.training.trainer import (
    TrainHooks,
    TrainOutcome,
    registry_callback,
    run_trainer,
    staged_trainer_class,
    training_arguments,
)

# Pairs scored per forward pass when measuring accuracy and scoring completions.
SCORE_BATCH = 16


@dataclass
class PairwiseAccuracy:
    """How often the reward model scores the chosen answer of a held-out pair above the rejected one (a tie counts
    as wrong)."""

    value: float
    pairs: int

    @property
    def stderr(self) -> float:
        return math.sqrt(self.value * (1 - self.value) / self.pairs) if self.pairs else math.nan


@dataclass
class RewardOutcome(TrainOutcome):
    """A reward run's training outcome, with the held-out accuracy of its final weights (None when training stopped
    early: paused or pruned)."""

    accuracy: PairwiseAccuracy | None = None


def load_sequence_classifier(model_path: str, spec_dtype: str, revision: str | None = None):
    """A base model with a freshly initialised scalar head (num_labels = 1), as RewardTrainer trains it."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1,
                                                                  dtype=torch_dtype(spec_dtype), revision=revision)
    except (OSError, ValueError) as exc:
        raise RunFailed(f"cannot load {model_path!r} as a reward model (a sequence classifier): {exc}") from None


def load_reward_model(final_dir: Path, base_dir: Path | None, dtype: str, device: str):
    """A reward run's final weights, ready to score: the whole model, or its base with the adapter (and its head)
    merged in. `base_dir`: the base the adapter was trained on (None for whole weights)."""
    final_dir = Path(final_dir)
    tokenizer = load_tokenizer(str(final_dir))
    if (final_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        if base_dir is None:
            raise RunFailed(f"{final_dir} holds a LoRA adapter, and its base model was not given")
        base = load_sequence_classifier(str(base_dir), dtype)
        model = PeftModel.from_pretrained(base, str(final_dir)).merge_and_unload()
    else:
        model = load_sequence_classifier(str(final_dir), dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def score_ids(model, pad_token_id: int, sequences: list[list[int]]) -> list[float]:
    """The reward model's score of each token sequence (right-padded batches; the head reads the last real token)."""
    import torch

    scores: list[float] = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(sequences), SCORE_BATCH):
            batch = sequences[start:start + SCORE_BATCH]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, sequence in enumerate(batch):
                ids[row, :len(sequence)] = torch.tensor(sequence)
                mask[row, :len(sequence)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scores.extend(logits[:, 0].float().tolist())
    return scores


def pairwise_accuracy(model, pad_token_id: int, pairs: list[TokenPair]) -> PairwiseAccuracy:
    """The share of `pairs` whose chosen answer scores strictly above the rejected one."""
    was_training = model.training
    model.eval()
    chosen = score_ids(model, pad_token_id, [p.chosen_ids for p in pairs])
    rejected = score_ids(model, pad_token_id, [p.rejected_ids for p in pairs])
    model.train(was_training)
    right = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    return PairwiseAccuracy(right / len(pairs), len(pairs))


def _lora_config(spec: Spec):
    from peft import LoraConfig

    method = spec.method
    # SEQ_CLS: peft trains the scalar head ("score") in full beside the adapter, and saves it with it.
    return LoraConfig(r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout,
                      target_modules=list(method.target_modules), task_type="SEQ_CLS")


def _dataset(pairs: list[TokenPair]):
    from datasets import Dataset

    # Already tokenised (reward_ids): RewardTrainer then takes the ids as they are.
    return Dataset.from_dict({"chosen_ids": [p.chosen_ids for p in pairs],
                              "rejected_ids": [p.rejected_ids for p in pairs]})


def _outcome(outcome: TrainOutcome, accuracy: PairwiseAccuracy | None) -> RewardOutcome:
    return RewardOutcome(**{f.name: getattr(outcome, f.name) for f in fields(TrainOutcome)}, accuracy=accuracy)


def _finished(spec: Spec, model_path: str, tokenizer, data: RewardData, output_dir: Path, hooks: TrainHooks,
              device: str, identity, facts: dict[str, Any]) -> RewardOutcome | None:
    """An attempt that finished training but died before its score was recorded: no retraining."""
    final_dir = output_dir / "final"
    if not is_finished(final_dir):
        return None
    recorded = final_facts(final_dir)
    check_resumable(final_dir, recorded.get("identity"), identity)
    if hooks.on_start:
        hooks.on_start(recorded["global_step"], complete_checkpoints(output_dir / "checkpoints"))
    model, _ = load_reward_model(final_dir, Path(model_path), spec.model.dtype, device)
    outcome = TrainOutcome(model=model, tokenizer=tokenizer, final_dir=final_dir,
                           global_step=recorded["global_step"], final_loss=recorded["final_loss"],
                           train_seconds=recorded["train_seconds"], resumed_from=recorded["global_step"], **facts)
    return _outcome(outcome, pairwise_accuracy(model, tokenizer.pad_token_id, data.held_out))


def train_reward(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str) -> RewardOutcome:
    """Train a reward model per `spec` on `device`, then measure its held-out pairwise accuracy."""
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    set_seed(spec.experiment.seed)
    model_path = resolve_model_path(spec.model.base, workdir)
    tokenizer = load_tokenizer(model_path, spec.model.revision)
    data = reward_data(spec, tokenizer, workdir)
    facts = {"num_examples": len(data.train), "data_fingerprint": data.fingerprint(),
             "data_stats": data.stats.to_dict()}
    identity = identity_for(spec, tokenizer, facts["data_fingerprint"])
    finished = _finished(spec, model_path, tokenizer, data, output_dir, hooks, device, identity, facts)
    if finished is not None:
        return finished

    checkpoints_dir = output_dir / "checkpoints"
    resume_from = resume_point(checkpoints_dir, identity, hooks)
    # The head is initialised from the seed, before any adapter: the same seed, the same head.
    set_seed(spec.experiment.seed)
    model = load_sequence_classifier(model_path, spec.model.dtype, spec.model.revision)
    callback = registry_callback(hooks, spec.train.keep_checkpoints)
    # Pairs are already cut to max_seq_len (or left out) as [data] overlength says: trl filters nothing more.
    arguments = training_arguments(spec, checkpoints_dir, device, RewardConfig, max_length=None,
                                   activation_checkpointing=False)
    try:
        trainer = staged_trainer_class(RewardTrainer)(
            model=model, args=arguments, train_dataset=_dataset(data.train), eval_dataset=_dataset(data.held_out),
            processing_class=tokenizer, peft_config=_lora_config(spec) if spec.method.trains_lora else None,
            callbacks=[callback],
        )
    except ValueError as exc:  # trl's checks of the model and adapter (e.g. target_modules)
        raise RunFailed(f"reward: {exc}") from None
    outcome = run_trainer(trainer, callback, hooks, resume_from=resume_from, identity=identity, tokenizer=tokenizer,
                          final_dir=output_dir / "final", validate=True, **facts)
    if outcome.interrupted or outcome.pruned:
        return _outcome(outcome, None)
    return _outcome(outcome, pairwise_accuracy(trainer.model, tokenizer.pad_token_id, data.held_out))


def accuracy_score(accuracy: PairwiseAccuracy, *, run_id: int, data_fingerprint: str | None) -> Score:
    """A reward run's held-out accuracy as the score the registry records for it (the run's one score)."""
    return Score(task=REWARD_ACCURACY, metric=REWARD_ACCURACY_METRIC, value=accuracy.value, stderr=accuracy.stderr,
                 num_fewshot=0, n_samples=accuracy.pairs, model_kind="finetuned", model_name=f"run:{run_id}",
                 fingerprint={"held_out_pairs": accuracy.pairs, "data": data_fingerprint})


def fingerprint_reward_data(spec: Spec, tokenizer, workdir: Path) -> str:
    """The data fingerprint a reward run records, without training."""
    return reward_data(spec, tokenizer, workdir).fingerprint()
