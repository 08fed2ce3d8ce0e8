"""The sweep page view model: each swept parameter against the objective, and every point's loss curve overlaid.

The objective is what the leaderboard ranks by, the average score, where the points were evaluated; otherwise
their last validation loss, otherwise their final training loss (lower is better for both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    charts: dict[str, Chart] = {}
    keys = record.keys
    scored = [(p, point) for p, point in zip(record.points, points, strict=True) if point.objective is not None]
    for index, key in enumerate(keys):
        placed = [(p.params[key], point) for p, point in scored if key in p.params]
        if placed:
            charts[f"param-{index}"] = ScatterChart(
                tuple(value for value, _ in placed), tuple(point.objective for _, point in placed),
                tuple(point.name for _, point in placed), title=f"{objective} by {key}", xlabel=key, ylabel=objective)
    loss = line_spec([loss_series(details[p.run_id], f"#{p.run_id} {p.name}") for p in record.points
                      if p.run_id in details], title="Training loss of every point", xlabel="step", ylabel="loss")
    if loss is not None:
        charts["loss"] = loss
    return SweepPage(record.sweep_id, record.name, objective, maximize, keys, points, charts)


def build_sweep_pages(registry: Registry, run_href: Callable[[int], str | None] | None = None) -> list[SweepPage]:
    return [build_sweep_page(registry, record, run_href) for record in list_sweeps(registry)]
