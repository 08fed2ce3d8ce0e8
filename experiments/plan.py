"""What a submit would store, worked out from the specs alone: `tunelab submit --dry-run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.canonical import experiment_hash
from tunelab.experiments.loader import LoadedSpec


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
    return [PlannedExperiment(spec=str(item.path), name=item.spec.experiment.name, method=item.spec.method.kind,
                              sweep_point=item.sweep_point, spec_hash=experiment_hash(item.spec, workdir))
            for item in loaded]
