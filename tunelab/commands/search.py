"""`tunelab search ls` and `tunelab search show`: searches and their trials, read as `tunelab ls` reads runs."""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.registry.search_records import list_searches, search_record
from tunelab.search_text import print_search, print_searches


@click.group()
def search() -> None:
    """Hyperparameter searches ([search] in a spec): their progress, best trial and trials."""


@search.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print every search with its trials as JSON.")
@click.pass_obj
def search_ls(app: AppContext, as_json: bool) -> None:
    """List searches, newest first: progress and best trial so far."""
    searches = list_searches(app.reader())
    if as_json:
        print_json([s.to_json() for s in searches])
    else:
        print_searches(searches)


@search.command(name="show")
@click.argument("search_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the search and its trials as JSON.")
@click.pass_obj
def search_show(app: AppContext, search_id: int, as_json: bool) -> None:
    """Show one search: progress, best trial so far, parameter importance and the trials table."""
    record = search_record(app.reader(), search_id)
    if as_json:
        print_json(record.to_json())
    else:
        print_search(record)
