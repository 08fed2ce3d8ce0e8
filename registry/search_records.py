"""Read side of searches: a search with its trials, each trial's run, objective and validation losses.

Plain SQL over `Rows` (registry/reader.py), as run listings are read: `tunelab search show` starts like `ls`. What
a trial did is its run's (status, scores, validation losses); nothing of it is copied into the search's tables, so
this is the one place a trial's state is put together, for the sampler, the pruner, the CLI and the reports alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tunelab.experiments.objectives import maximized, objective_value
from tunelab.registry.errors import NotFound
from tunelab.registry.reader import Rows
from tunelab.registry.run_records import ID_CHUNK, _in, gpus_used, headline_values, moment, to_jsonable
from tunelab.registry.run_status import RunStatus

IN_FLIGHT = (RunStatus.queued.value, RunStatus.running.value)
# Trials that count towards `trials`: they ran to an answer (an objective, or a verdict of the pruner).
DONE = (RunStatus.succeeded.value, RunStatus.pruned.value)


@dataclass
class TrialRecord:
    number: int
    experiment_id: int
    name: str
    params: dict[str, Any]
    pruner_state: dict[str, Any]
    run_id: int | None = None
    status: str = RunStatus.queued.value
    objective: float | None = None  # succeeded trials only
    val_losses: dict[int, float] = field(default_factory=dict)  # validation loss by step: the pruner's view
    train_seconds: float | None = None
    gpus_used: int = 0  # GPUs its training used (0 on the CPU)
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def gpu_hours(self) -> float:
        return (self.train_seconds or 0.0) * self.gpus_used / 3600

    @property
    def last_step(self) -> int | None:
        return max(self.val_losses) if self.val_losses else None


@dataclass
class SearchRecord:
    search_id: int
    name: str
    status: str
    definition: dict[str, Any]  # the [search] table as validated (experiments/search.py SearchSection)
    asked: int
    created_at: datetime
    finished_at: datetime | None
    stop_reason: str | None
    spec_path: str
    workdir: str
    priority: int
    gpus: int
    importance: dict[str, float] | None
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return self.definition["objective"]

    @property
    def maximize(self) -> bool:
        return maximized(self.objective, self.definition.get("direction"))

    def count(self, *statuses: str) -> int:
        return sum(1 for t in self.trials if t.status in statuses)

    @property
    def done(self) -> int:
        return self.count(*DONE)

    @property
    def in_flight(self) -> int:
        return self.count(*IN_FLIGHT)

    @property
    def gpu_hours(self) -> float:
        return sum(t.gpu_hours for t in self.trials)

    def ranked(self) -> list[TrialRecord]:
        """Trials with an objective, best first (ties: the earlier trial)."""
        scored = [t for t in self.trials if t.objective is not None]
        sign = -1.0 if self.maximize else 1.0
        return sorted(scored, key=lambda t: (sign * t.objective, t.number))

    @property
    def best(self) -> TrialRecord | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def to_json(self) -> dict[str, Any]:
        best = self.best
        data = asdict(self)
        data.update(done=self.done, in_flight=self.in_flight, gpu_hours=self.gpu_hours,
                    best_trial=best.number if best else None, best_run=best.run_id if best else None,
                    best_objective=best.objective if best else None)
        for trial in data["trials"]:
            trial["val_losses"] = {str(step): value for step, value in trial["val_losses"].items()}
        return to_jsonable(data)


_SEARCH_COLUMNS = ("id, name, status, definition_json, asked, created_at, finished_at, stop_reason, spec_path, "
                   "workdir, priority, gpus, importance_json")


def _search_of(row: Sequence[Any]) -> SearchRecord:
    (search_id, name, status, definition_json, asked, created_at, finished_at, stop_reason, spec_path, workdir,
     priority, gpus, importance_json) = row
    return SearchRecord(search_id=search_id, name=name, status=status, definition=json.loads(definition_json),
                        asked=asked, created_at=moment(created_at), finished_at=moment(finished_at),
                        stop_reason=stop_reason, spec_path=spec_path, workdir=workdir, priority=priority, gpus=gpus,
                        importance=json.loads(importance_json) if importance_json else None)


def list_searches(source: Rows) -> list[SearchRecord]:
    """Every search, newest first, with its trials."""
    searches = [_search_of(row) for row in source.rows(f"SELECT {_SEARCH_COLUMNS} FROM search ORDER BY id DESC")]
    return [_with_trials(source, search) for search in searches]


def search_record(source: Rows, search_id: int) -> SearchRecord:
    rows = source.rows(f"SELECT {_SEARCH_COLUMNS} FROM search WHERE id = :id", {"id": search_id})
    if not rows:
        raise NotFound(f"no search with id {search_id}")
    return _with_trials(source, _search_of(rows[0]))


def trial_of_run(source: Rows, run_id: int) -> tuple[int, int] | None:
    """(search id, trial number) of a run that is a search's trial; None for any other run."""
    rows = source.rows("SELECT searchtrial.search_id, searchtrial.number FROM searchtrial "
                       "JOIN run ON run.experiment_id = searchtrial.experiment_id WHERE run.id = :id", {"id": run_id})
    return (rows[0][0], rows[0][1]) if rows else None


def _with_trials(source: Rows, search: SearchRecord) -> SearchRecord:
    # A trial's run is the latest run of its experiment (`tunelab retry` keeps the same run).
    rows = source.rows(
        "SELECT searchtrial.number, searchtrial.experiment_id, experiment.name, searchtrial.params_json, "
        "searchtrial.pruner_json, run.id, run.status, run.train_seconds, run.final_loss, run.gpus, "
        "run.environment_json, run.attempts, run.started_at, run.finished_at "
        "FROM searchtrial JOIN experiment ON experiment.id = searchtrial.experiment_id "
        "LEFT JOIN run ON run.experiment_id = searchtrial.experiment_id "
        "WHERE searchtrial.search_id = :id ORDER BY searchtrial.number, run.id", {"id": search.search_id})
    trials: dict[int, TrialRecord] = {}
    final_losses: dict[int, float | None] = {}
    for (number, experiment_id, name, params_json, pruner_json, run_id, status, train_seconds, final_loss, gpus,
         environment_json, attempts, started_at, finished_at) in rows:
        trials[number] = TrialRecord(
            number=number, experiment_id=experiment_id, name=name, params=json.loads(params_json),
            pruner_state=json.loads(pruner_json or "{}"), run_id=run_id, status=status or RunStatus.queued.value,
            train_seconds=train_seconds, attempts=attempts or 0,
            gpus_used=gpus_used(gpus or 0, json.loads(environment_json) if environment_json else None),
            started_at=moment(started_at), finished_at=moment(finished_at))
        if run_id is not None:
            final_losses[run_id] = final_loss
    search.trials = [trials[number] for number in sorted(trials)]
    by_run = {t.run_id: t for t in search.trials if t.run_id is not None}
    for run_id, losses in _val_losses(source, list(by_run)).items():
        by_run[run_id].val_losses = losses
    scores = headline_values(source, [r for r, t in by_run.items() if t.status == RunStatus.succeeded.value])
    for run_id, trial in by_run.items():
        if trial.status == RunStatus.succeeded.value:
            last = trial.val_losses[trial.last_step] if trial.val_losses else None
            trial.objective = objective_value(search.objective, scores=scores.get(run_id, {}),
                                              final_loss=final_losses.get(run_id), val_loss=last)
    return search


def _val_losses(source: Rows, run_ids: list[int]) -> dict[int, dict[int, float]]:
    """Each run's validation losses by step (a step logged twice, after a resume, keeps its last value)."""
    found: dict[int, dict[int, float]] = {}
    for start in range(0, len(run_ids), ID_CHUNK):
        condition, params = _in("run_id", run_ids[start:start + ID_CHUNK])
        for run_id, step, value in source.rows(
                f"SELECT run_id, step, eval_loss FROM trainmetric WHERE {condition} AND eval_loss IS NOT NULL "
                "ORDER BY id", params):
            found.setdefault(run_id, {})[step] = value
    return found
