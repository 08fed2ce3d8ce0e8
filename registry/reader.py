"""Read an SQLite registry through the standard library's sqlite3: the query path's door.

`tunelab ls` and `show` must start like a small tool, and SQLAlchemy's import alone costs several times a
bare Python start. So an SQLite registry at this tunelab's schema revision is read with plain SQL through
sqlite3 (never created or written: a missing file is not made); every other case (another database, no
schema yet, an older revision) goes through the engine of registry/db.py, which migrates. Both satisfy
`Rows`, so the read functions of registry/run_records.py run on either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from tunelab.registry.errors import RegistryError
from tunelab.registry.location import sqlite_database
from tunelab.registry.revision import State, state_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

# As registry/db.py: wait for a writer's lock rather than fail with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


class Rows(Protocol):
    """Anything that runs one SQL text query with named (:name) parameters and returns its rows as tuples."""

    @property
    def dialect(self) -> str: ...

    @property
    def engine(self) -> Engine: ...

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]: ...


class NotAtHead(RegistryError):
    """The registry cannot be read as it is: it does not exist yet, has no schema, or is at an older revision."""


class SqliteReader:
    """An SQLite registry at head, open for reading through sqlite3."""

    dialect = "sqlite"

    def __init__(self, url: str, connection: sqlite3.Connection) -> None:
        self.url = url
        self._connection = connection

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        return self._connection.execute(sql, params or {}).fetchall()

    @cached_property
    def engine(self) -> Engine:
        """An SQLAlchemy engine over this same connection, for the queries SQLAlchemy compiles (ls --where)."""
        # Imported here: a plain listing or a run's record never needs SQLAlchemy.
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        return create_engine("sqlite://", creator=lambda: self._connection, poolclass=StaticPool)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
        self._connection.close()


def open_reader(url: str) -> SqliteReader:
    """Open an SQLite registry at head for reading; NotAtHead when it must go through registry/db.py first
    (another database, none yet, or an older revision); RegistryTooNew when a later tunelab migrated it."""
    database = sqlite_database(url)
    if database is None or database.file is None:
        raise NotAtHead(f"{url} is not an SQLite file")
    if not database.file.is_file():
        raise NotAtHead(f"no registry at {database.file} yet")
    # mode=rw never creates the file; a file the user may not write opens read-only all the same.
    target = database.target if database.uri else f"file:{_quote_path(str(database.file))}?mode=rw"
    connection = None
    try:
        connection = sqlite3.connect(target, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        stored = _stored_revision(connection)
        if state_of(stored) is not State.CURRENT:
            raise NotAtHead(f"registry {url} is at revision {stored or '(none)'}")
    except (sqlite3.Error, RegistryError) as exc:
        if connection is not None:
            connection.close()
        if isinstance(exc, sqlite3.Error):
            raise RegistryError(f"cannot open registry {url}: {exc}") from None
        raise
    return SqliteReader(url, connection)


def _quote_path(path: str) -> str:
    # An SQLite URI's path: "?" and "#" would end it, "%" starts an escape.
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _stored_revision(connection: sqlite3.Connection) -> str | None:
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    return None
