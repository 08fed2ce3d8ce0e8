"""Read side of the registry: run listings and one run's full record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import select

from registry.db import Registry
from registry.errors import NotFound
from registry.models import Checkpoint, EvalResult, Experiment, Run, TrainMetric


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


def run_scores(registry: Registry, run_ids: list[int] | None = None) -> dict[int, list[ScoreRow]]:
    """Eval results grouped by run id (all runs when `run_ids` is None)."""
    with registry.session() as session:
        query = select(EvalResult).order_by(EvalResult.run_id, EvalResult.id)
        if run_ids is not None:
            query = query.where(EvalResult.run_id.in_(run_ids))
        grouped: dict[int, list[ScoreRow]] = {}
        for result in session.exec(query).all():
            grouped.setdefault(result.run_id, []).append(_score_row(result))
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
                      "grad_norm": m.grad_norm} for m in metrics],
            scores=[_score_row(r) for r in results],
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
