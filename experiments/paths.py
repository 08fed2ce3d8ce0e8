"""Where a path written in a spec points: the one rule for every file and directory a spec names, and the one
reading of a model name (a local directory, an earlier run, or a hub id)."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# model.base = "run:ID": the final weights of an earlier run (the schema checks the form with this too).
RUN_BASE = re.compile(r"run:(\d+)")


def spec_path(raw: str, workdir: Path) -> Path:
    """A path from a spec as the filesystem knows it: `~` expanded, and a relative path taken from `workdir`, the
    directory submit ran in (the experiment's stored workdir). Not resolved: symlinks stay as written."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(workdir) / path


def file_kind(mode: int) -> str:
    """What a stat mode says a path is, in words: "a regular file", "a directory", "a FIFO (named pipe)"..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


@dataclass(frozen=True)
class ModelLocation:
    """Where a model named in a spec's model.base (or on the command line) is."""

    kind: Literal["directory", "run", "hub", "missing"]
    path: Path | None = None  # the directory (resolved); for "missing", the path that does not exist
    run_id: int | None = None  # for "run": run:ID, that run's final weights


def written_as_path(name: str) -> bool:
    """A model name that can only mean a local path: it starts with ".", "/" or "~", or has more than one "/"."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def locate_model(name: str, workdir: Path) -> ModelLocation:
    """The one reading of a model name: a local directory (`~` expanded, relative to `workdir`, the directory
    submit ran in), else run:ID, else a hub id; a name written as a path (starting with ".", "/" or "~", or with
    more than one "/") whose directory does not exist is "missing", never taken for a hub id."""
    candidate = spec_path(name, workdir)
    if candidate.is_dir():
        return ModelLocation("directory", candidate.resolve())
    if run := RUN_BASE.fullmatch(name):
        return ModelLocation("run", run_id=int(run.group(1)))
    if written_as_path(name):
        return ModelLocation("missing", candidate)
    return ModelLocation("hub")
