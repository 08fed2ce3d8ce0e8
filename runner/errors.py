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
    """An evaluation cannot run now: benchmark data not reachable (offline, on a shared disk), lm-eval missing.

    Not a RunFailed: a run whose evaluation failed this way is tried again like after any other unexpected error
    (the data may be back by then). What the spec itself asks wrongly is an EvaluationSpecError.
    """


class EvaluationSpecError(EvaluationError, RunFailed):
    """What the spec asks for cannot be evaluated (an unknown task, a custom task file that is missing or malformed,
    too few rows for the shots, nothing to evaluate): another attempt would fail the same way, so it is never
    retried, and the worker checks it before training (runner/execute.py)."""


class RunCancelled(Exception):
    """The run was cancelled from outside (tunelab cancel) while it executed."""


def retryable(exc: Exception) -> bool:
    """Whether another attempt could succeed: not for the run's own errors (data, spec, disk)."""
    return not isinstance(exc, (RunFailed, SpecError, ValidationError))
