"""`make test` leaves the machine as it found it and says what it installs: the throwaway PostgreSQL it starts is
stopped after the tests (passed, failed or interrupted), a server already running is left alone, and Chromium is
announced in one line before apt-get installs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

WRAPPER = REPO_ROOT / "scripts" / "with_test_postgres.sh"
# A stand-in for scripts/postgres.sh: records each call; `status` says whether a server "runs" (RUNNING set).
FAKE_POSTGRES = """#!/usr/bin/env bash
echo "$1" >> "$CALLS"
case "$1" in
    status) [[ -n "${RUNNING:-}" ]] ;;
    start) echo "postgresql+psycopg://postgres@127.0.0.1:1/fake" ;;
    stop) ;;
esac
"""


@pytest.fixture
def fake(tmp_path) -> dict[str, str]:
    script = tmp_path / "postgres.sh"
    script.write_text(FAKE_POSTGRES, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("TUNELAB_TEST_PG_URL", "TUNELAB_TEST_SQLITE_ONLY")}
    return environ | {"TUNELAB_PG_SCRIPT": str(script), "CALLS": str(tmp_path / "calls")}


def calls(environ: dict[str, str]) -> list[str]:
    return Path(environ["CALLS"]).read_text().split()


@pytest.mark.parametrize(("command", "status"), [("true", 0), ("exit 3", 3)])
def test_the_server_started_for_the_tests_is_stopped_after_them(fake, command, status):
    done = subprocess.run(["bash", str(WRAPPER), "bash", "-c", f'test -n "$TUNELAB_TEST_PG_URL" && {command}'],
                          env=fake, capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert calls(fake) == ["status", "start", "stop"]


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_the_server_is_stopped_when_the_tests_are_interrupted(fake, tmp_path, sent):
    started = tmp_path / "started"
    process = subprocess.Popen(["bash", str(WRAPPER), "bash", "-c", f"touch {started}; sleep 60"], env=fake,
                               start_new_session=True)
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, sent)  # as Ctrl-C reaches make, the wrapper and the tests alike
    assert process.wait(timeout=30) != 0
    assert calls(fake) == ["status", "start", "stop"]


def test_a_server_that_was_already_running_is_left_running(fake):
    done = subprocess.run(["bash", str(WRAPPER), "true"], env=fake | {"RUNNING": "1"}, timeout=60)
    assert done.returncode == 0
    assert calls(fake) == ["status", "start"]


def test_a_given_server_url_starts_nothing(fake):
    done = subprocess.run(["bash", str(WRAPPER), "bash", "-c", 'test "$TUNELAB_TEST_PG_URL" = given'],
                          env=fake | {"TUNELAB_TEST_PG_URL": "given"}, timeout=60)
    assert done.returncode == 0 and not Path(fake["CALLS"]).exists()


def test_make_test_runs_the_suite_through_the_wrapper():
    recipe = subprocess.run(["make", "-n", "-W", ".venv/.installed", "test"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60).stdout
    assert "bash scripts/with_test_postgres.sh .venv/bin/python -m pytest" in recipe


def test_chromium_is_announced_in_one_line_before_apt_get_installs_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/bash\necho 0\n")  # as root
    # apt-get says when it runs, and "installs" a chromium.
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\necho "apt-get $*" >&2\n'
                                     f'printf "#!/bin/bash\\n" > {bin_dir}/chromium; {shutil.which("chmod")} +x '
                                     f"{bin_dir}/chromium\n")
    for tool in ("id", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    bash = subprocess.run(["bash", "-c", "command -v bash"], capture_output=True, text=True).stdout.strip()
    done = subprocess.run([bash, str(REPO_ROOT / "scripts" / "chromium.sh")], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, *rest = done.stderr.splitlines()
    assert first == ("chromium.sh: the browser tests need Chromium, which is missing: installing Debian's chromium "
                     "package and its dependencies system-wide with apt-get, as root")
    assert rest[0].startswith("apt-get ")
    assert done.stdout.strip() == str(bin_dir / "chromium")
