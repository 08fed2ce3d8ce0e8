"""Render view models with Jinja2 into self-contained HTML (inline CSS and JS, no network)."""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reports.leaderboard import Leaderboard


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


def write_leaderboard(board: Leaderboard, path: Path) -> None:
    """Write atomically: a reader never sees a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_leaderboard(board), encoding="utf-8")
    os.replace(tmp, path)
