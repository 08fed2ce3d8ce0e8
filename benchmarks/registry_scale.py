"""Registry scale: 10,000 experiments, 100,000 training-metric rows, 40,000 eval results.

Prints the wall time of `tunelab ls --where ... --sort ...` and `tunelab show ID` as whole
commands (start-up included), best and median of 5. Target: under 0.5 s each.

    python benchmarks/registry_scale.py [--db postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.registry.db import default_url, open_registry  # noqa: E402

from benchmarks.synthetic_registry import fill  # noqa: E402

WHERE = 'method.kind = "lora" and arc_challenge > 0.5 or tags contains "group3"'


def times(command: list[str], repeat: int = 5) -> list[float]:
    result = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        result.append(time.perf_counter() - began)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="registry URL (default: a fresh SQLite file); must be an empty database")
    parser.add_argument("--experiments", type=int, default=10_000)
    args = parser.parse_args()
    tunelab = str(Path(sys.executable).with_name("tunelab"))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or default_url(Path(tmp))
        registry = open_registry(url)
        began = time.perf_counter()
        fill(registry, experiments=args.experiments, metrics_per_run=10, subjects=False, base=False)
        fill_seconds = time.perf_counter() - began
        base = [tunelab, "--home", tmp, "--db", url]
        commands = {
            "ls --where --sort --limit 20": base + ["ls", "--where", WHERE, "--sort", "average", "--limit", "20"],
            "ls --where --sort (all matches, json)": base + ["ls", "--where", WHERE, "--sort", "mmlu", "--json"],
            "show ID": base + ["show", str(args.experiments // 2)],
            "show ID --json": base + ["show", str(args.experiments // 2), "--json"],
            "--help (start-up alone)": [tunelab, "--help"],
        }
        print(f"registry: {url.split(':', 1)[0]}, {args.experiments} experiments/runs, "
              f"{args.experiments * 10} metric rows, {args.experiments * 4} eval results "
              f"(filled in {fill_seconds:.1f} s)")
        print(f"where: {WHERE}")
        for label, command in commands.items():
            measured = times(command)
            print(f"{label:40s} best {min(measured):.3f} s   median {statistics.median(measured):.3f} s")


if __name__ == "__main__":
    main()
