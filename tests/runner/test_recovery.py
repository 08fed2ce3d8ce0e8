"""Runs outlive their workers: stale runs are re-queued (or failed once their retries are spent), errors are
retried only when another attempt could succeed, a worker stops cleanly on SIGTERM/SIGINT/SIGUSR1, and every run
records the environment it executed with.

The clock is passed in (`now=`), so staleness is decided without sleeping. The SIGKILL end-to-end case, where
a real worker dies and another recovers its run, is in test_resume.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select
from tunelab.registry.models import Checkpoint, EvalResult, Run, TrainMetric
from tunelab.registry.recording import (
    KeptCheckpoint,
    MetricPoint,
    forget_scores,
    record_checkpoint,
    record_metrics,
    rewind,
)
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import beat, cancel, claim_next, requeue_stale, retry_or_fail
from tunelab.registry.submissions import NewExperiment, submit

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def queue_run(registry, name: str = "e", resources: dict | None = None) -> int:
    spec = {"experiment": {"name": name}}
    if resources is not None:
        spec["resources"] = resources
    (submitted,) = submit(registry, [NewExperiment(
        name=name, description="", tags=[], spec_path="x.toml", spec_text="", resolved_json=json.dumps(spec),
        spec_hash=f"hash-{name}", workdir="/tmp")])
    return submitted.run_id


def claim(registry, worker: str, beat_at: datetime) -> int:
    run_id = claim_next(registry, worker)
    with registry.session() as session:
        session.exec(update(Run).where(Run.id == run_id).values(heartbeat_at=beat_at))
        session.commit()
    return run_id


def run_row(registry, run_id: int) -> Run:
    with registry.session() as session:
        return session.get(Run, run_id)


def test_a_run_with_a_fresh_heartbeat_is_left_alone(registry):
    queue_run(registry, "mine")
    run_id = claim(registry, "w1", T0)
    queue_run(registry, "other")  # queued runs are never touched
    assert requeue_stale(registry, 120, now=T0 + timedelta(seconds=119)) == []
    assert (run_row(registry, run_id).status, run_row(registry, run_id).worker) == ("running", "w1")


def test_stale_runs_are_requeued_until_max_retries_then_failed(registry):
    queue_run(registry)
    now = T0
    for attempt in (1, 2):
        run_id = claim(registry, f"w{attempt}", now)
        now += timedelta(seconds=121)
        (recovered,) = requeue_stale(registry, 120, now=now)
        assert (recovered.run_id, recovered.status, recovered.attempts) == (run_id, "queued", attempt)
        run = run_row(registry, run_id)
        assert (run.status, run.attempts, run.worker) == ("queued", attempt, None)
        assert f"worker w{attempt} stopped heartbeating" in run.error
        assert f"retry {attempt} of 2" in run.error

    run_id = claim(registry, "w3", now)
    (recovered,) = requeue_stale(registry, 120, now=now + timedelta(seconds=121))
    assert (recovered.status, recovered.attempts) == ("failed", 2)
    run = run_row(registry, run_id)
    assert run.status == "failed" and run.finished_at is not None
    assert "gave up after 2 retries (max_retries = 2)" in run.error


def test_max_retries_comes_from_the_spec(registry):
    queue_run(registry, "never", resources={"max_retries": 0})
    run_id = claim(registry, "w", T0)
    (recovered,) = requeue_stale(registry, 60, now=T0 + timedelta(minutes=5))
    assert recovered.status == "failed"
    assert run_row(registry, run_id).attempts == 0


def test_recovering_twice_at_once_changes_the_run_once(registry):
    # Two workers look at the same stale run: the second finds nothing left to do.
    queue_run(registry)
    run_id = claim(registry, "w", T0)
    later = T0 + timedelta(seconds=300)
    assert [r.run_id for r in requeue_stale(registry, 120, now=later)] == [run_id]
    assert requeue_stale(registry, 120, now=later) == []
    assert run_row(registry, run_id).attempts == 1


def test_a_run_that_beats_again_is_not_stale(registry):
    queue_run(registry)
    run_id = claim(registry, "w", T0)
    assert beat(registry, run_id, "w") == "running"  # heartbeat_at is now the real time, after T0
    assert requeue_stale(registry, 120, now=T0 + timedelta(seconds=121)) == []


def test_heartbeat_tells_a_worker_its_run_is_gone(registry):
    queue_run(registry, "a")
    queue_run(registry, "b")
    a = claim(registry, "w-old", T0)
    requeue_stale(registry, 120, now=T0 + timedelta(seconds=300))
    assert claim_next(registry, "w-new") == a  # re-queued and claimed by another worker
    assert beat(registry, a, "w-old") == "lost"
    assert beat(registry, a, "w-new") == "running"
    b = claim_next(registry, "w-old")
    cancel(registry, b)
    assert beat(registry, b, "w-old") == "cancelled"


def test_retryable_errors_requeue_the_run_until_its_retries_are_spent(registry):
    queue_run(registry, "flaky")
    for attempt in (1, 2):
        run_id = claim_next(registry, "w")
        assert retry_or_fail(registry, run_id, "w", "RuntimeError: boom", retryable=True) == "queued"
        run = run_row(registry, run_id)
        assert (run.status, run.attempts, run.worker) == ("queued", attempt, None)
        assert run.error == f"RuntimeError: boom (re-queued, retry {attempt} of 2)"
    run_id = claim_next(registry, "w")
    assert retry_or_fail(registry, run_id, "w", "RuntimeError: boom", retryable=True) == "failed"
    run = run_row(registry, run_id)
    assert (run.status, run.error) == ("failed", "RuntimeError: boom (after 2 retries)")


def test_errors_in_the_spec_or_data_fail_the_run_at_once(registry):
    queue_run(registry, "bad-data")
    run_id = claim_next(registry, "w")
    assert retry_or_fail(registry, run_id, "w", "DataError: x.jsonl:3: not JSON", retryable=False) == "failed"
    run = run_row(registry, run_id)
    assert (run.status, run.attempts, run.error) == ("failed", 0, "DataError: x.jsonl:3: not JSON")


def test_an_error_does_not_touch_a_run_another_worker_holds(registry):
    queue_run(registry, "theirs")
    run_id = claim_next(registry, "other")
    assert retry_or_fail(registry, run_id, "w", "RuntimeError", retryable=True) == "lost"
    assert (run_row(registry, run_id).status, run_row(registry, run_id).worker) == ("running", "other")


def test_a_worker_that_lost_its_run_writes_nothing_for_it(registry):
    from tunelab.registry.errors import RunNotHeld
    from tunelab.registry.recording import ensure_held, update_run

    run_id = queue_run(registry, "taken")
    assert claim(registry, "stalled", T0 - timedelta(minutes=10)) == run_id
    requeue_stale(registry, 60, now=T0)
    assert claim_next(registry, "new") == run_id
    stale_writes = [
        lambda: record_metrics(registry, run_id, [MetricPoint(step=6, loss=0.5)], held_by="stalled"),
        lambda: record_checkpoint(registry, run_id, 6, 0.5, "/x/checkpoint-6", held_by="stalled"),
        lambda: update_run(registry, run_id, final_loss=0.5, held_by="stalled"),
        lambda: rewind(registry, run_id, 0, [], held_by="stalled"),
        lambda: forget_scores(registry, run_id, held_by="stalled"),
        lambda: ensure_held(registry, run_id, "stalled"),
    ]
    for write in stale_writes:
        with pytest.raises(RunNotHeld):
            write()
    record_metrics(registry, run_id, [MetricPoint(step=6, loss=0.25)], held_by="new")  # the owner's go through
    record_checkpoint(registry, run_id, 6, 0.25, "/x/checkpoint-6", held_by="new")
    ensure_held(registry, run_id, "new")
    with registry.session() as session:
        metrics = session.exec(select(TrainMetric.loss).where(TrainMetric.run_id == run_id)).all()
        checkpoints = session.exec(select(Checkpoint.loss).where(Checkpoint.run_id == run_id)).all()
    assert (metrics, checkpoints) == ([0.25], [0.25])
    assert (run_row(registry, run_id).worker, run_row(registry, run_id).final_loss) == ("new", None)


def test_rewind_drops_later_metrics_and_matches_checkpoint_rows_to_disk(registry):
    run_id = queue_run(registry)
    record_metrics(registry, run_id, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 8)])
    for step in (2, 4, 6):
        record_checkpoint(registry, run_id, step, 0.5, f"/c/checkpoint-{step}")
    # On disk: 4 (recorded) and 5 (written, killed before it was recorded); 2 was pruned, 6 is gone.
    dropped = rewind(registry, run_id, 5, [KeptCheckpoint(4, 0.4, "/c/checkpoint-4"),
                                           KeptCheckpoint(5, 0.3, "/c/checkpoint-5")])
    assert dropped == 2
    with registry.session() as session:
        metrics = session.exec(select(TrainMetric.step).where(TrainMetric.run_id == run_id)).all()
        checkpoints = session.exec(select(Checkpoint.step, Checkpoint.loss).where(Checkpoint.run_id == run_id)
                                   .order_by(Checkpoint.step)).all()
    assert sorted(metrics) == [1, 2, 3, 4, 5]
    assert [tuple(c) for c in checkpoints] == [(4, 0.5), (5, 0.3)]


def test_the_runs_own_errors_are_not_retried_and_every_user_error_is_one_family():
    from pydantic import ValidationError
    from tunelab.experiments.errors import SpecError, TunelabError
    from tunelab.experiments.schema import Spec
    from tunelab.runner.devices import DeviceUnavailable
    from tunelab.runner.errors import DataError, EvaluationError, RunFailed, retryable
    from tunelab.runner.evaluation.targets import EvalTargetError
    from tunelab.runner.export import ExportError
    from tunelab.runner.reproduce import DataChanged
    from tunelab.runner.training.checkpoint_identity import IncompatibleCheckpoint
    from tunelab.runner.training.distributed import DistributedTrainingFailed

    with pytest.raises(ValidationError) as invalid:
        Spec.model_validate({})
    own = [RunFailed("disk full"), DataError("d.jsonl", "not JSON", line=3), SpecError("s.toml", "bad", line=1),
           invalid.value, DeviceUnavailable("no GPU"), IncompatibleCheckpoint("other data"), DataChanged("changed")]
    others = [RuntimeError("CUDA error"), OSError("connection reset"), DistributedTrainingFailed("rank 1 died"),
              EvaluationError("hub dataset unreachable")]
    assert [retryable(exc) for exc in own] == [False] * len(own)
    assert [retryable(exc) for exc in others] == [True] * len(others)
    # What a user can cause reaches the CLI edge as a TunelabError, which it prints as one line.
    for kind in (RunFailed, SpecError, DeviceUnavailable, EvaluationError, EvalTargetError, ExportError, DataChanged,
                 IncompatibleCheckpoint):
        assert issubclass(kind, TunelabError)


# ---- through the worker ------------------------------------------------------------------------------------


def _spec(tmp_path: Path, tiny_model_dir: Path, name: str, **kwargs) -> Path:
    return write_spec(tmp_path / f"{name}.toml", name=name, model_dir=tiny_model_dir, kind="lora", max_steps=2,
                      save_every=2, tasks=(), baseline=False, **kwargs)


def test_unexpected_errors_are_retried_then_fail(tmp_path, tiny_model_dir, monkeypatch):
    from tunelab.runner import execute as runner_execute

    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(runner_execute, "train", crash)
    home = tmp_path / "home"
    (submitted,) = invoke_json(home, "submit", str(_spec(tmp_path, tiny_model_dir, "flaky")))
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(calls) == 3  # the first attempt and max_retries = 2 more
    assert result.output.count(f"run {submitted['run_id']}: queued") == 2
    detail = invoke_json(home, "show", str(submitted["run_id"]))
    assert detail["summary"]["status"] == "failed"
    assert detail["summary"]["error"] == ("RuntimeError: CUDA error: an illegal memory access was encountered "
                                          "(after 2 retries)")


@pytest.mark.slow
def test_a_crash_after_training_is_retried_without_training_again(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import Trainer
    from tunelab.runner import execute as runner_execute

    trained, recorded = [], []
    real_train, real_record = Trainer.train, runner_execute.record_scores

    def counting_train(self, *args, **kwargs):
        trained.append(1)
        return real_train(self, *args, **kwargs)

    def record_then_crash_once(*args, **kwargs):
        real_record(*args, **kwargs)  # the fine-tuned scores are in the registry when the attempt dies
        recorded.append(1)
        if len(recorded) == 1:
            raise RuntimeError("the node went away")

    monkeypatch.setattr(Trainer, "train", counting_train)
    monkeypatch.setattr(runner_execute, "record_scores", record_then_crash_once)
    home = tmp_path / "home"
    (submitted,) = invoke_json(home, "submit", str(_spec(tmp_path, tiny_model_dir, "eval-crash")))
    result = invoke(home, "worker", "--until-empty", "--quiet")
    run_id = submitted["run_id"]
    assert f"run {run_id}: queued (RuntimeError: the node went away)" in result.output
    assert f"run {run_id}: succeeded" in result.output
    assert (len(trained), len(recorded)) == (1, 2)  # the second attempt evaluated the final weights on disk
    detail = invoke_json(home, "show", str(run_id))
    assert [m["step"] for m in detail["metrics"]] == [1, 2]
    assert [(s["model_kind"], s["task"]) for s in detail["scores"]] == [("finetuned", "capitals")]  # once


def test_bad_data_fails_at_once(tmp_path, tiny_model_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\nnot json\n', encoding="utf-8")
    home = tmp_path / "home"
    (submitted,) = invoke_json(home, "submit", str(_spec(tmp_path, tiny_model_dir, "bad", train=data)))
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert f"run {submitted['run_id']}: failed" in result.output
    assert "queued" not in result.output
    detail = invoke_json(home, "show", str(submitted["run_id"]))
    assert detail["summary"]["status"] == "failed"
    assert f"{data}:2" in detail["summary"]["error"]


def test_an_output_directory_that_cannot_be_made_fails_the_run_not_the_worker(tmp_path, tiny_model_dir):
    # Tests run as root, where chmod does not stop writes; a file where the runs directory should be does.
    home = tmp_path / "home"
    submitted = invoke_json(home, "submit", str(_spec(tmp_path, tiny_model_dir, "a")),
                            str(_spec(tmp_path, tiny_model_dir, "b")))
    (home / "runs").write_text("not a directory", encoding="utf-8")
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert result.exit_code == 0, result.output
    for s in submitted:
        detail = invoke_json(home, "show", str(s["run_id"]))
        assert detail["summary"]["status"] == "failed"
        assert detail["summary"]["error"].startswith("RunFailed: cannot create the run's output directory")
        assert str(home / "runs" / str(s["run_id"])) in detail["summary"]["error"]


def test_stale_after_must_exceed_the_heartbeat(tmp_path):
    result = invoke(tmp_path, "worker", "--until-empty", "--heartbeat", "15", "--stale-after", "10")
    assert result.exit_code == 2
    assert "--stale-after" in result.output and "must exceed --heartbeat" in result.output


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` yet (Linux: SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


# SIGUSR1: the warning Slurm sends a job ahead of its time limit (tunelab launch slurm asks for it).
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGUSR1, 0)])
def test_an_idle_worker_stops_at_once_on_a_signal(tmp_path, signum, exit_code):
    worker = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "--home", str(tmp_path), "worker", "--poll", "60"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    # Python catches SIGINT from the start; a SIGTERM handler means the worker's own handlers are in place.
    while not _catches(worker.pid, signal.SIGTERM) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # past the first look at the (empty) queue: now in the 60 s sleep
    worker.send_signal(signum)
    started = time.monotonic()
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == exit_code, output
    assert time.monotonic() - started < 10, "the worker slept on instead of stopping"
    assert f"worker stopped ({signal.Signals(signum).name})" in output
    # It said, once, that it waits and for what.
    assert output.count("waiting for queued runs") == 1
    assert f"waiting for queued runs in sqlite:///{tmp_path / 'registry.db'} (training on " in output


def test_an_idle_worker_says_it_waits_once_per_idle_stretch(registry, tmp_path):
    from tunelab.runner.devices import DeviceChoice
    from tunelab.runner.execute import StopRequest
    from tunelab.runner.worker import work

    stop, sleeps, heard = StopRequest(), [], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            stop.request("enough")

    assert work(registry, roots=Roots(tmp_path), sleep=sleep, stop=stop, devices=DeviceChoice("cpu"),
                on_waiting=heard.append) == []
    assert len(sleeps) == 3 and heard == [0]  # three looks at the empty queue, one word about it


def test_a_worker_with_no_gpu_possible_starts_without_importing_torch(tmp_path):
    """What made `worker --until-empty` on an empty queue take seconds: torch imported to count no GPUs."""
    from tunelab.runner.devices import no_gpu_possible

    if not no_gpu_possible():
        pytest.skip("this machine may have a GPU: only torch can count them")
    script = ("import sys; from pathlib import Path; from tunelab.registry.db import open_registry; "
              "from tunelab.registry.roots import Roots; from tunelab.runner.worker import work; "
              f"print(work(open_registry('sqlite:///{tmp_path / 'r.db'}'), roots=Roots(Path({str(tmp_path)!r})), "
              "until_empty=True), sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "[]"]


# ---- environment snapshot ----------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    from tunelab.runner.environment import git_state

    assert git_state(tmp_path).commit is None
    _git(tmp_path, "init", "-q")
    (tmp_path / "spec.toml").write_text("a", encoding="utf-8")
    _git(tmp_path, "add", "spec.toml")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "untracked.txt").write_text("u", encoding="utf-8")
    assert (git_state(tmp_path).commit, git_state(tmp_path).dirty) == (head, False)
    (tmp_path / "spec.toml").write_text("b", encoding="utf-8")
    assert git_state(tmp_path).dirty is True


def test_snapshot_has_versions_and_devices_and_no_environment_variables(tmp_path, monkeypatch):
    import torch
    import transformers
    from tunelab.runner.environment import snapshot

    monkeypatch.setenv("TUNELAB_TEST_SECRET", "hunter2-canary")
    env = snapshot(tmp_path).to_dict()
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages"]["transformers"] == transformers.__version__
    assert set(env["packages"]) >= {"peft", "bitsandbytes", "lm-eval"}
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cuda_available"] == torch.cuda.is_available()
    assert len(env["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    text = json.dumps(env)
    assert "hunter2-canary" not in text


def test_scores_of_other_commands_survive_a_new_attempt(registry):
    run_id = queue_run(registry)
    with registry.session() as session:
        for kind in ("finetuned", "base", "eval"):
            session.add(EvalResult(run_id=run_id, model_kind=kind, model_name="m", task="t", metric="acc", value=0.5))
        session.commit()
    forget_scores(registry, run_id)
    with registry.session() as session:
        kinds = session.exec(select(EvalResult.model_kind).where(EvalResult.run_id == run_id)).all()
    assert kinds == ["eval"]


# ---- what the spec causes is never retried, and is found before training -------------------------------------


def test_evaluation_errors_of_the_spec_are_not_retried_and_those_of_the_data_source_are():
    from tunelab.runner.errors import EvaluationError, EvaluationSpecError, retryable

    assert not retryable(EvaluationSpecError("unknown eval task(s) 'truthfulqa'"))
    assert retryable(EvaluationError("the hub dataset is not in the local cache"))
    assert issubclass(EvaluationSpecError, EvaluationError)  # doctor and the CLI catch both as one


def _queue_stored(home: Path, spec: Path, tmp_path: Path, **changes) -> int:
    """Queue `spec` as a registry holds it, with `changes` ("section.key": value) made to its stored JSON after
    validation: a spec stored before a bound it breaks, or one whose flaw only shows at run time."""
    import dataclasses

    from tunelab.experiments.loader import load_all
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.submissions import from_loaded

    new = from_loaded(load_all([spec])[0], workdir=str(tmp_path))
    resolved = json.loads(new.resolved_json)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        resolved[section][key] = value
    registry = open_registry(default_url(home))
    try:
        (done,) = submit(registry, [dataclasses.replace(new, resolved_json=json.dumps(resolved))])
    finally:
        registry.engine.dispose()
    return done.run_id


@pytest.mark.parametrize(("changes", "error"), [
    ({"eval.tasks": ["truthfulqa"]}, 'late.toml: eval.tasks: unknown eval task "truthfulqa"'),
    ({"eval.tasks": [], "eval.custom": []}, "eval.tasks: names no task and there is no [[eval.custom]] task"),
    ({"eval.custom": [{"name": "gone", "path": "gone.jsonl"}]}, "eval.custom.0.path: file not found"),
    ({"eval.custom": [{"name": "capitals", "num_fewshot": 500,
                       "path": str(REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl")}]},
     "EvaluationSpecError: custom task capitals: num_fewshot = 500 needs more than"),
    ({"experiment.seed": -1}, "ValidationError"),
    ({"method.r": 10**9}, "ValidationError"),
], ids=["unknown-task", "no-task", "missing-custom-file", "too-few-rows-for-the-shots", "seed", "lora-r"])
def test_a_spec_that_can_only_fail_at_run_time_fails_once_before_training(tmp_path, tiny_model_dir, monkeypatch,
                                                                          changes, error):
    from tunelab.runner import execute as runner_execute

    trained = []
    monkeypatch.setattr(runner_execute, "train", lambda *a, **k: trained.append(1))
    home = tmp_path / "home"
    run_id = _queue_stored(home, _spec(tmp_path, tiny_model_dir, "late"), tmp_path, **changes)
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert result.exit_code == 0, result.output
    assert "queued" not in result.output and f"run {run_id}: failed" in result.output
    detail = invoke_json(home, "show", str(run_id))
    assert detail["summary"]["status"] == "failed"
    assert error in detail["summary"]["error"] and "retr" not in detail["summary"]["error"]
    assert trained == []  # found before training, not after it


# ---- a full disk under the registry --------------------------------------------------------------------------


def test_a_full_registry_disk_stops_the_worker_in_one_line_once_its_run_is_released(tmp_path, tiny_model_dir,
                                                                                     monkeypatch):
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from tunelab.runner import execute as runner_execute
    from tunelab.runner.training import registry_hooks

    home = tmp_path / "home"
    (submitted,) = invoke_json(home, "submit", str(_spec(tmp_path, tiny_model_dir, "full")))
    run_id = submitted["run_id"]
    disk = {"full": False, "refused": 0}

    def refuse_writes(_conn, _cursor, statement, *_args) -> None:
        if disk["full"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            disk["refused"] += 1
            disk["full"] = disk["refused"] < 4  # room again after a few refused writes
            raise sqlite3.OperationalError("database or disk is full")

    real_record = registry_hooks.record_metrics

    def fill_the_disk(*args, **kwargs):
        disk["full"] = True  # from the first metric row on
        return real_record(*args, **kwargs)

    monkeypatch.setattr(registry_hooks, "record_metrics", fill_the_disk)
    monkeypatch.setattr(runner_execute, "RELEASE_RETRY_SECONDS", 0.05)
    event.listen(Engine, "before_cursor_execute", refuse_writes)
    try:
        result = invoke(home, "worker", "--until-empty", "--quiet")
    finally:
        event.remove(Engine, "before_cursor_execute", refuse_writes)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]  # one line
    assert "cannot be written (database or disk is full)" in line
    assert line.endswith(f"(run {run_id} went back to the queue; the worker stops)")
    assert disk["refused"] == 4  # the release waited until the registry took a write
    detail = invoke_json(home, "show", str(run_id))
    assert detail["summary"]["status"] == "queued"
    assert detail["summary"]["error"].startswith("released: the registry")
    # Nothing was lost: the next worker finishes the run.
    monkeypatch.setattr(registry_hooks, "record_metrics", real_record)
    assert f"run {run_id}: succeeded" in invoke(home, "worker", "--until-empty", "--quiet").output


def test_only_a_full_registry_disk_counts_as_one_not_a_full_disk_under_the_runs_files():
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError
    from tunelab.registry.errors import full_disk_cause
    from tunelab.runner.errors import RunFailed

    full = sqlite3.OperationalError("database or disk is full")
    assert full_disk_cause(OperationalError("INSERT INTO trainmetric", {}, full)) is full
    try:
        raise RunFailed("cannot write the checkpoint") from OSError(errno.ENOSPC, "No space left on device")
    except RunFailed as checkpoint_failed:
        assert full_disk_cause(checkpoint_failed) is None  # the run fails; the worker goes on
