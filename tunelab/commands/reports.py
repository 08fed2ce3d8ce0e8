"""`tunelab report` and `tunelab compare`: static HTML and terminal views of what the registry holds."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tunelab.compare_text import print_comparison
from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.reports.compare import build_comparison
from tunelab.reports.files import write_atomically
from tunelab.reports.render import render_comparison, runs_dir_for, write_report
from tunelab.terminal import say


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("leaderboard.html"),
              show_default=True, help="HTML file to write.")
@click.option("--title", default="tunelab leaderboard", show_default=True)
@click.option("--run-pages/--no-run-pages", default=True, show_default=True,
              help="Also write one page per run (spec, curves, per-subject scores, fingerprint).")
@click.pass_obj
def report(app: AppContext, output: Path, title: str, run_pages: bool) -> None:
    """Render a static HTML leaderboard of every evaluated model, with a page per run.

    The run pages go to a folder beside the file (leaderboard_runs/ for leaderboard.html),
    linked with relative paths: the report opens from disk, with no server and no network.
    """
    board = write_report(app.read_only_registry(), output, title=title, run_pages=run_pages)
    pages = f" and run pages in {runs_dir_for(output)}/" if run_pages else ""
    say(f"wrote {output} ({len(board.rows)} models){pages}")


@click.command()
@click.argument("run_a", type=RUN_ID)
@click.argument("run_b", type=RUN_ID)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML comparison page to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def compare(app: AppContext, run_a: int, run_b: int, output: Path | None, as_json: bool) -> None:
    """Compare two runs: differing spec keys, score deltas with significance, flipped items."""
    comparison = build_comparison(app.read_only_registry(), run_a, run_b)
    if as_json:
        data = asdict(comparison)
        data.pop("charts")
        print_json(data)
    else:
        print_comparison(comparison)
    if output is not None:
        write_atomically(output, render_comparison(comparison))
        say(f"wrote {output}")
