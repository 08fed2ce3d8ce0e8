"""The schema exists only through Alembic, and the revisions match the SQLModel tables, on both backends."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from tunelab.registry.db import current_revision, default_url, head_revision, make_engine, open_registry


def test_first_use_creates_schema_at_head(registry):
    tables = set(inspect(registry.engine).get_table_names())
    assert {"experiment", "run", "checkpoint", "trainmetric", "evalresult", "alembic_version"} <= tables
    assert current_revision(registry.engine) == head_revision(registry.engine)


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    # SQLite only by design: WAL and the busy timeout are how SQLite lets readers and several
    # writers share one file; PostgreSQL has no such settings, so this test is not parametrised.
    registry = open_registry(default_url(tmp_path))
    with registry.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_migrations_match_the_models(registry):
    import tunelab.registry.models as _tables  # noqa: F401  (registers the tables; keeps `registry` the fixture)
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with registry.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"models and migrations differ; write a revision: {diff}"


def test_timestamps_come_back_as_the_same_aware_utc_instant(registry):
    from datetime import UTC, datetime, timedelta, timezone

    from tunelab.registry.models import Experiment

    # A non-UTC offset on the way in, and on PostgreSQL a session in another zone: both backends must
    # store the instant, not a wall clock (a timestamp column without time zone would shift it).
    created = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))
    with registry.session() as session:
        if registry.engine.dialect.name == "postgresql":
            session.exec(text("SET TIME ZONE 'Asia/Kolkata'"))
        experiment = Experiment(name="t", spec_path="x.toml", spec_text="", resolved_json="{}", spec_hash="h",
                                workdir="/tmp", created_at=created)
        session.add(experiment)
        session.commit()
        experiment_id = experiment.id
    with registry.session() as session:
        if registry.engine.dialect.name == "postgresql":
            session.exec(text("SET TIME ZONE 'America/Denver'"))
        stored = session.get(Experiment, experiment_id).created_at
    assert stored == created and stored.tzinfo == UTC


def test_reopening_does_not_migrate_again(empty_registry_url):
    open_registry(empty_registry_url).engine.dispose()
    engine = make_engine(empty_registry_url)
    assert current_revision(engine) == head_revision(engine)
    open_registry(empty_registry_url).engine.dispose()  # no error, same revision
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


def _open(url: str, start, out) -> None:
    start.wait(timeout=120)
    try:
        registry = open_registry(url)
    except Exception as exc:  # handed to the test, which shows it, instead of a silent dead worker
        out.put(f"{type(exc).__name__}: {exc}")
        return
    out.put(current_revision(registry.engine))
    registry.engine.dispose()


def test_concurrent_first_use_migrates_once(empty_registry_url):
    # Workers started together on an empty registry: the migration lock (a file lock on SQLite, an
    # advisory lock on PostgreSQL) lets one create the schema while the others wait, then see it at head.
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_open, args=(empty_registry_url, start, out)) for _ in range(3)]
    for process in workers:
        process.start()
    revisions = [out.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
    engine = make_engine(empty_registry_url)
    assert revisions == [head_revision(engine)] * 3
    assert [process.exitcode for process in workers] == [0, 0, 0]
    engine.dispose()
