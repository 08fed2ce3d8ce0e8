"""`tunelab report` and `tunelab compare`: static HTML and terminal views of what the registry holds."""

from __future__ import annotations

from pathlib import Path

import click

from tunelab.compare_text import print_comparison, print_many_comparison
from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.reports.compare import (
    Comparison,
    ManyComparison,
    build_comparison,
    build_many_comparison,
    comparison_json,
)
from tunelab.reports.files import write_atomically
from tunelab.reports.render import render_comparison, render_many_comparison, runs_dir_for, write_report
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
@click.argument("run_ids", type=RUN_ID, nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML comparison page to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def compare(app: AppContext, run_ids: tuple[int, ...], output: Path | None, as_json: bool) -> None:
    """Compare runs: differing spec keys, scores against the first run with significance, curves, samples.

    Two runs also list the items one got right and the other wrong, and MMLU by subject.
    """
    if len(run_ids) < 2:
        raise click.UsageError("compare needs two runs or more")
    registry = app.read_only_registry()
    if len(run_ids) == 2:
        comparison: Comparison | ManyComparison = build_comparison(registry, *run_ids)
        render, show = render_comparison, print_comparison
    else:
        comparison = build_many_comparison(registry, list(run_ids))
        render, show = render_many_comparison, print_many_comparison
    if as_json:
        print_json(comparison_json(comparison))
    else:
        show(comparison)
    if output is not None:
        write_atomically(output, render(comparison))
        say(f"wrote {output}")
