"""Open a registry: engine setup (SQLite WAL + busy timeout, or PostgreSQL by URL) and migrations.

The schema is created and upgraded only by Alembic; `open_registry` applies pending
revisions on first use, under a lock so concurrent workers don't race each other. Whether there is
anything to apply is read without Alembic (registry/revision.py), so opening a registry at head never
imports it; a registry migrated by a later tunelab is refused in one line, before Alembic sees it.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlmodel import Session
from tunelab.experiments.errors import missing_extra
from tunelab.registry.errors import RegistryError
from tunelab.registry.location import default_url, sqlite_database
from tunelab.registry.reader import connect_for_reading
from tunelab.registry.revision import MIGRATIONS_DIR, State, head, state_of

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed key: advisory locks are per database, so this serialises the migrations of one registry.
PG_MIGRATION_LOCK_KEY = 727274


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers (tunelab ls) run while a worker writes; the busy timeout makes
    # concurrent writers wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        database = sqlite_database(url)
        if database is not None:
            # A "file:" URI (read-only and other modes) names an existing database: nothing to create.
            if database.file is not None and not database.uri:
                database.file.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _configure_sqlite)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise RegistryError(_missing_driver(url, exc)) from None
    except ArgumentError as exc:
        raise RegistryError(f"cannot use registry URL {url!r}: {exc}") from None


def _missing_driver(url: str, exc: ModuleNotFoundError) -> str:
    # SQLAlchemy imports a URL's driver when the engine is made; psycopg comes with the postgres extra.
    if (exc.name or "").split(".")[0] == "psycopg":
        return missing_extra("psycopg", "postgres", "a PostgreSQL registry")
    return f"cannot use registry URL {url!r}: {exc}"


def _alembic_config(engine: Engine, connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The option is configparser text: a "%" (an escaped password, an SQLite URI) must be doubled.
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = sqlite_database(engine.url.render_as_string(hide_password=False))
    if database is not None and database.file is not None:
        lock_path = database.file.with_suffix(".migrate.lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif engine.dialect.name == "postgresql":
        # A session-level advisory lock, held on its own autocommit connection while the migration
        # runs in a transaction on another one (so this one never sits idle in a transaction).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
    else:
        yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic revisions up to `revision`."""
    from alembic import command

    schema_state(engine)  # a later tunelab's revision: one line, not Alembic's "Can't locate revision"
    with _migration_lock(engine):
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                # Batch migrations rebuild tables (copy, drop, rename); with foreign keys enforced the
                # drop of a referenced table fails. The pragma is a no-op inside a transaction, so it
                # is set before the migration's transaction begins, and restored after.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            with connection.begin():
                command.upgrade(_alembic_config(engine, connection), revision)
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


@dataclass
class Registry:
    """An open registry: the engine plus a session factory."""

    engine: Engine
    url: str

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        """The rows of one SQL text query with :name parameters (registry.reader.Rows, over this engine)."""
        with self.engine.connect() as connection:
            return connection.execute(text(sql), dict(params or {})).all()


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_state(engine: Engine) -> State:
    """Where the registry's schema stands against this tunelab's migrations; raises RegistryTooNew past them."""
    return state_of(_stored_revision(engine))


def open_registry(url: str, *, migrate: bool = True) -> Registry:
    """Connect and bring the schema to head (the first use creates it)."""
    engine = make_engine(url)
    try:
        state = schema_state(engine) if migrate else State.CURRENT
    except OperationalError as exc:
        raise RegistryError(f"cannot open registry {engine.url.render_as_string()}: {exc.orig}") from None
    if state is not State.CURRENT:
        _upgrade_or_explain(engine, state)
    return Registry(engine=engine, url=url)


def _upgrade_or_explain(engine: Engine, state: State) -> None:
    try:
        upgrade(engine)
    except (DBAPIError, OSError) as exc:
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()[0]
        where = engine.url.render_as_string()
        if state is State.EMPTY:
            raise RegistryError(f"cannot open registry {where}: {reason}") from None
        # The user may read this registry but not change it (a read-only file, directory or role).
        raise RegistryError(
            f"registry {where} is at revision {_stored_revision(engine)}, older than this tunelab's {head()}, "
            f"and could not be upgraded ({reason}): run `tunelab db upgrade` as a user who may write it") from None


# Per dialect, what makes a connection refuse every write for as long as it is open.
_READ_ONLY = {"sqlite": "PRAGMA query_only=ON", "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"}


def _refuse_writes(engine: Engine) -> None:
    statement = _READ_ONLY.get(engine.dialect.name)
    if statement is None:
        return

    def read_only(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # PostgreSQL: a SET in a transaction that is later rolled back is undone with it

    event.listen(engine, "connect", read_only)


def open_read_only(url: str) -> Registry:
    """Open a registry to read it and nothing else (reports): no migration, and connections that refuse writes.

    Works for a user who may only read (a read-only SQLite file, a SELECT-only PostgreSQL role). A registry that
    does not exist, or whose schema is not this tunelab's, is an error that says so.
    """
    database = sqlite_database(url)
    if database is not None and database.file is not None and not database.file.is_file():
        raise RegistryError(f"no registry at {database.file}: nothing has been submitted there yet")
    if database is not None and database.file is not None:
        # Connections as `tunelab ls` makes them: they read on a full disk or a read-only filesystem too, and
        # set nothing up (journal mode, pragmas) that would write.
        engine = create_engine(url, creator=lambda: connect_for_reading(database))
    else:
        engine = make_engine(url)
    _refuse_writes(engine)
    try:
        state = schema_state(engine)
    except OperationalError as exc:
        raise RegistryError(f"cannot open registry {engine.url.render_as_string()}: {exc.orig}") from None
    if state is not State.CURRENT:
        raise RegistryError(f"the registry {engine.url.render_as_string()} is at schema revision "
                            f"{_stored_revision(engine)}, and this tunelab reads revision {head()}: upgrade it first "
                            "(`tunelab db upgrade`, by a user who may write)")
    return Registry(engine=engine, url=url)


__all__ = ["Registry", "open_registry", "open_read_only", "default_url", "make_engine", "upgrade", "current_revision",
           "head_revision", "schema_state"]
