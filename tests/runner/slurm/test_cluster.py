"""Workers on a real Slurm cluster (scripts/slurm.sh starts a one-node one; TUNELAB_TEST_SLURM_CONF names its
slurm.conf) with a PostgreSQL registry: `tunelab launch slurm` submits the script its dry run prints, worker jobs
drain the queue with no run taken twice, ls and show name each run's job and node, and the cluster's faults lose
nothing: a run whose job is cancelled (scancel), requeued (scontrol requeue, as preemption does) or warned of its
time limit (--signal=B:USR1) goes back to the queue from its last checkpoint and ends with the weights of a run never
interrupted; `tunelab cancel` stops a run whose worker is a Slurm job.

Without TUNELAB_TEST_SLURM_CONF these tests fail, naming what to start (TUNELAB_TEST_NO_SLURM=1 leaves them out).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import _postgres_database
from tests.helpers import REPO_ROOT, invoke, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module", autouse=True)
def _metrics_seen_as_they_happen() -> Iterator[None]:
    """Worker jobs (sbatch exports this environment) write metric rows every 50 ms, not every 2 s: the tests
    interrupt a run once the registry shows steps after a checkpoint, and a run takes seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_REPORT_SECONDS", "0.05")
        yield

STEPS, SAVE_EVERY = 60, 5
GRAD_ACCUM = 128
JOB_TIMEOUT = 600.0
CUSTOM = f'[[eval.custom]]\nname = "capitals"\npath = "{REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl"}"\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The test cluster's slurm.conf, set as SLURM_CONF for Slurm's commands (and the jobs, which inherit it)."""
    conf = os.environ.get("TUNELAB_TEST_SLURM_CONF", "")
    if not conf:
        pytest.fail("the Slurm tests need a cluster: start one with scripts/slurm.sh start and set "
                    "TUNELAB_TEST_SLURM_CONF to the slurm.conf it prints (or TUNELAB_TEST_NO_SLURM=1 to leave "
                    "them out)", pytrace=False)
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    done = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or done.stdout.split()[:1] not in (["idle"], ["mix"], ["alloc"]):
        pytest.fail(f"the Slurm cluster of {conf} is not up: {(done.stderr or done.stdout).strip()}", pytrace=False)
    yield conf
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="module")
def pg_url(postgres_admin_engine, postgres_template) -> Iterator[str]:
    """A PostgreSQL registry at head for the module: the one the workers of every job share."""
    with _postgres_database(postgres_admin_engine, template=postgres_template) as url:
        yield url


class Site:
    """The launching machine: its home (artifacts under it) and the shared registry."""

    def __init__(self, home: Path, url: str) -> None:
        self.home, self.url = home, url
        self.engine = create_engine(url, poolclass=NullPool)

    def cli(self, *args: str):
        result = invoke(self.home, "--db", self.url, *args)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def submit(self, spec: Path, *, force: bool = False) -> int:
        (submitted,) = self.json("submit", *(["--force"] if force else []), str(spec))
        return submitted["run_id"]

    def launch(self, *options: str) -> list[str]:
        return self.json("launch", "slurm", "--cpus", "1", *options)["job_ids"]

    def one(self, query: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(query), params).fetchone()

    def status(self, run_id: int) -> str:
        return self.one("SELECT status FROM run WHERE id = :id", id=run_id)[0]

    def log(self, job: str) -> str:
        return "".join(path.read_text(encoding="utf-8") for path in (self.home / "slurm").glob(f"*-{job}*.out"))

    def wait_training(self, run_id: int, job: str) -> None:
        """Until the run has a checkpoint and trained steps past it: an interruption then has something to keep."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            checkpoint, metric = self.one(
                "SELECT (SELECT COALESCE(MAX(step), 0) FROM checkpoint WHERE run_id = :id), "
                "(SELECT COALESCE(MAX(step), 0) FROM trainmetric WHERE run_id = :id)", id=run_id)
            if checkpoint >= SAVE_EVERY and metric > checkpoint:
                return
            assert metric < STEPS, f"run {run_id} ended before it could be interrupted"
            assert time.monotonic() < deadline and _pending_or_running(job), self.log(job)
            time.sleep(0.1)

    def steps(self, run_id: int) -> list[int]:
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(
                text("SELECT step FROM trainmetric WHERE run_id = :id ORDER BY step"), {"id": run_id})]

    def final_weights(self, run_id: int) -> dict:
        from safetensors.torch import load_file

        return load_file(self.home / "runs" / str(run_id) / "final" / "model.safetensors")


def _squeue(job: str) -> list[str]:
    done = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format=%i %T"], capture_output=True, text=True,
                          check=False)
    return done.stdout.split("\n") if done.returncode == 0 and done.stdout.strip() else []


def _pending_or_running(job: str) -> bool:
    return bool(_squeue(job))


def wait_gone(*jobs: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while any(_pending_or_running(job) for job in jobs):
        assert time.monotonic() < deadline, f"Slurm jobs {jobs} still there after {JOB_TIMEOUT:.0f}s"
        time.sleep(0.5)


def _job_state(job: str) -> str:
    done = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True)
    return next(field.split("=", 1)[1] for field in done.stdout.split() if field.startswith("JobState="))


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def site(cluster, pg_url, tmp_path_factory) -> Site:
    root = tmp_path_factory.mktemp("slurm-site")
    site = Site(root / "home", pg_url)
    yield site
    site.engine.dispose()


@pytest.fixture(scope="module")
def long_spec(site, tiny_model_dir) -> Path:
    """The spec each fault test interrupts: long enough to be caught between two checkpoints, and to outlast Slurm's
    time-limit check (every 30 s) after it. A batch of the tiny model takes some 10 ms, so each optimizer step
    accumulates GRAD_ACCUM batches: over a minute of training in all (48 batches, some 30 s, was too short)."""
    spec = write_spec(site.home.parent / "long.toml", name="long", model_dir=tiny_model_dir, kind="full",
                      max_steps=STEPS, save_every=SAVE_EVERY, tasks=(), custom=False, baseline=False, extra=CUSTOM)
    text = spec.read_text(encoding="utf-8")
    accumulated = f"batch_size = 4\ngrad_accum = {GRAD_ACCUM}\nlearning_rate"
    spec.write_text(text.replace("batch_size = 4\nlearning_rate", accumulated, 1), encoding="utf-8")
    assert f"grad_accum = {GRAD_ACCUM}" in spec.read_text(encoding="utf-8")
    return spec


@pytest.fixture(scope="module")
def uninterrupted(site, long_spec) -> dict:
    """The final weights of the long spec trained without interruption (by a worker job)."""
    run = site.submit(long_spec)
    (job,) = site.launch()
    wait_gone(job)
    assert site.status(run) == "succeeded", site.log(job)
    return site.final_weights(run)


def test_six_runs_three_worker_jobs_all_succeed_none_twice_and_the_submitted_script_is_the_dry_runs(
        site, tiny_model_dir):
    runs = []
    for index in range(6):
        spec = write_spec(site.home.parent / f"small-{index}.toml", name=f"small-{index}", model_dir=tiny_model_dir,
                          max_steps=3, save_every=2, tasks=(), custom=True, baseline=False, limit=2)
        runs.append(site.submit(spec))
    dry = site.cli("launch", "slurm", "--cpus", "1", "--workers", "3", "--dry-run").stdout
    (array,) = site.launch("--workers", "3")
    submitted = subprocess.run(["scontrol", "write", "batch_script", array, "-"], capture_output=True, text=True,
                               check=True).stdout
    assert submitted == dry
    wait_gone(array)

    logs = site.log(array)
    listed = {row["run_id"]: row for row in site.json("ls", "--all")}
    node = socket.gethostname().split(".")[0]
    tasks = {f"{array}_{task}" for task in range(3)}
    for run in runs:
        assert listed[run]["status"] == "succeeded", logs
        assert logs.count(f"run {run}: succeeded") == 1, logs  # no run taken twice
        assert site.steps(run) == [1, 2, 3]
        assert listed[run]["slurm_job"] in tasks and listed[run]["slurm_node"] == node
        assert f"last ran in Slurm job {listed[run]['slurm_job']} on {node}" in site.cli("show", str(run)).stdout
    table = site.cli("ls", "--all").stdout
    assert "slurm job" in table.splitlines()[1] and f"{array}_0 on {node}" in table
    # Every worker found the queue empty in the end and exited; all three tasks took part (or found it drained).
    assert all(_job_state(task) == "COMPLETED" for task in tasks)


def _interrupted_then_resumed(site: Site, spec: Path, uninterrupted: dict, interrupt, *, launch=(),
                              resumed_by_same_job: bool = False) -> str:
    """Train the long spec in a worker job, interrupt it mid-training with `interrupt(job)`, then see the run back
    in the queue from its last checkpoint and finished (by a new job, or by the same one Slurm requeued) with the
    uninterrupted weights. The log of the interrupted job."""
    run = site.submit(spec, force=True)
    (job,) = site.launch(*launch)
    site.wait_training(run, job)
    interrupt(job)
    if not resumed_by_same_job:
        wait_gone(job)
        assert site.status(run) == "queued", site.log(job)
        (again,) = site.launch()
        wait_gone(again)
    else:
        wait_gone(job)
        again = job
    log = site.log(job)
    assert "resumes from checkpoint-" in log and "interrupted" in log, log
    assert site.status(run) == "succeeded", site.log(again)
    assert site.steps(run) == list(range(1, STEPS + 1))  # no step lost, none twice
    assert _same(site.final_weights(run), uninterrupted)
    assert site.one("SELECT slurm_job FROM run WHERE id = :id", id=run)[0] == again
    return log


def test_scancel_of_a_worker_job_requeues_its_run_and_another_job_finishes_it(site, long_spec, uninterrupted):
    log = _interrupted_then_resumed(
        site, long_spec, uninterrupted, lambda job: subprocess.run(["scancel", job], check=True))
    assert "SIGTERM" in log


def _requeue(job: str) -> None:
    """What preemption with PreemptMode=REQUEUE does: Slurm stops the job (SIGTERM) and queues it again. A requeued
    job waits a couple of minutes before it may start again; the test lets it start at once."""
    subprocess.run(["scontrol", "requeue", job], check=True)
    deadline = time.monotonic() + 60
    while _job_state(job) != "PENDING":
        assert time.monotonic() < deadline, f"job {job} was not requeued"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def test_a_preempted_job_requeued_by_slurm_resumes_its_run(site, long_spec, uninterrupted):
    log = _interrupted_then_resumed(site, long_spec, uninterrupted, _requeue, launch=("--sbatch=--requeue",),
                                    resumed_by_same_job=True)
    assert "SIGTERM" in log


def test_the_warning_before_a_time_limit_requeues_the_run_before_the_kill(site, long_spec, uninterrupted):
    # The job is launched with --warning=60 (--signal=B:USR1@60), and the warning is delivered as Slurm delivers it,
    # to the batch shell, at once: bringing the limit down with scontrol left the delivery to slurmctld's periodic
    # check, which on this one-node cluster did not always come before the run ended.
    def shorten(job: str) -> None:
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)

    log = _interrupted_then_resumed(site, long_spec, uninterrupted, shorten, launch=("--time=10", "--warning=60"))
    assert "SIGUSR1" in log


def test_tunelab_cancel_stops_a_run_whose_worker_is_a_slurm_job(site, long_spec):
    run = site.submit(long_spec, force=True)
    (job,) = site.launch()
    site.wait_training(run, job)
    site.cli("cancel", str(run))  # through the registry, from another process than the job's
    wait_gone(job)
    assert site.status(run) == "cancelled", site.log(job)
    assert _job_state(job) == "COMPLETED"  # the worker stopped the run and exited: nothing was left queued
    assert max(site.steps(run)) < STEPS


def test_a_two_node_run_trains_as_two_slurm_tasks_over_gloo(site, tiny_model_dir):
    # As far as one node allows: an allocation of two tasks stands for two nodes, srun starts one torchrun in each,
    # and they meet at the worker's rendezvous; rank 0 alone writes the registry.
    spec = write_spec(site.home.parent / "two-nodes.toml", name="two-nodes", model_dir=tiny_model_dir, kind="full",
                      max_steps=4, save_every=2, tasks=(), custom=False, baseline=False,
                      extra=CUSTOM + "\n[resources]\nnodes = 2\n")
    run = site.submit(spec)
    (job,) = site.launch("--sbatch=--ntasks=2")
    wait_gone(job)
    log = site.log(job)
    assert site.status(run) == "succeeded", log
    # The training went through srun + torchrun on two "nodes" (runner/training/distributed.py's job file).
    job_file = json.loads((site.home / "runs" / str(run) / "distributed-job.json").read_text(encoding="utf-8"))
    assert job_file["nodes"] == 2 and job_file["nproc"] == 1
    assert site.steps(run) == [1, 2, 3, 4]  # each step logged once, by rank 0
