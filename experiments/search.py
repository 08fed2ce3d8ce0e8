"""The `[search]` table: a hyperparameter search declared beside the spec, as distributions over dotted spec keys.

    [search]
    sampler = "tpe"               # grid | random | tpe
    trials = 20
    objective = "capitals"        # average, a benchmark, a custom task, loss or val_loss
    pruner = "median"             # none | median | halving (on the validation loss)

    [search.params]
    "train.learning_rate" = {low = 1e-5, high = 1e-2, log = true}
    "method.r" = {choices = [4, 8, 16]}

Pure spec language: what a search is, its checks and its grid. Sampling (Optuna) is the runner's
(runner/search.py); the registry keeps the search and its trials (registry/searches.py).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.objectives import AVERAGE, LOSSES, VAL_LOSS, maximized
from tunelab.experiments.schema import Spec
from tunelab.experiments.sweep import format_value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Table):
    """One parameter's values: a list of choices, or a range from low to high (int or float, optionally log)."""

    choices: list[Any] | None = Field(None, min_length=1, description="The values to choose from.")
    low: float | None = Field(None, description="Lowest value of a range (inclusive).")
    high: float | None = Field(None, description="Highest value of a range (inclusive).")
    log: bool = Field(False, description="Draw the range on a log scale (low > 0).")
    step: float | None = Field(None, gt=0, description="Draw only low, low + step, ... (not with log).")
    type: Literal["int", "float"] | None = Field(
        None, description="int or float; unset = int when low and high are both written as integers.")

    @model_validator(mode="before")
    @classmethod
    def _remember_integers(cls, data: Any) -> Any:
        # TOML's 4 and 4.0 differ; pydantic would make both floats before the type is inferred.
        if isinstance(data, dict) and data.get("type") is None and "choices" not in data:
            low, high = data.get("low"), data.get("high")
            if type(low) is int and type(high) is int:
                data = {**data, "type": "int"}
        return data

    @model_validator(mode="after")
    def _a_list_or_a_range(self) -> Distribution:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None and (ranged or self.log or self.step is not None):
            raise ValueError("either choices or a range (low, high), not both")
        if self.choices is None:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high (or give choices = [...])")
            if self.low > self.high:
                raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("step and log cannot be combined")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError("an int range needs integer low and high")
        return self

    @property
    def is_int(self) -> bool:
        return self.type == "int"

    def extremes(self) -> list[Any]:
        """The values that bound it: every choice, or low and high (what the spec must accept)."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.is_int else [self.low, self.high]

    def describe(self) -> str:
        if self.choices is not None:
            return "choice of " + ", ".join(format_value(c) for c in self.choices)
        kind = "int" if self.is_int else "float"
        low, high = self.extremes()
        extra = " log" if self.log else (f" step {self.step:g}" if self.step is not None else "")
        return f"{kind} {format_value(low)} .. {format_value(high)}{extra}"


Sampler = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median", "halving"]


class SearchSection(_Table):
    """What a `[search]` table holds; validated on its own, then checked against the spec it searches."""

    sampler: Sampler = Field(
        "tpe", description="grid: every combination of the choices, in declaration order (as [sweep]); random: "
        "independent draws; tpe: Optuna's Tree-structured Parzen Estimator, which draws near the best so far.")
    trials: int | None = Field(
        None, gt=0, description="Trials that must finish (succeeded or pruned); failed ones are replaced. "
        "Unset: 10, or every combination for grid.")
    objective: str = Field(
        VAL_LOSS, min_length=1, description="What is optimised, any field `tunelab ls --sort` accepts for a run: "
        "average, a benchmark or custom task of [eval], loss (final training loss) or val_loss (final validation "
        "loss).")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="Unset: minimize for loss and val_loss, maximize for scores.")
    seed: int = Field(0, description="Seed of the sampler: the same seed draws the same trials.")
    startup_trials: int = Field(10, ge=0, description="tpe: random trials before the model is used.")
    pruner: Pruner = Field(
        "none", description="Stop unpromising trials early on their validation loss ([data] validation and "
        "[train] eval_every needed): median (worse than the median of finished trials at the same step) or "
        "halving (successive halving from the first evaluation step).")
    pruner_startup_trials: int = Field(1, ge=0, description="median: finished trials before any is pruned.")
    reduction_factor: int = Field(3, ge=2, description="halving: one trial in this many goes on at each rung.")
    max_trials: int | None = Field(
        None, gt=0, description="Budget: trials created at most, failed ones included; unset = twice trials.")
    max_hours: float | None = Field(None, gt=0, description="Budget: no new trial after this many hours.")
    max_gpu_hours: float | None = Field(
        None, gt=0, description="Budget: no new trial once the trials' training used this many GPU-hours.")
    params: dict[str, Distribution] = Field(
        min_length=1, description='Dotted spec keys to distributions, e.g. "train.learning_rate" = '
        "{low = 1e-5, high = 1e-2, log = true} or \"method.r\" = {choices = [4, 8, 16]}.")

    @model_validator(mode="after")
    def _sampler_fits(self) -> SearchSection:
        for key in self.params:
            if key.split(".")[0] == "experiment" and key.split(".")[-1] in ("name", "extends"):
                raise ValueError("experiment.name and experiment.extends cannot be searched")
        if self.sampler == "grid":
            ranged = [key for key, d in self.params.items() if d.choices is None]
            if ranged:
                raise ValueError(f"the grid sampler takes choices only; {', '.join(ranged)} is a range")
            if self.trials is not None and self.trials > self.grid_size:
                raise ValueError(f"trials = {self.trials} exceeds the {self.grid_size} combinations of the grid")
        if self.max_trials is not None and self.max_trials < self.target_trials:
            raise ValueError(f"max_trials ({self.max_trials}) is below trials ({self.target_trials})")
        return self

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.choices or ()) for d in self.params.values())

    @property
    def target_trials(self) -> int:
        """Trials that must finish for the search to be complete."""
        if self.trials is not None:
            return self.trials
        return self.grid_size if self.sampler == "grid" else 10

    @property
    def trial_cap(self) -> int:
        """Trials created at most (failed ones included)."""
        if self.max_trials is not None:
            return self.max_trials
        return self.grid_size if self.sampler == "grid" else 2 * self.target_trials

    @property
    def maximize(self) -> bool:
        return maximized(self.objective, self.direction)

    def grid_point(self, number: int) -> dict[str, Any]:
        """The `number`-th combination of the choices, in the order [sweep] expands them."""
        keys = list(self.params)
        values = next(itertools.islice(itertools.product(*(self.params[k].choices for k in keys)), number, None))
        return dict(zip(keys, values, strict=True))


def objective_problem(search: SearchSection, spec: Spec) -> tuple[str, str] | None:
    """(field, message) when the search cannot run on `spec`: an objective it never measures, a pruner without
    a validation loss to watch; None when it can."""
    tasks = [*spec.eval.tasks, *(c.name for c in spec.eval.custom)]
    objective = search.objective
    if objective == VAL_LOSS and spec.data.validation is None:
        return "objective", "val_loss needs validation data: set [data] validation"
    if objective == AVERAGE and not any(t in LEADERBOARD for t in tasks):
        return "objective", "average needs a leaderboard benchmark in [eval] tasks"
    if objective not in (AVERAGE, *LOSSES) and objective not in tasks:
        known = ", ".join([AVERAGE, *LOSSES, *tasks])
        return "objective", f"unknown objective {objective!r}: one of {known}"
    if search.pruner != "none" and (spec.data.validation is None or spec.train.eval_every == 0):
        return "pruner", "pruning watches the validation loss: set [data] validation and [train] eval_every"
    return None
