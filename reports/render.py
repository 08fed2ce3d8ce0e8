"""Render view models with Jinja2 into self-contained HTML (inline CSS and JS, no network)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from tunelab.registry.db import Registry
from tunelab.reports import best_effort
from tunelab.reports.leaderboard import Leaderboard
from tunelab.reports.run_page import RunPage, build_run_pages


@cache
def environment() -> Environment:
    """One environment per process: it compiles each template once (a thousand run pages reuse it)."""
    # Autoescape everything: names, tags and descriptions are user-supplied strings.
    return Environment(
        loader=PackageLoader("tunelab.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_leaderboard(board: Leaderboard) -> str:
    return environment().get_template("leaderboard.html.j2").render(board=board)


def render_run_page(page: RunPage, *, back_href: str | None = None, version: str = "") -> str:
    return environment().get_template("run.html.j2").render(page=page, back_href=back_href, version=version)


def render_comparison(comparison) -> str:
    return environment().get_template("compare.html.j2").render(c=comparison)


def write_atomically(path: Path, text: str) -> None:
    """A reader never sees a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_leaderboard(board: Leaderboard, path: Path) -> None:
    write_atomically(path, render_leaderboard(board))


def runs_dir_for(report: Path) -> Path:
    """Run pages live beside the leaderboard: leaderboard.html -> leaderboard_runs/run-7.html."""
    return report.with_name(f"{report.stem}_runs")


def _page_is_current(path: Path, version: str) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return f'<meta name="tunelab-version" content="{version}">' in handle.read(2048)
    except OSError:
        return False


# The modules whose code shapes a run page: the record read (RunDetail), the view model built from it, how it
# is rendered and cached. Their source, with the templates, is the page's format.
PAGE_MODULES = ("tunelab.registry.queries", "tunelab.reports.run_page", "tunelab.reports.scores",
                "tunelab.reports.charts", "tunelab.reports.render", "tunelab.reports.render_cache")


def page_sources() -> list[Path]:
    """The files a run page is made from: its templates and the source of PAGE_MODULES."""
    templates = Path(__file__).parent / "templates"
    modules = [Path(importlib.import_module(name).__file__) for name in PAGE_MODULES]
    return [templates / "run.html.j2", templates / "_style.html.j2", *modules]


@cache
def page_format() -> str:
    """Changes whenever the code or templates that make a run page change: pages made before are made again."""
    from tunelab.reports.charts import DRAWING_VERSION

    digest = hashlib.sha256(str(DRAWING_VERSION).encode())
    for path in page_sources():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def page_versions(board: Leaderboard) -> dict[int, str]:
    """Each run's page version, from every leaderboard row of the run (its fine-tuned row, its eval rows)."""
    versions: dict[int, list[str]] = {}
    for row in board.rows:
        if row.run_id is not None:
            versions.setdefault(row.run_id, []).append(row.version)
    return {run_id: _page_version(parts) for run_id, parts in versions.items()}


def _page_version(row_versions: list[str]) -> str:
    return "|".join([page_format(), *sorted(row_versions)])


def run_page_version(registry: Registry, run_id: int) -> str | None:
    """The version the leaderboard will give the run's page, when its only row is its fine-tuned one.

    None for a run without fine-tuned scores: it has no page. (A run also evaluated with `tunelab eval` has a
    row for that too; its page's version then differs, and a report renders the page afresh.)
    """
    from tunelab.registry.queries import run_details
    from tunelab.reports.leaderboard import run_version

    detail = run_details(registry, [run_id], group_members=False).get(run_id)
    if detail is None or not any(score.model_kind == "finetuned" for score in detail.scores):
        return None
    return _page_version([run_version(detail.summary, detail.scores)])


def default_jobs() -> int:
    """Processes for writing run pages: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Below this many pages, starting processes costs more than it saves.
_PARALLEL_FROM = 32
# Pages per batch of cache look-ups and queries: bounds memory on a large registry.
_BATCH = 200


@dataclass(frozen=True)
class _PageJob:
    registry: Registry
    runs_dir: Path
    back_href: str
    versions: dict[int, str]

    def write(self, run_ids: list[int]) -> int:
        """Write the pages of `run_ids`: cached ones as they are, the others rendered (and cached when final)."""
        from tunelab.reports.render_cache import BACK_LINK, cached_pages, store_pages, with_back_link
        from tunelab.reports.run_page import FINAL_STATUSES

        written = 0
        for start in range(0, len(run_ids), _BATCH):
            batch = run_ids[start:start + _BATCH]
            cached = cached_pages(self.registry, {run_id: self.versions[run_id] for run_id in batch})
            made: dict[int, tuple[str, str]] = {}
            for page in build_run_pages(self.registry, [run_id for run_id in batch if run_id not in cached]):
                version = self.versions[page.run_id]
                cached[page.run_id] = render_run_page(page, back_href=BACK_LINK, version=version)
                if page.status in FINAL_STATUSES:
                    made[page.run_id] = (version, cached[page.run_id])
            store_pages(self.registry, made)
            for run_id, html in sorted(cached.items()):
                write_atomically(self.runs_dir / f"run-{run_id}.html", with_back_link(html, self.back_href))
                written += 1
        return written


# What forked page writers inherit: an open registry cannot be pickled into a worker.
_forked: tuple[_PageJob, list[list[int]]] | None = None


def _write_share(index: int) -> tuple[int, str | None]:
    """A forked writer's share: pages written, and the warning of a cache write the registry refused."""
    job, shares = _forked
    job.registry.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
    best_effort.quiet()  # the parent warns, once for all writers
    return job.write(shares[index]), best_effort.refusal(job.registry)


def write_run_pages(job: _PageJob, run_ids: list[int], jobs: int) -> int:
    """Write the pages of `run_ids`, shared with `jobs - 1` forked processes when there are many (Linux).

    This process writes a share too, rather than wait. Returns how many pages were written.
    """
    if jobs <= 1 or len(run_ids) < _PARALLEL_FROM or sys.platform != "linux":
        return job.write(run_ids)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _forked
    shares = [run_ids[i::jobs] for i in range(jobs)]  # interleaved: runs without cached charts spread evenly
    _forked = (job, shares)
    try:
        with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            others = [pool.submit(_write_share, index) for index in range(1, jobs)]
            written = job.write(shares[0])
            for future in others:
                count, refused = future.result()
                written += count
                best_effort.adopt(job.registry, refused)
            return written
    finally:
        _forked = None


def write_report(registry: Registry, path: Path, *, title: str, run_pages: bool = True,
                 jobs: int | None = None) -> Leaderboard:
    """The leaderboard plus one page per run on it, linked with relative paths (opens from disk).

    A run page is written again only when its run changed since the last report. Pages and charts come from
    the registry's render cache when there (the worker fills it as a run finishes: reports/render_cache.py);
    the others are rendered, their charts drawn, in `jobs` processes (default: one per CPU), and cached. A
    registry that refuses those writes (a read-only user) gets one warning and the same report, uncached.
    """
    from tunelab.reports.leaderboard import build_leaderboard

    best_effort.begin(registry)
    runs_dir = runs_dir_for(path)
    href = (lambda run_id: f"{runs_dir.name}/run-{run_id}.html") if run_pages else None
    board = build_leaderboard(registry, title=title, run_href=href)
    if run_pages:
        versions = page_versions(board)
        stale = [run_id for run_id, version in sorted(versions.items())
                 if not _page_is_current(runs_dir / f"run-{run_id}.html", version)]
        job = _PageJob(registry, runs_dir, f"../{path.name}", versions)
        write_run_pages(job, stale, default_jobs() if jobs is None else jobs)
    write_leaderboard(board, path)
    return board
