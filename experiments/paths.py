"""Where a path written in a spec points: the one rule for every file and directory a spec names."""

from __future__ import annotations

from pathlib import Path


def spec_path(raw: str, workdir: Path) -> Path:
    """A path from a spec as the filesystem knows it: `~` expanded, and a relative path taken from `workdir`, the
    directory submit ran in (the experiment's stored workdir). Not resolved: symlinks stay as written."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(workdir) / path
