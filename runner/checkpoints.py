"""Checkpoint bookkeeping: a checkpoint counts only once its completion marker is on disk.

The Trainer writes `checkpoint-N/`; after it returns we write the marker (fsync'd) and
only then record the checkpoint in the registry, so a half-written directory left by a
kill or a full disk is never taken for a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = "tunelab-complete.json"


def mark_complete(checkpoint_dir: Path, *, step: int, loss: float | None) -> None:
    tmp = checkpoint_dir / (MARKER + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump({"step": step, "loss": loss}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, checkpoint_dir / MARKER)


def is_complete(checkpoint_dir: Path) -> bool:
    return (checkpoint_dir / MARKER).is_file()


def latest_complete(checkpoints_root: Path) -> Path | None:
    """The complete checkpoint with the highest step under `checkpoints_root`, if any."""
    if not checkpoints_root.is_dir():
        return None
    complete = []
    for child in checkpoints_root.iterdir():
        if child.name.startswith("checkpoint-") and is_complete(child):
            try:
                complete.append((int(child.name.removeprefix("checkpoint-")), child))
            except ValueError:
                continue
    return max(complete)[1] if complete else None
