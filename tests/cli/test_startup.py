"""The query path imports only what it needs: `tunelab --help`, `ls` and `show` never import torch, transformers or
lm-eval; on a registry at head they never import Alembic; on an SQLite registry at head not even SQLAlchemy or
SQLModel. `--help` imports no command module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tunelab.registry.run_state import claim_next, succeed
from tunelab.registry.submissions import NewExperiment, submit

PROBE = """
import sys, json
from click.testing import CliRunner
from tunelab.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
watched = ("torch", "transformers", "lm_eval", "peft", "datasets", "alembic", "sqlmodel", "sqlalchemy", "rich")
loaded = sorted(m for m in watched if m in sys.modules)
commands = sorted(m for m in sys.modules if m.startswith("tunelab.commands."))
print(json.dumps({"exit": result.exit_code, "output": result.output, "loaded": loaded, "commands": commands}))
"""
HEAVY = {"torch", "transformers", "lm_eval", "peft", "datasets"}


def probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def a_finished_run(registry) -> int:
    (s,) = submit(registry, [NewExperiment(name="probe", description="", tags=[], spec_path="s.toml", spec_text="",
                                           resolved_json='{"method": {"kind": "lora"}, "model": {"base": "m"}}',
                                           spec_hash="probe", workdir="/")])
    assert claim_next(registry, "w") == s.run_id
    assert succeed(registry, s.run_id, "w") == "succeeded"
    return s.run_id


def test_help_imports_no_command_and_no_library_beyond_click():
    found = probe("--help")
    assert (found["exit"], found["loaded"], found["commands"]) == (0, [], [])
    assert "show" in found["output"]


def test_ls_imports_no_heavy_library(tmp_path):
    for args in (["ls"], ["ls", "--json"]):
        found = probe("--home", str(tmp_path), *args)
        assert found["exit"] == 0 and not HEAVY & set(found["loaded"])


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["ls", "--format", "csv"], ["show", "RUN"],
                                     ["show", "RUN", "--json"]])
def test_read_commands_on_a_registry_at_head_never_import_alembic(registry, command, tmp_path):
    run_id = a_finished_run(registry)
    args = [str(run_id) if arg == "RUN" else arg for arg in command]
    found = probe("--home", str(tmp_path), "--db", registry.url, *args)
    assert found["exit"] == 0, found["output"]
    assert "alembic" not in found["loaded"] and not HEAVY & set(found["loaded"])
    if registry.dialect == "sqlite":
        # Read through sqlite3 alone: no SQLAlchemy, no SQLModel (and no rich for a listing).
        assert {"sqlalchemy", "sqlmodel"}.isdisjoint(found["loaded"])
        assert "rich" not in found["loaded"] or command[0] == "show"
    assert found["commands"] == [f"tunelab.commands.{command[0]}"]
