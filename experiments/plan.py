"""What a submit would store, worked out from the specs alone: `tunelab submit --dry-run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.loader import LoadedSpec


@dataclass(frozen=True)
class PlannedExperiment:
    spec: str  # the file it comes from
    name: str
    method: str
    sweep_point: dict[str, Any] | None
    spec_hash: str
    valid: bool = True  # a planned experiment passed validation: an invalid spec raises SpecError instead

    def line(self) -> str:
        return f"ok  {self.spec}  {self.name}  ({self.method}, {self.spec_hash[:12]})"


def plan(loaded: list[LoadedSpec]) -> list[PlannedExperiment]:
    return [PlannedExperiment(spec=str(item.path), name=item.spec.experiment.name, method=item.spec.method.kind,
                              sweep_point=item.sweep_point, spec_hash=spec_hash(item.spec)) for item in loaded]
