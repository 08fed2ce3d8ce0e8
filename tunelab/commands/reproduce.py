"""`tunelab reproduce`: re-run a run from its registry record and say whether it reproduced."""

from __future__ import annotations

from dataclasses import asdict

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.registry.queue import claim_run
from tunelab.reproduce_text import print_differences, print_verdict
from tunelab.runner import reproduce as repro
from tunelab.runner.execute import execute_run
from tunelab.runner.worker import worker_name


@click.command()
@click.argument("run_id", type=int)
@click.option("--verify", is_flag=True, help="After the re-run, compare it with the original; exit 1 if it differs.")
@click.option("--allow-data-change", is_flag=True, help="Re-run even if the training data changed since.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and verdict as JSON.")
@click.pass_obj
def reproduce(app: AppContext, run_id: int, verify: bool, allow_data_change: bool, quiet: bool,
              as_json: bool) -> None:
    """Re-run RUN_ID from its registry record alone (spec, seed, data) and say whether it reproduced."""
    registry = app.registry()
    plan = repro.plan(registry, run_id)
    if not as_json:
        print_differences(plan)
    new_id = repro.start(registry, plan, allow_data_change=allow_data_change)
    claim_run(registry, new_id, worker_name())
    result = execute_run(registry, new_id, home=app.home, show_progress=not quiet and not as_json)
    verdict = repro.verify(registry, run_id, new_id) if verify else None
    if as_json:
        print_json({"original_run_id": run_id, "new_run_id": new_id, "status": result.status,
                    "differences": [asdict(d) for d in plan.differences],
                    "verdict": None if verdict is None else {"reproduced": verdict.reproduced,
                                                             "bit_identical": verdict.bit_identical,
                                                             "checks": [asdict(c) for c in verdict.checks]}})
    else:
        click.echo(f"run {new_id}: {result.status} (reproduces run {run_id})")
        if verdict is not None:
            print_verdict(verdict)
    if result.status != "succeeded" or (verdict is not None and not verdict.reproduced):
        raise SystemExit(1)
