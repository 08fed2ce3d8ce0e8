"""Write what a run produces: checkpoints, training metrics, evaluation results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from registry.db import Registry
from registry.models import Checkpoint, EvalCacheEntry, EvalResult, FileDigest, TrainMetric


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None  # validation loss, on a point of its own


@dataclass(frozen=True)
class ScoreRecord:
    """One score of one evaluated model, as the registry stores it."""

    model_kind: str  # "finetuned" | "base"
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
    fingerprint: dict = field(default_factory=dict)
    samples: list[dict] | None = None
    model_digest: str | None = None  # sha256 of the scored weights, where known (runner/eval_cache.py)


def record_checkpoint(registry: Registry, run_id: int, step: int, loss: float | None, path: str) -> None:
    with registry.session() as session:
        session.add(Checkpoint(run_id=run_id, step=step, loss=loss, path=path))
        session.commit()


def record_metrics(registry: Registry, run_id: int, points: Iterable[MetricPoint]) -> None:
    with registry.session() as session:
        for point in points:
            session.add(TrainMetric(run_id=run_id, step=point.step, epoch=point.epoch, loss=point.loss,
                                    learning_rate=point.learning_rate, grad_norm=point.grad_norm,
                                    eval_loss=point.eval_loss))
        session.commit()


def record_scores(registry: Registry, run_id: int | None, scores: Iterable[ScoreRecord]) -> None:
    """Store scores; run_id None for a model that belongs to no run (`tunelab eval` of a path or hub id)."""
    with registry.session() as session:
        for score in scores:
            session.add(
                EvalResult(
                    run_id=run_id,
                    model_kind=score.model_kind,
                    model_name=score.model_name,
                    task=score.task,
                    metric=score.metric,
                    value=score.value,
                    stderr=score.stderr,
                    num_fewshot=score.num_fewshot,
                    limit=score.limit,
                    n_samples=score.n_samples,
                    task_group=score.task_group,
                    comparable=score.comparable,
                    lm_eval_version=score.lm_eval_version,
                    fingerprint_json=json.dumps(score.fingerprint, sort_keys=True),
                    samples_json=json.dumps(score.samples) if score.samples is not None else None,
                    model_digest=score.model_digest,
                )
            )
        session.commit()


def record_cached_evaluation(
    registry: Registry, *, key: str, task: str, model_digest: str, lm_eval_version: str, payload: dict
) -> bool:
    """Store one benchmark's result under its cache key; False when another process stored that key first."""
    with registry.session() as session:
        session.add(EvalCacheEntry(key=key, task=task, model_digest=model_digest, lm_eval_version=lm_eval_version,
                                   payload_json=json.dumps(payload)))
        try:
            session.commit()
        except IntegrityError:
            # The same key means the same result: whichever process wrote it first is as good as ours.
            session.rollback()
            return False
    return True


def forget_cached_evaluations(registry: Registry, keys: Iterable[str]) -> None:
    """Drop cache entries (a forced re-evaluation replaces them)."""
    from sqlmodel import delete

    keys = list(keys)
    with registry.session() as session:
        session.exec(delete(EvalCacheEntry).where(EvalCacheEntry.key.in_(keys)))
        session.commit()


def record_file_digest(registry: Registry, *, path: str, size: int, mtime_ns: int, sha256: str) -> None:
    """Remember a file's sha256 for its current size and mtime (replacing what was known of that path)."""
    with registry.session() as session:
        row = session.exec(select(FileDigest).where(FileDigest.path == path)).first()
        if row is None:
            session.add(FileDigest(path=path, size=size, mtime_ns=mtime_ns, sha256=sha256))
        else:
            row.size, row.mtime_ns, row.sha256 = size, mtime_ns, sha256
            session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # another process recorded the same path at the same moment; either row will do
