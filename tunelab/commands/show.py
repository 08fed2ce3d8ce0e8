"""`tunelab show`: one run's whole record, read as `tunelab ls` reads (registry/reader.py)."""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.registry.run_records import run_detail
from tunelab.show import print_detail


@click.command()
@click.argument("run_id", type=RUN_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def show(app: AppContext, run_id: int, as_json: bool) -> None:
    """Show one run: spec, status, checkpoints, metrics and eval results."""
    # The run's files as this machine sees them (the registry stores them relative to the artifact root).
    detail = run_detail(app.reader(), run_id).seen_from(app.roots)
    if as_json:
        print_json(detail.to_json())
    else:
        print_detail(detail)
