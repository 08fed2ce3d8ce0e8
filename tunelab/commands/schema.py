"""`tunelab schema`: the spec language as JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tunelab.experiments.json_schema import spec_json_schema
from tunelab.terminal import say


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the spec language (for editor completion and checks)."""
    text = json.dumps(spec_json_schema(), indent=2)
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    say(f"wrote {output}")
