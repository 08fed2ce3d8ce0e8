"""A report from a registry the user may only read: written in full, with one warning line, and nothing stored.

SQLite is opened read-only by URI (`mode=ro`); PostgreSQL as a role granted SELECT and nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import func, select, update
from tunelab.registry.db import open_registry
from tunelab.registry.models import EvalResult, RenderCacheEntry
from tunelab.registry.recording import record_scores

from tests.helpers import add_run, scores
from tests.reports.parsing import parse


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


def item_log(outcomes: list[bool]) -> list[dict]:
    return [{"doc_id": i, "target": 0, "pick": 0 if ok else 1, "correct": ok, "score": float(ok)}
            for i, ok in enumerate(outcomes)]


def runs_with_work_left(registry, count: int = 1, *, p_values: bool = True) -> list[int]:
    """Finished runs whose report would cache charts and pages, and (`p_values`) store p-values recorded
    before 0009."""
    runs = [add_run(registry, f"run-{i}") for i in range(count)]
    for run in runs:
        record_scores(registry, run, [replace(s, samples=item_log([False] * 6)) for s in
                                      scores("base", "tiny", {"hellaswag": 0.0})])
        record_scores(registry, run, [replace(s, samples=item_log([True] * 6)) for s in
                                      scores("finetuned", f"run:{run}", {"hellaswag": 1.0})])
    if p_values:
        with registry.engine.begin() as connection:
            connection.execute(update(EvalResult).values(vs_base_p=None))
    return runs


def stored(registry) -> tuple[int, int]:
    """(render cache entries, scores with a stored p-value)."""
    with registry.engine.connect() as connection:
        return (connection.execute(select(func.count()).select_from(RenderCacheEntry)).scalar_one(),
                connection.execute(select(func.count()).where(EvalResult.vs_base_p.is_not(None))).scalar_one())


@pytest.mark.parametrize(("jobs", "p_values"), [(1, True), (1, False), (2, True)])
def test_a_read_only_user_gets_the_whole_report_and_one_warning(registry, read_only_url, tmp_path, monkeypatch,
                                                                 caplog, jobs, p_values):
    from tunelab.reports.render import write_report

    runs = runs_with_work_left(registry, count=3, p_values=p_values)
    monkeypatch.setattr("tunelab.reports.render._PARALLEL_FROM", 2)  # jobs=2: forked page writers refused too
    reader = open_registry(read_only_url)
    try:
        with caplog.at_level(logging.WARNING):
            board = write_report(reader, tmp_path / "lb.html", title="t", jobs=jobs)
    finally:
        reader.engine.dispose()
    assert sorted(row.run_id for row in board.rows if row.kind == "finetuned") == runs
    for run in runs:
        page = parse((tmp_path / "lb_runs" / f"run-{run}.html").read_text(encoding="utf-8"))
        assert page.find("tr", data_task="hellaswag") is not None
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage().startswith("could not save ") and "\n" not in warning.getMessage()

    assert stored(registry) == (0, 0 if p_values else 3)  # nothing was written
    write_report(registry, tmp_path / "again" / "lb.html", title="t", jobs=1)  # one who may write stores it
    cached, known = stored(registry)
    assert cached > 0 and known == 3


def test_the_report_command_on_a_read_only_registry_prints_one_line(registry, read_only_url, tmp_path):
    runs_with_work_left(registry)
    out = subprocess.run([sys.executable, "-c", "from tunelab.cli import main; main()", "--home", str(tmp_path),
                          "--db", read_only_url, "report", "-o", str(tmp_path / "lb.html")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("could not save ") and "registry" in line
    assert "wrote" in out.stdout and (tmp_path / "lb.html").is_file()


FORKED_REPORT = """
import sys
from pathlib import Path

import tunelab.reports.render as render
from tunelab.registry.db import open_registry

render._PARALLEL_FROM = 2
render.write_report(open_registry(sys.argv[1]), Path(sys.argv[2]), title="t", jobs=2)
"""


def test_forked_page_writers_refused_by_the_registry_still_warn_once(registry, read_only_url, tmp_path):
    # No p-value to store: the first refused write is a page writer's, in each process at once.
    runs = runs_with_work_left(registry, count=4, p_values=False)
    out = subprocess.run([sys.executable, "-c", FORKED_REPORT, read_only_url, str(tmp_path / "lb.html")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("could not save the report cache to the registry (")
    assert sorted(p.name for p in (tmp_path / "lb_runs").iterdir()) == sorted(f"run-{run}.html" for run in runs)
