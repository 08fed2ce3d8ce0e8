"""`tunelab reproduce`: re-run a run from its registry record and say whether it reproduced."""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.reproduce_text import print_differences, print_verdict
from tunelab.runner.reproduce import reproduce_run
from tunelab.terminal import say


@click.command()
@click.argument("run_id", type=RUN_ID)
@click.option("--verify", is_flag=True, help="After the re-run, compare it with the original; exit 1 if it differs.")
@click.option("--allow-data-change", is_flag=True, help="Re-run even if the training data changed since.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and verdict as JSON.")
@click.pass_obj
def reproduce(app: AppContext, run_id: int, verify: bool, allow_data_change: bool, quiet: bool,
              as_json: bool) -> None:
    """Re-run RUN_ID from its registry record alone (spec, seed, data) and say whether it reproduced."""
    done = reproduce_run(app.registry(), run_id, roots=app.roots, allow_data_change=allow_data_change, verify=verify,
                         show_progress=not quiet and not as_json, on_plan=None if as_json else print_differences)
    if as_json:
        print_json(done.to_json())
    else:
        say(f"run {done.new_run_id}: {done.result.status} (reproduces run {run_id})")
        if done.verdict is not None:
            print_verdict(done.verdict)
    if not done.ok:
        raise SystemExit(1)
