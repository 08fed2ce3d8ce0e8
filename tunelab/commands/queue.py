"""`tunelab submit`, `cancel` and `retry`: what goes into the queue, and out of it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.experiments.loader import load_for_submit
from tunelab.experiments.plan import plan, plan_search, summary
from tunelab.experiments.schema import MAX_PRIORITY
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.registry.reward_checks import check_reward_runs
from tunelab.registry.run_state import cancel as cancel_run
from tunelab.registry.run_state import retry as retry_run
from tunelab.registry.searches import create_search, search_from_loaded
from tunelab.registry.submissions import from_loaded, with_existing
from tunelab.registry.submissions import submit as submit_runs
from tunelab.runner.search import preview
from tunelab.runner.training.options import check_options
from tunelab.terminal import say

# Trials of a search that `submit --dry-run` draws to show.
PREVIEW_TRIALS = 5


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate, show what would be queued (new) and what is stored already "
              "(exists); write nothing.")
@click.option("--force", is_flag=True, help="Queue a new run even when an identical spec was submitted before.")
@click.option("--priority", type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY), default=None,
              help="Queue priority (higher first); overrides [resources] priority.")
@click.option("--json", "as_json", is_flag=True, help="Print [{experiment_id, run_id}] as JSON.")
@click.pass_obj
def submit(app: AppContext, specs: tuple[Path, ...], dry_run: bool, force: bool, priority: int | None,
           as_json: bool) -> None:
    """Validate SPEC files, store each experiment and queue a run of it.

    A spec with a [sweep] table becomes one experiment per point of the sweep. A spec with a
    [search] table becomes a search: workers draw its trials one by one as they become free. A spec
    whose resolved content (with what its relative paths point at) was submitted before is not stored
    twice: tunelab points at the earlier experiment and its latest run (use --force to queue a new run of it).
    """
    loaded = load_for_submit(specs, Path.cwd())
    check_options(loaded)
    searches = [item for item in loaded if item.search is not None]
    workdir = app.roots.stored_workdir(Path.cwd())  # relative to the project root when under one
    if dry_run:
        _show_plan(app, loaded, searches, Path(workdir), as_json)
        return
    registry = app.registry()
    check_reward_runs(registry, loaded)
    new = [from_loaded(item, workdir=workdir, priority=priority) for item in loaded if item.search is None]
    done = submit_runs(registry, new, force=force) if new else []
    created = [(item, create_search(registry, search_from_loaded(item, workdir=workdir, priority=priority)))
               for item in searches]
    if as_json:
        print_json([s.to_json() for s in done] + [{"search_id": search_id} for _, search_id in created])
        return
    for s in done:
        say(s.describe())
    for item, search_id in created:
        say(f"search {search_id}  {item.spec.experiment.name}: {item.search.sampler}, "
            f"{item.search.target_trials} trials; workers draw them (tunelab search show {search_id})")


def _show_plan(app: AppContext, loaded: list, searches: list, workdir: Path, as_json: bool) -> None:
    """What submit would store: experiments (new or already stored), and searches with the first trials their
    samplers would draw."""
    planned = with_existing(plan(loaded, workdir), app.existing_reader())
    planned_searches = [plan_search(item, preview(item.search, PREVIEW_TRIALS)) for item in searches]
    if as_json:
        print_json([asdict(p) for p in planned] + [dict(asdict(p), kind="search") for p in planned_searches])
        return
    for p in planned:
        say(p.line())
    for p in planned_searches:
        say("\n".join(p.lines()))
    say(summary(planned) + (f"; {len(planned_searches)} search(es) would be created" if planned_searches else ""))


@click.command()
@click.argument("run_id", type=RUN_ID)
@click.pass_obj
def cancel(app: AppContext, run_id: int) -> None:
    """Cancel a queued run, or stop a running one at its next training step."""
    cancel_run(app.registry(), run_id)
    say(f"run {run_id}: cancelled")


@click.command()
@click.argument("run_id", type=RUN_ID)
@click.pass_obj
def retry(app: AppContext, run_id: int) -> None:
    """Queue a failed or cancelled run again (it resumes from its last complete checkpoint)."""
    retry_run(app.registry(), run_id)
    say(f"run {run_id}: queued")
