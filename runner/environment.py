"""What a run executed with: interpreter and library versions, accelerators, and the source commit.

Stored on the run so a result can be traced to its software. Only facts about installed
software, devices and the submit directory's git state are read; never environment
variables, which is where secrets live.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "peft", "accelerate", "trl", "bitsandbytes", "lm-eval", "datasets", "tokenizers")
GIT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None: the directory is not in a git work tree (or git is missing)
    dirty: bool | None  # tracked files modified or staged; untracked files don't count


@dataclass(frozen=True)
class Environment:
    python: str
    platform: str
    packages: dict[str, str | None]  # None: not installed
    cuda_available: bool
    cuda_version: str | None
    gpus: list[str] = field(default_factory=list)
    git: GitState = field(default_factory=lambda: GitState(None, None))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def _git(workdir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(workdir), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(workdir: Path) -> GitState:
    """The commit checked out in `workdir` and whether tracked files differ from it."""
    commit = _git(workdir, "rev-parse", "HEAD")
    if commit is None:
        return GitState(None, None)
    status = _git(workdir, "status", "--porcelain", "--untracked-files=no")
    return GitState(commit, None if status is None else status != "")


def snapshot(workdir: Path) -> Environment:
    """The environment of this process, for a run whose spec was submitted from `workdir`."""
    import torch

    cuda = torch.cuda.is_available()
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        packages=package_versions(),
        cuda_available=cuda,
        cuda_version=torch.version.cuda,
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        git=git_state(workdir),
    )
