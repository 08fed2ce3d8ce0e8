"""The run queue: atomic claims and run state transitions.

A claim is a conditional UPDATE (status still 'queued') checked by its row count, so
any number of workers, in processes or on machines sharing a PostgreSQL registry,
never run the same run twice.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.models import Run, RunStatus, utcnow

_CLAIM_ATTEMPTS = 50


def claim_next(registry: Registry, worker: str, *, max_gpus: int | None = None) -> int | None:
    """Mark the next queued run (highest priority, then oldest) running for `worker`; its id, or None.

    `max_gpus`: only runs whose [resources] gpus this worker can give (None: any run).
    """
    for _ in range(_CLAIM_ATTEMPTS):
        with registry.session() as session:
            query = select(Run.id).where(Run.status == RunStatus.queued.value)
            if max_gpus is not None:
                query = query.where(Run.gpus <= max_gpus)
            candidate = session.exec(query.order_by(Run.priority.desc(), Run.id).limit(1)).first()
            if candidate is None:
                return None
            now = utcnow()
            result = session.exec(
                update(Run)
                .where(Run.id == candidate, Run.status == RunStatus.queued.value)
                .values(status=RunStatus.running.value, worker=worker, started_at=now, heartbeat_at=now,
                        error=None, finished_at=None)
            )
            session.commit()
            if result.rowcount == 1:
                return candidate
        # Another worker took it between our read and our update: try the next one.
    return None


def queued_needing_more_gpus(registry: Registry, max_gpus: int) -> int:
    """How many queued runs ask for more GPUs than `max_gpus` (a worker that cannot take them says so)."""
    with registry.session() as session:
        return session.exec(
            select(func.count(Run.id)).where(Run.status == RunStatus.queued.value, Run.gpus > max_gpus)
        ).one()


def claim_run(registry: Registry, run_id: int, worker: str) -> bool:
    """Claim one specific queued run (used by `tunelab run`); False if it is not queued."""
    with registry.session() as session:
        now = utcnow()
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.queued.value)
            .values(status=RunStatus.running.value, worker=worker, started_at=now, heartbeat_at=now)
        )
        session.commit()
        return result.rowcount == 1


def add_claimed_run(registry: Registry, *, experiment_id: int, worker: str, gpus: int = 0,
                    reproduces_run_id: int | None = None) -> int:
    """Add a run of an experiment that is `worker`'s from the start (`tunelab reproduce` executes the run it
    makes): inserted running, in one transaction, so no worker polling the queue can ever claim it."""
    now = utcnow()
    run = Run(experiment_id=experiment_id, status=RunStatus.running.value, worker=worker, started_at=now,
              heartbeat_at=now, gpus=gpus, reproduces_run_id=reproduces_run_id)
    with registry.session() as session:
        session.add(run)
        session.commit()
        return run.id


def _finish(registry: Registry, run_id: int, status: RunStatus, **values) -> None:
    with registry.session() as session:
        result = session.exec(
            update(Run).where(Run.id == run_id).values(status=status.value, finished_at=utcnow(), **values)
        )
        session.commit()
        if result.rowcount != 1:
            raise NotFound(f"no run {run_id}")


def mark_succeeded(registry: Registry, run_id: int) -> None:
    _finish(registry, run_id, RunStatus.succeeded, error=None)


def mark_failed(registry: Registry, run_id: int, error: str) -> None:
    _finish(registry, run_id, RunStatus.failed, error=error)


def heartbeat(registry: Registry, run_id: int) -> None:
    with registry.session() as session:
        session.exec(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
        session.commit()


def update_run(registry: Registry, run_id: int, **values) -> None:
    """Set training facts on a run (output dir, train time, final loss, data size)."""
    with registry.session() as session:
        session.exec(update(Run).where(Run.id == run_id).values(**values))
        session.commit()


def beat(registry: Registry, run_id: int, worker: str | None) -> str:
    """Heartbeat a run only while `worker` still holds it; 'running', or the status it has now.

    A worker whose run was taken away (cancelled, or re-queued as stale and claimed elsewhere)
    learns it here and stops, instead of racing the new owner.
    """
    with registry.session() as session:
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.running.value, Run.worker == worker)
            .values(heartbeat_at=utcnow())
        )
        session.commit()
        if result.rowcount == 1:
            return RunStatus.running.value
        status = session.exec(select(Run.status).where(Run.id == run_id)).first()
    if status is None:
        raise NotFound(f"no run {run_id}")
    # Running but under another worker's name: for us it is as good as gone.
    return "lost" if status == RunStatus.running.value else status
