"""Report scale: a registry with 1,000 evaluated runs (synthetic rows, shaped like today's records).

Times `tunelab report` as a whole command, a fresh process each time with the output folder emptied first, so
every timing is a cold report (a report keeps nothing between runs): the leaderboard alone, and the leaderboard
with every run page. The registry is opened read-only, as by a user who may only read (SQLite `mode=ro`). Also
the sizes written (leaderboard, run pages, their total), and in Chromium the first contentful paint of the
leaderboard and of a run page, and the time until a run page's charts are drawn.
Targets: the report with every run page under 5 s on 2 cores; the leaderboard's first contentful paint under
300 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.registry.db import default_url, open_registry  # noqa: E402

from benchmarks.synthetic_registry import fill  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def timed(command: list[str], out_dir: Path) -> float:
    """Seconds for one cold run of `command`, its output folder removed first."""
    shutil.rmtree(out_dir, ignore_errors=True)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def browser_timings(paths: list[Path], repeats: int) -> dict[Path, list[dict]]:
    """For each page, `repeats` loads in a fresh browser tab: first contentful paint and charts drawn, in ms."""
    from playwright.sync_api import sync_playwright

    found: dict[Path, list[dict]] = {path: [] for path in paths}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for _ in range(repeats):
            for path in paths:
                context = browser.new_context()  # nothing cached from the previous load
                page = context.new_page()
                page.goto(path.as_uri(), wait_until="load")
                # The paint entry can be recorded after the load event: wait for it (buffered), not just look.
                found[path].append(page.evaluate("""() => new Promise(resolve => {
                    const done = paint => resolve({
                        paint, load: performance.getEntriesByType('navigation')[0].loadEventEnd,
                        charts: window.tunelabCharts ? Object.keys(window.tunelabCharts).length : 0});
                    new PerformanceObserver(list => {
                        const entry = list.getEntriesByName('first-contentful-paint')[0];
                        if (entry) done(entry.startTime);
                    }).observe({type: 'paint', buffered: true});
                    setTimeout(() => done(null), 10000);
                })"""))
                context.close()
        browser.close()
    return found


def median_ms(samples: list[dict], key: str) -> str:
    values = [s[key] for s in samples if s[key] is not None]
    return f"{statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})" if values else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="cold reports timed (each a fresh process)")
    parser.add_argument("--paints", type=int, default=5, help="page loads per page in Chromium")
    args = parser.parse_args()
    tunelab = str(Path(sys.executable).with_name("tunelab"))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        registry = open_registry(default_url(home))
        began = time.perf_counter()
        fill(registry, experiments=args.runs, metrics_per_run=100, subjects=True, detailed=True)
        fill_seconds = time.perf_counter() - began
        registry.engine.dispose()
        reader_url = f"sqlite:///file:{home / 'registry.db'}?mode=ro&uri=true"
        out = Path(tmp) / "report" / "leaderboard.html"
        runs_dir = out.with_name("leaderboard_runs")
        report = [tunelab, "--db", reader_url, "report", "-o", str(out)]
        only = sorted(timed(report + ["--no-run-pages"], out.parent) for _ in range(args.repeats))
        full = sorted(timed(report, out.parent) for _ in range(args.repeats))
        pages = sorted(runs_dir.glob("*.html"), key=lambda p: int(p.stem.split("-")[1]))
        pages_size = sum(page.stat().st_size for page in pages)
        size = out.stat().st_size
        sample = pages[len(pages) // 2]
        timings = browser_timings([out, sample], args.paints)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        ("evaluated runs", f"{args.runs} (registry filled in {fill_seconds:.1f} s)"),
        ("machine", f"{cpus} CPUs; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
                    "(other work on the machine slows every figure)"),
        (f"report, leaderboard only (cold, {args.repeats} runs)",
         f"{only[0]:.2f} s best, {statistics.median(only):.2f} s median"),
        (f"report with {len(pages)} run pages (cold, {args.repeats} runs)",
         f"{full[0]:.2f} s best, {statistics.median(full):.2f} s median, {full[-1]:.2f} s worst (target < 5 s)"),
        ("leaderboard file size", f"{size / 1e6:.2f} MB"),
        ("run pages, total size", f"{pages_size / 1e6:.1f} MB ({pages_size / len(pages) / 1e3:.0f} kB a page)"),
        ("report, total size", f"{(size + pages_size) / 1e6:.1f} MB"),
        (f"Chromium first contentful paint, leaderboard ({args.paints} loads)",
         median_ms(timings[out], "paint") + " (target < 300 ms)"),
        (f"Chromium first contentful paint, a run page ({args.paints} loads)", median_ms(timings[sample], "paint")),
        ("Chromium load event, a run page (charts drawn)", median_ms(timings[sample], "load")
         + f", {timings[sample][0]['charts']} charts"),
    ]
    for label, value in lines:
        print(f"{label:<52} {value}")


if __name__ == "__main__":
    main()
