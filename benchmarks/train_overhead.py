"""Training throughput and time to first step of tunelab against a plain, hand-written transformers Trainer script.

Each repeat trains the same model on the same data for the same steps (a whole number of epochs, so every example
is seen equally often) three times, each in a fresh process, in this order:

1. the plain script (benchmarks/plain_trainer.py): `Trainer` and nothing else;
2. `tunelab run SPEC` (registry callback, staged checkpoints, progress, heartbeat; evaluation after training);
3. a `tunelab worker` that has been waiting on an empty queue when the same spec is submitted.

Throughput: trained (unpadded) tokens over the seconds `trainer.train()` took; the figure is the median over the
repeats of the paired ratio tunelab / plain (each repeat's tunelab runs over the plain run just before them), so a
machine whose load drifts slows both sides alike (target: at least 0.97 on the bundled model, 0.99 on `--size 10x`).
Time to first step: from the process's start to the beginning of its first training step for the plain script and
`tunelab run`; for the worker from its claim of the run (the `started_at` it records), since a worker's start-up
is paid once, not per run. benchmarks/first_step_hooks/ times the first step from outside, in every process alike.

    python benchmarks/train_overhead.py                                # the bundled model, 3 epochs, 5 repeats
    python benchmarks/train_overhead.py --size 10x                     # a random Llama 10x its size, same tokenizer
    python benchmarks/train_overhead.py --model DIR --epochs 2 --method lora
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DATA = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
BUNDLED_MODEL = REPO_ROOT / "examples" / "models" / "tiny-llama"
HOOKS = Path(__file__).resolve().parent / "first_step_hooks"
SEED = 11
MAX_SEQ_LEN = 256
LEARNING_RATE = 2e-4
# The bundled model is hidden 64, 2 layers (393,536 parameters); 160 x 8 layers is 3,934,880, ten times as many.
SIZES = {"10x": {"hidden_size": 160, "num_layers": 8, "num_heads": 4}}
WORKER_POLL_SECONDS = 0.1
IDLE_CPU_SECONDS = 0.05  # a worker using less CPU than this over a second is waiting on the queue


@dataclass
class Timing:
    tokens_per_second: float
    first_step_seconds: float


# ---- the model ----------------------------------------------------------------------------------------------------


def build_model(size: str, out_dir: Path) -> Path:
    """A random Llama of `size` (SIZES) with the bundled model's tokenizer (same builder, same corpus)."""
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    build_tiny_model(out_dir, default_corpus(REPO_ROOT), **SIZES[size])
    if (out_dir / "tokenizer.json").read_bytes() != (BUNDLED_MODEL / "tokenizer.json").read_bytes():
        sys.exit("the built model's tokenizer differs from the bundled one")
    return out_dir


# ---- the plain side: what someone would write by hand with transformers (benchmarks/plain_trainer.py) -------


def plain_train(model_dir: Path, steps: int, batch_size: int, method: str, out: Path) -> dict:
    from benchmarks.plain_trainer import PlainConfig, train

    result = train(PlainConfig(model=str(model_dir), data=str(DATA), output_dir=str(out), steps=steps,
                               batch_size=batch_size, max_seq_len=MAX_SEQ_LEN, data_format="instruction",
                               method=method, learning_rate=LEARNING_RATE, seed=SEED))
    return {"train_seconds": result.train_seconds, "examples": result.examples,
            "tokens_per_epoch": result.tokens_per_epoch}


def plain_timing(args: argparse.Namespace, model_dir: Path, steps: int, out: Path, env: dict[str, str],
                 tokens: int) -> Timing:
    first_step = out.with_suffix(".first-step")
    started = time.time()
    done = subprocess.run(
        [sys.executable, __file__, "--model", str(model_dir), "--batch-size", str(args.batch_size),
         "--method", args.method, "--plain-worker", str(steps), str(out)],
        capture_output=True, text=True, env=dict(env, FIRST_STEP_FILE=str(first_step)))
    if done.returncode != 0:
        sys.exit(f"plain script failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if args.epochs * result["tokens_per_epoch"] != tokens:
        sys.exit(f"the two data pipelines disagree: plain {args.epochs * result['tokens_per_epoch']:,} tokens, "
                 f"tunelab {tokens:,}")
    return Timing(tokens / result["train_seconds"], float(first_step.read_text()) - started)


# ---- the tunelab side ------------------------------------------------------------------------------------------


def write_spec(path: Path, model_dir: Path, steps: int, batch_size: int, method: str) -> Path:
    lora = 'kind = "lora"\nr = 8\nalpha = 16\ndropout = 0.05\n' if method == "lora" else 'kind = "full"\n'
    path.write_text(f"""[experiment]
name = "train-overhead"
seed = {SEED}

[model]
base = "{model_dir}"

[data]
train = "{DATA}"
max_seq_len = {MAX_SEQ_LEN}

[method]
{lora}
[train]
max_steps = {steps}
batch_size = {batch_size}
learning_rate = {LEARNING_RATE}
save_every = {steps + 1}

[eval]
tasks = []
limit = 1
baseline = false

[[eval.custom]]
name = "capitals"
path = "{REPO_ROOT / 'examples' / 'data' / 'capitals_mc.jsonl'}"
""", encoding="utf-8")
    return path


def new_home(home: Path) -> Path:
    """A home with its registry already made: a user's registry exists before their runs, migrations and all."""
    from tunelab.registry.db import default_url, open_registry

    open_registry(default_url(home)).engine.dispose()
    return home


def tunelab_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "tunelab", "--home", str(home)]


def _run_row(home: Path, run_id: int) -> tuple[str, float | None, str | None]:
    with sqlite3.connect(home / "registry.db", timeout=30) as db:
        return db.execute("SELECT status, train_seconds, started_at FROM run WHERE id = ?", (run_id,)).fetchone()


def _epoch(stored: str) -> float:
    """A registry timestamp (UTC; SQLite keeps it without the zone) as seconds since the epoch."""
    moment = datetime.fromisoformat(stored)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def run_timing(spec: Path, home: Path, env: dict[str, str], tokens: int) -> Timing:
    """`tunelab run SPEC`: from the process's start to its first step."""
    first_step = home / "first-step"
    started = time.time()
    done = subprocess.run([*tunelab_command(home), "run", "--quiet", "--json", str(spec)], capture_output=True,
                          text=True, env=dict(env, FIRST_STEP_FILE=str(first_step)))
    if done.returncode != 0:
        sys.exit(f"tunelab run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    _status, train_seconds, _started_at = _run_row(home, json.loads(done.stdout)["run_id"])
    return Timing(tokens / train_seconds, float(first_step.read_text()) - started)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _wait_until_idle(worker: subprocess.Popen, limit: float = 300.0) -> None:
    """Until the worker has done what it does before waiting (importing the training stack included)."""
    deadline = time.monotonic() + limit
    used = _cpu_seconds(worker.pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if worker.poll() is not None:
            sys.exit(f"the worker exited:\n{worker.communicate()[0][-3000:]}")
        now = _cpu_seconds(worker.pid)
        if now - used < IDLE_CPU_SECONDS:
            return
        used = now
    sys.exit("the worker never went idle")


def worker_timing(spec: Path, home: Path, env: dict[str, str], tokens: int) -> Timing:
    """A `tunelab worker` waiting on an empty queue gets SPEC: from its claim to its first step."""
    first_step = home / "first-step"
    worker = subprocess.Popen([*tunelab_command(home), "worker", "--quiet", "--poll", str(WORKER_POLL_SECONDS)],
                              env=dict(env, FIRST_STEP_FILE=str(first_step)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        _wait_until_idle(worker)
        submitted = subprocess.run([*tunelab_command(home), "submit", "--json", str(spec)], capture_output=True,
                                   text=True, env=env, check=True)
        run_id = json.loads(submitted.stdout)[0]["run_id"]
        while (row := _run_row(home, run_id))[0] in ("queued", "running"):
            if worker.poll() is not None:
                sys.exit(f"the worker exited:\n{worker.communicate()[0][-3000:]}")
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=120)
    status, train_seconds, started_at = row
    if status != "succeeded":
        sys.exit(f"the worker's run {run_id} {status}:\n{output[-3000:]}")
    return Timing(tokens / train_seconds, float(first_step.read_text()) - _epoch(started_at))


def tunelab_tokens_per_epoch(spec_path: Path) -> int:
    from tunelab.experiments.loader import load_specs
    from tunelab.runner.data.prepare import prepare_data
    from tunelab.runner.training.models import load_tokenizer

    spec = load_specs(spec_path)[0].spec
    prepared = prepare_data(spec, load_tokenizer(spec.model.base), REPO_ROOT)
    return sum(len(feature["input_ids"]) for feature in prepared.train)


# ---- the figures -----------------------------------------------------------------------------------------------


def paired(ours: list[float], plain: list[float]) -> float:
    return statistics.median(o / p for o, p in zip(ours, plain, strict=True))


def repeat_line(plain: Timing, run: Timing, worker: Timing) -> str:
    rates = ", ".join(f"{name} {t.tokens_per_second:,.0f} ({t.tokens_per_second / plain.tokens_per_second:.3f})"
                      for name, t in (("run", run), ("worker", worker)))
    return (f"tokens/s plain {plain.tokens_per_second:,.0f}, {rates}; first step after plain "
            f"{plain.first_step_seconds:.2f} s, run {run.first_step_seconds:.2f} s, "
            f"worker {worker.first_step_seconds:.2f} s (from its claim); load {os.getloadavg()[0]:.2f}")


def report(plain: list[Timing], run: list[Timing], worker: list[Timing]) -> None:
    rate = {name: [t.tokens_per_second for t in side] for name, side in
            (("plain", plain), ("run", run), ("worker", worker))}
    first = {name: [t.first_step_seconds for t in side] for name, side in
             (("plain", plain), ("run", run), ("worker", worker))}
    print(f"\nthroughput (tokens/s, median): plain Trainer script {statistics.median(rate['plain']):,.0f}, "
          f"tunelab run {statistics.median(rate['run']):,.0f}, tunelab worker {statistics.median(rate['worker']):,.0f}")
    print(f"  paired median ratio tunelab run / plain:    {paired(rate['run'], rate['plain']):.3f}")
    print(f"  paired median ratio tunelab worker / plain: {paired(rate['worker'], rate['plain']):.3f}")
    print(f"time to first step (s, median): plain, from process start {statistics.median(first['plain']):.2f}; "
          f"tunelab run, from process start {statistics.median(first['run']):.2f}; "
          f"tunelab worker, from its claim {statistics.median(first['worker']):.2f}")
    print(f"  paired median ratio tunelab run / plain:    {paired(first['run'], first['plain']):.3f}")
    print(f"  paired median ratio tunelab worker / plain: {paired(first['worker'], first['plain']):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--size", choices=sorted(SIZES), help="build a random Llama this many times the bundled "
                        "model's size (same tokenizer) and train that instead of --model")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each side (OMP_NUM_THREADS); 1 keeps other work on a shared machine "
                        "from skewing one side more than the other")
    parser.add_argument("--plain-worker", nargs=2, metavar=("STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        steps, out = int(args.plain_worker[0]), Path(args.plain_worker[1])
        print(json.dumps(plain_train(args.model.resolve(), steps, args.batch_size, args.method, out)))
        return

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tunelab-train-overhead-") as scratch:
        scratch = Path(scratch)
        model_dir = build_model(args.size, scratch / f"model-{args.size}") if args.size else args.model.resolve()
        examples = sum(1 for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip())
        steps = args.epochs * math.ceil(examples / args.batch_size)
        spec = write_spec(scratch / "spec.toml", model_dir, steps, args.batch_size, args.method)
        tokens = args.epochs * tunelab_tokens_per_epoch(spec)
        plain, run, worker = [], [], []
        for repeat in range(args.repeats):
            plain.append(plain_timing(args, model_dir, steps, scratch / f"plain-{repeat}", env, tokens))
            run.append(run_timing(spec, new_home(scratch / f"run-{repeat}"), env, tokens))
            worker.append(worker_timing(spec, new_home(scratch / f"worker-{repeat}"), env, tokens))
            print(f"repeat {repeat + 1}: {repeat_line(plain[-1], run[-1], worker[-1])}", flush=True)
    print(f"\nmodel {model_dir.name}, {args.method}, {steps} steps of {args.batch_size} ({args.epochs} epochs of "
          f"{examples} examples, {tokens:,} tokens), {args.repeats} repeats, torch threads {args.threads}; "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    report(plain, run, worker)


if __name__ == "__main__":
    main()
