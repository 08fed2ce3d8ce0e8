"""`tunelab ls`: the query path, which starts like a small tool.

An SQLite registry at head is read through sqlite3 alone (registry/reader.py): no SQLAlchemy, SQLModel or
Alembic, and no rich for a listing of thousands of runs (tunelab/listing.py).
"""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.listing import TABLE_ROWS, print_runs
from tunelab.params import COUNT
from tunelab.registry.query_help import FIELDS_HELP
from tunelab.registry.run_records import headline_values, list_runs
from tunelab.registry.run_status import RunStatus


@click.command(name="ls", epilog=FIELDS_HELP)
@click.option("--where", "where", metavar="EXPR", help='Filter, e.g. \'method.kind = "lora" and arc_challenge > 0.3\'.')
@click.option("--sort", metavar="FIELD", help="Order by a field (a score, a spec key, id, name...); best first.")
@click.option("--asc", is_flag=True, help="Sort ascending instead.")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]))
@click.option("--limit", type=COUNT, default=None,
              help=f"Show at most this many runs. Default: all of them, except in the table: the first {TABLE_ROWS}.")
@click.option("--all", "every_run", is_flag=True,
              help=f"The table too lists every run, not only the first {TABLE_ROWS}.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def ls_command(app: AppContext, where: str | None, sort: str | None, asc: bool, status: str | None,
               limit: int | None, every_run: bool, fmt: str, as_json: bool) -> None:
    """List runs (newest first) with their headline scores; filter and sort with a small query language."""
    fmt = "json" if as_json else fmt
    # A table is read by a person: one page of it, unless asked for more. Scripts (JSON, CSV) get every run.
    paged = fmt == "table" and limit is None and not every_run
    wanted = TABLE_ROWS + 1 if paged else limit
    source = app.reader()
    if where is not None or sort is not None:
        # The query language compiles through SQLAlchemy: only a filtered or sorted listing imports it.
        from tunelab.registry.run_query import query_runs

        runs = query_runs(source, where=where, sort=sort, descending=not asc, limit=wanted, status=status)
    else:
        runs = list_runs(source, status=status, limit=wanted, newest_first=not asc)
    more = paged and len(runs) > TABLE_ROWS
    runs = runs[:TABLE_ROWS] if more else runs
    scores = headline_values(source, [r.run_id for r in runs])
    print_runs(runs, scores, fmt=fmt, title=f"runs in {app.url}", more=more)
