"""`tunelab db current` and `tunelab db upgrade`: the registry's schema revision, shown or brought up to date."""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.registry.db import current_revision, make_engine, schema_state, upgrade
from tunelab.registry.revision import head
from tunelab.terminal import say


@click.group()
def db() -> None:
    """Registry schema: show or apply Alembic migrations."""


@db.command("current")
@click.pass_obj
def db_current(app: AppContext) -> None:
    """Print the registry's schema revision and the newest one."""
    engine = make_engine(app.url)
    schema_state(engine)  # a later tunelab's revision is named as such
    say(f"current: {current_revision(engine) or '(empty)'}  head: {head()}")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(app: AppContext, revision: str) -> None:
    """Apply migrations up to REVISION."""
    app.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(app.url)
    upgrade(engine, revision)
    say(f"registry at revision {current_revision(engine)}")
