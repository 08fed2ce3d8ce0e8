"""Recovery of runs whose worker died or stopped: re-queue, or give up once the retries are spent.

Every transition is a conditional UPDATE on the state it was decided from, so any number of
workers may run these at once and a run is still re-queued (or failed) exactly once.
`Run.attempts` counts the automatic re-queues; `[resources] max_retries` caps it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import select
from tunelab.experiments.schema import ResourcesSection
from tunelab.registry.db import Registry
from tunelab.registry.models import Checkpoint, EvalResult, Experiment, Run, RunStatus, TrainMetric, utcnow


@dataclass(frozen=True)
class Recovered:
    """A run taken back from a lost worker: re-queued, or failed because its retries are spent."""

    run_id: int
    status: str
    attempts: int
    worker: str | None
    error: str


@dataclass(frozen=True)
class KeptCheckpoint:
    """A complete checkpoint that exists on disk, as the runner found it."""

    step: int
    loss: float | None
    path: str


def max_retries(resolved_json: str) -> int:
    """`[resources] max_retries` of a stored spec (its default for specs stored before the field existed)."""
    resources = json.loads(resolved_json).get("resources") or {}
    return ResourcesSection.model_validate(resources).max_retries


def requeue_stale(registry: Registry, timeout_seconds: float, *, now: datetime | None = None) -> list[Recovered]:
    """Take back `running` runs whose last heartbeat is older than `timeout_seconds`.

    Each goes back to the queue with `attempts` + 1 (it resumes from its last complete
    checkpoint), or is marked failed when it has already been re-queued `max_retries` times.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout_seconds)
    stale = or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < cutoff)
    with registry.session() as session:
        candidates = session.exec(
            select(Run.id, Run.attempts, Run.worker, Run.heartbeat_at, Experiment.resolved_json)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Run.status == RunStatus.running.value, stale)
            .order_by(Run.id)
        ).all()
        recovered: list[Recovered] = []
        for run_id, attempts, worker, beat_at, resolved_json in candidates:
            limit = max_retries(resolved_json)
            since = beat_at.isoformat(timespec="seconds") if beat_at else "never"
            lost = f"worker {worker or '?'} stopped heartbeating (last beat {since})"
            if attempts >= limit:
                status, error = RunStatus.failed, f"{lost}; gave up after {attempts} retries (max_retries = {limit})"
                values = {"finished_at": now}
            else:
                status, error = RunStatus.queued, f"{lost}; re-queued, retry {attempts + 1} of {limit}"
                values = {"attempts": attempts + 1, "worker": None}
            result = session.exec(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.running.value, Run.attempts == attempts, stale)
                .values(status=status.value, error=error, **values)
            )
            if result.rowcount == 1:  # 0: it beat again, finished, or another worker recovered it first
                recovered.append(Recovered(run_id, status.value, values.get("attempts", attempts), worker, error))
        session.commit()
    return recovered


def retry_or_fail(registry: Registry, run_id: int, worker: str | None, error: str, *, retryable: bool) -> str:
    """End an attempt that raised: re-queue it while retries remain and the error is retryable, else fail it.

    Only while `worker` still holds the run (a cancel in the meantime wins); the run's new status.
    """
    with registry.session() as session:
        row = session.exec(
            select(Run.attempts, Experiment.resolved_json)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Run.id == run_id)
        ).first()
        if row is None:
            return RunStatus.failed.value
        attempts, resolved_json = row
        limit = max_retries(resolved_json)
        if retryable and attempts < limit:
            status = RunStatus.queued
            values = {"attempts": attempts + 1, "worker": None,
                      "error": f"{error} (re-queued, retry {attempts + 1} of {limit})"}
        else:
            status = RunStatus.failed
            spent = f" (after {attempts} retries)" if retryable and attempts else ""
            values = {"finished_at": utcnow(), "error": error + spent}
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.running.value, Run.worker == worker)
            .values(status=status.value, **values)
        )
        session.commit()
    return status.value if result.rowcount == 1 else "lost"


def requeue_interrupted(registry: Registry, run_id: int, worker: str | None, note: str) -> bool:
    """Put a run its worker was asked to stop back in the queue; not a failure, so `attempts` stays."""
    with registry.session() as session:
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.running.value, Run.worker == worker)
            .values(status=RunStatus.queued.value, worker=None, error=note)
        )
        session.commit()
    return result.rowcount == 1


def rewind(registry: Registry, run_id: int, step: int, kept: Iterable[KeptCheckpoint]) -> int:
    """Make the registry match a run resuming at `step` with the checkpoints `kept` on disk.

    Training metrics after `step` are deleted (they will be logged again, identically), and the
    checkpoint rows become exactly the kept checkpoints. The number of metric rows deleted.
    """
    kept = list(kept)
    with registry.session() as session:
        deleted = session.exec(delete(TrainMetric).where(TrainMetric.run_id == run_id, TrainMetric.step > step))
        session.exec(delete(Checkpoint).where(Checkpoint.run_id == run_id,
                                              Checkpoint.step.not_in([c.step for c in kept])))
        recorded = set(session.exec(select(Checkpoint.step).where(Checkpoint.run_id == run_id)).all())
        for checkpoint in kept:
            # Written to disk but killed before it was recorded: record it now.
            if checkpoint.step not in recorded:
                session.add(Checkpoint(run_id=run_id, step=checkpoint.step, loss=checkpoint.loss,
                                       path=checkpoint.path))
        session.commit()
    return deleted.rowcount


def forget_checkpoints(registry: Registry, run_id: int, steps: Iterable[int]) -> None:
    """Drop the rows of checkpoints pruned from disk (`[train] keep_checkpoints`)."""
    steps = list(steps)
    if not steps:
        return
    with registry.session() as session:
        session.exec(delete(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step.in_(steps)))
        session.commit()


RUN_SCORE_KINDS = ("finetuned", "base")  # what executing a run records (other kinds come from other commands)


def forget_scores(registry: Registry, run_id: int) -> None:
    """Drop the scores a run's own evaluation recorded; a new attempt evaluates again from the start."""
    with registry.session() as session:
        session.exec(delete(EvalResult).where(EvalResult.run_id == run_id,
                                              EvalResult.model_kind.in_(RUN_SCORE_KINDS)))
        session.commit()
