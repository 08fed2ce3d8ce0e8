"""One recipe per method family, picked by the spec's `[method] kind`.

supervised (runner/training/supervised.py): full, freeze, lora, qlora and prompt_tuning, on instruction, chat or
text rows; preference (runner/training/preference.py): dpo, on prompt/chosen/rejected rows; reward models
(runner/training/reward_model.py): reward, on prompt/chosen/rejected rows; online RL (runner/training/online_rl.py):
rloo and grpo, on prompt rows, against a reward source; kto (runner/training/kto.py), on unpaired feedback. All build
their Trainer from runner/training/trainer.py and resume through runner/training/resume.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from tunelab.experiments.schema import ONLINE_RL_KINDS, Spec
from tunelab.runner.data.fingerprint import fingerprint_data
from tunelab.runner.training.kto import fingerprint_feedback_data, train_kto
from tunelab.runner.training.methods import check_device
from tunelab.runner.training.models import load_tokenizer, pick_device, resolve_model_path
from tunelab.runner.training.online_rl import fingerprint_prompt_data, train_online_rl
from tunelab.runner.training.options import check_cuda_options
from tunelab.runner.training.preference import train_preference
from tunelab.runner.training.reward_model import fingerprint_reward_data, train_reward
from tunelab.runner.training.rewards import RewardSource
from tunelab.runner.training.supervised import train_supervised
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome

# The recipe of each kind that is not supervised fine-tuning.
_RECIPES: dict[str, Callable[..., TrainOutcome]] = {"dpo": train_preference, "reward": train_reward,
                                                    "rloo": train_online_rl, "grpo": train_online_rl, "kto": train_kto}
# How each of those fingerprints its data, when it is not as supervised data is prepared.
_FINGERPRINTS: dict[str, Callable[[Spec, object, Path], str]] = {
    "reward": fingerprint_reward_data, "rloo": fingerprint_prompt_data, "grpo": fingerprint_prompt_data,
    "kto": fingerprint_feedback_data}


def train(spec: Spec, *, workdir: Path, output_dir: Path, hooks: TrainHooks, device: str | None = None,
          reward: RewardSource | None = None) -> TrainOutcome:
    """Train per `spec`; relative paths resolve against `workdir`; files go under `output_dir`.

    Continues from the last complete checkpoint under `output_dir`, if there is one. `device`
    ("cpu" or "cuda"; default: a GPU when there is one) is where the model trains. `reward`: what scores the
    completions of online RL (rloo, grpo), resolved by runner/reward_source.py.
    """
    device = device or pick_device()
    check_device(spec, device)
    check_cuda_options(spec, device)
    recipe = _RECIPES.get(spec.method.kind, train_supervised)
    if spec.method.kind in ONLINE_RL_KINDS:
        recipe = partial(recipe, reward=reward)
    return recipe(spec, workdir=workdir, output_dir=output_dir, hooks=hooks, device=device)


def fingerprint_spec_data(spec: Spec, workdir: Path) -> str:
    """The data fingerprint a run of `spec` records, without training: the tokenizer alone is loaded, and the data
    prepared as the spec's recipe prepares it."""
    tokenizer = load_tokenizer(resolve_model_path(spec.model.base, workdir), spec.model.revision)
    return _FINGERPRINTS.get(spec.method.kind, fingerprint_data)(spec, tokenizer, workdir)
