"""A search on the bundled tiny model with 1 and with 2 workers: wall time, trials per hour, and what the
scheduler costs per trial against the trial's own training time.

Each setting submits the same seeded search (TPE over learning rate and LoRA rank, objective the custom task,
median pruner) to a fresh SQLite registry and drains it with N `tunelab worker` processes. The scheduler's share
is timed in this process on the finished registry, as a worker makes those calls: reading the search and drawing
a trial (ask), the end-of-trial bookkeeping (importance, is the search over), and one pruning decision per
validation loss.

    python benchmarks/search.py                     # 20 trials, 1 and 2 workers
    python benchmarks/search.py --trials 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.registry.db import default_url, open_registry  # noqa: E402
from tunelab.registry.search_records import search_record  # noqa: E402
from tunelab.runner.search import definition_of, should_prune, suggest, trial_ended  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = """[experiment]
name = "bench-search"
seed = 1

[model]
base = "{repo}/examples/models/tiny-llama"

[data]
train = "{repo}/examples/data/capitals_train.jsonl"
validation = 0.2
max_seq_len = 96

[method]
kind = "lora"

[train]
max_steps = {steps}
save_every = {steps}
eval_every = 2
batch_size = 8

[eval]
tasks = []
baseline = false
batch_size = 8

[[eval.custom]]
name = "capitals"
path = "{repo}/examples/data/capitals_mc.jsonl"
limit = 16

[search]
sampler = "tpe"
trials = {trials}
startup_trials = 5
seed = 7
objective = "capitals"
pruner = "median"
pruner_startup_trials = 3

[search.params]
"train.learning_rate" = {{low = 1e-4, high = 3e-2, log = true}}
"method.r" = {{choices = [4, 8, 16]}}
"""


def run_search(root: Path, workers: int, trials: int, steps: int) -> dict:
    home = root / f"workers-{workers}"
    spec = root / "search.toml"
    spec.write_text(SPEC.format(repo=REPO, trials=trials, steps=steps), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("TUNELAB_DB", None)
    tunelab = [sys.executable, "-m", "tunelab", "--home", str(home)]
    subprocess.run([*tunelab, "submit", str(spec)], check=True, env=env, cwd=REPO, capture_output=True)
    started = time.perf_counter()
    processes = [subprocess.Popen([*tunelab, "worker", "--until-empty", "--quiet"], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    for process in processes:
        process.wait()
    wall = time.perf_counter() - started
    registry = open_registry(default_url(home))
    record = search_record(registry, 1)
    train = [t.train_seconds for t in record.trials if t.train_seconds is not None]
    spans = [(t.finished_at - t.started_at).total_seconds() for t in record.trials if t.finished_at and t.started_at]
    overhead = scheduler_seconds(registry, record)
    registry.engine.dispose()
    return {"workers": workers, "trials": len(record.trials), "done": record.done,
            "pruned": record.count("pruned"), "wall_s": wall, "trials_per_hour": len(record.trials) / wall * 3600,
            "train_s": statistics.mean(train), "trial_s": statistics.mean(spans), "scheduler_s": overhead,
            "best": record.best.objective if record.best else None}


def _timed(call, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def scheduler_seconds(registry, record) -> float:
    """One trial's share of the scheduler, timed on the finished search (its largest history): one ask, one
    end-of-trial bookkeeping, and one pruning decision per validation loss of a trial."""
    definition = definition_of(record)
    ask = _timed(lambda: suggest(definition, record.asked, search_record(registry, record.search_id).trials))
    last = record.trials[-1]
    # trial_ended on a finished search writes the importance again and finds it over: the same work as live.
    tell = _timed(lambda: trial_ended(registry, last.run_id))
    evaluations = statistics.mean(len(t.val_losses) for t in record.trials)
    prune = _timed(lambda: should_prune(registry, record.search_id, last.number, eval_every=2))
    return ask + tell + evaluations * prune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8, help="training steps per trial")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        results = [run_search(Path(directory), n, args.trials, args.steps) for n in args.workers]
    print(f"{'workers':>7} {'trials':>6} {'pruned':>6} {'wall s':>7} {'trials/h':>8} {'train s':>7} "
          f"{'trial s':>7} {'sched s':>7} {'sched/train':>11} {'best':>6}")
    for r in results:
        print(f"{r['workers']:>7} {r['trials']:>6} {r['pruned']:>6} {r['wall_s']:>7.1f} {r['trials_per_hour']:>8.0f} "
              f"{r['train_s']:>7.2f} {r['trial_s']:>7.2f} {r['scheduler_s']:>7.3f} "
              f"{r['scheduler_s'] / r['train_s']:>11.1%} {r['best'] or 0:>6.3f}")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
