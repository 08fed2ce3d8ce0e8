"""`tunelab reproduce`: a CPU run re-runs bit-identically; a worker on the same registry never runs the
reproduction too; a doctored record (changed data) is refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.models import Run
from tunelab.registry.queries import run_detail
from tunelab.runner.worker import worker_name

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("repro")
    data = root / "train.jsonl"
    shutil.copy(REPO_ROOT / "examples" / "data" / "capitals_train.jsonl", data)
    spec = write_spec(root / "s.toml", name="repro", model_dir=tiny_model_dir, train=data, kind="full",
                      max_steps=4, save_every=2, tasks=(), baseline=False)
    home = root / "home"
    result = invoke(home, "run", "--quiet", str(spec))
    assert result.exit_code == 0, result.output
    (run,) = invoke_json(home, "ls")
    return home, run["run_id"], data


def test_reproduce_verify_is_bit_identical(original):
    home, run_id, _ = original
    result = invoke(home, "reproduce", "--quiet", "--verify", "--json", str(run_id))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["verdict"]["reproduced"] and report["verdict"]["bit_identical"]
    checks = {c["what"]: c for c in report["verdict"]["checks"]}
    assert checks["final weights"]["ok"] and checks["final weights"]["difference"] == "equal"
    assert checks["loss curve"]["difference"] == "max |Δ| 0"
    assert "capitals (finetuned)" in checks
    new = invoke_json(home, "show", str(report["new_run_id"]))
    assert new["summary"]["status"] == "succeeded"


def _wait_for(condition, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def linger_after_creating_a_reproduction():
    """Hold this process for a while right after the commit that creates a reproduction run: a worker polling
    the registry meanwhile would claim the run if it were created queued (it must be created claimed)."""
    created: list[Run] = []

    def note(session, flush_context, instances) -> None:
        created.extend(o for o in session.new if isinstance(o, Run) and o.reproduces_run_id is not None)

    def linger(session) -> None:
        if created:
            created.clear()
            time.sleep(3)  # some thirty polls of the worker below

    event.listen(Session, "before_flush", note)
    event.listen(Session, "after_commit", linger)
    yield
    event.remove(Session, "before_flush", note)
    event.remove(Session, "after_commit", linger)


# Before the data-changing test below: it edits the original's data file.
def test_a_worker_polling_the_same_registry_never_runs_the_reproduction(original, tmp_path, tiny_model_dir,
                                                                          linger_after_creating_a_reproduction):
    home, run_id, _ = original
    registry = open_registry(default_url(home))
    # A run that fails at once (bad data, not retried) shows when the worker is up and polling.
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    (sentinel,) = invoke_json(home, "submit", str(write_spec(tmp_path / "bad.toml", name="sentinel", train=bad,
                                                              model_dir=tiny_model_dir, tasks=(), baseline=False)))
    worker = subprocess.Popen([str(Path(sys.executable).with_name("tunelab")), "--home", str(home), "worker",
                               "--poll", "0.1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        _wait_for(lambda: run_detail(registry, sentinel["run_id"]).summary.status == "failed", "the worker")
        result = invoke(home, "reproduce", "--quiet", "--json", str(run_id))
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert result.exit_code == 0, result.output
    new_id = json.loads(result.stdout)["new_run_id"]
    lines = output.splitlines()
    assert any(line.startswith(f"run {sentinel['run_id']}: failed (DataError:") for line in lines), output
    assert "worker stopped (SIGTERM)" in lines and not any(line.startswith(f"run {new_id}:") for line in lines)
    # One execution, by this process: one attempt, each step's loss once, each score once.
    with registry.session() as session:
        run = session.get(Run, new_id)
        assert (run.status, run.worker, run.attempts) == ("succeeded", worker_name(), 0)
    new, old = run_detail(registry, new_id), run_detail(registry, run_id)
    steps = [m["step"] for m in new.metrics]
    assert steps == sorted(set(steps)) == [m["step"] for m in old.metrics]
    assert sorted((s.model_kind, s.task) for s in new.scores) == [("finetuned", "capitals")]


def test_changed_data_is_refused_and_nothing_runs(original):
    home, run_id, data = original
    before = len(invoke_json(home, "ls"))
    rows = data.read_text().splitlines()
    data.write_text("\n".join(rows[1:]) + "\n")  # the record still says the old data
    result = invoke(home, "reproduce", "--quiet", str(run_id))
    assert result.exit_code == 1
    assert "training data" in result.output and "changed" in result.output
    assert len(invoke_json(home, "ls")) == before
