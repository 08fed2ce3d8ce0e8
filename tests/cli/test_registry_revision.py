"""Every command checks the registry's schema revision before it reads or writes:

- a registry migrated by a later tunelab: one line naming its revision, for reads and writes alike;
- a registry an older tunelab wrote: a read command upgrades it when the user may write it, and otherwise says
  in one line to run `tunelab db upgrade`.
"""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from tunelab.registry.db import current_revision, make_engine, upgrade
from tunelab.registry.revision import head, known_revisions

from tunelab.cli import cli

FUTURE = "9001_from_the_future"
NEWER_LINE = f"Error: this registry was written by a newer tunelab (revision {FUTURE}); upgrade tunelab"
SPEC = """[experiment]
name = "s"

[model]
base = "some/model"

[data]
train = "train.jsonl"
"""


def run_cli(tmp_path, url: str, *args: str):
    return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "--db", url, *args])


def stamp(url: str, revision: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


@pytest.mark.parametrize("command", [
    ["ls"], ["ls", "--json"], ["ls", "--where", "id > 0"], ["show", "1"], ["compare", "1", "2"], ["report"],
    ["submit", "SPEC"], ["cancel", "1"], ["retry", "1"], ["doctor"], ["db", "current"], ["db", "upgrade"],
])
def test_a_registry_from_a_newer_tunelab_gets_one_line_from_every_command(registry, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "train.jsonl").write_text('{"instruction": "i", "output": "o"}\n', encoding="utf-8")
    stamp(registry.url, FUTURE)
    out = run_cli(tmp_path, registry.url, *("spec.toml" if arg == "SPEC" else arg for arg in command))
    assert out.exit_code == 1
    assert out.output.strip() == NEWER_LINE
    assert not (tmp_path / "report.html").exists()


@pytest.fixture
def behind_url(empty_registry_url):
    """A registry an older tunelab wrote: at the revision before head."""
    engine = make_engine(empty_registry_url)
    upgrade(engine, known_revisions()[-2])
    engine.dispose()
    return empty_registry_url


def test_a_read_command_upgrades_a_registry_it_may_write(behind_url, tmp_path):
    out = run_cli(tmp_path, behind_url, "ls", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == []
    engine = make_engine(behind_url)
    assert current_revision(engine) == head()
    engine.dispose()


@pytest.fixture
def read_only_behind_url(behind_url, tmp_path, monkeypatch, request):
    """The registry of behind_url, as a user who may only read it."""
    if behind_url.startswith("sqlite"):
        monkeypatch.chdir(tmp_path)
        yield f"sqlite:///file:{make_engine(behind_url).url.database}?mode=ro&uri=true"
        return
    admin = request.getfixturevalue("postgres_admin_engine")
    engine = make_engine(behind_url)
    role = f"tunelab_reader_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    with engine.begin() as connection:
        connection.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        yield engine.url.set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       f"WHERE usename = '{role}'")
            connection.exec_driver_sql(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("command", [["ls"], ["show", "1"]])
def test_a_read_command_on_a_registry_it_may_not_upgrade_says_so_in_one_line(read_only_behind_url, behind_url,
                                                                             tmp_path, command):
    out = run_cli(tmp_path, read_only_behind_url, *command)
    assert out.exit_code == 1
    (line,) = out.output.strip().splitlines()
    older = known_revisions()[-2]
    assert line.startswith("Error: registry ") and f"at revision {older}, older than this tunelab's {head()}" in line
    assert line.endswith("run `tunelab db upgrade` as a user who may write it")
    engine = make_engine(behind_url)
    assert current_revision(engine) == older  # nothing changed
    engine.dispose()


def test_the_revision_chain_read_from_the_files_is_alembics(registry):
    from alembic.script import ScriptDirectory
    from tunelab.registry.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config(registry.engine))
    assert known_revisions() == tuple(reversed([r.revision for r in script.walk_revisions()]))
    assert head() == script.get_current_head()
