"""The root group lists every command with its summary without importing any, and each entry is the command."""

from __future__ import annotations

import click
from click.testing import CliRunner

from tunelab.cli import COMMANDS, cli


def test_help_lists_every_command_with_its_summary():
    out = CliRunner().invoke(cli, ["--help"], terminal_width=400)
    assert out.exit_code == 0, out.output
    listed = {}
    commands = out.output.split("Commands:\n", 1)[1]
    for line in commands.splitlines():
        name, _, summary = line.strip().partition(" ")
        listed[name] = summary.strip()
    assert listed == {name: entry.summary for name, entry in COMMANDS.items()}


def test_each_entry_loads_its_command_and_its_summary_is_the_commands_first_sentence():
    for name, entry in COMMANDS.items():
        command = entry.load()
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == entry.summary


def test_a_command_runs_through_the_group_and_an_unknown_one_is_refused():
    group_help = CliRunner().invoke(cli, ["db", "--help"])
    assert group_help.exit_code == 0 and "upgrade" in group_help.output
    unknown = CliRunner().invoke(cli, ["lss"])
    assert unknown.exit_code == 2 and "No such command 'lss'" in unknown.output
