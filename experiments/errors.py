"""Typed errors of the spec language; the CLI turns them into one clear line."""

from __future__ import annotations

from pathlib import Path


class TunelabError(Exception):
    """Any failure a user can cause or fix. Every room's typed errors derive from it, so the CLI edge
    turns exactly this family into one line and a non-zero exit, and anything else stays a bug."""


def missing_extra(package: str, extra: str, needed_for: str) -> str:
    """The one-line message for an optional package that is not installed, naming the extra that brings it."""
    return f"{needed_for} needs {package}, which is not installed: pip install 'tunelab[{extra}]'"


class SpecError(TunelabError):
    """A spec is invalid. Names the file, the line (when known) and the dotted field."""

    def __init__(
        self,
        path: Path | str | None,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        self.line = line
        self.column = column
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<spec>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"
