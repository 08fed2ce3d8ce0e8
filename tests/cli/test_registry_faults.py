"""A registry the command cannot use as it wants is one line, never a traceback, and reading goes on wherever it
can: a damaged or truncated file, a read-only URL given to a command that writes, ids and counts no database can
hold, an output file that cannot be written. A registry on a full disk or a read-only filesystem still serves
ls, show, compare and report."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tunelab.registry.db import default_url, open_registry

from tests.helpers import add_run, invoke, write_spec

READ_COMMANDS = (["ls"], ["ls", "--where", "id > 0"], ["show", "1"], ["compare", "1", "1"], ["report", "-o", "lb.html"])
WRITE_COMMANDS = (["submit", "SPEC"], ["cancel", "1"], ["retry", "1"])


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home whose SQLite registry holds one finished, evaluated run (id 1); the working directory is tmp_path."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    registry = open_registry(default_url(home))
    add_run(registry, "one")
    registry.engine.dispose()
    write_spec(tmp_path / "spec.toml", name="new", model_dir=tmp_path)
    return home


def run(home: Path, *args: str, db: str | None = None):
    args = tuple(str(home.parent / "spec.toml") if arg == "SPEC" else arg for arg in args)
    return invoke(home, *(("--db", db) if db else ()), *args)


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("Error: ") and "Traceback" not in line
    return line


@pytest.mark.parametrize("damage", ["truncated", "not a database"])
@pytest.mark.parametrize("command", [*READ_COMMANDS, *WRITE_COMMANDS])
def test_a_damaged_registry_is_one_line(home, damage, command):
    path = home / "registry.db"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3] if damage == "truncated" else os.urandom(4096))
    line = one_error_line(run(home, *command))
    assert ("damaged" in line or "malformed" in line or "not a database" in line), line


@pytest.mark.parametrize("command", WRITE_COMMANDS)
def test_a_read_only_url_given_to_a_command_that_writes_is_one_line(home, command):
    url = f"sqlite:///file:{home / 'registry.db'}?mode=ro&uri=true"
    line = one_error_line(run(home, *command, db=url))
    assert line == (f"Error: the registry {url} is read-only (attempt to write a readonly database): this command "
                    "writes to it; ls, show, compare and report only read")
    assert run(home, "ls", db=url).exit_code == 0


@pytest.fixture
def no_shared_memory(monkeypatch) -> None:
    """SQLite cannot make the shared-memory file a WAL database is read through, as on a full disk or a read-only
    directory or filesystem (simulated: root, who runs CI, may write anywhere); opening the file immutable works."""
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        connection = real_connect(target, *args, **kwargs)
        if "immutable=1" in str(target):
            return connection

        class NoSharedMemory:
            def execute(self, *_args, **_kwargs):
                raise sqlite3.OperationalError("disk I/O error")

            def close(self) -> None:
                connection.close()

        return NoSharedMemory()

    monkeypatch.setattr(sqlite3, "connect", connect)


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_reading_goes_on_where_nothing_can_be_written(home, command, no_shared_memory):
    result = run(home, *command)
    assert result.exit_code == 0, result.output
    assert "one" in result.output or "wrote lb.html" in result.output


def test_a_write_ahead_log_still_to_fold_in_is_never_skipped(home, no_shared_memory):
    """Reading the file alone is right only when no log with content lies beside it."""
    (home / "registry.db-wal").write_bytes(b"\0" * 32)
    assert "(disk I/O error)" in one_error_line(run(home, "ls"))


def _mount_tmpfs(target: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_and_a_read_only_filesystem_for_real(home, tmp_path):
    """The same, on a real 1 MB tmpfs filled to the last byte, then remounted read-only (where mounting is allowed;
    the simulation above runs everywhere)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN; the simulated test covers this path")
    try:
        shutil.copytree(home, disk / "home")
        with open(disk / "fill", "wb") as fill:
            try:
                while True:
                    fill.write(b"\0" * 65536)
            except OSError:
                pass
        assert shutil.disk_usage(disk).free == 0
        for state in ("full", "read-only"):
            if state == "read-only":
                subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            for command in READ_COMMANDS:
                out = subprocess.run([sys.executable, "-m", "tunelab", "--home", str(disk / "home"), *command],
                                     capture_output=True, text=True, cwd=tmp_path, timeout=300)
                assert out.returncode == 0, (state, command, out.stderr)
            submit = subprocess.run([sys.executable, "-m", "tunelab", "--home", str(disk / "home"), "submit",
                                     str(tmp_path / "spec.toml")], capture_output=True, text=True, cwd=tmp_path)
            assert submit.returncode == 1 and "Traceback" not in submit.stderr, (state, submit.stderr)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize(("args", "bounds"), [
    (["show", str(2**64)], "1<=x<=2147483647"), (["cancel", str(2**70)], "1<=x<=2147483647"),
    (["compare", "1", str(2**31)], "1<=x<=2147483647"), (["export", str(2**64), "-o", "out"], "1<=x<=2147483647"),
    (["ls", "--limit", "9" * 30], "0<=x<=9223372036854775807"),
])
def test_ids_and_counts_no_registry_can_hold_are_refused_in_one_line(home, args, bounds):
    """Ids are the registry's INTEGER columns (32 bits on PostgreSQL); a count (--limit) takes 64 bits."""
    result = run(home, *args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].endswith(f"is not in the range {bounds}.")


def test_an_evaluation_target_beyond_any_id_is_no_run(home):
    assert one_error_line(run(home, "eval", f"run:{2**70}")) == f"Error: no run with id {2**70}"


def test_schema_into_a_full_device_is_one_line(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    line = one_error_line(invoke(tmp_path, "schema", "-o", "/dev/full"))
    assert line == "Error: cannot write /dev/full: No space left on device"
