"""Read side of the registry: run listings and one run's full record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlmodel import Session, select
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.models import (
    Checkpoint,
    EvalCacheEntry,
    EvalResult,
    Experiment,
    FileDigest,
    Run,
    TrainMetric,
)


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


@dataclass
class ScoreRow:
    model_kind: str
    model_name: str
    task: str
    metric: str
    value: float
    stderr: float | None
    num_fewshot: int
    limit: int
    n_samples: int | None
    task_group: str | None
    comparable: bool
    lm_eval_version: str
    fingerprint: dict
    # McNemar exact p-value of a fine-tuned score against its base (per-item logs); None where not known.
    vs_base_p: float | None = None


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
    scores: list[ScoreRow] = field(default_factory=list)
    # What the run last executed with (versions, devices, source commit); None before it first ran.
    environment: dict[str, Any] | None = None
    # Where the starting weights came from ({"runs": [...] nearest first, "origin": base}); None before it ran.
    lineage: dict[str, Any] | None = None
    # Row counts of the training data (read, empty, duplicates, over-length, held out); None before training.
    data_stats: dict[str, Any] | None = None
    # Training's latest figures (step, total, loss, tokens_per_second, eta_seconds); None before training.
    progress: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return json.loads(json.dumps(data, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def to_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _summary(run: Run, experiment: Experiment) -> RunSummary:
    spec = json.loads(experiment.resolved_json)
    return RunSummary(
        run_id=run.id,
        experiment_id=experiment.id,
        name=experiment.name,
        status=run.status,
        method=spec.get("method", {}).get("kind", ""),
        base_model=spec.get("model", {}).get("base", ""),
        tags=json.loads(experiment.tags_json),
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        final_loss=run.final_loss,
        error=run.error,
        train_seconds=run.train_seconds,
        num_train_examples=run.num_train_examples,
    )


def list_runs(registry: Registry, *, status: str | None = None, limit: int | None = None) -> list[RunSummary]:
    """Runs newest first, optionally of one status."""
    with registry.session() as session:
        query = select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id).order_by(Run.id.desc())
        if status:
            query = query.where(Run.status == status)
        if limit:
            query = query.limit(limit)
        return [_summary(run, experiment) for run, experiment in session.exec(query).all()]


def _score_row(result: EvalResult) -> ScoreRow:
    return ScoreRow(
        model_kind=result.model_kind,
        model_name=result.model_name,
        task=result.task,
        metric=result.metric,
        value=result.value,
        stderr=result.stderr,
        num_fewshot=result.num_fewshot,
        limit=result.limit,
        n_samples=result.n_samples,
        task_group=result.task_group,
        comparable=result.comparable,
        lm_eval_version=result.lm_eval_version,
        fingerprint=json.loads(result.fingerprint_json),
        vs_base_p=_p_value(result.vs_base_p),
    )


def _p_value(stored: float | None) -> float | None:
    """A stored vs_base_p as readers see it: NO_P_VALUE (checked, no test possible) is no p-value."""
    return None if stored is None or stored < 0 else stored


# Never samples_json: the per-item logs are megabytes per run, and listings and reports don't show them.
_SCORE_COLUMNS = (
    EvalResult.run_id, EvalResult.model_kind, EvalResult.model_name, EvalResult.task, EvalResult.metric,
    EvalResult.value, EvalResult.stderr, EvalResult.num_fewshot, EvalResult.limit, EvalResult.n_samples,
    EvalResult.task_group, EvalResult.comparable, EvalResult.lm_eval_version, EvalResult.fingerprint_json,
)


def _p_values(connection, run_ids: list[int] | None) -> dict[tuple[int, str], float]:
    """Fine-tuned headline scores' p-values against their base, by (run id, task), from their covering index.

    Never in the same query as the other score columns: on SQLite the column sits after the per-item logs.
    A score checked without a p-value (registry.significance.NO_P_VALUE, below 0) has none here.
    """
    query = select(EvalResult.run_id, EvalResult.task, EvalResult.vs_base_p).where(
        EvalResult.task_group.is_(None), EvalResult.model_kind == "finetuned", EvalResult.vs_base_p >= 0)
    if run_ids is not None:
        query = query.where(EvalResult.run_id.in_(run_ids))
    return {(row.run_id, row.task): row.vs_base_p for row in connection.execute(query)}


def _score_from_columns(row: Any, fingerprints: dict[str, dict], p_values: dict[tuple[int, str], float]) -> ScoreRow:
    # Every score of one evaluation carries the same fingerprint text: parse each distinct text once.
    fingerprint = fingerprints.get(row.fingerprint_json)
    if fingerprint is None:
        fingerprint = fingerprints[row.fingerprint_json] = json.loads(row.fingerprint_json)
    return ScoreRow(
        model_kind=row.model_kind, model_name=row.model_name, task=row.task, metric=row.metric, value=row.value,
        stderr=row.stderr, num_fewshot=row.num_fewshot, limit=row.limit, n_samples=row.n_samples,
        task_group=row.task_group, comparable=row.comparable, lm_eval_version=row.lm_eval_version,
        fingerprint=fingerprint,
        vs_base_p=p_values.get((row.run_id, row.task)) if row.model_kind == "finetuned" else None)


def run_scores(
    registry: Registry, run_ids: list[int] | None = None, *, headline_only: bool = False
) -> dict[int, list[ScoreRow]]:
    """Eval results grouped by run id (all runs when `run_ids` is None).

    `headline_only` leaves out group members (the 57 MMLU subjects), which listings never show.
    Plain column rows, not ORM objects: a leaderboard reads tens of thousands of them.
    """
    # Scores of models that belong to no run (`tunelab eval PATH`) are no run's: see model_evaluations.
    query = select(*_SCORE_COLUMNS).where(EvalResult.run_id.is_not(None)).order_by(EvalResult.run_id, EvalResult.id)
    if run_ids is not None:
        query = query.where(EvalResult.run_id.in_(run_ids))
    if headline_only:
        query = query.where(EvalResult.task_group.is_(None))
    grouped: dict[int, list[ScoreRow]] = {}
    fingerprints: dict[str, dict] = {}
    with registry.engine.connect() as connection:
        p_values = _p_values(connection, run_ids)
        for row in connection.execute(query):
            grouped.setdefault(row.run_id, []).append(_score_from_columns(row, fingerprints, p_values))
    return grouped


def run_detail(registry: Registry, run_id: int) -> RunDetail:
    detail = run_details(registry, [run_id]).get(run_id)
    if detail is None:
        raise NotFound(f"no run with id {run_id}")
    return detail


# Ids per IN (...) list: well under SQLite's bound-parameter limit, and small enough to keep memory flat.
_ID_CHUNK = 500


def run_details(registry: Registry, run_ids: list[int], *, group_members: bool = True) -> dict[int, RunDetail]:
    """The full record of each of `run_ids` that exists, by run id, in a handful of queries per 500 runs.

    A report with a page per run reads a thousand runs at once; one run_detail per run would be thousands
    of round trips. Plain column rows, not ORM objects, and never the per-item logs. `group_members=False`
    leaves the members of a group (MMLU's 57 subjects) out of `scores`: read their values with member_scores,
    from an index alone, instead of a thousand rows heavy with logs and fingerprints.
    """
    details: dict[int, RunDetail] = {}
    ids = sorted(set(run_ids))
    fingerprints: dict[str, dict] = {}
    with registry.session() as session:
        for start in range(0, len(ids), _ID_CHUNK):
            details.update(_details_of(session, ids[start:start + _ID_CHUNK], fingerprints, group_members))
    return details


def _details_of(session: Session, ids: list[int], fingerprints: dict[str, dict],
                group_members: bool) -> dict[int, RunDetail]:
    pairs = session.exec(
        select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id).where(Run.id.in_(ids))
    ).all()
    details: dict[int, RunDetail] = {}
    for run, experiment in pairs:
        details[run.id] = RunDetail(
            summary=_summary(run, experiment),
            spec=json.loads(experiment.resolved_json),
            spec_text=experiment.spec_text,
            spec_path=experiment.spec_path,
            spec_hash=experiment.spec_hash,
            workdir=experiment.workdir,
            output_dir=run.output_dir,
            train_seconds=run.train_seconds,
            num_train_examples=run.num_train_examples,
            environment=json.loads(run.environment_json) if run.environment_json else None,
            lineage=json.loads(run.lineage_json) if run.lineage_json else None,
            data_stats=json.loads(run.data_stats_json) if run.data_stats_json else None,
            progress=json.loads(run.progress_json) if run.progress_json else None,
        )
    if not details:
        return details
    connection = session.connection()
    checkpoints = select(Checkpoint.run_id, Checkpoint.step, Checkpoint.loss, Checkpoint.path, Checkpoint.created_at)
    for c in connection.execute(checkpoints.where(Checkpoint.run_id.in_(ids)).order_by(Checkpoint.step, Checkpoint.id)):
        details[c.run_id].checkpoints.append(
            {"step": c.step, "loss": c.loss, "path": c.path, "created_at": c.created_at})
    metrics = select(TrainMetric.run_id, TrainMetric.step, TrainMetric.epoch, TrainMetric.loss,
                     TrainMetric.learning_rate, TrainMetric.grad_norm, TrainMetric.eval_loss)
    rows = connection.execute(metrics.where(TrainMetric.run_id.in_(ids)).order_by(TrainMetric.id)).all()
    for run_id, step, epoch, loss, learning_rate, grad_norm, eval_loss in rows:
        details[run_id].metrics.append({"step": step, "epoch": epoch, "loss": loss, "learning_rate": learning_rate,
                                        "grad_norm": grad_norm, "eval_loss": eval_loss})
    scores = select(*_SCORE_COLUMNS).where(EvalResult.run_id.in_(ids)).order_by(EvalResult.id)
    if not group_members:
        scores = scores.where(EvalResult.task_group.is_(None))
    p_values = _p_values(connection, ids)
    for row in connection.execute(scores).all():
        details[row.run_id].scores.append(_score_from_columns(row, fingerprints, p_values))
    return details


class MemberScore(NamedTuple):
    """One member of a score group (an MMLU subject): what per-subject tables and charts show of it."""

    model_kind: str
    task_group: str
    task: str
    value: float


def member_scores(registry: Registry, run_ids: list[int]) -> dict[int, list[MemberScore]]:
    """The scores of group members (MMLU subjects) of each run, by run id, read from their covering index."""
    found: dict[int, list[MemberScore]] = {}
    ids = sorted(set(run_ids))
    columns = (EvalResult.run_id, EvalResult.model_kind, EvalResult.task_group, EvalResult.task, EvalResult.value)
    with registry.engine.connect() as connection:
        for start in range(0, len(ids), _ID_CHUNK):
            query = select(*columns).where(EvalResult.run_id.in_(ids[start:start + _ID_CHUNK]),
                                           EvalResult.task_group.is_not(None))
            # all(): one fetch for the lot; iterating the result fetches row by row, a third of the time.
            for run_id, model_kind, task_group, task, value in connection.execute(
                    query.order_by(EvalResult.run_id, EvalResult.task)).all():
                found.setdefault(run_id, []).append(MemberScore(model_kind, task_group, task, value))
    return found


def experiment_for_run(registry: Registry, run_id: int) -> tuple[Run, Experiment]:
    with registry.session() as session:
        pair = session.exec(
            select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id).where(Run.id == run_id)
        ).first()
        if pair is None:
            raise NotFound(f"no run with id {run_id}")
        return pair


def find_base_scores(registry: Registry, model_name: str, eval_key: str) -> list[ScoreRow] | None:
    """Scores of a base model already evaluated with the same settings (so it is evaluated once)."""
    with registry.session() as session:
        results = session.exec(
            select(EvalResult)
            .where(EvalResult.model_kind == "base", EvalResult.model_name == model_name)
            .order_by(EvalResult.run_id.desc(), EvalResult.id)
        ).all()
    by_run: dict[int, list[EvalResult]] = {}
    for result in results:
        if json.loads(result.fingerprint_json).get("eval_key") == eval_key:
            by_run.setdefault(result.run_id, []).append(result)
    if not by_run:
        return None
    latest = max(by_run)
    return [_score_row(r) for r in by_run[latest]]


def samples_of(registry: Registry, run_id: int, model_kind: str, task: str) -> list[dict] | None:
    with registry.session() as session:
        result = session.exec(
            select(EvalResult).where(
                EvalResult.run_id == run_id, EvalResult.model_kind == model_kind, EvalResult.task == task
            )
        ).first()
        if result is None or result.samples_json is None:
            return None
        return json.loads(result.samples_json)


def resolved_specs(registry: Registry, run_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """The resolved spec of each run's experiment, by run id."""
    with registry.session() as session:
        query = select(Run.id, Experiment.resolved_json).join(Experiment, Experiment.id == Run.experiment_id)
        if run_ids is not None:
            query = query.where(Run.id.in_(run_ids))
        return {run_id: json.loads(text) for run_id, text in session.exec(query).all()}


def cached_evaluations(registry: Registry, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The evaluation-cache payloads stored under any of `keys`, by key."""
    if not keys:
        return {}
    with registry.session() as session:
        rows = session.exec(select(EvalCacheEntry).where(EvalCacheEntry.key.in_(keys))).all()
    return {row.key: json.loads(row.payload_json) for row in rows}


def known_file_digest(registry: Registry, path: str, size: int, mtime_ns: int) -> str | None:
    """A file's remembered sha256, if it was hashed at this very size and mtime."""
    with registry.session() as session:
        row = session.exec(select(FileDigest).where(FileDigest.path == path)).first()
    if row is None or row.size != size or row.mtime_ns != mtime_ns:
        return None
    return row.sha256


@dataclass
class ModelEvaluation:
    """The latest `tunelab eval` scores of one model at one group of settings (its eval_key)."""

    model_name: str  # run:ID, a local path or a hub id
    model_digest: str | None
    run_id: int | None
    eval_key: str
    evaluated_at: datetime
    scores: list[ScoreRow]


def model_evaluations(registry: Registry, *, model_name: str | None = None) -> list[ModelEvaluation]:
    """Scores recorded by `tunelab eval` (model_kind "eval"), one entry per model and settings, newest first.

    Within an entry the latest row of each task wins, so evaluating a model again replaces its numbers.
    """
    query = select(EvalResult).where(EvalResult.model_kind == "eval").order_by(EvalResult.id)
    if model_name is not None:
        query = query.where(EvalResult.model_name == model_name)
    with registry.session() as session:
        results = session.exec(query).all()
    grouped: dict[tuple[str, str], dict[str, EvalResult]] = {}
    for result in results:
        key = str(json.loads(result.fingerprint_json).get("eval_key", ""))
        grouped.setdefault((result.model_name, key), {})[result.task] = result
    evaluations = []
    for (name, key), rows in grouped.items():
        latest = max(rows.values(), key=lambda r: r.id)
        evaluations.append((latest.id, ModelEvaluation(
            model_name=name, model_digest=latest.model_digest, run_id=latest.run_id, eval_key=key,
            evaluated_at=latest.created_at, scores=[_score_row(r) for r in sorted(rows.values(), key=lambda r: r.id)],
        )))
    return [evaluation for _, evaluation in sorted(evaluations, key=lambda pair: pair[0], reverse=True)]
