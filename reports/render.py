"""Render view models with Jinja2 into self-contained HTML (inline CSS, JS and chart data, no network).

A report only reads the registry: it builds the view models, renders every page afresh and writes the files.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from tunelab.registry.db import Registry
from tunelab.reports.charts import chart_assets, chart_payloads
from tunelab.reports.compare import Comparison, ManyComparison
from tunelab.reports.files import check_writable, relative_href, write_atomically
from tunelab.reports.leaderboard import Leaderboard, build_leaderboard
from tunelab.reports.run_page import RunPage, build_run_pages
from tunelab.reports.search_page import SearchPage, build_search_pages
from tunelab.reports.sweep_page import SweepPage, build_sweep_pages

# Characters that must not appear as themselves in a <script> element's text: "</script" or "<!--" would end
# or bend the element (every "<" is escaped, so neither can form); ">" and "&" for good measure. json.dumps
# escapes every non-ASCII character, U+2028 and U+2029 (line ends to older JavaScript) among them.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(value: object) -> Markup:
    """`value` as JSON that is safe as the text of a <script> element (JSON.parse reads it back unchanged)."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Markup(text.translate(_SCRIPT_ESCAPES))


def chart_json(charts: dict) -> Markup:
    """A page's charts (by name) as the JSON data block charts.js draws from."""
    return script_json(chart_payloads(charts))


@cache
def environment() -> Environment:
    """One environment per process: it compiles each template once (a thousand run pages reuse it)."""
    # Autoescape everything: names, tags and descriptions are user-supplied strings.
    env = Environment(
        loader=PackageLoader("tunelab.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["chart_json"] = chart_json
    env.globals["chart_assets"] = chart_assets()
    return env


def render_leaderboard(board: Leaderboard) -> str:
    return environment().get_template("leaderboard.html.j2").render(board=board)


def render_run_page(page: RunPage, *, back_href: str | None = None) -> str:
    return environment().get_template("run.html.j2").render(page=page, back_href=back_href)


def render_search_page(page: SearchPage, *, back_href: str | None = None) -> str:
    return environment().get_template("search.html.j2").render(page=page, back_href=back_href)


def render_sweep_page(page: SweepPage, *, back_href: str | None = None) -> str:
    return environment().get_template("sweep.html.j2").render(page=page, back_href=back_href)


def render_comparison(comparison: Comparison) -> str:
    return environment().get_template("compare.html.j2").render(c=comparison)


def render_many_comparison(comparison: ManyComparison) -> str:
    return environment().get_template("compare_many.html.j2").render(c=comparison)


def write_leaderboard(board: Leaderboard, path: Path) -> None:
    write_atomically(path, render_leaderboard(board))


def runs_dir_for(report: Path) -> Path:
    """Run pages live beside the leaderboard: leaderboard.html -> leaderboard_runs/run-7.html."""
    return report.with_name(f"{report.stem}_runs")


def default_jobs() -> int:
    """Processes for writing run pages: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Below this many pages, starting processes costs more than it saves.
_PARALLEL_FROM = 64


@dataclass(frozen=True)
class _PageJob:
    registry: Registry
    runs_dir: Path
    back_href: str

    def write(self, run_ids: list[int]) -> int:
        """Write the pages of `run_ids` (those that exist); returns how many."""
        written = 0
        for page in build_run_pages(self.registry, run_ids):
            write_atomically(self.runs_dir / f"run-{page.run_id}.html",
                             render_run_page(page, back_href=self.back_href))
            written += 1
        return written


# What forked page writers inherit: an open registry cannot be pickled into a worker.
_forked: tuple[_PageJob, list[list[int]]] | None = None


def _write_share(index: int) -> int:
    job, shares = _forked
    job.registry.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
    return job.write(shares[index])


def write_run_pages(job: _PageJob, run_ids: list[int], jobs: int) -> int:
    """Write the pages of `run_ids`, shared with `jobs - 1` forked processes when there are many (Linux).

    This process writes a share too, rather than wait. Returns how many pages were written.
    """
    if jobs <= 1 or len(run_ids) < _PARALLEL_FROM or sys.platform != "linux":
        return job.write(run_ids)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _forked
    shares = [run_ids[i::jobs] for i in range(jobs)]
    _forked = (job, shares)
    try:
        with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            others = [pool.submit(_write_share, index) for index in range(1, jobs)]
            return job.write(shares[0]) + sum(future.result() for future in others)
    finally:
        _forked = None


def write_report(registry: Registry, path: Path, *, title: str, run_pages: bool = True,
                 jobs: int | None = None) -> Leaderboard:
    """The leaderboard plus one page per run on it and one per search, linked with relative paths (opens from disk).

    Reads the registry and nothing else; every page is rendered afresh (in `jobs` processes, default one per CPU),
    so none is ever stale. The pages carry their charts as data, drawn by the browser.
    """
    runs_dir = runs_dir_for(path)
    href = (lambda run_id: relative_href(runs_dir.name, f"run-{run_id}.html")) if run_pages else None
    board = build_leaderboard(registry, title=title, run_href=href)
    # A directory that refuses the report refuses it before any page is written.
    check_writable(path.parent, path)
    paged = {row.run_id for row in board.rows if row.run_id is not None} | {r.run_id for r in board.reward_models}
    run_ids = sorted(paged) if run_pages else []
    if run_ids:
        check_writable(runs_dir, runs_dir / f"run-{run_ids[0]}.html")
        job = _PageJob(registry, runs_dir, relative_href(path.name, up=True))
        write_run_pages(job, run_ids, default_jobs() if jobs is None else jobs)
        # A search page links the runs of its trials that have pages (those on the leaderboard).
        on_board = set(run_ids)
        for page in build_search_pages(registry, lambda run_id: f"run-{run_id}.html" if run_id in on_board else None):
            write_atomically(runs_dir / f"search-{page.search_id}.html",
                             render_search_page(page, back_href=f"../{path.name}"))
            board.searches.append((f"#{page.search_id} {page.name}", f"{runs_dir.name}/search-{page.search_id}.html"))
        for sweep in build_sweep_pages(registry, lambda run_id: f"run-{run_id}.html" if run_id in on_board else None):
            if not any(point.run_id in on_board for point in sweep.points):
                continue
            write_atomically(runs_dir / f"sweep-{sweep.sweep_id}.html",
                             render_sweep_page(sweep, back_href=f"../{path.name}"))
            board.sweeps.append((f"#{sweep.sweep_id} {sweep.name}", f"{runs_dir.name}/sweep-{sweep.sweep_id}.html"))
    write_leaderboard(board, path)
    return board
