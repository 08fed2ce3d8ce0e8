"""Report scale: a registry with 1,000 evaluated runs (synthetic rows, shaped like today's records).

Times `tunelab report` as a whole command (a fresh process each time, output directory emptied first):
the leaderboard alone; the first report with run pages after the worker warmed each finished run (charts
drawn and page rendered into the registry's render cache, as reports.render_cache.warm does); the same with
only the charts cached (what follows a change to the page template); a re-render with every page current;
and a cold first report (empty render cache: every chart drawn). Also the leaderboard's size, the run pages'
total size, the warm-up's cost per run, and Chromium's first contentful paint of the leaderboard and a run page.
Targets: report under 2 s, leaderboard file under 3 MB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.registry.db import Registry, default_url, open_registry  # noqa: E402

from benchmarks.synthetic_registry import fill  # noqa: E402

_registry: Registry | None = None  # one per warm-up process


def timed(command: list[str], out_dir: Path | None = None) -> float:
    if out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def first_paint_ms(path: Path) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page()
        page.goto(path.as_uri(), wait_until="load")
        paint = page.evaluate(
            "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
        load = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
        browser.close()
    return paint if paint is not None else load


def _open(url: str) -> None:
    global _registry
    _registry = open_registry(url)


def _warm(run_id: int) -> float:
    from tunelab.reports.render_cache import warm

    began = time.perf_counter()
    warm(_registry, run_id)
    return time.perf_counter() - began


def warm_all(url: str, runs: int, processes: int) -> list[float]:
    """Warm every run as the worker does when a run finishes (several workers at once); seconds per run."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_open, initargs=(url,)) as pool:
        return pool.map(_warm, range(1, runs + 1), chunksize=8)


def forget_pages(registry: Registry, leaderboard: Path) -> int:
    """Drop the cached run pages (keeping the charts), as a change to the page template would."""
    from sqlalchemy import delete
    from tunelab.registry.models import RenderCacheEntry
    from tunelab.reports.leaderboard import build_leaderboard
    from tunelab.reports.render import page_versions, runs_dir_for
    from tunelab.reports.render_cache import page_key

    runs_dir = runs_dir_for(leaderboard)
    board = build_leaderboard(registry, run_href=lambda run_id: f"{runs_dir.name}/run-{run_id}.html")
    keys = [page_key(run_id, version) for run_id, version in page_versions(board).items()]
    with registry.engine.begin() as connection:
        for start in range(0, len(keys), 500):
            connection.execute(delete(RenderCacheEntry).where(RenderCacheEntry.key.in_(keys[start:start + 500])))
    return len(keys)


def forget_everything(registry: Registry) -> None:
    from sqlalchemy import delete
    from tunelab.registry.models import RenderCacheEntry

    with registry.engine.begin() as connection:
        connection.execute(delete(RenderCacheEntry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warm-processes", type=int, default=2, help="workers warming finished runs at once")
    parser.add_argument("--skip-cold", action="store_true", help="leave out the cold report (minutes)")
    args = parser.parse_args()
    tunelab = str(Path(sys.executable).with_name("tunelab"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        url = default_url(home)
        registry = open_registry(url)
        began = time.perf_counter()
        fill(registry, experiments=args.runs, metrics_per_run=100, subjects=True, detailed=True)
        fill_seconds = time.perf_counter() - began
        out = Path(tmp) / "leaderboard.html"
        runs_dir = Path(tmp) / "leaderboard_runs"
        report = [tunelab, "--home", str(home), "report", "-o", str(out)]
        only = min(timed(report + ["--no-run-pages"]) for _ in range(3))
        size = out.stat().st_size

        began = time.perf_counter()
        per_run = warm_all(url, args.runs, args.warm_processes)
        warm_wall = time.perf_counter() - began
        warmed = sorted(timed(report, runs_dir) for _ in range(3))
        pages = sorted(runs_dir.glob("*.html"))
        pages_size = sum(page.stat().st_size for page in pages)
        again = min(timed(report) for _ in range(3))
        paint = first_paint_ms(out)
        page_paint = first_paint_ms(pages[len(pages) // 2])

        forget_pages(registry, out)
        charts_only = timed(report, runs_dir)
        cold = None
        if not args.skip_cold:
            forget_everything(registry)
            cold = timed(report, runs_dir)
        registry.engine.dispose()

    lines = [
        ("evaluated runs", f"{args.runs} (registry filled in {fill_seconds:.1f} s)"),
        ("report, leaderboard only (best of 3)", f"{only:.2f} s (target < 2 s)"),
        ("leaderboard file size", f"{size / 1e6:.2f} MB (target < 3 MB)"),
        ("warm-up per finished run (worker)", f"{1000 * sum(per_run) / len(per_run):.0f} ms mean, "
                                              f"{1000 * max(per_run):.0f} ms max ({args.warm_processes} at once: "
                                              f"{warm_wall:.0f} s for all)"),
        (f"first report, {len(pages)} run pages, warmed", f"{warmed[0]:.2f} s best, {warmed[1]:.2f} s median of 3 "
                                                          "(target < 2 s)"),
        ("run pages, total size", f"{pages_size / 1e6:.1f} MB"),
        ("first report, charts cached, pages not", f"{charts_only:.2f} s (as after a page template change)"),
    ]
    if cold is not None:
        lines.append(("first report, cold (nothing cached)", f"{cold:.2f} s (every chart drawn, in parallel)"))
    lines += [
        ("re-render, every page current (best of 3)", f"{again:.2f} s"),
        ("Chromium first contentful paint, leaderboard", f"{paint:.0f} ms"),
        ("Chromium first contentful paint, a run page", f"{page_paint:.0f} ms"),
    ]
    for label, value in lines:
        print(f"{label:<46} {value}")

if __name__ == "__main__":
    main()
