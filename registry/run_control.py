"""User actions on runs: cancel a queued or running run, retry a failed or cancelled one."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound, RegistryError
from tunelab.registry.models import Run, RunStatus, utcnow

CANCELLABLE = (RunStatus.queued.value, RunStatus.running.value)
RETRYABLE = (RunStatus.failed.value, RunStatus.cancelled.value)


def _status(registry: Registry, run_id: int) -> str:
    with registry.session() as session:
        status = session.exec(select(Run.status).where(Run.id == run_id)).first()
    if status is None:
        raise NotFound(f"no run with id {run_id}")
    return status


def cancel(registry: Registry, run_id: int) -> str:
    """Cancel a queued run, or ask a running one to stop (its worker stops at the next step); the old status."""
    with registry.session() as session:
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status.in_(CANCELLABLE))
            .values(status=RunStatus.cancelled.value, finished_at=utcnow())
        )
        session.commit()
    if result.rowcount != 1:
        status = _status(registry, run_id)
        raise RegistryError(f"run {run_id} is {status}; only queued or running runs can be cancelled")
    return "cancelled"


def retry(registry: Registry, run_id: int) -> None:
    """Queue a failed or cancelled run again; it resumes from its last complete checkpoint."""
    with registry.session() as session:
        result = session.exec(
            update(Run)
            .where(Run.id == run_id, Run.status.in_(RETRYABLE))
            # A manual retry starts a fresh budget of automatic re-queues.
            .values(status=RunStatus.queued.value, error=None, finished_at=None, worker=None, attempts=0)
        )
        session.commit()
    if result.rowcount != 1:
        status = _status(registry, run_id)
        raise RegistryError(f"run {run_id} is {status}; only failed or cancelled runs can be retried")


def is_cancelled(registry: Registry, run_id: int) -> bool:
    return _status(registry, run_id) == RunStatus.cancelled.value
