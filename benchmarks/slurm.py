"""Workers as Slurm jobs on a cluster (the one-node test cluster of scripts/slurm.sh will do): how long from
`tunelab launch slurm` to the first run claimed, what a worker job that finds the queue empty costs, and how many
training steps a preempted run redoes.

- launch -> claim: one queued run, one worker job launched; seconds until the registry shows the run claimed.
- empty queue: a worker job launched with nothing queued; seconds from launch until the job is gone, and the job's
  own run time as Slurm records it (whole seconds).
- steps redone: a run of STEPS steps with a checkpoint every SAVE_EVERY, interrupted mid-training by scancel (the
  worker gets SIGTERM, as at a time limit's warning or a preemption), and by SIGKILL of the job's processes (a node
  that vanishes: no warning; the next worker takes the run over once its heartbeat is stale). Steps redone: the last
  step trained before the interruption minus the checkpoint the next job resumes from.

    SLURM_CONF=/tmp/tunelab-slurm/slurm.conf python benchmarks/slurm.py --db postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[1]
SPEC = """[experiment]
name = "bench-slurm-{name}"
seed = 1

[model]
base = "{repo}/examples/models/tiny-llama"

[data]
train = "{repo}/examples/data/capitals_train.jsonl"
max_seq_len = 96

[method]
kind = "full"

[train]
max_steps = {steps}
save_every = {save_every}
batch_size = 4

[eval]
tasks = []
baseline = false

[[eval.custom]]
name = "capitals"
path = "{repo}/examples/data/capitals_mc.jsonl"
"""


class Bench:
    def __init__(self, home: Path, url: str) -> None:
        self.home, self.url = home, url
        self.engine = create_engine(url, poolclass=NullPool)

    def tunelab(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tunelab", "--home", str(self.home), "--db", self.url, *args],
                              capture_output=True, text=True, check=True, cwd=REPO)
        return done.stdout

    def submit(self, name: str, steps: int, save_every: int) -> int:
        spec = self.home.parent / f"{name}.toml"
        spec.write_text(SPEC.format(name=name, repo=REPO, steps=steps, save_every=save_every), encoding="utf-8")
        (run,) = json.loads(self.tunelab("submit", "--force", str(spec), "--json"))
        return run["run_id"]

    def launch(self, *worker_args: str) -> str:
        extra = ["--", *worker_args] if worker_args else []
        (job,) = json.loads(self.tunelab("launch", "slurm", "--cpus", "1", "--json", *extra))["job_ids"]
        return job

    def one(self, query: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(query), params).fetchone()

    def progress(self, run: int) -> tuple[str, int, int]:
        return self.one("SELECT status, (SELECT COALESCE(MAX(step), 0) FROM trainmetric WHERE run_id = :id), "
                        "(SELECT COALESCE(MAX(step), 0) FROM checkpoint WHERE run_id = :id) FROM run WHERE id = :id",
                        id=run)


def gone(job: str) -> bool:
    done = subprocess.run(["squeue", "--noheader", "--jobs", job], capture_output=True, text=True, check=False)
    return done.returncode != 0 or not done.stdout.strip()


def wait(condition, what: str, timeout: float = 900.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def job_seconds(job: str) -> int:
    fields = dict(field.split("=", 1) for field in subprocess.run(
        ["scontrol", "show", "job", job, "--oneliner"], capture_output=True, text=True, check=True).stdout.split()
        if "=" in field)
    hours, minutes, seconds = (fields["RunTime"].split("-")[-1]).split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def launch_to_claim(bench: Bench) -> float:
    run = bench.submit("claim", 2, 2)
    start = time.monotonic()
    job = bench.launch()
    wait(lambda: bench.progress(run)[0] != "queued", "the first claim")
    claimed = time.monotonic() - start
    wait(lambda: gone(job), f"job {job}")
    return claimed


def empty_queue(bench: Bench) -> tuple[float, int]:
    start = time.monotonic()
    job = bench.launch()
    wait(lambda: gone(job), f"job {job}", poll=0.1)
    return time.monotonic() - start, job_seconds(job)


def steps_redone(bench: Bench, steps: int, save_every: int, *, kill: bool) -> tuple[int, int, int]:
    """(last step trained before the interruption, checkpoint resumed from, steps redone)."""
    run = bench.submit("kill" if kill else "term", steps, save_every)
    job = bench.launch("--heartbeat", "1", "--stale-after", "5")
    wait(lambda: bench.progress(run)[2] >= save_every and bench.progress(run)[1] > bench.progress(run)[2],
         "training past a checkpoint")
    if kill:
        # The worker's own processes, killed outright: no signal Slurm could turn into a clean stop first.
        listed = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True, check=True).stdout
        pids = {int(line.split()[0]) for line in listed.splitlines()[1:] if line.split()[0].isdigit()}
        subprocess.run(["kill", "-KILL", *map(str, sorted(pids))], check=False)
    else:
        subprocess.run(["scancel", job], check=True)
    wait(lambda: gone(job), f"job {job}")
    _, trained, checkpoint = bench.progress(run)
    if kill:
        time.sleep(6)  # past --stale-after: the next worker takes the run over at once
    again = bench.launch("--heartbeat", "1", "--stale-after", "5")
    wait(lambda: gone(again), f"job {again}")
    status, finished, _ = bench.progress(run)
    if status != "succeeded" or finished != steps:
        raise SystemExit(f"run {run} ended {status} at step {finished}")
    return trained, checkpoint, trained - checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a PostgreSQL registry URL the jobs can reach (it is used as is)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--parts", default="claim,empty,term,kill",
                        help="which figures: claim, empty, term (scancel), kill (SIGKILL); comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-slurm-") as tmp:
        bench = Bench(Path(tmp) / "home", args.db)
        if "claim" in parts:
            print(f"launch -> first run claimed: {launch_to_claim(bench):.1f} s")
        if "empty" in parts:
            wall, ran = empty_queue(bench)
            print(f"worker job on an empty queue: {wall:.1f} s from launch until gone, {ran} s run time")
        for kill in [kind == "kill" for kind in ("term", "kill") if kind in parts]:
            trained, checkpoint, redone = steps_redone(bench, args.steps, args.save_every, kill=kill)
            how = "SIGKILL (no warning)" if kill else "SIGTERM (scancel)"
            print(f"{how}: trained to step {trained}, resumed from checkpoint {checkpoint}: {redone} step(s) redone "
                  f"(checkpoint interval {args.save_every})")
        bench.engine.dispose()


if __name__ == "__main__":
    main()
