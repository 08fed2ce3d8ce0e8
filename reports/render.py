"""Render view models with Jinja2 into self-contained HTML (inline CSS and JS, no network)."""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reports.leaderboard import Leaderboard
from reports.run_page import RunPage


def environment() -> Environment:
    # Autoescape everything: names, tags and descriptions are user-supplied strings.
    return Environment(
        loader=PackageLoader("reports", "templates"),
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


def write_report(registry, path: Path, *, title: str, run_pages: bool = True) -> Leaderboard:
    """The leaderboard plus one page per run on it, linked with relative paths (opens from disk).

    A run page is rendered again only when its run changed since the last report (charts are
    the slow part), so re-rendering a large registry's report stays quick.
    """
    from reports.leaderboard import build_leaderboard
    from reports.run_page import build_run_page

    runs_dir = runs_dir_for(path)
    href = (lambda run_id: f"{runs_dir.name}/run-{run_id}.html") if run_pages else None
    board = build_leaderboard(registry, title=title, run_href=href)
    if run_pages:
        for row in board.rows:
            if row.run_id is None:
                continue
            page_path = runs_dir / f"run-{row.run_id}.html"
            if _page_is_current(page_path, row.version):
                continue
            page = build_run_page(registry, row.run_id)
            write_atomically(page_path, render_run_page(page, back_href=f"../{path.name}", version=row.version))
    write_leaderboard(board, path)
    return board
