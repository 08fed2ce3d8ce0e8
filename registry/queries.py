"""Registry reads that the runner and the reports make through the ORM: a run with its experiment, base-model
scores, per-item logs, evaluation and file-digest caches, `tunelab eval` results.

Run listings and records live in registry/run_records.py (plain SQL, also read without SQLAlchemy); their names
are importable from here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.errors import MAX_ID, NotFound
from tunelab.registry.models import (
    Checkpoint,
    EvalCacheEntry,
    EvalResult,
    Experiment,
    FileDigest,
    GenerationCacheEntry,
    Run,
    Search,
)
from tunelab.registry.run_records import (  # noqa: F401  (re-exported: the read path's records and reads)
    MemberScore,
    RunDetail,
    RunSummary,
    list_runs,
    member_scores,
    resolved_specs,
    run_detail,
    run_details,
    run_scores,
)
from tunelab.registry.run_status import RunStatus, SearchStatus
from tunelab.registry.scores import FIELDS, Score, column, from_columns

# A score's columns, after its row's id, run and time; never the per-item log.
_SCORE_ROW = [EvalResult.__table__.c[name]
              for name in ("id", "run_id", "created_at", *(column(f) for f in FIELDS if f != "samples"))]


def _scored_rows(session, *conditions) -> list[tuple[Any, Score]]:
    """Each evalresult row matching `conditions`, in id order, with its Score."""
    rows = session.exec(select(*_SCORE_ROW).where(*conditions).order_by(EvalResult.id)).all()
    parsed: dict[str, Any] = {}
    return [(row, from_columns(row._mapping, parsed=parsed)) for row in rows]


@dataclass(frozen=True)
class QueueDemand:
    """What the queue asks of workers: queued runs and open searches, and the most GPUs (per node) and nodes one
    of them needs."""

    queued: int
    searches: int
    gpus: int
    nodes: int


def queue_demand(registry: Registry) -> QueueDemand:
    """The queue's queued runs and open searches, and the most GPUs and nodes any of them asks for."""
    with registry.session() as session:
        queued, gpus, nodes = session.exec(
            select(func.count(Run.id), func.max(Run.gpus), func.max(Run.nodes))
            .where(Run.status == RunStatus.queued.value)).one()
        searches, search_gpus = session.exec(
            select(func.count(Search.id), func.max(Search.gpus)).where(Search.status == SearchStatus.running.value)
        ).one()
    return QueueDemand(queued, searches, max(gpus or 0, search_gpus or 0), nodes or 1)


def experiment_for_run(registry: Registry, run_id: int) -> tuple[Run, Experiment]:
    if not 0 < run_id <= MAX_ID:  # `tunelab eval run:ID` with an id no registry holds: never sent to the driver
        raise NotFound(f"no run with id {run_id}")
    with registry.session() as session:
        pair = session.exec(
            select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id).where(Run.id == run_id)
        ).first()
        if pair is None:
            raise NotFound(f"no run with id {run_id}")
        return pair


def checkpoint_steps(registry: Registry, run_id: int) -> list[int]:
    """The steps of the checkpoints recorded for a run, oldest first."""
    with registry.session() as session:
        return list(session.exec(select(Checkpoint.step).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)))


def find_base_scores(registry: Registry, model_name: str, eval_key: str) -> list[Score] | None:
    """Scores of a base model already evaluated with the same settings (so it is evaluated once)."""
    with registry.session() as session:
        scored = _scored_rows(session, EvalResult.model_kind == "base", EvalResult.model_name == model_name)
    by_run: dict[int, list[Score]] = {}
    for row, score in scored:
        if score.fingerprint.get("eval_key") == eval_key:
            by_run.setdefault(row.run_id, []).append(score)
    if not by_run:
        return None
    return by_run[max(by_run)]


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


def group_samples(registry: Registry, run_id: int, model_kind: str, group: str) -> dict[str, list[dict]]:
    """The per-item logs of a group's members (MMLU's subjects) for one model of a run, by task; members without
    a log are left out, and of a task recorded twice the later log counts."""
    with registry.session() as session:
        rows = session.exec(
            select(EvalResult.task, EvalResult.samples_json).where(
                EvalResult.run_id == run_id, EvalResult.model_kind == model_kind, EvalResult.task_group == group,
                EvalResult.samples_json.is_not(None),
            ).order_by(EvalResult.id)
        ).all()
    return {task: json.loads(text) for task, text in rows}


def cached_evaluations(registry: Registry, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The evaluation-cache payloads stored under any of `keys`, by key."""
    if not keys:
        return {}
    with registry.session() as session:
        rows = session.exec(select(EvalCacheEntry).where(EvalCacheEntry.key.in_(keys))).all()
    return {row.key: json.loads(row.payload_json) for row in rows}


def cached_generation(registry: Registry, key: str) -> list[str] | None:
    """The outputs stored under a generation-cache key (runner/evaluation/samples.py), or None."""
    with registry.session() as session:
        row = session.exec(select(GenerationCacheEntry).where(GenerationCacheEntry.key == key)).first()
    return None if row is None else json.loads(row.payload_json)


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
    scores: list[Score]


def model_evaluations(registry: Registry, *, model_name: str | None = None) -> list[ModelEvaluation]:
    """Scores recorded by `tunelab eval` (model_kind "eval"), one entry per model and settings, newest first.

    Within an entry the latest row of each task wins, so evaluating a model again replaces its numbers.
    """
    conditions = [EvalResult.model_kind == "eval"]
    if model_name is not None:
        conditions.append(EvalResult.model_name == model_name)
    with registry.session() as session:
        scored = _scored_rows(session, *conditions)
    grouped: dict[tuple[str, str], dict[str, tuple[Any, Score]]] = {}
    for row, score in scored:
        key = str(score.fingerprint.get("eval_key", ""))
        grouped.setdefault((score.model_name, key), {})[score.task] = (row, score)
    evaluations = []
    for (name, key), latest_by_task in grouped.items():
        entries = sorted(latest_by_task.values(), key=lambda entry: entry[0].id)
        latest_row, latest = entries[-1]
        evaluations.append((latest_row.id, ModelEvaluation(
            model_name=name, model_digest=latest.model_digest, run_id=latest_row.run_id, eval_key=key,
            evaluated_at=latest_row.created_at, scores=[score for _, score in entries],
        )))
    return [evaluation for _, evaluation in sorted(evaluations, key=lambda pair: pair[0], reverse=True)]
