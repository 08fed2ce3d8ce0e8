"""What tunelab prints is text for a person, never instructions to their terminal.

Names, descriptions, tags, errors and paths come from specs, data, the registry and the filesystem; a control
character in one of them (an escape sequence that recolours, moves the cursor or retitles the window, a carriage
return that overwrites a line, a bell, a bidirectional override that reorders it) is shown as an escape such as
`\\x1b` instead. Every command prints through here: `printable` for a value, `say` for a line.
"""

from __future__ import annotations

import click

# The C0 and C1 control characters and DEL, and the bidirectional embeddings, overrides and isolates.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPED = ({code: f"\\x{code:02x}" for code in _CONTROLS} | {code: f"\\u{code:04x}" for code in _BIDI}
            | {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
_ESCAPED_BUT_NEWLINES = {code: text for code, text in _ESCAPED.items() if code != ord("\n")}


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every control character escaped (newlines kept with `keep_newlines`, for a message of several
    lines that tunelab composed)."""
    text = str(text)
    if text.isprintable():  # the common case, checked in C: names and numbers of a listing of thousands of runs
        return text
    return text.translate(_ESCAPED_BUT_NEWLINES if keep_newlines else _ESCAPED)


def say(message: object = "", *, err: bool = False) -> None:
    """Print one message (a line, or several that tunelab composed) with its control characters escaped."""
    click.echo(printable(message, keep_newlines=True), err=err)


def markup(value: object) -> str:
    """`value` for a rich markup string: printable, and its square brackets taken as text, not as markup."""
    # rich is imported here, not at the top: `tunelab ls` prints through this module without it.
    from rich.markup import escape

    return escape(printable(value))
