"""Training throughput of `tunelab run` against a plain, hand-written transformers Trainer script.

Both train the same model on the same data for the same steps (a whole number of epochs, so both see every
example equally often), each in a fresh process: tunelab through `tunelab run` (its training loop with the
registry callback, staged checkpoints and progress hooks), the plain script with `Trainer` and nothing else.
Tokens per second are the trained (unpadded) tokens over the seconds `trainer.train()` took; runs alternate
and the median of each side is reported, with the ratio tunelab / plain (target: at least 0.97).

    python benchmarks/train_overhead.py                     # the bundled demo model, 3 epochs, 3 repeats
    python benchmarks/train_overhead.py --model DIR --epochs 2 --batch-size 6 --repeats 5 --method lora
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DATA = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
SEED = 11
MAX_SEQ_LEN = 256
LEARNING_RATE = 2e-4


# ---- the plain side: what someone would write by hand with transformers (benchmarks/plain_trainer.py) -------


def plain_train(model_dir: Path, steps: int, batch_size: int, method: str, out: Path) -> dict:
    from benchmarks.plain_trainer import PlainConfig, train

    result = train(PlainConfig(model=str(model_dir), data=str(DATA), output_dir=str(out), steps=steps,
                               batch_size=batch_size, max_seq_len=MAX_SEQ_LEN, data_format="instruction",
                               method=method, learning_rate=LEARNING_RATE, seed=SEED))
    return {"train_seconds": result.train_seconds, "examples": result.examples,
            "tokens_per_epoch": result.tokens_per_epoch}


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


def tunelab_train(spec: Path, home: Path, env: dict[str, str]) -> dict:
    command = [sys.executable, "-m", "tunelab", "--home", str(home)]
    done = subprocess.run([*command, "run", "--quiet", "--json", str(spec)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"tunelab run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    run_id = json.loads(done.stdout)["run_id"]
    shown = subprocess.run([*command, "show", "--json", str(run_id)], capture_output=True, text=True, env=env,
                           check=True)
    detail = json.loads(shown.stdout)
    return {"train_seconds": detail["train_seconds"], "examples": detail["num_train_examples"]}


def tunelab_tokens_per_epoch(spec_path: Path) -> int:
    from tunelab.experiments.loader import load_specs
    from tunelab.runner.data.prepare import prepare_data
    from tunelab.runner.training.models import load_tokenizer

    spec = load_specs(spec_path)[0].spec
    prepared = prepare_data(spec, load_tokenizer(spec.model.base), REPO_ROOT)
    return sum(len(feature["input_ids"]) for feature in prepared.train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "examples" / "models" / "tiny-llama")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each side (OMP_NUM_THREADS); 1 keeps other work on a shared machine "
                        "from skewing one side more than the other")
    parser.add_argument("--plain-worker", nargs=2, metavar=("STEPS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = args.model.resolve()
    if args.plain_worker:
        steps, out = int(args.plain_worker[0]), Path(args.plain_worker[1])
        print(json.dumps(plain_train(model_dir, steps, args.batch_size, args.method, out)))
        return

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix="tunelab-train-overhead-") as scratch:
        scratch = Path(scratch)
        examples = sum(1 for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip())
        steps = args.epochs * math.ceil(examples / args.batch_size)
        spec = write_spec(scratch / "spec.toml", model_dir, steps, args.batch_size, args.method)
        tunelab_tokens = args.epochs * tunelab_tokens_per_epoch(spec)
        plain, ours = [], []
        for repeat in range(args.repeats):
            done = subprocess.run(
                [sys.executable, __file__, "--model", str(model_dir), "--batch-size", str(args.batch_size),
                 "--method", args.method, "--plain-worker", str(steps), str(scratch / f"plain-{repeat}")],
                capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"plain script failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            plain_tokens = args.epochs * result["tokens_per_epoch"]
            plain.append(plain_tokens / result["train_seconds"])
            tuned = tunelab_train(spec, scratch / f"home-{repeat}", env)
            ours.append(tunelab_tokens / tuned["train_seconds"])
            print(f"repeat {repeat + 1}: plain {plain[-1]:,.0f} tok/s, tunelab {ours[-1]:,.0f} tok/s, "
                  f"ratio {ours[-1] / plain[-1]:.3f}", flush=True)
    print(f"\nmodel {model_dir.name}, {args.method}, {steps} steps of {args.batch_size} "
          f"({args.epochs} epochs of {examples} examples), {args.repeats} repeats, torch threads {args.threads}")
    print(f"tokens trained: plain {plain_tokens:,}, tunelab {tunelab_tokens:,}"
          + ("" if plain_tokens == tunelab_tokens else "  (differ: the two data pipelines disagree)"))
    median_plain, median_ours = statistics.median(plain), statistics.median(ours)
    print(f"plain Trainer script: {median_plain:,.0f} tokens/s (median)")
    print(f"tunelab run:          {median_ours:,.0f} tokens/s (median)")
    print(f"ratio tunelab / plain: {median_ours / median_plain:.3f} (target >= 0.97); median of the paired ratios "
          f"{statistics.median(o / p for o, p in zip(ours, plain, strict=True)):.3f}")


if __name__ == "__main__":
    main()
