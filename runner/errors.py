"""Typed errors of the runner; the worker records them on the run, the CLI prints them."""

from __future__ import annotations

from pathlib import Path

from tunelab.experiments.errors import TunelabError


class RunFailed(TunelabError):
    """A run cannot go on (bad data, missing model, out of disk...)."""


class DataError(RunFailed):
    """Training data is unreadable or malformed; names the file and line."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class RunCancelled(Exception):
    """The run was cancelled from outside (tunelab cancel) while it executed."""
