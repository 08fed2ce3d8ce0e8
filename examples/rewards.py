"""Reward functions for online RL on the demo data (`[method] reward_function = "examples.rewards:NAME"`, submitted
from the repository root). trl calls them with the prompts, the completions, their token ids and every other
field of the prompt rows, one value per completion."""

from __future__ import annotations


def names_the_capital(prompts: list[str], completions: list[str], capital: list[str], **kwargs) -> list[float]:
    """1 for a completion that starts with the right capital, 0.5 for one that names it later, else 0."""
    rewards = []
    for completion, answer in zip(completions, capital, strict=True):
        text = completion.strip()
        rewards.append(1.0 if text.startswith(answer) else 0.5 if answer in text else 0.0)
    return rewards
