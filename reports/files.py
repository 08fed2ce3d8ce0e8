"""Writing a report's files, and the links between them.

A file is written whole or not at all: into a temporary file created exclusively (O_EXCL: never one that is
already there, such as a link planted at a guessable name) in the target directory, then renamed over the
target. A link is "./" or "../" and URL-quoted names, so that no file name can be read as a URL scheme
("report-2024-05-01T12:00_runs/..." is not the scheme "report-2024-05-01t12"), a query or a fragment.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from urllib.parse import quote

from tunelab.experiments.errors import TunelabError

# Tries at a fresh temporary name before giving up (each name is 48 random bits: a clash is someone's doing).
_TEMP_TRIES = 16


class ReportWriteError(TunelabError):
    """A report file that cannot be written (a directory that refuses writes, a full disk)."""

    @classmethod
    def of(cls, path: Path, error: OSError) -> ReportWriteError:
        # A message alone as its argument: the error crosses from a forked page writer by pickle.
        return cls(f"cannot write {path}: {error.strerror or error}")


def relative_href(*names: str, up: bool = False) -> str:
    """A link from a page to a file beside it (or, `up`, beside its folder), through folders `names[:-1]`."""
    return ("../" if up else "./") + "/".join(quote(name, safe="") for name in names)


def _create_exclusive(path: Path) -> int:
    # 0o666 and the user's umask, as for any file the user writes; never through an existing file or link.
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def _temporary(target: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside `target`, open for writing."""
    for _ in range(_TEMP_TRIES):
        candidate = _temporary_name(target)
        try:
            return _create_exclusive(candidate), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        # mkdir says "File exists" of a file where the directory should be: say what is wrong with it.
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory)) from None


def check_writable(directory: Path, target: Path) -> None:
    """Create `directory` if need be and make sure a file can be written in it; ReportWriteError naming `target`
    otherwise. Called before a report writes anything, so that a refusal leaves nothing behind."""
    try:
        _make_directory(directory)
        handle, probe = _temporary(directory / target.name)
        os.close(handle)
        probe.unlink()
    except OSError as exc:
        raise ReportWriteError.of(target, exc) from None


def write_atomically(path: Path, text: str) -> None:
    """Write `path` so that a reader never sees a half-written file, and nothing is left of a failed write."""
    try:
        _make_directory(path.parent)
        handle, temporary = _temporary(path)
    except OSError as exc:
        raise ReportWriteError.of(path, exc) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ReportWriteError.of(path, exc) from None
        raise
