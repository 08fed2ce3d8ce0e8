"""Read side of the registry: run listings, one run's full record and its scores, as plain dataclasses.

Plain SQL text over `Rows` (registry/reader.py): an SQLite registry is read through sqlite3 without importing
SQLAlchemy, and an open Registry (any database) runs the same text through its engine. No ORM objects: a
leaderboard reads tens of thousands of score rows. Never the per-item logs (samples_json): they are megabytes
per run, and listings and reports don't show them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tunelab.registry.errors import NotFound
from tunelab.registry.reader import Rows
from tunelab.registry.roots import Roots
from tunelab.registry.samples import SAMPLE_COLUMNS, SamplePair, pair_rows
from tunelab.registry.scores import ROW_COLUMNS, Score, from_columns, p_value_as_read, select_list
from tunelab.registry.scores import to_json as score_json


@dataclass
class RunSummary:
    run_id: int
    experiment_id: int
    name: str
    status: str
    method: str
    base_model: str
    tags: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    final_loss: float | None
    error: str | None
    train_seconds: float | None = None
    num_train_examples: int | None = None
    reproduces_run_id: int | None = None  # set on a run `tunelab reproduce` made: the run it re-ran
    # The Slurm job (JOBID or ARRAYJOB_TASK) and node of the worker that last took the run; None outside Slurm.
    slurm_job: str | None = None
    slurm_node: str | None = None

    @property
    def placement(self) -> str | None:
        """"JOB on NODE" when a Slurm job ran (or runs) it."""
        if self.slurm_job is None:
            return None
        return f"{self.slurm_job} on {self.slurm_node}" if self.slurm_node else self.slurm_job


@dataclass
class RunDetail:
    summary: RunSummary
    spec: dict[str, Any]
    spec_text: str
    spec_path: str
    spec_hash: str
    workdir: str
    output_dir: str | None
    train_seconds: float | None
    num_train_examples: int | None
    checkpoints: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    # What the run last executed with (versions, devices, source commit); None before it first ran.
    environment: dict[str, Any] | None = None
    # Where the starting weights came from ({"runs": [...] nearest first, "origin": base}); None before it ran.
    lineage: dict[str, Any] | None = None
    # Row counts of the training data (read, empty, duplicates, over-length, held out); None before training.
    data_stats: dict[str, Any] | None = None
    # Training's latest figures (step, total, loss, tokens_per_second, eta_seconds); None before training.
    progress: dict[str, Any] | None = None
    # Online RL: where the reward came from (registry/reward_sources.py RewardRecord as JSON); None otherwise.
    reward_source: dict[str, Any] | None = None
    # Online RL: completions kept at a few steps ({step, prompt, completion, reward}), by step.
    completions: list[dict] = field(default_factory=list)
    # [eval.samples]: each prompt with what the base and the fine-tuned model wrote (registry/samples.py).
    samples: list[SamplePair] = field(default_factory=list)

    def seen_from(self, roots: Roots) -> RunDetail:
        """This record with the paths of the run's files (output directory, checkpoints) as a machine with `roots`
        sees them; the registry stores them relative to the artifact root."""
        return replace(self, output_dir=str(roots.artifact(self.output_dir)) if self.output_dir else None,
                       checkpoints=[dict(c, path=str(roots.artifact(c["path"]))) for c in self.checkpoints])
    # [train] load_best: the step whose checkpoint became the final weights; None otherwise.
    best_step: int | None = None

    @property
    def validation_loss(self) -> float | None:
        """The loss on the validation examples at the run's last validation point; None without one."""
        return last_validation_loss((m["step"], m["eval_loss"]) for m in self.metrics)

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(dict(asdict(self), scores=[score_json(score) for score in self.scores],
                                validation_loss=self.validation_loss))


def last_validation_loss(points: Iterable[tuple[int, float | None]]) -> float | None:
    """The validation loss of the last validation point among (step, eval_loss) metric rows in the order they
    were recorded: the highest step's, the later row's of a step logged twice. registry/where.py (`val_loss`)
    is the same rule in SQL."""
    last: tuple[int, float] | None = None
    for step, eval_loss in points:
        if eval_loss is not None and (last is None or step >= last[0]):
            last = (step, eval_loss)
    return None if last is None else last[1]


class MemberScore(NamedTuple):
    """Four fields of a Score of one member of a group (an MMLU subject): what per-subject tables and charts
    show of it, read from an index alone (a report reads some hundred thousand)."""

    model_kind: str
    task_group: str
    task: str
    value: float


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def to_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


# --- SQL ----------------------------------------------------------------------------------------------
# Ids per IN (...) list: well under SQLite's bound-parameter limit, and small enough to keep memory flat.
ID_CHUNK = 500

RUNS = "run JOIN experiment ON experiment.id = run.experiment_id"


def _spec_text(dialect: str, path: str) -> str:
    """SQL for a text value of the stored spec: the database reads two keys faster than Python parses the spec."""
    if dialect == "sqlite":
        return f"json_extract(experiment.resolved_json, '$.{path}')"
    return f"CAST(experiment.resolved_json AS JSON) #>> '{{{path.replace('.', ',')}}}'"


def summary_columns(dialect: str) -> str:
    """A run's summary, in the order summary_of reads it (registry/run_query.py selects the same)."""
    return (f"run.id, experiment.id, experiment.name, run.status, {_spec_text(dialect, 'method.kind')}, "
            f"{_spec_text(dialect, 'model.base')}, experiment.tags_json, run.created_at, run.started_at, "
            "run.finished_at, run.final_loss, run.error, run.train_seconds, run.num_train_examples, "
            "run.reproduces_run_id, run.slurm_job, run.slurm_node")


def _detail_columns(dialect: str) -> str:
    return (f"{summary_columns(dialect)}, experiment.resolved_json, experiment.spec_text, experiment.spec_path, "
            "experiment.spec_hash, experiment.workdir, run.output_dir, run.environment_json, run.lineage_json, "
            "run.data_stats_json, run.progress_json, run.reward_source_json, run.best_step")


# A training metric row's columns (registry/models.py TrainMetric), as the keys of RunDetail.metrics.
METRIC_FIELDS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "eval_loss", "reward", "reward_std", "kl",
                 "completion_length")
SAMPLE_FIELDS = ("step", "prompt", "completion", "reward")

# A score's columns (registry/scores.py), after its run's id.
_SCORE_COLUMNS = f"run_id, {select_list()}"


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield list(ids[start:start + ID_CHUNK])


def _in(column: str, ids: Sequence[int]) -> tuple[str, dict[str, int]]:
    """`column IN (:id_0, ...)` with its parameters: one spelling that sqlite3 and SQLAlchemy both bind."""
    params = {f"id_{i}": value for i, value in enumerate(ids)}
    return f"{column} IN ({', '.join(':' + name for name in params)})", params


def moment(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as the models give it: an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        # SQLite holds UTC as text without an offset (as SQLAlchemy writes it); parsing it with the offset
        # appended is several times faster than attaching the zone afterwards, which matters 30,000 times.
        value = datetime.fromisoformat(value if len(value) > 19 and value[-6] in "+-" else value + "+00:00")
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


# Columns of summary_columns().
_SUMMARY_WIDTH = 17


def summary_of(row: Sequence[Any]) -> RunSummary:
    """A RunSummary from a row of summary_columns()."""
    (run_id, experiment_id, name, status, method, base_model, tags_json, created_at, started_at, finished_at,
     final_loss, error, train_seconds, num_train_examples, reproduces_run_id, slurm_job,
     slurm_node) = row[:_SUMMARY_WIDTH]
    return RunSummary(
        run_id=run_id, experiment_id=experiment_id, name=name, status=status, method=method or "",
        base_model=base_model or "", tags=json.loads(tags_json), created_at=moment(created_at),
        started_at=moment(started_at), finished_at=moment(finished_at), final_loss=final_loss, error=error,
        train_seconds=train_seconds, num_train_examples=num_train_examples, reproduces_run_id=reproduces_run_id,
        slurm_job=slurm_job, slurm_node=slurm_node,
    )


def list_runs(source: Rows, *, status: str | None = None, limit: int | None = None,
              newest_first: bool = True) -> list[RunSummary]:
    """Runs newest first (or oldest first), optionally of one status."""
    sql = f"SELECT {summary_columns(source.dialect)} FROM {RUNS}"
    params: dict[str, Any] = {}
    if status:
        sql += " WHERE run.status = :status"
        params["status"] = status
    sql += " ORDER BY run.id DESC" if newest_first else " ORDER BY run.id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return [summary_of(row) for row in source.rows(sql, params)]


def headline_values(source: Rows, run_ids: Sequence[int] | None = None,
                    model_kind: str = "finetuned") -> dict[int, dict[str, float]]:
    """Each run's value per top-level task (MMLU subjects left out), by run id: the latest row of a task wins,
    as in registry.scores.headline_rows. What a listing shows, without building a Score per score."""
    sql = ("SELECT run_id, task, value FROM evalresult "
           "WHERE model_kind = :kind AND task_group IS NULL AND run_id IS NOT NULL")
    values: dict[int, dict[str, float]] = {}
    # Past one IN list, one pass over the headline rows costs less than many lists.
    if run_ids is None or len(run_ids) > ID_CHUNK:
        wanted = None if run_ids is None else set(run_ids)
        for run_id, task, value in source.rows(f"{sql} ORDER BY id", {"kind": model_kind}):
            if wanted is None or run_id in wanted:
                values.setdefault(run_id, {})[task] = value
        return values
    if run_ids:
        condition, params = _in("run_id", run_ids)
        for run_id, task, value in source.rows(f"{sql} AND {condition} ORDER BY id", {"kind": model_kind, **params}):
            values.setdefault(run_id, {})[task] = value
    return values


class VersusBase(NamedTuple):
    """A fine-tuned headline score against its base: McNemar's p-value and the bootstrap interval of the change."""

    p_value: float | None
    ci_low: float | None
    ci_high: float | None


def _p_values(source: Rows, run_ids: Sequence[int] | None) -> dict[tuple[int, str], VersusBase]:
    """Fine-tuned headline scores' tests against their base, by (run id, task), from their covering index.

    Never in the same query as the other score columns: on SQLite the columns sit after the per-item logs.
    A score checked without a p-value (registry.significance.NO_P_VALUE, below 0) has none here.
    """
    sql = ("SELECT run_id, task, vs_base_p, vs_base_ci_low, vs_base_ci_high FROM evalresult "
           "WHERE task_group IS NULL AND model_kind = 'finetuned' AND vs_base_p IS NOT NULL")
    rows: list[Sequence[Any]] = []
    if run_ids is None:
        rows = list(source.rows(sql))
    else:
        for chunk in _chunks(run_ids):
            condition, params = _in("run_id", chunk)
            rows += source.rows(f"{sql} AND {condition}", params)
    return {(run_id, task): VersusBase(p_value_as_read(p), low, high)
            for run_id, task, p, low, high in rows if p_value_as_read(p) is not None or low is not None}


def _score_of(row: Sequence[Any], fingerprints: dict[str, dict], p_values: dict[tuple[int, str], VersusBase]) -> Score:
    """A Score from a row of _SCORE_COLUMNS; its tests from `p_values` (fine-tuned scores only have them)."""
    values = dict(zip(ROW_COLUMNS, row[1:], strict=True))
    tested = p_values.get((row[0], values["task"])) if values["model_kind"] == "finetuned" else None
    if tested is None:
        return from_columns(values, parsed=fingerprints)
    return from_columns(values, parsed=fingerprints, vs_base_p=tested.p_value, vs_base_ci_low=tested.ci_low,
                        vs_base_ci_high=tested.ci_high)


def run_scores(
    source: Rows, run_ids: list[int] | None = None, *, headline_only: bool = False
) -> dict[int, list[Score]]:
    """Eval results grouped by run id (all runs when `run_ids` is None).

    `headline_only` leaves out group members (the 57 MMLU subjects), which listings never show.
    """
    # Scores of models that belong to no run (`tunelab eval PATH`) are no run's: see model_evaluations.
    sql = f"SELECT {_SCORE_COLUMNS} FROM evalresult WHERE run_id IS NOT NULL"
    if headline_only:
        sql += " AND task_group IS NULL"
    ids = None if run_ids is None else sorted(set(run_ids))
    p_values = _p_values(source, ids)
    rows: list[Sequence[Any]] = []
    if ids is None:
        rows = list(source.rows(sql + " ORDER BY run_id, id"))
    else:
        for chunk in _chunks(ids):
            condition, params = _in("run_id", chunk)
            rows += source.rows(f"{sql} AND {condition} ORDER BY run_id, id", params)
    grouped: dict[int, list[Score]] = {}
    fingerprints: dict[str, dict] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(_score_of(row, fingerprints, p_values))
    return grouped


def run_detail(source: Rows, run_id: int) -> RunDetail:
    detail = run_details(source, [run_id]).get(run_id)
    if detail is None:
        raise NotFound(f"no run with id {run_id}")
    return detail


def run_details(source: Rows, run_ids: list[int], *, group_members: bool = True) -> dict[int, RunDetail]:
    """The full record of each of `run_ids` that exists, by run id, in a handful of queries per 500 runs.

    A report with a page per run reads a thousand runs at once; one run_detail per run would be thousands
    of round trips. `group_members=False` leaves the members of a group (MMLU's 57 subjects) out of `scores`:
    read their values with member_scores, from an index alone, instead of a thousand rows heavy with logs and
    fingerprints.
    """
    details: dict[int, RunDetail] = {}
    fingerprints: dict[str, dict] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        details.update(_details_of(source, chunk, fingerprints, group_members))
    return details


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _details_of(source: Rows, ids: list[int], fingerprints: dict[str, dict],
                group_members: bool) -> dict[int, RunDetail]:
    condition, params = _in("run.id", ids)
    details: dict[int, RunDetail] = {}
    for row in source.rows(f"SELECT {_detail_columns(source.dialect)} FROM {RUNS} WHERE {condition}", params):
        summary = summary_of(row)
        (resolved_json, spec_text, spec_path, spec_hash, workdir, output_dir, environment_json, lineage_json,
         data_stats_json, progress_json, reward_source_json, best_step) = row[_SUMMARY_WIDTH:]
        details[summary.run_id] = RunDetail(
            summary=summary, spec=json.loads(resolved_json), spec_text=spec_text, spec_path=spec_path,
            spec_hash=spec_hash, workdir=workdir, output_dir=output_dir, train_seconds=summary.train_seconds,
            num_train_examples=summary.num_train_examples, environment=_loads(environment_json),
            lineage=_loads(lineage_json), data_stats=_loads(data_stats_json), progress=_loads(progress_json),
            reward_source=_loads(reward_source_json),
            best_step=best_step,
        )
    if not details:
        return details
    condition, params = _in("run_id", ids)
    for run_id, step, loss, path, created_at in source.rows(
            f"SELECT run_id, step, loss, path, created_at FROM checkpoint WHERE {condition} ORDER BY step, id", params):
        details[run_id].checkpoints.append({"step": step, "loss": loss, "path": path, "created_at": moment(created_at)})
    for run_id, *values in source.rows(f"SELECT run_id, {', '.join(METRIC_FIELDS)} FROM trainmetric "
                                       f"WHERE {condition} ORDER BY id", params):
        details[run_id].metrics.append(dict(zip(METRIC_FIELDS, values, strict=True)))
    for run_id, *values in source.rows(f"SELECT run_id, {', '.join(SAMPLE_FIELDS)} FROM completionsample "
                                       f"WHERE {condition} ORDER BY step, id", params):
        details[run_id].completions.append(dict(zip(SAMPLE_FIELDS, values, strict=True)))
    sample_rows: dict[int, list[Sequence[Any]]] = {}
    for row in source.rows(f"SELECT run_id, {SAMPLE_COLUMNS} FROM generatedsample WHERE {condition} "
                           "ORDER BY run_id, id", params):
        sample_rows.setdefault(row[0], []).append(row[1:])
    for run_id, rows in sample_rows.items():
        details[run_id].samples = pair_rows(rows)
    members = "" if group_members else " AND task_group IS NULL"
    p_values = _p_values(source, ids)
    for row in source.rows(f"SELECT {_SCORE_COLUMNS} FROM evalresult WHERE {condition}{members} ORDER BY id", params):
        details[row[0]].scores.append(_score_of(row, fingerprints, p_values))
    return details


def member_scores(source: Rows, run_ids: list[int]) -> dict[int, list[MemberScore]]:
    """The scores of group members (MMLU subjects) of each run, by run id, read from their covering index."""
    found: dict[int, list[MemberScore]] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        condition, params = _in("run_id", chunk)
        for run_id, model_kind, task_group, task, value in source.rows(
                "SELECT run_id, model_kind, task_group, task, value FROM evalresult "
                f"WHERE {condition} AND task_group IS NOT NULL ORDER BY run_id, task", params):
            found.setdefault(run_id, []).append(MemberScore(model_kind, task_group, task, value))
    return found


def resolved_specs(source: Rows, run_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """The resolved spec of each run's experiment, by run id."""
    sql = f"SELECT run.id, experiment.resolved_json FROM {RUNS}"
    if run_ids is None:
        return {run_id: json.loads(text) for run_id, text in source.rows(sql)}
    specs: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        condition, params = _in("run.id", chunk)
        specs.update({run_id: json.loads(text) for run_id, text in source.rows(f"{sql} WHERE {condition}", params)})
    return specs


def validation_losses(source: Rows, run_ids: list[int]) -> dict[int, float]:
    """Each run's last validation loss (last_validation_loss), by run id; runs without one are left out."""
    found: dict[int, float] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        condition, params = _in("run_id", chunk)
        points: dict[int, list[tuple[int, float]]] = {}
        for run_id, step, eval_loss in source.rows(
                f"SELECT run_id, step, eval_loss FROM trainmetric WHERE {condition} AND eval_loss IS NOT NULL "
                "ORDER BY id", params):
            points.setdefault(run_id, []).append((step, eval_loss))
        found.update({run_id: last_validation_loss(rows) for run_id, rows in points.items()})
    return {run_id: loss for run_id, loss in found.items() if loss is not None}


def gpus_used(requested: int, environment: dict[str, Any] | None) -> int:
    """GPUs a run trained on: its [resources] gpus, or one where its worker had any (one process, one GPU); 0 on
    the CPU or before it ran."""
    if not environment or not environment.get("gpus"):
        return 0
    return requested or 1


def training_gpus(source: Rows, run_ids: Sequence[int]) -> dict[int, int]:
    """GPUs each run's training used (gpus_used), by run id; runs that used none are left out."""
    found: dict[int, int] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        condition, params = _in("id", chunk)
        # The LIKE only spares parsing the environments of CPU runs (written with json.dumps' separators).
        for run_id, requested, environment_json in source.rows(
                f"SELECT id, gpus, environment_json FROM run WHERE {condition} AND environment_json LIKE "
                "'%\"gpus\": [\"%'", params):
            used = gpus_used(requested or 0, _loads(environment_json))
            if used:
                found[run_id] = used
    return found


class RunGroup(NamedTuple):
    """The sweep or search a run's experiment came from: reports gather its points under it."""

    key: str  # "sweep-3" | "search-2": unique in a registry
    kind: str  # "sweep" | "search"
    group_id: int
    name: str


def run_groups(source: Rows, run_ids: Sequence[int]) -> dict[int, RunGroup]:
    """The group of each run that is a sweep point or a search trial, by run id; other runs are left out."""
    found: dict[int, RunGroup] = {}
    for chunk in _chunks(sorted(set(run_ids))):
        condition, params = _in("run.id", chunk)
        for run_id, sweep_id, sweep_name, search_id, search_name in source.rows(
                "SELECT run.id, sweep.id, sweep.name, search.id, search.name FROM run "
                "JOIN experiment ON experiment.id = run.experiment_id "
                "LEFT JOIN sweep ON sweep.id = experiment.sweep_id "
                "LEFT JOIN searchtrial ON searchtrial.experiment_id = experiment.id "
                f"LEFT JOIN search ON search.id = searchtrial.search_id WHERE {condition}", params):
            if search_id is not None:
                found[run_id] = RunGroup(f"search-{search_id}", "search", search_id, search_name)
            elif sweep_id is not None:
                found[run_id] = RunGroup(f"sweep-{sweep_id}", "sweep", sweep_id, sweep_name)
    return found
