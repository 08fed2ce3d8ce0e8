"""The states a run goes through; plain, so the command line can offer them without loading the tables."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
