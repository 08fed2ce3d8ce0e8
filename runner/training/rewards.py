"""What scores the completions of online RL: a reward run's model (RLHF), a judge model asked a question about each
completion (RLAIF), or the user's Python function (verifiable tasks); each as the reward function trl's trainers
call, wrapped so that a few completions are kept, with their prompts and rewards, at a few steps.

The orchestration (runner/reward_source.py) finds the source in the registry and hands it to training as a
RewardSource; its digest pins the source in every checkpoint, so a resume against another reward is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunelab.experiments.schema import COMPLETION_PLACEHOLDER, PROMPT_PLACEHOLDER
from tunelab.runner.data.reward_pairs import reward_ids
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.models import load_model, load_tokenizer
from tunelab.runner.training.reward_model import load_reward_model, score_ids

# The judge's two answers; its reward is the probability of the first against the second.
JUDGE_ANSWERS = ("Yes", "No")
# Completions kept per kept step (those of the step's first prompts), and about how many steps keep them.
SAMPLES_PER_STEP = 4
SAMPLED_STEPS = 4

RewardFunction = Callable[..., list[float]]


@dataclass(frozen=True)
class RewardSource:
    """A resolved reward source. kind "run": `model_dir` is the reward run's final weights (`base_dir` its base,
    for an adapter); "judge": `model_dir` the judge's weights (a directory or a hub id) and `template` the question;
    "function": `name` is "module:function", imported from `workdir`."""

    kind: Literal["run", "judge", "function"]
    name: str
    digest: str | None
    model_dir: str | None = None
    base_dir: str | None = None
    template: str | None = None
    workdir: Path | None = None
    dtype: str = "float32"


def import_reward_function(name: str, workdir: Path) -> tuple[RewardFunction, str]:
    """The function "module:function" imported from `workdir` (the directory submit ran in) or the installed
    packages, and the sha256 of its module's source file (of its name, where there is no file)."""
    module_name, _, attribute = name.partition(":")
    sys.path.insert(0, str(workdir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error it raises on import is theirs to see
        raise RunFailed(f'method.reward_function = "{name}": cannot import {module_name} from {workdir}: '
                        f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(workdir))
    function = getattr(module, attribute, None)
    if not callable(function):
        raise RunFailed(f'method.reward_function = "{name}": {module_name} has no function {attribute}')
    source = inspect.getsourcefile(module) if hasattr(module, "__file__") else None
    payload = Path(source).read_bytes() if source else name.encode()
    return function, hashlib.sha256(payload).hexdigest()


def _checked(name: str, function: RewardFunction) -> RewardFunction:
    """The user's function, its failures and malformed results turned into one clear error."""
    def reward(**kwargs: Any) -> list[float]:
        try:
            result = function(**kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
        except Exception as exc:
            raise RunFailed(f'method.reward_function = "{name}" failed: {type(exc).__name__}: {exc}') from exc
        values = list(result)
        if len(values) != len(kwargs["completions"]) or not all(
                v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in values):
            raise RunFailed(f'method.reward_function = "{name}" must return one finite number per completion '
                            f"({len(kwargs['completions'])}), got {values[:8]!r}")
        return values

    return reward


def _reward_model_function(model, tokenizer) -> RewardFunction:
    """The reward run's score of prompt + completion + EOS, laid out as it learned (runner/data/reward_pairs.py)."""
    def reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return score_ids(model, tokenizer.pad_token_id,
                         [reward_ids(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)])

    return reward


def judge_question(template: str, prompt: str, completion: str) -> str:
    return template.replace(PROMPT_PLACEHOLDER, prompt).replace(COMPLETION_PLACEHOLDER, completion)


def _answer_texts(question: str) -> tuple[str, str]:
    """The judge's answers as they follow the question: after a space, unless the question ends in whitespace."""
    space = "" if question[-1:].isspace() else " "
    return space + JUDGE_ANSWERS[0], space + JUDGE_ANSWERS[1]


def judge_scores(model, tokenizer, questions: list[str]) -> list[float]:
    """The probability the judge gives "Yes" rather than "No" after each question (log-probabilities of the whole
    answer, each answer's tokens summed)."""
    import torch

    device = next(model.parameters()).device
    rows: list[tuple[list[int], int]] = []  # ids, where the answer starts
    for question in questions:
        asked = tokenizer(question)["input_ids"]
        for answer in _answer_texts(question):
            rows.append((asked + tokenizer(answer, add_special_tokens=False)["input_ids"], len(asked)))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (sequence, _) in enumerate(rows):
        ids[row, :len(sequence)] = torch.tensor(sequence)
        mask[row, :len(sequence)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    totals = []
    for row, (sequence, start) in enumerate(rows):
        targets = torch.tensor(sequence[start:], device=device)
        positions = torch.arange(start - 1, len(sequence) - 1, device=device)
        totals.append(log_probs[row, positions, targets].sum().item())
    return [1 / (1 + math.exp(no - yes)) for yes, no in zip(totals[0::2], totals[1::2], strict=True)]


def _judge_function(model, tokenizer, template: str, originals: dict[str, str]) -> RewardFunction:
    """The judge's verdict on each completion; {prompt} is the prompt as the data file wrote it."""
    def reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        questions = [judge_question(template, originals.get(p, p), c) for p, c in zip(prompts, completions,
                                                                                     strict=True)]
        return judge_scores(model, tokenizer, questions)

    return reward


def reward_function(source: RewardSource, device: str, originals: dict[str, str]) -> RewardFunction:
    """The source as a reward function trl calls: (prompts, completions, completion_ids, **row fields) -> rewards.
    `originals` maps each rendered prompt to the prompt as written (for a judge's {prompt})."""
    if source.kind == "function":
        function, _ = import_reward_function(source.name, source.workdir or Path.cwd())
        return _checked(source.name, function)
    if source.kind == "run":
        model, tokenizer = load_reward_model(Path(source.model_dir), Path(source.base_dir) if source.base_dir else None,
                                             source.dtype, device)
        return _reward_model_function(model, tokenizer)
    judge = load_model(source.model_dir, source.dtype).to(device).eval()
    return _judge_function(judge, load_tokenizer(source.model_dir), source.template or "", originals)


def sampled_step(step: int, total: int) -> bool:
    """Whether completions are kept at `step` of `total`: the first, the last and about SAMPLED_STEPS between."""
    every = max(1, math.ceil(total / SAMPLED_STEPS))
    return step == 1 or step == total or step % every == 0


class KeepingSamples:
    """A reward function that also hands a few of the completions it scores, with their prompts and rewards, to
    `on_samples` at the sampled steps. trl calls it with the trainer state: the completions train step + 1."""

    __name__ = "reward"  # trl logs the function's mean reward under its name

    def __init__(self, function: RewardFunction, on_samples: Callable[[int, list[dict[str, Any]]], None] | None,
                 originals: dict[str, str]) -> None:
        self.function = function
        self.on_samples = on_samples
        self.originals = originals

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        rewards = self.function(prompts=prompts, completions=completions, **kwargs)
        state = kwargs.get("trainer_state")
        if self.on_samples is not None and state is not None:
            step = state.global_step + 1
            if sampled_step(step, state.max_steps):
                self.on_samples(step, [
                    {"prompt": self.originals.get(p, p), "completion": c, "reward": None if r is None else float(r)}
                    for p, c, r in list(zip(prompts, completions, rewards, strict=True))[:SAMPLES_PER_STEP]])
        return rewards
