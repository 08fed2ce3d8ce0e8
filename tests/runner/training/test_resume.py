"""A run survives its worker: SIGKILL, SIGTERM or a full disk never leave a half-written checkpoint in use, and
a resumed run ends bit-identical to one that was never interrupted (same weights, same loss curve, no metric
logged twice).

The end-to-end case drives real `tunelab worker` processes: one is SIGKILLed and one SIGTERMed while they train
two runs of one spec; a third worker recovers the killed run (stale heartbeat), resumes both and trains a third,
uninterrupted run of the same spec to compare with.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tunelab.runner.training.checkpoints import (
    MARKER,
    complete_checkpoints,
    discard_incomplete,
    latest_complete,
    prune,
    publish,
    staging_dir,
)

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

STEPS = 12
SAVE_EVERY = 3
KEEP = 2
CANARY = "tunelab-canary-7f3a"  # an environment variable's value that must not reach the registry


# ---- the checkpoint schedule ------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_writes_the_save_every_checkpoints_and_none_more_at_the_end(tmp_path, tiny_model_dir):
    from tunelab.experiments.loader import load_spec
    from tunelab.runner.training.final_weights import FINAL_FACTS
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    spec = write_spec(tmp_path / "s.toml", name="schedule", model_dir=tiny_model_dir, max_steps=5, save_every=2,
                      tasks=(), custom=False, baseline=False)
    saved: list[int] = []
    outcome = train(load_spec(spec).spec, workdir=tmp_path, output_dir=tmp_path / "run",
                    hooks=TrainHooks(on_metrics=lambda _m: None, on_checkpoint=lambda step, *_a: saved.append(step)))
    # The Trainer would checkpoint step 5 too (weights and optimizer state, inside the timed loop); final/ has it.
    assert outcome.global_step == 5 and saved == [2, 4]
    assert [c.step for c in complete_checkpoints(tmp_path / "run" / "checkpoints")] == [2, 4]
    assert (tmp_path / "run" / "final" / FINAL_FACTS).is_file()


def _final_tensors(final_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {f"{path.name}:{name}": tensor for path in sorted(final_dir.glob("*.safetensors"))
            for name, tensor in load_file(path).items()}


@pytest.mark.slow
@pytest.mark.parametrize(("max_steps", "ending"), [(6, "killed"), (6, "disk-full"), (7, "killed")],
                         ids=["last-checkpoint-at-max-steps-killed", "last-checkpoint-at-max-steps-disk-full",
                              "last-checkpoint-before-max-steps-killed"])
def test_a_run_that_died_before_its_final_weights_ends_as_an_uninterrupted_one(tmp_path, tiny_model_dir,
                                                                              monkeypatch, max_steps, ending):
    """Killed after its last checkpoint was complete and before final/ existed, or failed writing final/ on a full
    disk and retried: the next attempt finishes from the checkpoint, training no step past max_steps."""
    import shutil

    import tunelab.runner.training.final_weights as final_weights
    from tunelab.experiments.loader import load_spec
    from tunelab.runner.errors import RunFailed
    from tunelab.runner.training.final_weights import FINAL_FACTS, final_facts
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    path = write_spec(tmp_path / "s.toml", name="end", model_dir=tiny_model_dir, max_steps=max_steps, save_every=3,
                      tasks=(), custom=False, baseline=False)
    # A constant rate: one step too many changes the weights (with the linear default its rate would be 0).
    path.write_text(path.read_text().replace("[train]\n", '[train]\nlr_scheduler = "constant"\nlogging_steps = 1\n'))
    spec = load_spec(path).spec
    quiet = TrainHooks(on_metrics=lambda _m: None, on_checkpoint=lambda *_a: None)
    train(spec, workdir=tmp_path, output_dir=tmp_path / "whole", hooks=quiet)
    expected = _final_tensors(tmp_path / "whole" / "final")

    run = tmp_path / "run"
    if ending == "killed":
        train(spec, workdir=tmp_path, output_dir=run, hooks=quiet)
        shutil.rmtree(run / "final")
    else:
        real_fsync_tree = final_weights.fsync_tree

        def full(_path):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(final_weights, "fsync_tree", full)
        with pytest.raises(RunFailed):
            train(spec, workdir=tmp_path, output_dir=run, hooks=quiet)
        monkeypatch.setattr(final_weights, "fsync_tree", real_fsync_tree)
    assert not (run / "final").exists()

    metrics: list[int] = []
    saved: list[int] = []
    hooks = TrainHooks(on_metrics=lambda m: metrics.append(m["step"]),
                       on_checkpoint=lambda step, *_a: saved.append(step))
    outcome = train(spec, workdir=tmp_path, output_dir=run, hooks=hooks)
    assert outcome.global_step == max_steps and outcome.resumed_from == 6
    assert metrics == list(range(7, max_steps + 1)) and saved == []  # no step 7 when 6 was the last
    assert [c.step for c in complete_checkpoints(run / "checkpoints")] == [3, 6]
    assert final_facts(run / "final")["global_step"] == max_steps and (run / "final" / FINAL_FACTS).is_file()
    resumed = _final_tensors(run / "final")
    assert resumed.keys() == expected.keys() and resumed
    assert all(resumed[name].equal(expected[name]) for name in expected)


# ---- checkpoints on disk, without training -----------------------------------------------------------------


def _stage(root: Path, step: int) -> Path:
    staged = staging_dir(root) / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    (staged / "model.safetensors").write_bytes(b"weights")
    return staged


def test_a_checkpoint_is_visible_only_once_published(tmp_path):
    _stage(tmp_path, 3)
    assert latest_complete(tmp_path) is None
    published = publish(staging_dir(tmp_path) / "checkpoint-3", tmp_path, step=3, loss=0.5)
    assert published == tmp_path / "checkpoint-3"
    assert (published / MARKER).is_file() and (published / "model.safetensors").read_bytes() == b"weights"
    assert [(c.step, c.loss) for c in complete_checkpoints(tmp_path)] == [(3, 0.5)]
    assert list(staging_dir(tmp_path).iterdir()) == []


def test_leftovers_of_a_kill_are_never_used_and_are_cleared(tmp_path):
    publish(_stage(tmp_path, 3), tmp_path, step=3, loss=0.5)
    _stage(tmp_path, 6)  # killed while the Trainer wrote it
    unmarked = tmp_path / "checkpoint-9"  # written in place by an older tunelab, no marker
    unmarked.mkdir()
    half_deleted = tmp_path / ".deleting-checkpoint-1"
    half_deleted.mkdir()
    assert latest_complete(tmp_path) == tmp_path / "checkpoint-3"
    removed = {p.name for p in discard_incomplete(tmp_path)}
    assert removed == {".staging", "checkpoint-9", ".deleting-checkpoint-1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (3, 6, 9, 12):
        publish(_stage(tmp_path, step), tmp_path, step=step, loss=None)
    assert prune(tmp_path, 0) == []
    assert prune(tmp_path, 2) == [3, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging", "checkpoint-12", "checkpoint-9"]


# ---- SIGKILL and SIGTERM against real workers ---------------------------------------------------------------


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "registry.db", timeout=30)


def _one(db: sqlite3.Connection, sql: str, *args):
    return db.execute(sql, args).fetchone()[0]


def _start_worker(home: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tunelab", "--home", str(home), "worker", "--once", "--quiet", "--heartbeat", "0.5"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _claimed_by(db: sqlite3.Connection, worker: subprocess.Popen) -> int | None:
    row = db.execute("SELECT id FROM run WHERE worker LIKE ?", (f"%:{worker.pid}",)).fetchone()
    return row[0] if row else None


def _progress(db: sqlite3.Connection, run_id: int) -> tuple[int, int]:
    checkpoint = _one(db, "SELECT COALESCE(MAX(step), 0) FROM checkpoint WHERE run_id = ?", run_id)
    metric = _one(db, "SELECT COALESCE(MAX(step), 0) FROM trainmetric WHERE run_id = ?", run_id)
    return checkpoint, metric


def _interrupt_two_workers(home: Path, env: dict[str, str]) -> dict:
    """Start two workers; SIGKILL one and SIGTERM the other once each has a checkpoint and steps after it."""
    killer, terminated = _start_worker(home, env), _start_worker(home, env)
    db = _db(home)
    runs: dict[str, int | None] = {"killed": None, "terminated": None}
    seen: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 300
    while len(seen) < 2:
        assert time.monotonic() < deadline, "the workers did not reach a checkpoint in time"
        for key, worker in (("killed", killer), ("terminated", terminated)):
            if key in seen:
                continue
            assert worker.poll() is None, worker.communicate()[0]
            runs[key] = runs[key] or _claimed_by(db, worker)
            if runs[key] is None:
                continue
            checkpoint, metric = _progress(db, runs[key])
            if checkpoint >= SAVE_EVERY and metric > checkpoint:
                worker.send_signal(signal.SIGKILL if key == "killed" else signal.SIGTERM)
                seen[key] = (checkpoint, metric)
        time.sleep(0.02)
    killed_at = time.monotonic()
    killer.wait(timeout=60)
    term_output, _ = terminated.communicate(timeout=120)
    run = runs["terminated"]
    root = home / "runs" / str(run) / "checkpoints"
    complete = [c.step for c in complete_checkpoints(root)]
    after_term = {
        "returncode": terminated.returncode,
        "output": term_output,
        "row": db.execute("SELECT status, attempts, worker, error FROM run WHERE id = ?", (run,)).fetchone(),
        "metric": _progress(db, run)[1],
        "recorded": [r[0] for r in db.execute("SELECT step FROM checkpoint WHERE run_id = ? ORDER BY step",
                                              (run,))],
        "complete": complete,
        # Anything else on disk but an empty staging directory would be a half-written leftover.
        "other": sorted(p.name for p in root.iterdir()
                        if p.name not in {f"checkpoint-{s}" for s in complete}
                        and not (p.name == ".staging" and not any(p.iterdir()))),
    }
    killed_row = db.execute("SELECT status, worker FROM run WHERE id = ?", (runs["killed"],)).fetchone()
    db.close()
    return {"runs": runs, "seen": seen, "after_term": after_term, "killed_row": killed_row,
            "killed_at": killed_at}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume")
    home = root / "home"
    spec = write_spec(root / "resume.toml", name="resume", model_dir=tiny_model_dir, kind="full",
                      max_steps=STEPS, save_every=SAVE_EVERY, tasks=(), limit=2, baseline=False)
    spec.write_text(spec.read_text().replace(f"save_every = {SAVE_EVERY}\n",
                                             f"save_every = {SAVE_EVERY}\nkeep_checkpoints = {KEEP}\n"))
    ids = [invoke_json(home, "submit", str(spec))[0]["run_id"]]
    ids += [invoke_json(home, "submit", str(spec), "--force")[0]["run_id"] for _ in range(2)]

    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_DB"}
    env["TUNELAB_TEST_SECRET"] = CANARY
    # Metric rows reach the registry every 50 ms, not every 2 s: the workers are stopped once the registry shows
    # steps after a checkpoint, and the whole run takes about a second.
    env["TUNELAB_REPORT_SECONDS"] = "0.05"
    interrupted = _interrupt_two_workers(home, env)
    (reference,) = set(ids) - set(interrupted["runs"].values())

    # The killed run's last heartbeat must be older than --stale-after for the next worker to take it back.
    time.sleep(max(0.0, interrupted["killed_at"] + 2.5 - time.monotonic()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_TEST_SECRET", CANARY)
        final = invoke(home, "worker", "--until-empty", "--quiet", "--heartbeat", "0.5", "--stale-after", "2")
    return dict(interrupted, home=home, reference=reference, final=final)


def _metrics(home: Path, run_id: int) -> list[tuple]:
    with _db(home) as db:
        return db.execute("SELECT step, epoch, loss, learning_rate, grad_norm FROM trainmetric WHERE run_id = ? "
                          "ORDER BY step, id", (run_id,)).fetchall()


def _weights(home: Path, run_id: int):
    from safetensors.torch import load_file

    return load_file(home / "runs" / str(run_id) / "final" / "model.safetensors")


@pytest.mark.slow
def test_the_kill_left_a_checkpoint_and_steps_after_it(resumed):
    checkpoint, metric = resumed["seen"]["killed"]
    assert SAVE_EVERY <= checkpoint < STEPS and metric > checkpoint  # steps that will be logged twice, unless
    assert resumed["killed_row"][0] == "running"                     # the resume drops them first


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_the_stop_step_and_requeues(resumed):
    after = resumed["after_term"]
    run_id = resumed["runs"]["terminated"]
    stopped_at = after["metric"]
    assert after["returncode"] == 0, after["output"]
    assert (f"run {run_id}: queued (interrupted (SIGTERM at step {stopped_at}); re-queued, "
            f"resumes from checkpoint-{stopped_at})") in after["output"]
    assert "worker stopped (SIGTERM)" in after["output"]
    status, attempts, worker, error = after["row"]
    assert (status, attempts, worker) == ("queued", 0, None)  # an interruption is not a failed attempt
    assert f"SIGTERM at step {stopped_at}" in error
    # The stop step is rarely a multiple of save_every: its checkpoint came from the signal, and it is whole.
    assert after["complete"][-1] == stopped_at
    assert after["recorded"] == after["complete"]
    assert after["other"] == []


@pytest.mark.slow
def test_a_new_worker_recovers_and_finishes_every_run(resumed):
    final = resumed["final"]
    assert final.exit_code == 0, final.output
    killed = resumed["runs"]["killed"]
    for run_id in (resumed["reference"], killed, resumed["runs"]["terminated"]):
        assert f"run {run_id}: succeeded" in final.output
    with _db(resumed["home"]) as db:
        attempts = dict(db.execute("SELECT id, attempts FROM run").fetchall())
    assert attempts == {resumed["reference"]: 0, killed: 1, resumed["runs"]["terminated"]: 0}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["killed", "terminated"])
def test_a_resumed_run_is_bit_identical_to_the_uninterrupted_one(resumed, which):
    import torch

    home, reference, run_id = resumed["home"], resumed["reference"], resumed["runs"][which]
    expected = _metrics(home, reference)
    assert [m[0] for m in expected] == list(range(1, STEPS + 1))
    assert _metrics(home, run_id) == expected  # every step once, every float exactly equal
    ours, theirs = _weights(home, run_id), _weights(home, reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)


@pytest.mark.slow
def test_keep_checkpoints_prunes_disk_and_registry_alike(resumed):
    home = resumed["home"]
    expected = [STEPS - SAVE_EVERY * i for i in reversed(range(KEEP))]
    for run_id in (resumed["reference"], *resumed["runs"].values()):
        detail = invoke_json(home, "show", str(run_id))
        assert [c["step"] for c in detail["checkpoints"]] == expected
        root = home / "runs" / str(run_id) / "checkpoints"
        assert [c.step for c in complete_checkpoints(root)] == expected
        assert sorted(p.name for p in root.iterdir() if p.name != ".staging") == sorted(
            f"checkpoint-{s}" for s in expected)


@pytest.mark.slow
def test_show_json_has_the_environment_snapshot_without_secrets(resumed):
    import json

    import torch

    detail = invoke_json(resumed["home"], "show", str(resumed["runs"]["killed"]))
    env = detail["environment"]
    assert env["packages"]["torch"] == torch.__version__
    assert {"transformers", "peft", "bitsandbytes", "lm-eval"} <= set(env["packages"])
    assert env["cuda_available"] is torch.cuda.is_available()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.getcwd(), capture_output=True, text=True)
    assert env["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert CANARY not in json.dumps(detail)


@pytest.mark.slow
def test_a_sigkill_after_a_checkpoint_loses_no_metric_row_up_to_it(tmp_path, tiny_model_dir):
    """Metric rows are written in batches (runner/training/registry_hooks.py), never later than the checkpoint
    that follows them: a worker killed at any moment keeps every row up to its newest checkpoint on disk."""
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "kill.toml", name="kill", model_dir=tiny_model_dir, kind="full", max_steps=5000,
                      save_every=SAVE_EVERY, tasks=(), baseline=False)
    run_id = invoke_json(home, "submit", str(spec))[0]["run_id"]
    worker = _start_worker(home, {k: v for k, v in os.environ.items() if k != "TUNELAB_DB"})
    db = _db(home)
    deadline = time.monotonic() + 300
    while _progress(db, run_id)[0] < 4 * SAVE_EVERY:  # a few checkpoints in, wherever the next one stands
        assert worker.poll() is None, worker.communicate()[0]
        assert time.monotonic() < deadline, "the worker did not reach its checkpoints in time"
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    on_disk = [c.step for c in complete_checkpoints(home / "runs" / str(run_id) / "checkpoints")]
    recorded = [row[0] for row in db.execute("SELECT step FROM checkpoint WHERE run_id = ?", (run_id,))]
    steps = [row[0] for row in db.execute("SELECT step FROM trainmetric WHERE run_id = ? AND loss IS NOT NULL "
                                          "ORDER BY step", (run_id,))]
    status = _one(db, "SELECT status FROM run WHERE id = ?", run_id)
    db.close()
    assert status == "running"  # killed while training
    # The newest checkpoint on disk may be one the worker was killed before recording: its rows are in all the same.
    newest = max(on_disk)
    assert 4 * SAVE_EVERY <= newest < 5000 and set(recorded) <= set(on_disk) and max(recorded) >= newest - SAVE_EVERY
    assert steps[:newest] == list(range(1, newest + 1))  # every step up to it, once
    assert len(steps) == len(set(steps))  # and any after it (written in the background) once too


# ---- a full disk ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_fails_the_run_keeps_the_last_checkpoint_and_a_retry_resumes(tmp_path, tiny_model_dir,
                                                                                monkeypatch):
    # Tests run as root, where an unwritable (chmod) directory is still writable: the save itself is made to
    # fail with ENOSPC instead, halfway through the checkpoint (weights written, optimizer state not).
    from transformers import Trainer

    save_optimizer = Trainer._save_optimizer_and_scheduler

    def disk_fills_up(self, output_dir):
        if self.state.global_step >= 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output_dir)
        return save_optimizer(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", disk_fills_up)
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "full.toml", name="full-disk", model_dir=tiny_model_dir, kind="lora",
                      max_steps=6, save_every=2, tasks=(), baseline=False)
    (submitted,) = invoke_json(home, "submit", str(spec))
    run_id = submitted["run_id"]
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert f"run {run_id}: failed" in result.output and "queued" not in result.output  # not retried

    checkpoints = home / "runs" / str(run_id) / "checkpoints"
    detail = invoke_json(home, "show", str(run_id))
    assert detail["summary"]["status"] == "failed"
    assert detail["summary"]["error"] == (f"RunFailed: cannot write the checkpoint at step 4 under {checkpoints}: "
                                          "No space left on device; earlier checkpoints are intact")
    assert sorted(p.name for p in checkpoints.iterdir() if p.name != ".staging") == ["checkpoint-2"]
    assert not any(staging_dir(checkpoints).iterdir())
    assert [c.step for c in complete_checkpoints(checkpoints)] == [2]
    assert [c["step"] for c in detail["checkpoints"]] == [2]
    before = [(m["step"], m["loss"]) for m in detail["metrics"]]
    assert [step for step, _ in before] == [1, 2, 3, 4]

    monkeypatch.undo()  # space was freed
    assert invoke(home, "retry", str(run_id)).exit_code == 0
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert f"run {run_id}: succeeded" in result.output
    detail = invoke_json(home, "show", str(run_id))
    after = [(m["step"], m["loss"]) for m in detail["metrics"]]
    assert [step for step, _ in after] == [1, 2, 3, 4, 5, 6]
    assert after[:4] == before  # steps 3 and 4 were redone from checkpoint 2, to the same losses
    assert [c["step"] for c in detail["checkpoints"]] == [2, 4, 6]


def test_a_write_error_on_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    # torch.save and safetensors report ENOSPC as their own exception types; the free space tells.
    import shutil
    from collections import namedtuple

    from tunelab.runner.training.checkpoints import disk_failure

    usage = namedtuple("usage", "total used free")
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 0))
    assert disk_failure(torch_error, tmp_path) == "No space left on device (0 bytes free)"
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**12, 10**11, 9 * 10**11))
    assert disk_failure(torch_error, tmp_path) is None  # plenty of space: some other bug, not the disk
    assert disk_failure(OSError(errno.EROFS, "Read-only file system"), tmp_path) == "Read-only file system"


# ---- a worker paused past --stale-after, and the worker that took its run over -----------------------------


def _wait_for(condition, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.mark.slow
def test_a_paused_worker_that_lost_its_run_writes_nothing_when_it_continues(tmp_path, tiny_model_dir):
    """SIGSTOP a worker mid-training, let another take the run over (stale heartbeat), SIGCONT the first: it stops
    as `lost` and writes no metric row, no checkpoint row and no checkpoint directory for the run."""
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "paused.toml", name="paused", model_dir=tiny_model_dir, kind="lora", max_steps=400,
                      save_every=5, tasks=(), limit=2, baseline=False)
    (submitted,) = invoke_json(home, "submit", str(spec))
    run_id = submitted["run_id"]
    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_DB"}
    command = [sys.executable, "-m", "tunelab", "--home", str(home), "worker", "--once", "--quiet", "--heartbeat",
               "0.5", "--stale-after", "3"]
    db = _db(home)
    stalled = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    owner = None
    try:
        _wait_for(lambda: _claimed_by(db, stalled) == run_id and _progress(db, run_id)[0] >= 5, "a checkpoint")
        stalled.send_signal(signal.SIGSTOP)
        paused_at = _progress(db, run_id)[1]
        # Stale by the time the new owner looks: a worker starts in under a second, and with --once one that finds
        # the queue empty (the run not yet stale) just exits.
        time.sleep(3.5)
        owner = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        # The new owner has trained past where the paused worker stopped, and checkpointed.
        _wait_for(lambda: _claimed_by(db, owner) == run_id and _progress(db, run_id)[0] >= paused_at + 10,
                  "the new owner's progress")
        owner.send_signal(signal.SIGSTOP)  # hold the new owner still while the old one wakes up
        before = (db.execute("SELECT step, loss FROM trainmetric WHERE run_id = ? ORDER BY id", (run_id,)).fetchall(),
                  db.execute("SELECT step, path FROM checkpoint WHERE run_id = ? ORDER BY id", (run_id,)).fetchall())
        markers = {p.parent.name: p.read_bytes() for p in (home / "runs" / str(run_id) / "checkpoints").glob(
            f"checkpoint-*/{MARKER}")}
        stalled.send_signal(signal.SIGCONT)
        output, _ = stalled.communicate(timeout=120)
        assert f"run {run_id}: lost" in output, output
        after = (db.execute("SELECT step, loss FROM trainmetric WHERE run_id = ? ORDER BY id", (run_id,)).fetchall(),
                 db.execute("SELECT step, path FROM checkpoint WHERE run_id = ? ORDER BY id", (run_id,)).fetchall())
        assert after == before  # not a row more
        assert {p.parent.name: p.read_bytes() for p in (home / "runs" / str(run_id) / "checkpoints").glob(
            f"checkpoint-*/{MARKER}")} == markers  # no checkpoint published over the new owner's
        assert _one(db, "SELECT worker FROM run WHERE id = ?", run_id).endswith(f":{owner.pid}")
    finally:
        for process in (stalled, owner):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=30)
        db.close()
