"""A report only reads: from a registry the user may only read it is written in full, with no warning, and its
connection refuses writes even for a user who may write.

SQLite is opened read-only by URI (`mode=ro`); PostgreSQL as a role granted SELECT and nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tunelab.registry.db import open_read_only, upgrade
from tunelab.registry.errors import RegistryError

from tests.helpers import add_run
from tests.reports.parsing import chart_data, parse


@pytest.fixture
def read_only_url(registry, tmp_path, monkeypatch, request):
    """A URL to the fixture's registry that can read it and write nothing."""
    if registry.engine.dialect.name == "sqlite":
        # make_engine creates the parent of what it takes for the file's path ("file:..."): keep that in tmp_path.
        monkeypatch.chdir(tmp_path)
        yield f"sqlite:///file:{registry.engine.url.database}?mode=ro&uri=true"
        return
    admin = request.getfixturevalue("postgres_admin_engine")
    role = f"tunelab_reader_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    with registry.engine.begin() as connection:
        connection.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        yield registry.engine.url.set(username=role).render_as_string(hide_password=False)
    finally:
        with registry.engine.begin() as connection:
            connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
        with admin.connect() as connection:
            connection.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       f"WHERE usename = '{role}'")
            connection.exec_driver_sql(f'DROP ROLE "{role}"')


def row_counts(registry) -> dict[str, int]:
    """Rows of every table: what a report must leave as it found it."""
    from sqlalchemy import inspect

    with registry.engine.connect() as connection:
        return {table: connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one()
                for table in inspect(connection).get_table_names()}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_read_only_user_gets_the_whole_report_and_no_warning(registry, read_only_url, tmp_path, monkeypatch,
                                                               caplog, jobs):
    from tunelab.reports.render import write_report

    runs = [add_run(registry, f"run-{i}") for i in range(3)]
    before = row_counts(registry)
    monkeypatch.setattr("tunelab.reports.render._PARALLEL_FROM", 2)  # jobs=2: forked page writers read too
    reader = open_read_only(read_only_url)
    try:
        with caplog.at_level(logging.WARNING):
            board = write_report(reader, tmp_path / "lb.html", title="t", jobs=jobs)
    finally:
        reader.engine.dispose()
    assert sorted(row.run_id for row in board.rows if row.kind == "finetuned") == runs
    for run in runs:
        page = parse((tmp_path / "lb_runs" / f"run-{run}.html").read_text(encoding="utf-8"))
        assert page.find("tr", data_task="arc_challenge") is not None
        assert set(chart_data(page)) == {"loss", "lr", "mmlu"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert row_counts(registry) == before


def test_the_report_connection_refuses_writes_even_for_a_user_who_may_write(registry):
    add_run(registry, "kept")
    reader = open_read_only(registry.url)
    try:
        with reader.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM run")).scalar_one() == 1
        with pytest.raises(DBAPIError), reader.engine.begin() as connection:
            connection.execute(text("DELETE FROM run"))
    finally:
        reader.engine.dispose()
    assert row_counts(registry)["run"] == 1


def test_the_report_command_on_a_read_only_registry_prints_nothing_but_its_result(registry, read_only_url,
                                                                                 tmp_path):
    add_run(registry, "only-read")
    out = subprocess.run([sys.executable, "-c", "from tunelab.cli import main; main()", "--home", str(tmp_path),
                          "--db", read_only_url, "report", "-o", str(tmp_path / "lb.html")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.startswith("wrote ") and (tmp_path / "lb.html").is_file()


def test_a_registry_behind_this_tunelab_is_an_error_naming_the_upgrade(empty_registry_url, tmp_path):
    from tunelab.registry.db import make_engine

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0011")
    engine.dispose()
    with pytest.raises(RegistryError, match=r"schema revision 0011.*tunelab db upgrade"):
        open_read_only(empty_registry_url)


def test_the_report_command_creates_no_registry(tmp_path):
    home = tmp_path / "home"
    out = subprocess.run([sys.executable, "-c", "from tunelab.cli import main; main()", "--home", str(home),
                          "report", "-o", str(tmp_path / "lb.html")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith("Error: no registry at ") and "registry.db" in line
    assert not home.exists() and not (tmp_path / "lb.html").exists()
