"""Report scale: a registry with 1,000 evaluated runs (synthetic rows).

Prints the wall time of `tunelab report` as a whole command (leaderboard only, and with run pages
first and then re-rendered), the leaderboard file size, and Chromium's time to first render.
Targets: report under 2 s, file under 3 MB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic_registry import fill  # noqa: E402
from registry.db import default_url, open_registry  # noqa: E402


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def first_render_ms(path: Path) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    tunelab = str(Path(sys.executable).with_name("tunelab"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        registry = open_registry(default_url(home))
        fill(registry, experiments=args.runs, metrics_per_run=100, subjects=True)
        out = Path(tmp) / "leaderboard.html"
        base = [tunelab, "--home", str(home), "report", "-o", str(out)]
        only = min(timed(base + ["--no-run-pages"]) for _ in range(3))
        size = out.stat().st_size
        with_pages_first = timed(base)  # renders every run page (matplotlib charts)
        with_pages_again = min(timed(base) for _ in range(3))
        render = first_render_ms(out)
        pages = len(list((Path(tmp) / "leaderboard_runs").glob("*.html")))
    print(f"evaluated runs                     {args.runs}")
    print(f"report, leaderboard only (best of 3) {only:.2f} s   (target < 2 s)")
    print(f"leaderboard file size              {size / 1e6:.2f} MB (target < 3 MB)")
    print(f"report with {pages} run pages, first  {with_pages_first:.2f} s")
    print(f"report with run pages, re-render   {with_pages_again:.2f} s (unchanged runs are skipped)")
    print(f"Chromium first contentful paint    {render:.0f} ms")


if __name__ == "__main__":
    main()
