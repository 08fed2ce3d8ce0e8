"""Searches on the tiny model with two real workers: trials recorded and linked, no trial run twice, pruning,
a killed worker's trial resumed, a search resumed after every worker stopped, a failed trial retried into the
search, and the report's search page."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow

MAX_STEPS = 6
GOOD, BAD = 1e-2, 1e-7


def search_spec(path: Path, model_dir: Path, search: str, *, max_steps: int = MAX_STEPS) -> Path:
    """A tiny LoRA spec with validation every 2 steps, evaluated on 8 items of the custom task, and the [search]."""
    spec = write_spec(path, name=path.stem, model_dir=model_dir, max_steps=max_steps, save_every=2, tasks=(),
                      limit=8, baseline=False)
    text = spec.read_text().replace("max_seq_len = 96\n", "max_seq_len = 96\nvalidation = 0.25\n")
    text = text.replace("save_every = 2\n", "save_every = 2\neval_every = 2\n")
    spec.write_text(text + "\n" + search, encoding="utf-8")
    return spec


# A killed worker's run is taken back this long after its last heartbeat. Not shorter: on a loaded machine a live
# worker's heartbeat thread can be late by seconds, and its run would be taken over while it still trains it.
STALE_AFTER = 6


def workers(home: Path, count: int, *extra: str) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_DB"}
    return [subprocess.Popen([sys.executable, "-m", "tunelab", "--home", str(home), "worker", "--quiet",
                              "--heartbeat", "0.5", "--stale-after", str(STALE_AFTER), *extra],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(count)]


def drain(home: Path, count: int = 2) -> list[str]:
    """Run `count` workers until nothing is left to do; their outputs."""
    started = workers(home, count, "--until-empty")
    outputs = [process.communicate(timeout=600)[0] for process in started]
    assert all(process.returncode == 0 for process in started), outputs
    return outputs


def finished_runs(output: str) -> list[int]:
    return [int(line.split()[1].rstrip(":")) for line in output.splitlines() if line.startswith("run ")]


@pytest.fixture(scope="module")
def random_search(tmp_path_factory, tiny_model_dir):
    """A seeded random search of 4 trials over a good and a useless learning rate, median pruner, 2 workers."""
    root = tmp_path_factory.mktemp("random-search")
    home = root / "home"
    # Seed 13 draws the good rate for trials 0 and 1, which both workers start at once, then the useless one
    # twice: by then a good trial has finished, so the median pruner has a trial to compare with.
    spec = search_spec(root / "random.toml", tiny_model_dir, f"""[search]
sampler = "random"
trials = 4
seed = 13
objective = "val_loss"
pruner = "median"

[search.params]
"train.learning_rate" = {{choices = [{GOOD}, {BAD}]}}
""")
    assert "trial 2: train.learning_rate=1e-07" in invoke(home, "submit", "--dry-run", str(spec)).output
    (created,) = invoke_json(home, "submit", str(spec))
    outputs = drain(home)
    record = invoke_json(home, "search", "show", str(created["search_id"]))
    return home, record, outputs


def test_trials_are_recorded_and_linked_to_their_search(random_search):
    home, record, _ = random_search
    assert record["status"] == "finished" and record["done"] == 4
    trials = record["trials"]
    assert [t["number"] for t in trials] == list(range(len(trials)))
    listed = invoke_json(home, "ls", "--where", f"search = {record['search_id']}")
    assert sorted(r["run_id"] for r in listed) == sorted(t["run_id"] for t in trials)
    shown = invoke_json(home, "show", str(trials[0]["run_id"]))
    assert shown["summary"]["name"] == trials[0]["name"]
    assert shown["spec"]["train"]["learning_rate"] == trials[0]["params"]["train.learning_rate"]


def test_no_trial_runs_twice(random_search):
    home, record, outputs = random_search
    per_worker = [finished_runs(output) for output in outputs]
    every = [run for runs in per_worker for run in runs]
    runs = [t["run_id"] for t in record["trials"]]
    assert sorted(every) == sorted(runs) and len(set(runs)) == len(runs)
    assert all(per_worker), "both workers ran trials"
    assert all(t["attempts"] == 0 for t in record["trials"])
    assert len(invoke_json(home, "ls")) == len(runs)


def test_the_pruner_stops_a_useless_trial_early_and_keeps_its_checkpoint(random_search):
    home, record, _ = random_search
    pruned = [t for t in record["trials"] if t["status"] == "pruned"]
    assert pruned, [(t["params"], t["status"], t["val_losses"]) for t in record["trials"]]
    for trial in pruned:
        assert trial["params"]["train.learning_rate"] == BAD
        assert trial["objective"] is None
        detail = invoke_json(home, "show", str(trial["run_id"]))
        last = max(m["step"] for m in detail["metrics"])
        assert last < MAX_STEPS
        assert [c["step"] for c in detail["checkpoints"]][-1] == last
        assert Path(detail["checkpoints"][-1]["path"]).is_dir()
        assert not (Path(detail["output_dir"]) / "final").exists()
    best = record["trials"][record["best_trial"]]
    assert best["params"]["train.learning_rate"] == GOOD


def test_a_tpe_search_on_the_custom_task_and_its_report_page(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    spec = search_spec(tmp_path / "tpe.toml", tiny_model_dir, """[search]
sampler = "tpe"
trials = 4
startup_trials = 2
seed = 3
objective = "capitals"

[search.params]
"train.learning_rate" = {low = 1e-4, high = 3e-2, log = true}
"method.r" = {choices = [2, 4]}
""", max_steps=4)
    (created,) = invoke_json(home, "submit", str(spec))
    drain(home)
    record = invoke_json(home, "search", "show", str(created["search_id"]))
    assert (record["status"], record["done"]) == ("finished", 4)
    assert all(t["objective"] is not None for t in record["trials"])
    assert record["best_objective"] == max(t["objective"] for t in record["trials"])
    report = tmp_path / "lb.html"
    assert invoke(home, "report", "-o", str(report)).exit_code == 0
    page = (tmp_path / "lb_runs" / f"search-{created['search_id']}.html").read_text()
    assert '"objective"' in page and 'id="best-settings"' in page and 'id="trials"' in page
    assert f"lb_runs/search-{created['search_id']}.html" in report.read_text()
    a, b = (t["run_id"] for t in record["trials"][:2])
    assert invoke(home, "compare", str(a), str(b)).exit_code == 0


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "registry.db", timeout=30)


def test_a_killed_workers_trial_resumes_the_search_goes_on_and_a_retried_trial_counts(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    good = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
    missing = tmp_path / "later.jsonl"
    # Seed 17 draws the good file for trials 0, 2 and 3 and the missing one for trial 1: a failure of the spec's
    # own, recorded and replaced.
    spec = search_spec(tmp_path / "crash.toml", tiny_model_dir, f"""[search]
sampler = "random"
trials = 3
max_trials = 6
seed = 17
objective = "val_loss"

[search.params]
"data.train" = {{choices = ["{good}", "{missing}"]}}
"train.learning_rate" = {{low = 1e-3, high = 1e-2, log = true}}
""", max_steps=16)
    (created,) = invoke_json(home, "submit", str(spec))
    # One worker, killed once its first trial has a checkpoint and steps after it: no worker is left.
    (victim,) = workers(home, 1)
    db = _db(home)
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline and victim.poll() is None
        row = db.execute("SELECT MAX(checkpoint.step), MAX(trainmetric.step) FROM run JOIN checkpoint ON "
                         "checkpoint.run_id = run.id JOIN trainmetric ON trainmetric.run_id = run.id").fetchone()
        if row[0] and row[1] > row[0]:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    killed_step = row[0]
    time.sleep(STALE_AFTER + 0.5)  # past --stale-after: the next workers take the trial back
    drain(home)
    record = invoke_json(home, "search", "show", str(created["search_id"]))
    first, failed = record["trials"][0], record["trials"][1]
    assert (first["status"], first["attempts"]) == ("succeeded", 1)
    detail = invoke_json(home, "show", str(first["run_id"]))
    assert killed_step in [c["step"] for c in detail["checkpoints"]]
    assert failed["status"] == "failed" and failed["params"]["data.train"] == str(missing)
    assert "later.jsonl" in invoke_json(home, "show", str(failed["run_id"]))["summary"]["error"]
    assert (record["status"], record["done"], len(record["trials"])) == ("finished", 3, 4)
    runs = [t["run_id"] for t in record["trials"]]
    assert len(set(runs)) == len(runs)

    # The file appears; a retry of the failed trial runs it, and the search counts its result.
    missing.write_text(good.read_text(encoding="utf-8"), encoding="utf-8")
    assert invoke(home, "retry", str(failed["run_id"])).exit_code == 0
    drain(home, 1)
    again = invoke_json(home, "search", "show", str(created["search_id"]))
    retried = again["trials"][1]
    assert retried["status"] == "succeeded" and retried["objective"] is not None
    last_step = max(int(step) for step in retried["val_losses"])
    assert retried["objective"] == retried["val_losses"][str(last_step)]
