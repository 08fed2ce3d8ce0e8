"""The states a run and a search go through; plain, so the command line can offer them without loading the tables."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    # A search's trial stopped early by its pruner (runner/search.py): its checkpoints stay; not a failure.
    pruned = "pruned"


class SearchStatus(StrEnum):
    running = "running"  # trials are drawn as workers ask for them
    finished = "finished"  # complete, out of budget, or stopped: no new trial
