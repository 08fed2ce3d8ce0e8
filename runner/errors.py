"""Typed errors of the runner; the worker records them on the run, the CLI prints them.

Every error a user can cause is a TunelabError (experiments/errors.py), which the CLI turns into one line.
Whether the worker tries a failed run again depends on the error: see `retryable`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from tunelab.experiments.errors import SpecError, TunelabError


class RunFailed(TunelabError):
    """A run cannot go on (bad data, missing model, out of disk...)."""


class DataError(RunFailed):
    """Training data is unreadable or malformed; names the file and line."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class EvaluationError(TunelabError):
    """An evaluation cannot run: unknown task, missing or malformed data, data not reachable offline.

    Not a RunFailed: a run whose evaluation failed is tried again like after any other unexpected error
    (benchmark data on a shared disk or in the hub cache may be back by then).
    """


class RunCancelled(Exception):
    """The run was cancelled from outside (tunelab cancel) while it executed."""


def retryable(exc: Exception) -> bool:
    """Whether another attempt could succeed: not for the run's own errors (data, spec, disk)."""
    return not isinstance(exc, (RunFailed, SpecError, ValidationError))
