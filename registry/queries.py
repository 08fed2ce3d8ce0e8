"""Read side of the registry: run listings and one run's full record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import select

from registry.db import Registry
from registry.errors import NotFound
from registry.models import Checkpoint, EvalCacheEntry, EvalResult, Experiment, FileDigest, Run, TrainMetric


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
    )


_SCORE_COLUMNS = (
    EvalResult.run_id, EvalResult.model_kind, EvalResult.model_name, EvalResult.task, EvalResult.metric,
    EvalResult.value, EvalResult.stderr, EvalResult.num_fewshot, EvalResult.limit, EvalResult.n_samples,
    EvalResult.task_group, EvalResult.comparable, EvalResult.lm_eval_version, EvalResult.fingerprint_json,
)


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
    with registry.engine.connect() as connection:
        for row in connection.execute(query):
            grouped.setdefault(row.run_id, []).append(ScoreRow(
                model_kind=row.model_kind, model_name=row.model_name, task=row.task, metric=row.metric,
                value=row.value, stderr=row.stderr, num_fewshot=row.num_fewshot, limit=row.limit,
                n_samples=row.n_samples, task_group=row.task_group, comparable=row.comparable,
                lm_eval_version=row.lm_eval_version, fingerprint=json.loads(row.fingerprint_json)))
    return grouped


def run_detail(registry: Registry, run_id: int) -> RunDetail:
    with registry.session() as session:
        pair = session.exec(
            select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id).where(Run.id == run_id)
        ).first()
        if pair is None:
            raise NotFound(f"no run with id {run_id}")
        run, experiment = pair
        checkpoints = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step))
        metrics = session.exec(select(TrainMetric).where(TrainMetric.run_id == run_id).order_by(TrainMetric.id))
        results = session.exec(select(EvalResult).where(EvalResult.run_id == run_id).order_by(EvalResult.id))
        return RunDetail(
            summary=_summary(run, experiment),
            spec=json.loads(experiment.resolved_json),
            spec_text=experiment.spec_text,
            spec_path=experiment.spec_path,
            spec_hash=experiment.spec_hash,
            workdir=experiment.workdir,
            output_dir=run.output_dir,
            train_seconds=run.train_seconds,
            num_train_examples=run.num_train_examples,
            checkpoints=[{"step": c.step, "loss": c.loss, "path": c.path, "created_at": c.created_at}
                         for c in checkpoints],
            metrics=[{"step": m.step, "epoch": m.epoch, "loss": m.loss, "learning_rate": m.learning_rate,
                      "grad_norm": m.grad_norm, "eval_loss": m.eval_loss} for m in metrics],
            scores=[_score_row(r) for r in results],
            environment=json.loads(run.environment_json) if run.environment_json else None,
            lineage=json.loads(run.lineage_json) if run.lineage_json else None,
            data_stats=json.loads(run.data_stats_json) if run.data_stats_json else None,
        )


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
