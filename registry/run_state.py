"""Every change of a run's status, in one place: claim, heartbeat, succeed, prune, fail or re-queue, recover, cancel,
retry.

Each change is a conditional UPDATE on the state it was decided from, checked by its row count, so any number of
workers, in processes or on machines sharing a PostgreSQL registry, never run the same run twice, and a run is
re-queued, failed or finished exactly once. A worker changes a run only while it still holds it (status running
under its name): a cancel, or a re-queue as stale while it stalled, wins. The statuses are registry/run_status.py;
`Run.attempts` counts the automatic re-queues, which `[resources] max_retries` caps. New runs enter the queue
through registry/submissions.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, or_, update
from sqlmodel import Session, select
from tunelab.experiments.schema import ResourcesSection
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound, RegistryError
from tunelab.registry.models import Experiment, Run, utcnow
from tunelab.registry.run_status import RunStatus

QUEUED, RUNNING = RunStatus.queued.value, RunStatus.running.value
CANCELLABLE = (QUEUED, RUNNING)
RETRYABLE = (RunStatus.failed.value, RunStatus.cancelled.value)
# What a worker learns of a run that is running under another worker's name (re-queued as stale, claimed again).
LOST = "lost"
_CLAIM_ATTEMPTS = 50


# ---------------------------------------------------------------- claims: queued -> running


def claim_next(registry: Registry, worker: str, *, max_gpus: int | None = None, max_nodes: int = 1) -> int | None:
    """Mark the next queued run (highest priority, then oldest) running for `worker`; its id, or None.

    `max_gpus`: only runs whose [resources] gpus this worker can give (None: any run). `max_nodes`: only runs whose
    [resources] nodes its allocation spans (a worker outside a multi-node Slurm allocation has one).
    """
    for _ in range(_CLAIM_ATTEMPTS):
        with registry.session() as session:
            query = select(Run.id).where(Run.status == QUEUED, Run.nodes <= max_nodes)
            if max_gpus is not None:
                query = query.where(Run.gpus <= max_gpus)
            candidate = session.exec(query.order_by(Run.priority.desc(), Run.id).limit(1)).first()
            if candidate is None:
                return None
            if _claim(session, candidate, worker):
                return candidate
        # Another worker took it between our read and our update: try the next one.
    return None


def claim_run(registry: Registry, run_id: int, worker: str) -> bool:
    """Claim one specific queued run (used by `tunelab run`); False if it is not queued."""
    with registry.session() as session:
        return _claim(session, run_id, worker)


def _claim(session: Session, run_id: int, worker: str) -> bool:
    now = utcnow()
    result = session.exec(
        update(Run).where(Run.id == run_id, Run.status == QUEUED)
        .values(status=RUNNING, worker=worker, started_at=now, heartbeat_at=now, error=None, finished_at=None)
    )
    session.commit()
    return result.rowcount == 1


def add_claimed_run(registry: Registry, *, experiment_id: int, worker: str, gpus: int = 0, nodes: int = 1,
                    reproduces_run_id: int | None = None) -> int:
    """Add a run of an experiment that is `worker`'s from the start (`tunelab reproduce` executes the run it
    makes): inserted running, in one transaction, so no worker polling the queue can ever claim it."""
    run = claimed_run(experiment_id, worker, gpus=gpus, nodes=nodes, reproduces_run_id=reproduces_run_id)
    with registry.session() as session:
        session.add(run)
        session.commit()
        return run.id


def claimed_run(experiment_id: int, worker: str, *, gpus: int = 0, nodes: int = 1, priority: int = 0,
                reproduces_run_id: int | None = None) -> Run:
    """A new run row that is `worker`'s from the start, for the caller to insert in its own transaction (a search
    adds a trial's experiment and run together: registry/searches.py)."""
    now = utcnow()
    return Run(experiment_id=experiment_id, status=RUNNING, worker=worker, started_at=now, heartbeat_at=now,
               gpus=gpus, nodes=nodes, priority=priority, reproduces_run_id=reproduces_run_id)


def queued_needing_more_gpus(registry: Registry, max_gpus: int, max_nodes: int = 1) -> int:
    """How many queued runs ask for more GPUs than `max_gpus`, or more nodes than `max_nodes` (a worker that cannot
    take them says so)."""
    with registry.session() as session:
        return session.exec(select(func.count(Run.id)).where(
            Run.status == QUEUED, or_(Run.gpus > max_gpus, Run.nodes > max_nodes))).one()


# ---------------------------------------------------------------- the worker holding a run


def beat(registry: Registry, run_id: int, worker: str | None) -> str:
    """Heartbeat a run only while `worker` still holds it; 'running', or the status it has now ('lost' when
    another worker holds it).

    A worker whose run was taken away (cancelled, or re-queued as stale and claimed elsewhere)
    learns it here and stops, instead of racing the new owner.
    """
    return _while_held(registry, run_id, worker, RUNNING, heartbeat_at=utcnow())


def succeed(registry: Registry, run_id: int, worker: str | None) -> str:
    """Mark the run `worker` holds succeeded; 'succeeded', or the status it has now ('lost' as for beat): a cancel
    or a stale re-queue that came first is never overwritten."""
    return _while_held(registry, run_id, worker, RunStatus.succeeded.value, status=RunStatus.succeeded.value,
                       finished_at=utcnow(), error=None)


def prune(registry: Registry, run_id: int, worker: str | None) -> str:
    """Mark the search trial `worker` holds pruned (its pruner stopped it; its checkpoints stay); 'pruned', or the
    status it has now ('lost' as for beat)."""
    return _while_held(registry, run_id, worker, RunStatus.pruned.value, status=RunStatus.pruned.value,
                       finished_at=utcnow(), error=None)


def retry_or_fail(registry: Registry, run_id: int, worker: str | None, error: str, *, retryable: bool) -> str:
    """End an attempt that raised: re-queue it while retries remain and the error is retryable, else fail it.

    Only while `worker` still holds the run (a cancel in the meantime wins); the run's new status, or 'lost'.
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
        changed = _update_held(session, run_id, worker, status=status.value, **values)
    return status.value if changed else LOST


def requeue_interrupted(registry: Registry, run_id: int, worker: str | None, note: str) -> bool:
    """Put a run its worker was asked to stop back in the queue; not a failure, so `attempts` stays."""
    with registry.session() as session:
        return _update_held(session, run_id, worker, status=QUEUED, worker=None, error=note)


def _update_held(session: Session, run_id: int, holder: str | None, **values) -> bool:
    """Update the run while `holder` (a worker) holds it; whether it did."""
    result = session.exec(
        update(Run).where(Run.id == run_id, Run.status == RUNNING, Run.worker == holder).values(**values)
    )
    session.commit()
    return result.rowcount == 1


def _while_held(registry: Registry, run_id: int, holder: str | None, done: str, **values) -> str:
    with registry.session() as session:
        if _update_held(session, run_id, holder, **values):
            return done
        status = session.exec(select(Run.status).where(Run.id == run_id)).first()
    if status is None:
        raise NotFound(f"no run {run_id}")
    # Running but under another worker's name: for us it is as good as gone.
    return LOST if status == RUNNING else status


# ---------------------------------------------------------------- runs whose worker died


@dataclass(frozen=True)
class Recovered:
    """A run taken back from a lost worker: re-queued, or failed because its retries are spent."""

    run_id: int
    status: str
    attempts: int
    worker: str | None
    error: str


def max_retries(resolved_json: str) -> int:
    """`[resources] max_retries` of a stored spec (its default for specs stored before the field existed).

    Only that section is validated: a run whose spec no longer validates as a whole must still be recovered. A
    section stored before a bound it breaks (priority, gpus) keeps its own count when that is one.
    """
    resources = json.loads(resolved_json).get("resources") or {}
    try:
        return ResourcesSection.model_validate(resources).max_retries
    except ValidationError:
        count = resources.get("max_retries")
        return count if type(count) is int and count >= 0 else ResourcesSection.model_fields["max_retries"].default


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
            .where(Run.status == RUNNING, stale)
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
                .where(Run.id == run_id, Run.status == RUNNING, Run.attempts == attempts, stale)
                .values(status=status.value, error=error, **values)
            )
            if result.rowcount == 1:  # 0: it beat again, finished, or another worker recovered it first
                recovered.append(Recovered(run_id, status.value, values.get("attempts", attempts), worker, error))
        session.commit()
    return recovered


# ---------------------------------------------------------------- what users ask for


def cancel(registry: Registry, run_id: int) -> str:
    """Cancel a queued run, or ask a running one to stop (its worker stops at the next step); the new status."""
    _change_from(registry, run_id, CANCELLABLE, "cancelled", status=RunStatus.cancelled.value, finished_at=utcnow())
    return RunStatus.cancelled.value


def retry(registry: Registry, run_id: int) -> None:
    """Queue a failed or cancelled run again; it resumes from its last complete checkpoint."""
    # A manual retry starts a fresh budget of automatic re-queues.
    _change_from(registry, run_id, RETRYABLE, "retried", status=QUEUED, error=None, finished_at=None, worker=None,
                 attempts=0)


def _change_from(registry: Registry, run_id: int, allowed: tuple[str, ...], done: str, **values) -> None:
    """Update the run if its status is one of `allowed`; else say what it is and what it must be."""
    with registry.session() as session:
        result = session.exec(update(Run).where(Run.id == run_id, Run.status.in_(allowed)).values(**values))
        session.commit()
    if result.rowcount != 1:
        raise RegistryError(f"run {run_id} is {_status(registry, run_id)}; only {' or '.join(allowed)} runs can be "
                            f"{done}")


def _status(registry: Registry, run_id: int) -> str:
    with registry.session() as session:
        status = session.exec(select(Run.status).where(Run.id == run_id)).first()
    if status is None:
        raise NotFound(f"no run with id {run_id}")
    return status
