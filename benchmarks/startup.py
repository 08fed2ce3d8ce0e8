"""Start-up of the query path: `tunelab ls`, `show`, `--help` against a bare `python -c "import click, sqlite3"`.

Each command runs as a whole process, interleaved with the bare start in one loop (bare, command, bare,
command, ...), so a machine whose load changes during the run slows both alike. Prints each command's median
and the median of its paired ratios (command time / the bare start just before it). Target: `tunelab ls` on
the 10,000-run registry of registry_scale.py at most 3x the bare start. `ls --all` prints all 10,000 rows of
the table: its cost grows with the registry, and is shown beside it.

    python benchmarks/startup.py [--rounds 15] [--experiments 10000]
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

from benchmarks.synthetic_registry import fill  # noqa: E402

TARGET_RATIO = 3.0
WHERE = 'method.kind = "lora" and arc_challenge > 0.5'


def elapsed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def interleaved(bare: list[str], commands: dict[str, list[str]], rounds: int) -> dict[str, tuple[list, list]]:
    """{label: (command seconds, paired ratios)}, each command timed right after its own bare start."""
    found: dict[str, tuple[list, list]] = {label: ([], []) for label in commands}
    for command in commands.values():  # one untimed pass: the page cache, not the first run, is measured
        elapsed(command)
    for _ in range(rounds):
        for label, command in commands.items():
            reference = elapsed(bare)
            seconds = elapsed(command)
            found[label][0].append(seconds)
            found[label][1].append(seconds / reference)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--experiments", type=int, default=10_000)
    args = parser.parse_args()
    tunelab = str(Path(sys.executable).with_name("tunelab"))
    bare = [sys.executable, "-c", "import click, sqlite3"]
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        open_registry(default_url(empty)).engine.dispose()
        registry = open_registry(default_url(full))
        fill(registry, experiments=args.experiments, metrics_per_run=10, subjects=False, base=False)
        registry.engine.dispose()
        middle, runs = str(args.experiments // 2), f"{args.experiments} runs"
        commands = {
            "--help": [tunelab, "--help"],
            "ls (empty registry)": [tunelab, "--home", str(empty), "ls"],
            f"ls ({runs})": [tunelab, "--home", str(full), "ls"],
            f"ls --all ({runs})": [tunelab, "--home", str(full), "ls", "--all"],
            f"ls --where --sort ({runs})": [tunelab, "--home", str(full), "ls", "--where", WHERE, "--sort", "average"],
            "show ID": [tunelab, "--home", str(full), "show", middle],
        }
        reference = [elapsed(bare) for _ in range(args.rounds)]
        results = interleaved(bare, commands, args.rounds)
    print(f"bare start (python -c 'import click, sqlite3'): median {statistics.median(reference):.3f} s; "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
    for label, (seconds, ratios) in results.items():
        print(f"{label:32s} median {statistics.median(seconds):.3f} s   paired ratio {statistics.median(ratios):5.2f}x")
    ratio = statistics.median(results[f"ls ({runs})"][1])
    print(f"target: ls on {runs} at most {TARGET_RATIO:g}x the bare start: "
          + ("met" if ratio <= TARGET_RATIO else "NOT met") + f" ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
