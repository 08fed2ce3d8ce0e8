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

from tunelab.registry.errors import RegistryError, database_failure
from tunelab.registry.location import SqliteDatabase, sqlite_database
from tunelab.registry.revision import State, state_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

# As registry/db.py: wait for a writer's lock rather than fail with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0
# What SQLite says when it cannot set up the shared-memory file (-shm) that reading a WAL database takes: a full
# disk, a directory or filesystem the user may not write.
_NO_SHARED_MEMORY = ("disk i/o error", "unable to open database file", "readonly database", "disk is full")


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
    connection = None
    try:
        connection = connect_for_reading(database)
        stored = _stored_revision(connection)
        if state_of(stored) is not State.CURRENT:
            raise NotAtHead(f"registry {url} is at revision {stored or '(none)'}")
    except (sqlite3.Error, RegistryError) as exc:
        if connection is not None:
            connection.close()
        if isinstance(exc, sqlite3.Error):
            raise RegistryError(database_failure(exc, url) or f"cannot open registry {url}: {exc}") from None
        raise
    return SqliteReader(url, connection)


def connect_for_reading(database: SqliteDatabase) -> sqlite3.Connection:
    """An sqlite3 connection that reads `database` even where nothing can be written: a full disk, a read-only
    file, directory or filesystem.

    A WAL database is read through a shared-memory file beside it, which SQLite creates on first use. Where it
    cannot be created, and no write-ahead log is waiting to be folded into the database (a writer would hold
    the shared-memory file open, so there is none), the file alone is the whole database: it is opened
    immutable, without the shared-memory file or locks.
    """
    # mode=rw never creates the file; a file the user may not write opens read-only all the same.
    target = database.target if database.uri else f"file:{_quote_path(str(database.file))}?mode=rw"
    # Not bound to a thread: an SQLAlchemy pool may hand the connection to another (reads only, serialised).
    connection = sqlite3.connect(target, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        if database.file is None or not _no_shared_memory(exc) or _pending_log(database.file):
            raise
    return sqlite3.connect(f"file:{_quote_path(str(database.file))}?mode=ro&immutable=1", uri=True,
                           check_same_thread=False)


def _no_shared_memory(exc: sqlite3.OperationalError) -> bool:
    return any(words in str(exc).lower() for words in _NO_SHARED_MEMORY)


def _pending_log(file) -> bool:
    """Whether a write-ahead log with content lies beside the database: reading the file alone would miss it."""
    try:
        return file.with_name(file.name + "-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


def _quote_path(path: str) -> str:
    # An SQLite URI's path: "?" and "#" would end it, "%" starts an escape.
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _stored_revision(connection: sqlite3.Connection) -> str | None:
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    return None
