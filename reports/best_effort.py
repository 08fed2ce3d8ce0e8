"""Registry writes a report can do without: its render cache, and p-values it computed for older scores.

A user who may only read the registry (a SELECT-only PostgreSQL role, a read-only SQLite file) still gets the
report: the first refused write is one warning, and the report's later writes through that engine are skipped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from weakref import WeakKeyDictionary

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tunelab.registry.db import Registry

log = logging.getLogger(__name__)

# Why each engine refused a write, since the report (or cache warming) began: the rest are not tried.
_refused: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()
# Set in a forked page writer: it hands its refusal to the parent (`refusal`, `adopt`), which warns once.
_quiet = False


def begin(registry: Registry) -> None:
    """Start a report: try writes again (the last refusal may have been a passing one)."""
    _refused.pop(registry.engine, None)


def write(registry: Registry, what: str, action: Callable[[], object]) -> bool:
    """Run `action`, a write of `what`; False, with a warning the first time, when the registry refuses it."""
    if registry.engine in _refused:
        return False
    try:
        with _driver_warnings_muted():
            action()
    except DBAPIError as exc:
        detail = str(exc.orig or "").strip()
        reason = detail.splitlines()[0] if detail else type(exc).__name__
        adopt(registry, f"could not save {what} to the registry ({reason}): the report is complete, but "
                        "stores none of its work there, and the next one will redo it")
        return False
    return True


def refusal(registry: Registry) -> str | None:
    """The warning of the write the registry refused, if one was."""
    return _refused.get(registry.engine)


def adopt(registry: Registry, warning: str | None) -> None:
    """Record a refused write (this process's, or a forked writer's) and warn, once per report."""
    if warning is None or registry.engine in _refused:
        return
    _refused[registry.engine] = warning
    if not _quiet:
        log.warning(warning)


def quiet() -> None:
    """In a forked writer: record refusals without warning; the parent warns."""
    global _quiet
    _quiet = True


@contextlib.contextmanager
def _driver_warnings_muted() -> Iterator[None]:
    # psycopg logs a warning of its own when a refused insert aborts its pipeline (a batch of rows): the refusal
    # is this module's one warning, not a second line beside it.
    driver = logging.getLogger("psycopg")
    level = driver.level
    driver.setLevel(logging.ERROR)
    try:
        yield
    finally:
        driver.setLevel(level)
