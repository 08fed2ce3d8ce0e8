"""Wall time of tunelab's evaluation against the `lm_eval` command line on the same model and tasks.

Both are timed end to end as fresh processes (imports, model load, data load, scoring, writing results):
`tunelab eval MODEL --refresh` (so nothing comes from the cache) and `lm_eval run` on the task YAMLs tunelab
generated, with the same seed, limit and batch size. Then `tunelab eval MODEL` again: a cache hit.
Runs alternate and the median of each is reported, with tunelab's overhead in percent (target: within 5%).

    python benchmarks/eval_overhead.py                      # a small random Llama built here, 4 tasks
    python benchmarks/eval_overhead.py --model DIR --limit 50 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SEED = 1234
DEFAULT_TASKS = "arc_challenge,hellaswag,mmlu_anatomy,mmlu_virology,mmlu_world_religions,truthfulqa_mc2"


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def build_model(out: Path, hidden: int, layers: int) -> Path:
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    return build_tiny_model(out, default_corpus(REPO_ROOT), vocab_size=1024, hidden_size=hidden, num_layers=layers,
                            num_heads=max(2, hidden // 64), seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a local model directory (default: build a random Llama)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built model")
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--benchmarks-dir", type=Path, default=None,
                        help="default: ../shared/benchmarks if present, else examples/benchmarks")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    shared = REPO_ROOT.parent / "shared" / "benchmarks"
    bench = args.benchmarks_dir or (shared if shared.is_dir() else REPO_ROOT / "examples" / "benchmarks")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model.resolve() if args.model else build_model(tmp_path / "model", args.hidden, args.layers)
        home = tmp_path / "home"
        tunelab = [str(bin_dir / "tunelab"), "--home", str(home), "eval", str(model), "--tasks", args.tasks,
                   "--limit", str(args.limit), "--benchmarks-dir", str(bench), "--batch-size", str(args.batch_size),
                   "--seed", str(SEED), "--quiet", "--json"]
        # A first, untimed evaluation writes the YAMLs (and warms the page cache for both sides).
        _, out = timed([*tunelab, "--refresh"], env)
        first = json.loads(out[out.index("{"):])
        tasks_dir = home / "evals" / first["model_digest"][:16] / "lm_eval_tasks"
        names = ",".join(sorted(p.stem for p in tasks_dir.glob("tunelab_*.yaml")))
        lm_eval = [str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args",
                   f"pretrained={model},dtype=float32", "--device", "cpu", "--include_path", str(tasks_dir),
                   "--tasks", names, "--limit", str(args.limit), "--batch_size", str(args.batch_size),
                   "--seed", str(SEED), "--output_path", str(tmp_path / "lm_eval_out")]
        ours, theirs, cached = [], [], []
        for _ in range(args.repeats):
            ours.append(timed([*tunelab, "--refresh"], env)[0])
            theirs.append(timed(lm_eval, env)[0])
            cached.append(timed(tunelab, env)[0])

    figures = {
        "tasks": args.tasks, "limit": args.limit, "batch_size": args.batch_size, "repeats": args.repeats,
        "model": str(args.model) if args.model else f"random Llama, hidden {args.hidden}, {args.layers} layers",
        "cpus": os.cpu_count(),
        "tunelab_s": round(statistics.median(ours), 2),
        "lm_eval_cli_s": round(statistics.median(theirs), 2),
        "overhead_pct": round(100 * (statistics.median(ours) / statistics.median(theirs) - 1), 1),
        "cached_s": round(statistics.median(cached), 2),
        "all": {"tunelab_s": [round(t, 2) for t in ours], "lm_eval_cli_s": [round(t, 2) for t in theirs],
                "cached_s": [round(t, 2) for t in cached]},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"model: {figures['model']}; tasks: {args.tasks}; limit {args.limit}; batch {args.batch_size}; "
          f"{args.repeats} repeats on {figures['cpus']} CPU(s)")
    print(f"tunelab eval (no cache)  {figures['tunelab_s']:8.2f} s  (median)")
    print(f"lm_eval command line     {figures['lm_eval_cli_s']:8.2f} s  (median)")
    print(f"tunelab overhead         {figures['overhead_pct']:+8.1f} %")
    print(f"tunelab eval (cached)    {figures['cached_s']:8.2f} s  (median)")


if __name__ == "__main__":
    main()
