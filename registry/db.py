"""Open a registry: engine setup (SQLite WAL + busy timeout, or PostgreSQL by URL) and migrations.

The schema is created and upgraded only by Alembic; `open_registry` applies pending
revisions on first use, under a lock so concurrent workers don't race each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from tunelab.experiments.errors import missing_extra
from tunelab.registry.errors import RegistryError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed key: advisory locks are per database, so this serialises the migrations of one registry.
PG_MIGRATION_LOCK_KEY = 727274


def default_url(home: Path) -> str:
    return f"sqlite:///{(home / 'registry.db').resolve()}"


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
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1].split("?", 1)[0]
            # A "file:" URI (read-only and other modes) names an existing database: nothing to create.
            if path and path != ":memory:" and not path.startswith("file:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
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
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
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
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock_path = Path(engine.url.database).with_suffix(".migrate.lock")
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


_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w]+)?['\"]?", re.MULTILINE)


def _head_from_files() -> str | None:
    """The head of a linear revision chain, read from the version files without importing Alembic.

    Opening a registry happens on every command (`tunelab ls` too); Alembic's import and script
    loading would double its start-up. None when the chain is not simply linear: then ask Alembic.
    """
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _needs_upgrade(engine: Engine) -> bool:
    head = _head_from_files()
    if head is not None and _stored_revision(engine) == head:
        return False
    return current_revision(engine) != head_revision(engine)


def open_registry(url: str, *, migrate: bool = True) -> Registry:
    """Connect and bring the schema to head (the first use creates it)."""
    engine = make_engine(url)
    try:
        if migrate and _needs_upgrade(engine):
            upgrade(engine)
    except OperationalError as exc:
        raise RegistryError(f"cannot open registry {engine.url.render_as_string()}: {exc.orig}") from None
    return Registry(engine=engine, url=url)


__all__ = ["Registry", "open_registry", "default_url", "make_engine", "upgrade", "current_revision", "head_revision",
           "sessionmaker"]
