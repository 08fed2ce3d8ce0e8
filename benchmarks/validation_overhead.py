"""What evaluating the validation loss every N steps ([train] eval_every) costs, relative to the training time.

The same training (the tiny random Llama built here, a held-out validation share of the example data) runs with
eval_every = 0 (the loss at the end only) and with each N given; runs alternate, and the median training time of
each setting is printed with its overhead in percent over eval_every = 0.

    python benchmarks/validation_overhead.py                          # 40 steps, N = 20, 10, 5, 2
    python benchmarks/validation_overhead.py --steps 80 --every 40 10 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def train_seconds(model_dir: Path, out: Path, *, steps: int, every: int, validation: float) -> float:
    from tunelab.experiments.schema import Spec
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    spec = Spec.model_validate({
        "experiment": {"name": "validation-overhead", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"train": str(REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"), "max_seq_len": 96,
                 "validation": validation},
        "method": {"kind": "lora", "r": 8, "alpha": 16},
        "train": {"max_steps": steps, "save_every": 10**6, "eval_every": every, "batch_size": 8,
                  "learning_rate": 1e-3},
    })
    outcome = train(spec, workdir=REPO_ROOT, output_dir=out, device="cpu",
                    hooks=TrainHooks(on_metrics=lambda m: None, on_checkpoint=lambda *a: None))
    return outcome.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, nargs="+", default=[20, 10, 5, 2])
    parser.add_argument("--validation", type=float, default=0.2, help="share of the rows held out")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    settings = [0, *args.every]
    times: dict[int, list[float]] = {every: [] for every in settings}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "model", default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=64,
                                     num_layers=2, num_heads=2, seed=0)
        # A first run pays for what only the first pays (imports, kernel set-up): not timed.
        train_seconds(model_dir, root / "warm-up", steps=2, every=0, validation=args.validation)
        for repeat in range(args.repeats):
            for every in settings:  # alternating, so a change in the machine's load falls on every setting
                out = root / f"run-{repeat}-{every}"
                times[every].append(train_seconds(model_dir, out, steps=args.steps, every=every,
                                                  validation=args.validation))
    base = statistics.median(times[0])
    print(f"{args.steps} steps, validation share {args.validation}, median of {args.repeats} alternating runs")
    print(f"{'eval_every':>10}  {'evaluations':>11}  {'train s':>8}  {'overhead':>8}")
    for every in settings:
        seconds = statistics.median(times[every])
        evaluations = args.steps // every if every else 0
        print(f"{every or 'end only':>10}  {evaluations:>11}  {seconds:>8.2f}  {100 * (seconds / base - 1):>7.1f}%")


if __name__ == "__main__":
    main()
