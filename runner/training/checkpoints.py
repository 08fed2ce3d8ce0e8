"""Checkpoints on disk: written whole or not at all, and pruned without ever exposing a partial one.

A checkpoint is written into `checkpoints/.staging/checkpoint-N/`; once every file is
fsync'd, a completion marker is added and the directory is renamed to
`checkpoints/checkpoint-N/` (a rename within one filesystem is atomic). Readers only trust
directories that carry the marker, so whatever a kill or a full disk leaves behind is
never taken for a checkpoint, and `discard_incomplete` clears it away.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MARKER = "tunelab-complete.json"
PREFIX = "checkpoint-"
STAGING = ".staging"
DELETING = ".deleting-"


@dataclass(frozen=True)
class CompleteCheckpoint:
    step: int
    loss: float | None
    path: Path
    # What it was trained with (runner/training/checkpoint_identity.py); None for checkpoints that predate it.
    identity: dict | None = None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, then the directories, so a rename after this is durable."""
    for directory, _subdirs, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(Path(directory) / name)
        _fsync(Path(directory))


def mark_complete(checkpoint_dir: Path, *, step: int, loss: float | None, identity: dict | None = None) -> None:
    tmp = checkpoint_dir / (MARKER + ".tmp")
    facts = {"step": step, "loss": loss} | ({"identity": identity} if identity else {})
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(facts, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, checkpoint_dir / MARKER)


def is_complete(checkpoint_dir: Path) -> bool:
    return (checkpoint_dir / MARKER).is_file()


def staging_dir(checkpoints_root: Path) -> Path:
    """Where the Trainer writes checkpoints before they are published."""
    return checkpoints_root / STAGING


def publish(staged: Path, checkpoints_root: Path, *, step: int, loss: float | None,
            identity: dict | None = None) -> Path:
    """Make a fully written staged checkpoint visible as `checkpoint-<step>`, atomically; its path."""
    target = checkpoints_root / f"{PREFIX}{step}"
    fsync_tree(staged)
    mark_complete(staged, step=step, loss=loss, identity=identity)
    _fsync(staged)
    if target.exists():  # an unmarked leftover of the same step from an older tunelab: never trusted
        _remove(target)
    os.replace(staged, target)
    _fsync(checkpoints_root)
    return target


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.removeprefix(PREFIX))
    except ValueError:
        return None


def complete_checkpoints(checkpoints_root: Path) -> list[CompleteCheckpoint]:
    """The complete checkpoints under `checkpoints_root`, oldest step first."""
    if not checkpoints_root.is_dir():
        return []
    found = []
    for child in checkpoints_root.iterdir():
        step = _step_of(child) if child.name.startswith(PREFIX) else None
        if step is not None and is_complete(child):
            facts = json.loads((child / MARKER).read_text(encoding="utf-8"))
            found.append(CompleteCheckpoint(step, facts.get("loss"), child, facts.get("identity")))
    return sorted(found, key=lambda c: c.step)


def latest_complete(checkpoints_root: Path) -> Path | None:
    """The complete checkpoint with the highest step under `checkpoints_root`, if any."""
    complete = complete_checkpoints(checkpoints_root)
    return complete[-1].path if complete else None


def _remove(path: Path) -> None:
    # Rename first: a kill during rmtree then leaves a `.deleting-` leftover, never a
    # `checkpoint-N` directory with its marker but half of its files.
    doomed = path.with_name(DELETING + path.name)
    if doomed.exists():
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def discard_incomplete(checkpoints_root: Path) -> list[Path]:
    """Remove staging leftovers, half-deleted and unmarked checkpoint directories; what was removed."""
    if not checkpoints_root.is_dir():
        return []
    removed = []
    for child in sorted(checkpoints_root.iterdir()):
        leftover = child.name in (STAGING,) or child.name.startswith(DELETING)
        unmarked = child.name.startswith(PREFIX) and child.is_dir() and not is_complete(child)
        if leftover or unmarked:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
            removed.append(child)
    return removed


def prune(checkpoints_root: Path, keep: int, *, keep_step: int | None = None) -> list[int]:
    """Delete all but the newest `keep` complete checkpoints (0 keeps all); the steps deleted. `keep_step` (the best
    by validation loss, when steering by it) is kept besides."""
    if keep <= 0:
        return []
    complete = complete_checkpoints(checkpoints_root)
    doomed = [c for c in complete[:-keep] if c.step != keep_step]
    for checkpoint in doomed:
        _remove(checkpoint.path)
    return [c.step for c in doomed]


# Below this much free space, a failed write is put down to a full disk (torch and safetensors
# report ENOSPC as their own exception types, not as OSError).
LOW_DISK_BYTES = 64 * 1024 * 1024


def disk_failure(exc: BaseException, where: Path) -> str | None:
    """Why a write under `where` failed, when the cause is the disk (full, read-only, no permission)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                  errno.EPERM):
        return exc.strerror or os.strerror(exc.errno)
    text = str(exc)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    if "No space left on device" in text or "os error 28" in text or (free is not None and free < LOW_DISK_BYTES):
        return f"{os.strerror(errno.ENOSPC)} ({free} bytes free)" if free is not None else os.strerror(errno.ENOSPC)
    return None
