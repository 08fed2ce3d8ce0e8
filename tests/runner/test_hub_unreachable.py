"""A hub model or dataset with no network: one line at once naming HF_HUB_OFFLINE / a local path, from the worker's
model loading and from `tunelab doctor`, instead of a minute of retries per file.

Nothing here reaches the network: the hub is an endpoint on a closed local port (HF_ENDPOINT), and HF_HUB_OFFLINE
is unset only inside the subprocesses that need it unset.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tunelab.registry.db import default_url, open_registry
from tunelab.registry.roots import Roots
from tunelab.runner.doctor import check_queued_runs
from tunelab.runner.offline import hub_unreachable

from tests.helpers import REPO_ROOT, invoke_json, write_spec


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _online_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return env | {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "*"}


def test_the_probe_answers_for_a_listening_and_a_closed_endpoint_without_a_proxy_detour():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert hub_unreachable({"HF_ENDPOINT": f"http://127.0.0.1:{port}"}) is None
    closed = _closed_port()
    reason = hub_unreachable({"HF_ENDPOINT": f"http://127.0.0.1:{closed}"})
    assert reason is not None and f"cannot connect to 127.0.0.1:{closed}" in reason


def test_loading_a_hub_model_with_no_hub_fails_at_once_in_one_line(tmp_path):
    script = ("from tunelab.runner.training.models import load_tokenizer\n"
              "from tunelab.runner.errors import RunFailed\n"
              "try:\n    load_tokenizer('some-org/tiny')\n"
              "except RunFailed as err:\n    print(err)\n    raise SystemExit(3)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                          env=_online_env(tmp_path, f"http://127.0.0.1:{_closed_port()}"))
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("the hub cannot be reached (cannot connect to 127.0.0.1:")
    assert "HF_HUB_OFFLINE=1" in line and "local path" in line
    assert "Retrying" not in done.stderr
    assert elapsed < 60  # python start-up on a busy machine; the retries alone took about a minute


def test_doctor_says_the_hub_cannot_be_reached_and_says_it_quickly(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "hub.toml", name="hub", model_dir=tmp_path, custom=False)
    text = spec.read_text().replace(f'base = "{tmp_path}"', 'base = "some-org/tiny"')
    spec.write_text(text.replace('benchmarks_dir = "', 'benchmarks_dir = "" # "'))
    invoke_json(home, "submit", str(spec))

    environ = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    started = time.monotonic()
    (check,) = check_queued_runs(open_registry(default_url(home)), Roots(home), environ=environ)
    assert time.monotonic() - started < 5
    assert [(p.what, p.where) for p in check.problems] == [
        ("base model", "some-org/tiny"), ("benchmark data", "allenai/ai2_arc")]
    assert all("the hub cannot be reached" in p.detail for p in check.problems)
    assert "HF_HUB_OFFLINE=1" in check.problems[0].detail
    assert not any("will download" in note for note in check.notes)

    # The command itself, with hub access on.
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tunelab", "--home", str(home), "doctor"], capture_output=True,
                          text=True, timeout=120, env=_online_env(tmp_path, environ["HF_ENDPOINT"]))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the hub cannot be reached" in done.stdout and "will download" not in done.stdout
    assert time.monotonic() - started < 60  # start-up included, on a busy machine
