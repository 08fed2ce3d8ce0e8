"""`tunelab launch slurm`: tunelab workers submitted as Slurm batch jobs (a job array, or N jobs) that drain the queue
of a shared registry and exit when it is empty. Slurm schedules them; tunelab runs no daemon of its own.

Each job's script runs one `tunelab worker --until-empty` in place of its shell (`exec`), so that the signal Slurm
sends ahead of the time limit (`--signal=B:USR1@N`, B: the batch shell) and scancel's SIGTERM reach the worker: it
saves a checkpoint at the run's next step, puts the run back in the queue and exits, and another job resumes it.
The registry URL goes to the jobs through the environment sbatch passes on, never into the script (it may hold a
password); the machine's home, artifact and project roots are written into it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.experiments.errors import TunelabError
from tunelab.registry.db import Registry
from tunelab.registry.location import sqlite_database
from tunelab.registry.queries import queue_demand
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import queued_needing_more_gpus

# Seconds between Slurm's warning signal and the time limit: enough for the step under way and a checkpoint. Slurm
# may send it up to a minute earlier than asked.
WARNING_SECONDS = 180
JOB_NAME = "tunelab-worker"
LOGS = "slurm"  # under the artifact root: one log file per job
SBATCH_TIMEOUT_SECONDS = 60.0


class LaunchError(TunelabError):
    """The workers cannot be submitted (bad option, an SQLite registry, sbatch refused)."""


@dataclass(frozen=True)
class LaunchOptions:
    """How many workers, and what each job asks Slurm for (`tunelab launch slurm`'s options)."""

    workers: int = 1
    array: bool = True  # one job array of `workers` tasks; False: `workers` separate jobs
    partition: str | None = None
    account: str | None = None
    gpus: int | None = None  # per node; None: the most any queued run or open search asks for ([resources] gpus)
    nodes: int = 1
    cpus: int | None = None  # per task (one task per node)
    memory: str | None = None  # per node, as sbatch --mem takes it ("32G")
    time: str | None = None  # as sbatch --time takes it ("4:00:00")
    warning_seconds: int = WARNING_SECONDS  # 0: no warning signal before the time limit
    job_name: str = JOB_NAME
    sbatch_lines: tuple[str, ...] = ()  # more "#SBATCH ..." options, as written after it
    worker_args: tuple[str, ...] = ()  # more `tunelab worker` options
    allow_sqlite: bool = False  # every job runs on this machine, which holds the SQLite registry


@dataclass(frozen=True)
class WorkerSetting:
    """What a job's worker needs to find the registry's files as this machine names them, and tunelab itself."""

    home: Path
    roots: Roots
    python: str = sys.executable


@dataclass
class LaunchPlan:
    """The batch script and how it is submitted, with notes on what the queue asks that the workers cannot give."""

    script: str
    workers: int
    array: bool
    gpus: int
    log_dir: Path
    notes: list[str] = field(default_factory=list)


def plan_launch(registry: Registry, options: LaunchOptions, setting: WorkerSetting) -> LaunchPlan:
    """The script each worker job runs, and notes on the queue (nothing to do, runs no worker here will take)."""
    if options.workers < 1 or options.nodes < 1:
        raise LaunchError("--workers and --nodes must be at least 1")
    if sqlite_database(registry.url) is not None and not options.allow_sqlite:
        raise LaunchError(f"the registry {registry.url} is an SQLite file, which workers on other machines cannot "
                          "share: use a PostgreSQL registry (--db or TUNELAB_DB), or --allow-sqlite when every "
                          "job runs on this machine")
    demand = queue_demand(registry)
    gpus = demand.gpus if options.gpus is None else options.gpus
    notes = []
    if not demand.queued and not demand.searches:
        notes.append("nothing is queued and no search is open: the workers will find the queue empty and exit")
    left = queued_needing_more_gpus(registry, gpus, options.nodes)
    if left:
        notes.append(f"{left} queued run(s) need more than {gpus} GPU(s) per node or {options.nodes} node(s): "
                     "no worker launched with these options takes them")
    log_dir = setting.roots.artifacts / LOGS
    return LaunchPlan(batch_script(options, gpus, setting, log_dir), options.workers, options.array, gpus, log_dir,
                      notes)


def _sbatch_line(line: str) -> str:
    option = line.strip().removeprefix("#SBATCH").strip()
    if not option.startswith("-") or "\n" in option:
        raise LaunchError(f"--sbatch {line!r}: expected one sbatch option such as --qos=high")
    return f"#SBATCH {option}"


def batch_script(options: LaunchOptions, gpus: int, setting: WorkerSetting, log_dir: Path) -> str:
    """The batch script of one worker job."""
    log = log_dir / ("%x-%A_%a.out" if options.array and options.workers > 1 else "%x-%j.out")
    wanted = [f"--job-name={options.job_name}"]
    if options.array and options.workers > 1:
        wanted.append(f"--array=0-{options.workers - 1}")
    # append: a job Slurm requeues (preemption) keeps the log of its first start
    wanted += [f"--output={log}", "--open-mode=append", f"--nodes={options.nodes}"]
    if options.nodes > 1:
        wanted.append("--ntasks-per-node=1")  # one torchrun per node (runner/slurm/nodes.py)
    for option, value in (("--partition", options.partition), ("--account", options.account),
                          ("--gres", f"gpu:{gpus}" if gpus else None), ("--cpus-per-task", options.cpus),
                          ("--mem", options.memory), ("--time", options.time)):
        if value is not None:
            wanted.append(f"{option}={value}")
    if options.warning_seconds:
        wanted.append(f"--signal=B:USR1@{options.warning_seconds}")
    wanted.append("--export=ALL")
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in wanted),
             *(_sbatch_line(line) for line in options.sbatch_lines)]
    exports = {"TUNELAB_HOME": setting.home, "TUNELAB_ARTIFACTS": setting.roots.artifacts}
    if setting.roots.project is not None:
        exports["TUNELAB_PROJECT"] = setting.roots.project
    worker = [setting.python, "-m", "tunelab", "worker", "--until-empty", "--quiet", *options.worker_args]
    lines += [
        "#",
        "# One tunelab worker (written by `tunelab launch slurm`): it takes queued runs of the registry that",
        "# TUNELAB_DB names (passed on from the launching shell, never written here) and exits when the queue is",
        "# empty. SIGUSR1 (Slurm's warning before the time limit) or SIGTERM (scancel): it saves a checkpoint at",
        "# the next step, puts the run back in the queue and exits; another worker resumes it.",
        ': "${TUNELAB_DB:?the registry URL is not set: submit this script with tunelab launch slurm}"',
        *(f"export {name}={shlex.quote(str(value))}" for name, value in exports.items()),
        "export PYTHONSAFEPATH=1  # a module of the submit directory never shadows tunelab's",
        "exec " + shlex.join(worker),
        "",
    ]
    return "\n".join(lines)


def submit(plan: LaunchPlan, registry_url: str, *, environ: Mapping[str, str] = os.environ,
           sbatch: str = "sbatch") -> list[str]:
    """Submit the plan's script (once for an array, else once per worker); the job ids sbatch gave."""
    plan.log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create the log file's directory
    env = {**environ, "TUNELAB_DB": registry_url}
    times = 1 if plan.array else plan.workers
    return [_sbatch(plan.script, env, sbatch) for _ in range(times)]


def _sbatch(script: str, env: Mapping[str, str], sbatch: str) -> str:
    try:
        done = subprocess.run([sbatch, "--parsable"], input=script, capture_output=True, text=True, env=dict(env),
                              timeout=SBATCH_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise LaunchError(f"{sbatch} not found: run tunelab launch slurm where Slurm's commands are installed "
                          "(a cluster's login node)") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{sbatch} did not answer in {SBATCH_TIMEOUT_SECONDS:.0f}s") from None
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise LaunchError(f"sbatch refused the job: {reason[-1] if reason else f'exit status {done.returncode}'}")
    # --parsable: "JOBID" or "JOBID;CLUSTER"
    return done.stdout.strip().split(";", 1)[0]
