"""Read side of sweeps: a sweep with its points, each point's parameters and latest run.

Plain SQL over `Rows` (registry/reader.py), as run listings are read; reports draw a sweep's page from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunelab.registry.reader import Rows


@dataclass
class SweepPoint:
    experiment_id: int
    name: str
    params: dict[str, Any]  # the point's values of the swept keys
    run_id: int | None = None  # its latest run
    status: str | None = None


@dataclass
class SweepRecord:
    sweep_id: int
    name: str
    definition: dict[str, Any]  # the [sweep] table: each swept key with its values
    points: list[SweepPoint] = field(default_factory=list)  # in submission order

    @property
    def keys(self) -> list[str]:
        """The swept keys, in the order the sweep names them (then any other a point has)."""
        keys = list(self.definition)
        for point in self.points:
            keys += [key for key in point.params if key not in keys]
        return keys


def list_sweeps(source: Rows) -> list[SweepRecord]:
    """Every sweep with its points, oldest first."""
    sweeps = {sweep_id: SweepRecord(sweep_id, name, json.loads(definition or "{}"))
              for sweep_id, name, definition in source.rows(
                  "SELECT id, name, definition_json FROM sweep ORDER BY id")}
    latest: dict[int, tuple[int, str]] = {}
    for experiment_id, run_id, status in source.rows(
            "SELECT run.experiment_id, run.id, run.status FROM run JOIN experiment ON experiment.id = "
            "run.experiment_id WHERE experiment.sweep_id IS NOT NULL ORDER BY run.id"):
        latest[experiment_id] = (run_id, status)
    for experiment_id, sweep_id, name, point_json in source.rows(
            "SELECT id, sweep_id, name, sweep_point_json FROM experiment WHERE sweep_id IS NOT NULL ORDER BY id"):
        run_id, status = latest.get(experiment_id, (None, None))
        point = SweepPoint(experiment_id, name, json.loads(point_json or "{}"), run_id, status)
        sweeps[sweep_id].points.append(point)
    return list(sweeps.values())
