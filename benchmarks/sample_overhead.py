"""What [eval.samples] costs next to training: the fine-tuned model and its base each write for the prompts.

Trains a small random Llama with LoRA for a few steps (the runner's own training, as a worker runs it), then times
what a run adds with [eval.samples]: the fine-tuned model writing for the prompts, the base model loaded and
writing for them, and the same base answered from the registry's cache (what a second run of the same base and
settings pays). Prints each against the training time.

    python benchmarks/sample_overhead.py                                   # 16 prompts, 64 new tokens, 60 steps
    python benchmarks/sample_overhead.py --prompts 32 --max-new-tokens 128 --steps 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def write_spec(root: Path, model: Path, prompts: Path, args: argparse.Namespace) -> Path:
    spec = root / "spec.toml"
    spec.write_text(f"""[experiment]
name = "sample-overhead"
seed = 7

[model]
base = "{model}"

[data]
train = "{REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"}"
max_seq_len = 128

[method]
kind = "lora"
r = 8
alpha = 16

[train]
max_steps = {args.steps}
save_every = {args.steps}
batch_size = 8
learning_rate = 1e-3

[eval]
tasks = []
baseline = false

[eval.samples]
prompts = "{prompts}"
max_new_tokens = {args.max_new_tokens}
batch_size = {args.batch_size}
""", encoding="utf-8")
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built model")
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    parser.add_argument("--prompts", type=int, default=16, help="prompts to write for")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from tunelab.experiments.loader import load_spec
    from tunelab.registry.db import open_registry
    from tunelab.runner.evaluation.samples import generate_cached, sample_prompts
    from tunelab.runner.evaluation.targets import base_model_digest
    from tunelab.runner.training.models import load_model, load_tokenizer
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus
    from tunelab.runner.training.trainer import TrainHooks

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "model", default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=args.hidden,
                                 num_layers=args.layers, num_heads=max(2, args.hidden // 64), seed=0)
        rows = [json.loads(line) for line in
                (REPO_ROOT / "examples" / "data" / "capitals_train.jsonl").read_text(encoding="utf-8").splitlines()]
        prompts_file = root / "prompts.jsonl"
        prompts_file.write_text("".join(json.dumps({"instruction": r["instruction"], "output": r["output"]}) + "\n"
                                        for r in rows[-args.prompts:]), encoding="utf-8")
        spec = load_spec(write_spec(root, model, prompts_file, args)).spec
        registry = open_registry(f"sqlite:///{root / 'registry.db'}")
        hooks = TrainHooks(on_metrics=lambda metrics: None, on_checkpoint=lambda step, loss, path: None)
        outcome = train(spec, workdir=root, output_dir=root / "run", hooks=hooks, device="cpu")
        prompts = sample_prompts(spec, outcome.tokenizer, root)
        samples, seed = spec.eval.samples, spec.experiment.seed

        def timed(load, digest) -> float:
            started = time.perf_counter()
            generate_cached(registry, load, digest, prompts, samples, seed=seed, dtype="float32")
            return time.perf_counter() - started

        tuned = timed(lambda: (outcome.model, outcome.tokenizer), None)
        digest = base_model_digest(registry, str(model), workdir=root, revision=None)
        base = timed(lambda: (load_model(str(model), "float32").eval(), load_tokenizer(str(model))), digest)
        cached = timed(lambda: sys.exit("the cache should have answered"), digest)

    train_s = outcome.train_seconds
    figures = {
        "model": f"random Llama, hidden {args.hidden}, {args.layers} layers, LoRA r 8", "cpus": os.cpu_count(),
        "steps": args.steps, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "train_s": round(train_s, 2), "finetuned_samples_s": round(tuned, 2), "base_samples_s": round(base, 2),
        "base_samples_cached_s": round(cached, 3),
        "overhead_pct_first_run": round(100 * (tuned + base) / train_s, 1),
        "overhead_pct_cached_base": round(100 * (tuned + cached) / train_s, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"model: {figures['model']}; {args.steps} steps; {len(prompts)} prompts, {args.max_new_tokens} new tokens "
          f"at most; {figures['cpus']} CPU(s)")
    print(f"training                       {train_s:8.2f} s")
    print(f"fine-tuned model's samples     {tuned:8.2f} s")
    print(f"base model's samples (loaded)  {base:8.2f} s")
    print(f"base model's samples (cached)  {cached:8.3f} s")
    print(f"overhead, first run of a base  {figures['overhead_pct_first_run']:+8.1f} % of training")
    print(f"overhead, base cached          {figures['overhead_pct_cached_base']:+8.1f} % of training")


if __name__ == "__main__":
    main()
