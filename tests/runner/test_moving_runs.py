"""A run moves between machines that share a registry and see the same storage at different places: started on
machine A and interrupted, it resumes on machine B from A's last checkpoint, and show, report, export, reproduce and
`eval run:ID` work from either.

Two homes on this machine stand for the two machines. A sees the artifact directory and the project (model, data,
spec) at their real paths; B sees both through symlinks, as another machine mounts them elsewhere. The spec names
its files by relative paths, resolved against each machine's project root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, invoke, write_spec

pytestmark = pytest.mark.slow

STEPS, SAVE_EVERY = 30, 5


class Machine:
    """One machine's view: its home, where it mounts the artifact storage and the project."""

    def __init__(self, home: Path, artifacts: Path, project: Path, db: str) -> None:
        self.home, self.artifacts, self.project, self.db = home, artifacts, project, db

    def options(self) -> list[str]:
        return ["--home", str(self.home), "--artifacts", str(self.artifacts), "--project", str(self.project),
                "--db", self.db]

    def run(self, *args: str):
        result = invoke(self.home, *self.options()[2:], *args)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json").stdout)


def _project(root: Path, model_dir: Path) -> Path:
    project = root / "project"
    (project / "specs").mkdir(parents=True)
    shutil.copytree(model_dir, project / "model")
    for name in ("capitals_train.jsonl", "capitals_mc.jsonl"):
        shutil.copy(REPO_ROOT / "examples" / "data" / name, project / name)
    spec = write_spec(project / "specs" / "move.toml", name="move", model_dir=Path("../model"),
                      train="../capitals_train.jsonl", kind="full", max_steps=STEPS, save_every=SAVE_EVERY, tasks=(),
                      custom=False, baseline=False,
                      extra='[[eval.custom]]\nname = "capitals"\npath = "../capitals_mc.jsonl"\n')
    return spec


def _interrupt_on(machine: Machine, database: Path) -> str:
    """Start a worker on `machine`; SIGTERM it once its run has a checkpoint and steps after it. Its output."""
    worker = subprocess.Popen([sys.executable, "-m", "tunelab", *machine.options(), "worker", "--once", "--quiet",
                               "--heartbeat", "0.5"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=os.environ | {"TUNELAB_REPORT_SECONDS": "0.05"})  # steps seen as they happen
    db = sqlite3.connect(database, timeout=30)
    deadline = time.monotonic() + 300
    while True:
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[0]
        checkpoint, metric = db.execute("SELECT (SELECT COALESCE(MAX(step), 0) FROM checkpoint), "
                                        "(SELECT COALESCE(MAX(step), 0) FROM trainmetric)").fetchone()
        if checkpoint >= SAVE_EVERY and metric > checkpoint:
            break
        time.sleep(0.02)
    db.close()
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def moved(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("moving")
    spec = _project(root, tiny_model_dir)
    storage = root / "storage"
    storage.mkdir()
    (root / "mnt").mkdir()
    (root / "mnt" / "artifacts").symlink_to(storage)
    (root / "mnt" / "project").symlink_to(root / "project")
    database = root / "shared" / "registry.db"
    db = f"sqlite:///{database}"
    a = Machine(root / "home-a", storage, root / "project", db)
    b = Machine(root / "home-b", root / "mnt" / "artifacts", root / "mnt" / "project", db)

    cwd = os.getcwd()
    os.chdir(root / "project" / "specs")  # submit runs in the spec's directory, under A's project root
    try:
        (submitted,) = a.json("submit", str(spec))
    finally:
        os.chdir(cwd)
    a_output = _interrupt_on(a, database)
    doctor_b = b.run("doctor", "--offline").output
    b_output = b.run("worker", "--until-empty", "--quiet").output
    os.chdir(root / "mnt" / "project" / "specs")  # B submits from the spec's directory too, as B sees it
    try:
        (reference,) = b.json("submit", "--force", "move.toml")  # the same spec, never interrupted
    finally:
        os.chdir(cwd)
    b.run("worker", "--until-empty", "--quiet")
    return {"a": a, "b": b, "run": submitted["run_id"], "reference": reference["run_id"], "a_output": a_output,
            "b_output": b_output, "doctor_b": doctor_b, "root": root, "storage": storage}


def test_the_run_resumes_on_b_from_as_checkpoint_and_ends_as_an_uninterrupted_run(moved):
    import torch
    from safetensors.torch import load_file

    b, run = moved["b"], moved["run"]
    note = f"run {run}: queued (interrupted (SIGTERM at step "
    assert note in moved["a_output"], moved["a_output"]
    stopped_at = int(moved["a_output"].split(note)[1].split(")")[0])
    assert f"resumes from checkpoint-{stopped_at}" in moved["a_output"]
    assert "1 queued run(s) checked, 0 with missing files" in moved["doctor_b"]
    assert f"run {run}: succeeded" in moved["b_output"]

    shown = b.json("show", str(run))
    assert shown["summary"]["status"] == "succeeded" and shown["workdir"] == "specs"
    assert [m["step"] for m in shown["metrics"]] == list(range(1, STEPS + 1))  # no step lost, none twice
    reference = b.json("show", str(moved["reference"]))
    assert [m["loss"] for m in shown["metrics"]] == [m["loss"] for m in reference["metrics"]]
    ours = load_file(moved["storage"] / "runs" / str(run) / "final" / "model.safetensors")
    theirs = load_file(moved["storage"] / "runs" / str(moved["reference"]) / "final" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_show_gives_each_machine_its_own_path_to_the_same_files(moved):
    run = moved["run"]
    for machine in (moved["a"], moved["b"]):
        shown = machine.json("show", str(run))
        assert shown["output_dir"] == str(machine.artifacts / "runs" / str(run))
        assert [c["step"] for c in shown["checkpoints"]][-1] == STEPS
        assert all(Path(c["path"]).is_dir() and Path(c["path"]).is_relative_to(machine.artifacts)
                   for c in shown["checkpoints"])
    # What the registry holds is relative to the artifact root.
    with sqlite3.connect(moved["root"] / "shared" / "registry.db") as db:
        assert db.execute("SELECT output_dir FROM run WHERE id = ?", (run,)).fetchone()[0] == f"runs/{run}"
        paths = [row[0] for row in db.execute("SELECT path FROM checkpoint WHERE run_id = ?", (run,))]
    assert paths and all(path.startswith(f"runs/{run}/checkpoints/checkpoint-") for path in paths)


def test_report_export_and_eval_work_from_either_machine(moved):
    run, root = moved["run"], moved["root"]
    exported = {}
    for name in ("a", "b"):
        machine = moved[name]
        page = root / f"report-{name}" / "leaderboard.html"
        machine.run("report", "-o", str(page))
        assert page.is_file() and "move" in page.read_text(encoding="utf-8")
        out = root / f"export-{name}"
        assert machine.json("export", str(run), "-o", str(out))["form"] == "full"
        exported[name] = (out / "model.safetensors").read_bytes()
        evaluated = machine.json("eval", f"run:{run}", "--custom", f"capitals={root / 'project' / 'capitals_mc.jsonl'}",
                                 "--quiet")
        assert evaluated["run_id"] == run and [s["task"] for s in evaluated["scores"]] == ["capitals"]
        assert (machine.artifacts / "evals" / evaluated["model_digest"][:16]).is_dir()
    assert exported["a"] == exported["b"]


def test_reproduce_works_from_either_machine(moved):
    for name in ("a", "b"):
        done = moved[name].json("reproduce", str(moved["run"]), "--verify", "--quiet")
        assert done["status"] == "succeeded" and done["verdict"]["reproduced"], done
