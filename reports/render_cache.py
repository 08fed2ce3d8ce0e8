"""Charts and run pages cached in the registry, so a report reads them instead of drawing and rendering them.

Drawing is the slow part of a report (tens of milliseconds a chart with matplotlib); rendering a thousand pages
is the next. A chart's key is a hash of what it plots (reports/charts.py); a run page's key, of the run and the
page's version, which changes with everything the page shows and with the page's template (reports/render.py).
Neither goes stale. The worker calls `warm` when a run is finished; a report draws and renders what is still
missing, and keeps what it made for finished runs.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterable

from markupsafe import escape
from tunelab.registry.db import Registry
from tunelab.registry.queries import cached_renders
from tunelab.registry.recording import record_renders
from tunelab.reports import best_effort
from tunelab.reports.charts import Chart

# A cached page links back to this; the real leaderboard's name is filled in as the page is written.
BACK_LINK = "../__tunelab_leaderboard__.html"


def chart_svgs(registry: Registry, charts: Iterable[Chart], *, keep: Collection[str] | None = None) -> dict[str, str]:
    """The SVG of each chart, by key: from the cache, else drawn.

    Drawn charts whose key is in `keep` (all of them when None) are stored for next time; a report keeps only
    charts of finished runs, whose data will not change.
    """
    wanted = {chart.key: chart for chart in charts}
    found = {key: _expand(body) for key, body in cached_renders(registry, list(wanted)).items()}
    drawn = {key: wanted[key].draw() for key in sorted(set(wanted) - set(found))}
    found.update(drawn)
    _store(registry, {key: _compress(svg) for key, svg in drawn.items() if keep is None or key in keep})
    return found


def page_key(run_id: int, version: str) -> str:
    return hashlib.sha256(repr(("run page", run_id, version)).encode()).hexdigest()


def cached_pages(registry: Registry, versions: dict[int, str]) -> dict[int, str]:
    """The cached page of each run at its version (rendered with BACK_LINK), by run id."""
    keys = {page_key(run_id, version): run_id for run_id, version in versions.items()}
    return {keys[key]: _expand(body) for key, body in cached_renders(registry, list(keys)).items()}


def store_pages(registry: Registry, pages: dict[int, tuple[str, str]]) -> None:
    """Cache run pages: run id -> (version, page rendered with BACK_LINK)."""
    _store(registry, {page_key(run_id, version): _compress(html) for run_id, (version, html) in pages.items()})


def _store(registry: Registry, bodies: dict[str, bytes]) -> None:
    # Only a cache: a registry that refuses the write (a read-only user) costs the next report the same work.
    if bodies:
        best_effort.write(registry, "the report cache", lambda: record_renders(registry, bodies))


def with_back_link(html: str, back_href: str) -> str:
    """A cached page with its link back to the leaderboard it is written beside."""
    return html.replace(f'href="{BACK_LINK}"', f'href="{escape(back_href)}"', 1)


def _compress(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), 6)


def _expand(body: bytes) -> str:
    return zlib.decompress(body).decode("utf-8")


def warm(registry: Registry, run_id: int) -> None:
    """Draw and cache a finished run's charts, and render and cache its page; for the worker to call.

    Call it once the run is finished (its status final, its scores recorded): the next report then reads the
    page instead of drawing and rendering it. Runs without fine-tuned scores have no page; their charts are
    still cached.
    """
    from tunelab.reports.render import render_run_page, run_page_version
    from tunelab.reports.run_page import build_run_page

    best_effort.begin(registry)
    page = build_run_page(registry, run_id)  # draws the charts not cached yet, and caches them (a finished run)
    version = run_page_version(registry, run_id)
    if version is not None:
        store_pages(registry, {run_id: (version, render_run_page(page, back_href=BACK_LINK, version=version))})
