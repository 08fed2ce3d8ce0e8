"""What tunelab prints is text for a person, never instructions to their terminal.

Names, descriptions, tags, errors and paths come from specs, data, the registry and the filesystem; a control
character in one of them (an escape sequence that recolours, moves the cursor or retitles the window, a carriage
return that overwrites a line, a bell, a bidirectional override that reorders it) is shown as an escape such as
`\\x1b` instead (experiments/plain_text.py says which). Every command prints through here: `printable` for a
value, `markup` for a value in rich markup, `say` for a line.
"""

from __future__ import annotations

import click

from tunelab.experiments.plain_text import printable as printable


def say(message: object = "", *, err: bool = False) -> None:
    """Print one message (a line, or several that tunelab composed) with its control characters escaped."""
    click.echo(printable(message, keep_newlines=True), err=err)


def markup(value: object) -> str:
    """`value` for a rich markup string: printable, and its square brackets taken as text, not as markup."""
    # rich is imported here, not at the top: `tunelab ls` prints through this module without it.
    from rich.markup import escape

    return escape(printable(value))
