"""The schema exists only through Alembic, and the revisions match the SQLModel tables."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlmodel import SQLModel

from registry.db import current_revision, default_url, head_revision, make_engine, open_registry


def test_first_use_creates_schema_at_head(tmp_path):
    registry = open_registry(default_url(tmp_path))
    tables = set(inspect(registry.engine).get_table_names())
    assert {"experiment", "run", "checkpoint", "trainmetric", "evalresult", "alembic_version"} <= tables
    assert current_revision(registry.engine) == head_revision(registry.engine)


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    registry = open_registry(default_url(tmp_path))
    with registry.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_migrations_match_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import registry.models  # noqa: F401

    engine = open_registry(default_url(tmp_path)).engine
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"models and migrations differ; write a revision: {diff}"


def test_reopening_does_not_migrate_again(tmp_path):
    url = default_url(tmp_path)
    open_registry(url)
    engine = make_engine(url)
    assert current_revision(engine) == head_revision(engine)
    open_registry(url)  # no error, same revision
    assert current_revision(engine) == head_revision(engine)
