"""What a submit would store, worked out from the specs alone: `tunelab submit --dry-run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.canonical import experiment_hash
from tunelab.experiments.loader import LoadedSpec
from tunelab.experiments.sweep import format_value


@dataclass(frozen=True)
class PlannedExperiment:
    spec: str  # the file it comes from
    name: str
    method: str
    sweep_point: dict[str, Any] | None
    spec_hash: str
    valid: bool = True  # a planned experiment passed validation: an invalid spec raises SpecError instead
    # Set when the registry already holds this experiment: its id, and a description of it and its latest run.
    existing_id: int | None = None
    existing: str | None = None

    def line(self) -> str:
        if self.existing is not None:
            return f"exists  {self.spec}  {self.name}  as {self.existing}"
        return f"new     {self.spec}  {self.name}  ({self.method}, {self.spec_hash[:12]})"


def summary(planned: list[PlannedExperiment]) -> str:
    """The last line of `submit --dry-run`: how many would be queued, and how many are stored already."""
    new = sum(p.existing_id is None for p in planned)
    line = f"{new} new experiment(s) would be queued"
    if new < len(planned):
        line += f"; {len(planned) - new} already in the registry (--force queues a new run of each)"
    return line


def plan(loaded: list[LoadedSpec], workdir: Path) -> list[PlannedExperiment]:
    """The experiments submit would queue (searches queue none: see plan_search)."""
    return [PlannedExperiment(spec=str(item.path), name=item.spec.experiment.name, method=item.spec.method.kind,
                              sweep_point=item.sweep_point, spec_hash=experiment_hash(item.spec, workdir))
            for item in loaded if item.search is None]


@dataclass(frozen=True)
class PlannedSearch:
    """A [search] as submit would store it: its settings, distributions and the first trials it would draw."""

    spec: str
    name: str
    sampler: str
    trials: int
    max_trials: int
    objective: str
    direction: str
    pruner: str
    seed: int
    distributions: dict[str, str]
    first_trials: list[dict[str, Any]]

    def lines(self) -> list[str]:
        head = (f"search  {self.spec}  {self.name}  ({self.sampler}, {self.trials} trials, at most {self.max_trials}; "
                f"{self.direction} {self.objective}; pruner {self.pruner}; seed {self.seed})")
        params = [f"  {key}: {text}" for key, text in self.distributions.items()]
        drawn = [f"  trial {number}: " + ", ".join(f"{k}={format_value(v)}" for k, v in point.items())
                 for number, point in enumerate(self.first_trials)]
        return [head, *params, *drawn]


def plan_search(item: LoadedSpec, first_trials: list[dict[str, Any]]) -> PlannedSearch:
    """The plan of a loaded [search]; `first_trials` are what its sampler draws first (runner/search.py preview)."""
    search = item.search
    return PlannedSearch(spec=str(item.path), name=item.spec.experiment.name, sampler=search.sampler,
                         trials=search.target_trials, max_trials=search.trial_cap, objective=search.objective,
                         direction="maximize" if search.maximize else "minimize", pruner=search.pruner,
                         seed=search.seed, distributions={k: d.describe() for k, d in search.params.items()},
                         first_trials=first_trials)
