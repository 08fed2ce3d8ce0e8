"""Registry reads that the runner and the reports make through the ORM: a run with its experiment, base-model
scores, per-item logs, evaluation and file-digest caches, `tunelab eval` results, the render cache.

Run listings and records live in registry/run_records.py (plain SQL, also read without SQLAlchemy); their names
are importable from here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.models import EvalCacheEntry, EvalResult, Experiment, FileDigest, Run
from tunelab.registry.run_records import (  # noqa: F401  (re-exported: the read path's records and reads)
    ID_CHUNK,
    MemberScore,
    RunDetail,
    RunSummary,
    ScoreRow,
    list_runs,
    member_scores,
    p_value_as_read,
    resolved_specs,
    run_detail,
    run_details,
    run_scores,
    to_jsonable,
)


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
        vs_base_p=p_value_as_read(result.vs_base_p),
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
