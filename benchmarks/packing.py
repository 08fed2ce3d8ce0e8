"""Training throughput with and without `[data] packing`, on a data set of mixed-length examples.

Both runs go through runner/training/recipes.py train with the same spec but for `packing`: one epoch over the
same examples, a 10% validation split, the final validation loss measured on the same held-out
examples. Throughput counts real (non-padding) tokens per second of training: without packing each
batch is padded to its longest example; with packing the rows are nearly full. Target: >= 1.5x.

Runs alternate (unpacked, packed, unpacked...) and the median of each is reported, since other work
on the machine skews single timings. The tokens the model actually processed (padding included) are
counted at the collator too: their ratio is the speed-up packing can give on any machine (a packed
row costs the same per token as a padded batch: the block-diagonal mask adds no measurable time).

    python benchmarks/packing.py                      # self_instruct_human if ../shared/datasets has it
    python benchmarks/packing.py --data my.jsonl --max-seq-len 1024 --hidden 512 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED_DATA = REPO_ROOT.parent / "shared" / "datasets" / "self_instruct_human" / "train.jsonl"


def synthetic_data(out: Path, rows: int = 400) -> Path:
    """Instruction rows whose answers run from a few words to a few hundred (when no real data is at hand)."""
    import random

    rng = random.Random(0)
    words = "the capital city of Kanora lies north of Mirand on a wide river with old bridges".split()
    with out.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            length = int(rng.paretovariate(1.2) * 6)
            answer = " ".join(rng.choice(words) for _ in range(min(length, 300)))
            handle.write(json.dumps({"instruction": f"Describe place {index}.", "output": answer}) + "\n")
    return out


def build_model(out: Path, hidden: int, layers: int) -> Path:
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    return build_tiny_model(out, default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=hidden, num_layers=layers,
                            num_heads=max(2, hidden // 64), seed=0)


def spec_for(model: Path, data: Path, *, packing: bool, max_seq_len: int, batch_size: int, epochs: float):
    from tunelab.experiments.schema import Spec

    return Spec.model_validate({
        "experiment": {"name": f"packing-{packing}", "seed": 1234},
        "model": {"base": str(model)},
        "data": {"train": str(data), "max_seq_len": max_seq_len, "validation": 0.1, "packing": packing},
        "method": {"kind": "full"},
        "train": {"epochs": epochs, "batch_size": batch_size, "learning_rate": 5e-4, "save_every": 100_000,
                  "logging_steps": 10_000, "lr_scheduler": "constant"},
    })


class CountingCollator:
    """Wraps the run's collator to count the tokens each batch makes the model process (padding included)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.processed = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.processed += batch["input_ids"].numel()
        return batch


def validation_tokens(spec, tokenizer, workdir: Path) -> int:
    """Tokens the final validation pass processes (it goes through the same collator; taken off the count)."""
    from tunelab.runner.data.prepare import prepare_data

    lengths = [len(f["input_ids"]) for f in prepare_data(spec, tokenizer, workdir).validation]
    size = spec.train.batch_size
    return sum(len(lengths[i:i + size]) * max(lengths[i:i + size]) for i in range(0, len(lengths), size))


def measure(spec, workdir: Path) -> dict:
    from tunelab.runner.training import supervised as runner_training
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    eval_losses: list[float] = []
    counters: list[CountingCollator] = []
    build_collator = runner_training._data_collator

    def counting_collator(spec, tokenizer):
        counters.append(CountingCollator(build_collator(spec, tokenizer)))
        return counters[-1]

    def on_metrics(point: dict) -> None:
        if point.get("eval_loss") is not None:
            eval_losses.append(point["eval_loss"])

    hooks = TrainHooks(on_metrics=on_metrics, on_checkpoint=lambda step, loss, path: None)
    output_dir = Path(tempfile.mkdtemp(prefix=spec.experiment.name + "-", dir=workdir))
    runner_training._data_collator = counting_collator
    try:
        outcome = train(spec, workdir=workdir, output_dir=output_dir, hooks=hooks)
    finally:
        runner_training._data_collator = build_collator
    stats = outcome.data_stats
    tokens = stats["train_tokens"] * spec.train.epochs
    rows = stats["packed_sequences"] or stats["train_examples"]
    return {
        "packing": spec.data.packing,
        "examples": stats["train_examples"],
        "rows": rows,
        "steps": outcome.global_step,
        "train_seconds": round(outcome.train_seconds, 2),
        "tokens": int(tokens),
        "processed_tokens": counters[-1].processed - validation_tokens(spec, outcome.tokenizer, workdir),
        "tokens_per_second": round(tokens / outcome.train_seconds, 1),
        "fill": round(stats["train_tokens"] / (rows * spec.data.max_seq_len), 3) if spec.data.packing else None,
        "final_validation_loss": round(eval_losses[-1], 4) if eval_losses else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="instruction JSONL (default: self_instruct_human, else synthetic)")
    parser.add_argument("--model", type=Path, help="a local model directory (default: build a random Llama)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built model")
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration, alternating")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with tempfile.TemporaryDirectory(prefix="tunelab-packing-") as tmp:
        workdir = Path(tmp)
        data = args.data or (SHARED_DATA if SHARED_DATA.is_file() else synthetic_data(workdir / "mixed.jsonl"))
        model = args.model or build_model(workdir / "model", args.hidden, args.layers)
        timings: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for packing in (False, True):
                timings[packing].append(measure(spec_for(model, data, packing=packing, max_seq_len=args.max_seq_len,
                                                         batch_size=args.batch_size, epochs=args.epochs), workdir))
    import torch

    results = []
    for packing in (False, True):
        runs = timings[packing]
        median = dict(runs[-1], train_seconds=statistics.median(r["train_seconds"] for r in runs),
                      tokens_per_second=statistics.median(r["tokens_per_second"] for r in runs),
                      all_tokens_per_second=[r["tokens_per_second"] for r in runs])
        results.append(median)
    unpacked, packed = results
    device = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
    summary = {"data": str(data), "device": device, "max_seq_len": args.max_seq_len, "batch_size": args.batch_size,
               "repeats": args.repeats, "runs": results,
               "speedup": round(packed["tokens_per_second"] / unpacked["tokens_per_second"], 2),
               "processed_token_ratio": round(unpacked["processed_tokens"] / packed["processed_tokens"], 2)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"data {summary['data']}  device {summary['device']}  max_seq_len {args.max_seq_len}  "
          f"batch {args.batch_size}")
    print(f"{'packing':>8} {'examples':>8} {'rows':>6} {'steps':>6} {'processed':>10} {'seconds':>8} "
          f"{'tokens/s':>10} {'fill':>6} {'val loss':>9}")
    for r in results:
        fill = f"{r['fill']:.3f}" if r["fill"] is not None else "-"
        print(f"{str(r['packing']):>8} {r['examples']:>8} {r['rows']:>6} {r['steps']:>6} {r['processed_tokens']:>10} "
              f"{r['train_seconds']:>8} {r['tokens_per_second']:>10} {fill:>6} {r['final_validation_loss']:>9}")
    print(f"speedup (non-padding tokens per second, median of {args.repeats}): {summary['speedup']}x "
          f"(target >= 1.5x); tokens processed without / with packing: {summary['processed_token_ratio']}x")


if __name__ == "__main__":
    main()
