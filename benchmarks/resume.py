"""Resume cost: SIGKILL a worker at random steps of a tiny training run and measure each recovery.

For each kill it prints the steps that were trained but not yet checkpointed (re-done after the restart)
and the seconds from starting a new worker to the first newly logged training step (process start,
imports, model load, checkpoint restore, data fast-forward). At the end the run is finished and
compared with an uninterrupted run of the same spec: same loss curve, bit-identical weights.

    python benchmarks/resume.py                        # 60 steps, checkpoint every 5, 5 kills
    python benchmarks/resume.py --steps 120 --save-every 10 --kills 8 --seed 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tunelab.registry.db import default_url, open_registry  # noqa: E402
from tunelab.registry.run_state import requeue_stale  # noqa: E402
from tunelab.runner.training.checkpoints import latest_complete  # noqa: E402

POLL_SECONDS = 0.01


@dataclass
class Kill:
    target: int  # the step we aimed at
    last_step: int  # the last step logged before the kill
    checkpoint: int  # the last complete checkpoint then
    restart_seconds: float  # new worker started -> first new step logged
    first_new_step: int


def write_spec(path: Path, model_dir: Path, *, steps: int, save_every: int, method: str, retries: int) -> Path:
    lora = 'kind = "lora"\nr = 4\nalpha = 8\n' if method == "lora" else 'kind = "full"\n'
    path.write_text(f"""[experiment]
name = "resume-bench"
seed = 11

[model]
base = "{model_dir}"

[data]
train = "{REPO / 'examples' / 'data' / 'capitals_train.jsonl'}"
max_seq_len = 96

[method]
{lora}
[train]
max_steps = {steps}
save_every = {save_every}
batch_size = 4
learning_rate = 1e-3

[eval]
tasks = []
limit = 2
baseline = false

[[eval.custom]]
name = "capitals"
path = "{REPO / 'examples' / 'data' / 'capitals_mc.jsonl'}"

[resources]
max_retries = {retries}
""", encoding="utf-8")
    return path


def start_worker(home: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("TUNELAB_DB", None)
    return subprocess.Popen([sys.executable, "-m", "tunelab", "--home", str(home), "worker", "--once", "--quiet",
                             "--heartbeat", "0.5"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def last_step(db: sqlite3.Connection, run_id: int) -> int:
    return db.execute("SELECT COALESCE(MAX(step), 0) FROM trainmetric WHERE run_id = ?", (run_id,)).fetchone()[0]


def first_new_step(db: sqlite3.Connection, run_id: int, checkpoint: int, worker: subprocess.Popen) -> int:
    """Wait for the restarted run to log a step after its checkpoint; that step.

    Steps the killed attempt logged after the checkpoint are still there until the new attempt
    drops them (long before its first step: model load, checkpoint restore), so a new step is
    one logged after they are gone.
    """
    dropped = False
    while True:
        count, first = db.execute("SELECT COUNT(*), MIN(step) FROM trainmetric WHERE run_id = ? AND step > ?",
                                  (run_id, checkpoint)).fetchone()
        if dropped and count:
            return first
        dropped = dropped or count == 0
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}) before training resumed")
        time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill steps")
    args = parser.parse_args()
    if args.kills >= args.steps - 1:
        parser.error("--kills must be smaller than --steps - 1")

    from tunelab.experiments.loader import load_specs
    from tunelab.registry.submissions import from_loaded, submit
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    targets = sorted(random.Random(args.seed).sample(range(2, args.steps), args.kills))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "model", default_corpus(REPO), vocab_size=1024, hidden_size=32,
                                 num_layers=2, num_heads=2, seed=0)
        spec = write_spec(root / "spec.toml", model, steps=args.steps, save_every=args.save_every,
                          method=args.method, retries=args.kills + 1)
        home = root / "home"
        registry = open_registry(default_url(home))
        (loaded,) = load_specs(spec)
        run_id = submit(registry, [from_loaded(loaded, workdir=str(REPO))])[0].run_id
        # Lower priority: the interrupted run is always the one a worker claims first.
        reference = submit(registry, [from_loaded(loaded, workdir=str(REPO), priority=-1)], force=True)[0].run_id
        db = sqlite3.connect(home / "registry.db", timeout=30)
        checkpoints = home / "runs" / str(run_id) / "checkpoints"

        kills: list[Kill] = []
        worker = start_worker(home)
        for target in targets:
            while last_step(db, run_id) < target:
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited ({worker.returncode}) before step {target}")
                time.sleep(POLL_SECONDS)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            latest = latest_complete(checkpoints)
            checkpoint = int(latest.name.removeprefix("checkpoint-")) if latest else 0
            kill = Kill(target, last_step(db, run_id), checkpoint, 0.0, 0)
            kills.append(kill)
            requeue_stale(registry, 0)  # its worker is dead for sure: no need to wait for the heartbeat to age
            began = time.perf_counter()
            worker = start_worker(home)
            kill.first_new_step = first_new_step(db, run_id, checkpoint, worker)
            kill.restart_seconds = time.perf_counter() - began
        if worker.wait() != 0:
            raise SystemExit(f"the last worker failed ({worker.returncode})")

        reference_worker = start_worker(home)
        if reference_worker.wait() != 0:
            raise SystemExit("the reference run failed")
        query = "SELECT step, epoch, loss, learning_rate, grad_norm FROM trainmetric WHERE run_id = ? ORDER BY id"
        same_curve = db.execute(query, (run_id,)).fetchall() == db.execute(query, (reference,)).fetchall()
        steps_logged = [r[0] for r in db.execute("SELECT step FROM trainmetric WHERE run_id = ?", (run_id,))]
        status = db.execute("SELECT status FROM run WHERE id IN (?, ?) ORDER BY id", (run_id, reference)).fetchall()
        same_weights = identical_weights(home / "runs" / str(run_id) / "final",
                                         home / "runs" / str(reference) / "final")
        db.close()

    print(f"tiny {args.method} fine-tune: {args.steps} steps, checkpoint every {args.save_every}, "
          f"{args.kills} SIGKILLs (seed {args.seed})")
    print(f"{'kill':>4} {'aimed at':>8} {'killed after':>12} {'checkpoint':>10} {'re-done':>7} "
          f"{'restart -> first new step':>26}")
    for number, kill in enumerate(kills, start=1):
        print(f"{number:>4} {kill.target:>8} {kill.last_step:>12} {kill.checkpoint:>10} "
              f"{kill.last_step - kill.checkpoint:>7} {kill.restart_seconds:>24.2f}s"
              + ("" if kill.first_new_step == kill.checkpoint + 1 else f"  (resumed at {kill.first_new_step})"))
    redone = [k.last_step - k.checkpoint for k in kills]
    seconds = [k.restart_seconds for k in kills]
    print(f"steps re-done: total {sum(redone)}, mean {sum(redone) / len(redone):.1f} "
          f"(at most save_every = {args.save_every} per kill, plus the step in flight)")
    print(f"restart -> first new step: mean {sum(seconds) / len(seconds):.2f}s, max {max(seconds):.2f}s")
    print(f"both runs finished: {[s[0] for s in status]}")
    print(f"each step logged once: {sorted(steps_logged) == list(range(1, args.steps + 1))}")
    print(f"loss curve identical to the uninterrupted run: {same_curve}")
    print(f"final weights bit-identical: {same_weights}")
    sys.exit(0 if same_curve and same_weights else 1)


def identical_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    names = sorted(p.name for p in a.glob("*.safetensors"))
    if not names or names != sorted(p.name for p in b.glob("*.safetensors")):
        return False
    for name in names:
        ours, theirs = load_file(a / name), load_file(b / name)
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
            return False
    return True


if __name__ == "__main__":
    main()
