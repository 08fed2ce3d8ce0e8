"""A click group whose subcommands are imported only when one is run (click's lazy-loading pattern).

Each command module imports its rooms at the top, and some rooms pull in SQLAlchemy, pydantic or Jinja2:
importing every command to start `tunelab ls` would cost more than the listing itself. The group knows
each command by "module:attribute" and its one-line summary, so `tunelab --help` lists them all without
importing any.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    target: str  # "package.module:attribute"
    summary: str  # the first sentence of the command's help, shown by the group's --help

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(click.Group):
    def __init__(self, *args, lazy_commands: dict[str, LazyCommand] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.lazy_commands[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the summaries, as click writes it, without importing a command."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name].summary))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
