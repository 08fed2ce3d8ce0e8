"""What a search optimises: the objectives besides task names, their direction, and a run's value of one.

Plain Python with no pydantic, so `tunelab search show` (a query command) reads objectives as fast as `ls` reads
runs; the [search] table itself is experiments/search.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from tunelab.experiments.benchmarks import leaderboard_average

# Objectives that are no task name; any task the spec evaluates is one too (its fine-tuned headline value).
AVERAGE, LOSS, VAL_LOSS = "average", "loss", "val_loss"
LOSSES = (LOSS, VAL_LOSS)


def maximized(objective: str, direction: str | None) -> bool:
    """Whether larger is better: as `direction` says, else minimise losses and maximise scores."""
    if direction is not None:
        return direction == "maximize"
    return objective not in LOSSES


def objective_value(objective: str, *, scores: Mapping[str, float], final_loss: float | None,
                    val_loss: float | None) -> float | None:
    """A run's value of `objective`: from its fine-tuned headline scores by task, its final training loss or its
    final validation loss; None when the run has none."""
    if objective == LOSS:
        return final_loss
    if objective == VAL_LOSS:
        return val_loss
    if objective == AVERAGE:
        return leaderboard_average(scores)
    return scores.get(objective)
