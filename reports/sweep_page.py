"""The sweep page view model: each swept parameter against the objective, and every point's loss curve overlaid.

The objective is what the leaderboard ranks by, the average score, where the points were evaluated; otherwise
their last validation loss, otherwise their final training loss (lower is better for both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunelab.experiments.benchmarks import leaderboard_average
from tunelab.experiments.sweep import format_value
from tunelab.registry.db import Registry
from tunelab.registry.queries import RunDetail, run_details
from tunelab.registry.scores import headline_rows
from tunelab.registry.sweep_records import SweepRecord, list_sweeps
from tunelab.reports.charts import Chart, ScatterChart, line_spec
from tunelab.reports.run_page import loss_series


@dataclass
class PointLine:
    name: str
    params: dict[str, str]  # each swept key's value, as the spec writes it
    run_id: int | None
    href: str | None
    status: str | None
    objective: float | None

    @property
    def objective_text(self) -> str:
        return "" if self.objective is None else f"{self.objective:.4f}"


@dataclass
class SweepPage:
    sweep_id: int
    name: str
    objective: str  # "average score" | "validation loss" | "final loss"
    maximize: bool
    keys: list[str]  # the swept keys, one scatter chart each ("param-0", "param-1", ...)
    points: list[PointLine]
    charts: dict[str, Chart] = field(default_factory=dict)  # the scatters and "loss" (every point's curve)

    @property
    def best(self) -> PointLine | None:
        scored = [p for p in self.points if p.objective is not None]
        if not scored:
            return None
        return (max if self.maximize else min)(scored, key=lambda p: p.objective)


def parameter_charts(keys: list[str], points: list[tuple[dict[str, Any], float | None, str]],
                     objective: str) -> dict[str, Chart]:
    """A scatter per parameter, "param-0", "param-1", ... in the order of `keys`: each point's value of it against
    its objective. `points` are (parameters, objective, name); a point without an objective is left out."""
    charts: dict[str, Chart] = {}
    for index, key in enumerate(keys):
        placed = [(params[key], value, name) for params, value, name in points if value is not None and key in params]
        if placed:
            charts[f"param-{index}"] = ScatterChart(
                tuple(p[0] for p in placed), tuple(p[1] for p in placed), tuple(p[2] for p in placed),
                title=f"{objective} by {key}", xlabel=key, ylabel=objective)
    return charts


def loss_overlay(runs: list[tuple[RunDetail, str]]) -> Chart | None:
    """Every run's training loss on one chart, each labelled; None when none has trained."""
    return line_spec([loss_series(detail, label) for detail, label in runs], title="Training loss of every point",
                     xlabel="step", ylabel="loss")


def _objectives(details: dict[int, RunDetail]) -> tuple[str, bool, dict[int, float | None]]:
    """The objective the points are compared by (its name, whether higher is better) and each run's value."""
    averages = {run_id: leaderboard_average({task: row.value for task, row in
                                             headline_rows(detail.scores, "finetuned").items()})
                for run_id, detail in details.items()}
    if any(value is not None for value in averages.values()):
        return "average score", True, averages
    validation = {run_id: detail.validation_loss for run_id, detail in details.items()}
    if any(value is not None for value in validation.values()):
        return "validation loss", False, validation
    return "final loss", False, {run_id: detail.summary.final_loss for run_id, detail in details.items()}


def build_sweep_page(registry: Registry, record: SweepRecord,
                     run_href: Callable[[int], str | None] | None = None) -> SweepPage:
    run_ids = [p.run_id for p in record.points if p.run_id is not None]
    details = run_details(registry, run_ids, group_members=False)
    objective, maximize, values = _objectives(details)
    points = [PointLine(p.name, {k: format_value(v) for k, v in p.params.items()}, p.run_id,
                        run_href(p.run_id) if run_href and p.run_id is not None else None, p.status,
                        values.get(p.run_id) if p.run_id is not None else None)
              for p in record.points]
    keys = record.keys
    charts = parameter_charts(keys, [(p.params, point.objective, point.name)
                                     for p, point in zip(record.points, points, strict=True)], objective)
    loss = loss_overlay([(details[p.run_id], f"#{p.run_id} {p.name}") for p in record.points if p.run_id in details])
    if loss is not None:
        charts["loss"] = loss
    return SweepPage(record.sweep_id, record.name, objective, maximize, keys, points, charts)


def build_sweep_pages(registry: Registry, run_href: Callable[[int], str | None] | None = None) -> list[SweepPage]:
    return [build_sweep_page(registry, record, run_href) for record in list_sweeps(registry)]
