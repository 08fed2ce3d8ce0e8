"""The search page view model: objective by trial, each parameter against the objective, every trial's loss curve,
the best trial's settings, parameter importance, and the winner against the runner-up with a paired test on every
task both were evaluated on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tunelab.experiments.benchmarks import display_order
from tunelab.experiments.sweep import format_value
from tunelab.registry.db import Registry
from tunelab.registry.queries import run_details, samples_of
from tunelab.registry.run_records import headline_values
from tunelab.registry.search_records import SearchRecord, TrialRecord, list_searches
from tunelab.registry.significance import PairingError, bootstrap_interval, paired_differences
from tunelab.reports.charts import Chart, Series, bar_spec, line_spec
from tunelab.reports.flips import flip_summary
from tunelab.reports.marks import SIGNIFICANCE_LEVEL, significant
from tunelab.reports.sweep_page import loss_overlay, parameter_charts


@dataclass
class TrialLine:
    number: int
    run_id: int | None
    href: str | None
    status: str
    objective: float | None
    params: str
    last_step: int | None

    @property
    def objective_text(self) -> str:
        return "" if self.objective is None else f"{self.objective:.4f}"


@dataclass
class PairedTest:
    """Winner against runner-up on one task: the change, McNemar's p-value and the bootstrap interval."""

    task: str
    winner: float
    runner_up: float
    p_value: float | None
    ci: tuple[float, float] | None

    @property
    def delta(self) -> float:
        return self.winner - self.runner_up

    @property
    def significant(self) -> bool:
        return significant(self.p_value)

    @property
    def ci_text(self) -> str:
        return "" if self.ci is None else f"[{self.ci[0]:+.4f}, {self.ci[1]:+.4f}]"


@dataclass
class SearchPage:
    search_id: int
    name: str
    status: str
    stop_reason: str | None
    sampler: str
    objective: str
    direction: str
    pruner: str
    progress: str
    trials: list[TrialLine]
    best: TrialLine | None
    best_settings: list[tuple[str, str]]
    importance: list[tuple[str, float]]
    runner_up: TrialLine | None
    versus: list[PairedTest]
    charts: dict[str, Chart] = field(default_factory=dict)
    significance_level: float = SIGNIFICANCE_LEVEL
    params: list[str] = field(default_factory=list)  # the searched keys, one scatter each ("param-0", ...)


def _line(trial: TrialRecord, run_href: Callable[[int], str | None] | None) -> TrialLine:
    params = ", ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
    href = run_href(trial.run_id) if run_href and trial.run_id is not None else None
    return TrialLine(trial.number, trial.run_id, href, trial.status, trial.objective, params, trial.last_step)


def _objective_chart(record: SearchRecord) -> Chart | None:
    scored = sorted((t for t in record.trials if t.objective is not None), key=lambda t: t.number)
    best_so_far, best = [], None
    for trial in scored:
        if best is None or (trial.objective > best if record.maximize else trial.objective < best):
            best = trial.objective
        best_so_far.append(best)
    numbers = [t.number for t in scored]
    return line_spec([Series(record.objective, numbers, [t.objective for t in scored]),
                      Series("best so far", numbers, best_so_far)],
                     title=f"{record.objective} by trial", xlabel="trial", ylabel=record.objective)


def paired_tests(registry: Registry, winner: int, runner_up: int) -> list[PairedTest]:
    """The winner's fine-tuned scores against the runner-up's on each task both have a per-item log for."""
    values = headline_values(registry, [winner, runner_up])
    first, second = values.get(winner, {}), values.get(runner_up, {})
    tests = []
    for task in display_order(set(first) & set(second)):
        a, b = samples_of(registry, winner, "finetuned", task), samples_of(registry, runner_up, "finetuned", task)
        p_value = ci = None
        if a and b:
            try:
                p_value = flip_summary(task, b, a).p_value
                differences = paired_differences(b, a)
                ci = bootstrap_interval([differences]) if differences else None
            except PairingError:
                p_value = ci = None
        tests.append(PairedTest(task, first[task], second[task], p_value, ci))
    return tests


def build_search_page(registry: Registry, record: SearchRecord,
                      run_href: Callable[[int], str | None] | None = None) -> SearchPage:
    ranked = record.ranked()
    best = ranked[0] if ranked else None
    second = ranked[1] if len(ranked) > 1 else None
    importance = list((record.importance or {}).items())
    d = record.definition
    done = f"{record.done}/{d.get('trials') or '?'} done, {record.in_flight} in flight, {record.count('failed')} failed"
    charts = {"objective": _objective_chart(record),
              "importance": bar_spec([k for k, _ in importance], [v for _, v in importance],
                                     title="Parameter importance (fANOVA)", xlabel="share of objective variance")}
    params = list(d.get("params", {}))
    charts |= parameter_charts(params, [(t.params, t.objective, f"trial {t.number}") for t in record.trials],
                               record.objective)
    details = run_details(registry, [t.run_id for t in record.trials if t.run_id is not None], group_members=False)
    charts["loss"] = loss_overlay([(details[t.run_id], f"trial {t.number}") for t in record.trials
                                   if t.run_id in details])
    return SearchPage(
        search_id=record.search_id, name=record.name, status=record.status, stop_reason=record.stop_reason,
        sampler=d["sampler"], objective=record.objective, direction="maximize" if record.maximize else "minimize",
        pruner=d["pruner"], progress=done, trials=[_line(t, run_href) for t in record.trials],
        best=_line(best, run_href) if best else None,
        best_settings=[(k, format_value(v)) for k, v in best.params.items()] if best else [],
        importance=importance, runner_up=_line(second, run_href) if second else None,
        versus=paired_tests(registry, best.run_id, second.run_id) if best and second else [],
        charts={name: chart for name, chart in charts.items() if chart is not None}, params=params)


def build_search_pages(registry: Registry, run_href: Callable[[int], str | None] | None = None) -> list[SearchPage]:
    return [build_search_page(registry, record, run_href) for record in list_searches(registry)]
