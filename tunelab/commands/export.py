"""`tunelab export`: a run's final model as a directory other tools load."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.params import RUN_ID
from tunelab.runner.export import export_run
from tunelab.terminal import say


@click.command()
@click.argument("run_id", type=RUN_ID)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write (must not exist, or be empty).")
@click.option("--merge", is_flag=True, help="Merge an adapter into its base model: a plain transformers model.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_obj
def export(app: AppContext, run_id: int, output: Path, merge: bool, as_json: bool) -> None:
    """Export RUN_ID's final model to a directory, with its tokenizer and a model card (README.md).

    Full-weight runs are whole models; adapter runs export the adapter (loads with peft over its base),
    or with --merge the base with the adapter merged in.
    """
    result = export_run(app.registry(), run_id, output, app.roots, merge=merge)
    if as_json:
        print_json(asdict(result) | {"output": str(result.output)})
        return
    over = f" over {result.base}" if result.form == "adapter" else ""
    say(f"run {run_id}: wrote {result.form} model ({result.method}{over}) to {result.output}")
