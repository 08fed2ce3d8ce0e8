"""Where this machine keeps what runs write, and where it sees the project specs were submitted from; and how the
registry stores paths under either, so that machines which mount the same storage at different places share runs.

- The artifact root holds every run's files (`runs/ID`: checkpoints, final weights, logs, evaluation files) and
  `tunelab eval`'s (`evals/`). The registry stores those paths relative to it; each machine names its own root
  (`--artifacts` / TUNELAB_ARTIFACTS, by default TUNELAB_HOME).
- The project root, when a machine names one (`--project` / TUNELAB_PROJECT), is what a spec's relative paths
  (data, model, benchmarks) hang from: `submit` inside it stores the submit directory relative to it, and every
  machine resolves that against its own project root. Without one, the submit directory is stored as it is
  (an absolute path), which serves machines that see the files at the same place.

A stored path that is absolute (written before this, or outside the root) is used as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tunelab.registry.errors import RegistryError

RUNS = "runs"
EVALS = "evals"


class ProjectRootMissing(RegistryError):
    """A path stored relative to the project root, read on a machine that names none."""


def _relative_to(path: Path, root: Path) -> PurePosixPath | None:
    """`path` below `root` as a relative posix path, comparing as written and then with symlinks resolved; None when
    it is not below it."""
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            return PurePosixPath(candidate.relative_to(base).as_posix())
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class Roots:
    """This machine's artifact root and (optional) project root, both absolute."""

    artifacts: Path
    project: Path | None = None

    @classmethod
    def at(cls, artifacts: Path, project: Path | None = None) -> Roots:
        """Roots from paths as a user gives them: `~` expanded, made absolute (symlinks kept as named)."""
        def absolute(path: Path) -> Path:
            return Path(os.path.abspath(Path(path).expanduser()))

        return cls(absolute(artifacts), absolute(project) if project is not None else None)

    # ---------------------------------------------------------------- what runs write

    def run_dir(self, run_id: int) -> Path:
        """Where run `run_id` writes on this machine."""
        return self.artifacts / RUNS / str(run_id)

    def evals_dir(self) -> Path:
        """Where `tunelab eval` writes its evaluation files."""
        return self.artifacts / EVALS

    def stored(self, path: Path | str) -> str:
        """A path as the registry stores it: relative to the artifact root when under it, else absolute."""
        path = Path(path)
        relative = _relative_to(path, self.artifacts)
        return str(relative) if relative is not None else str(path)

    def artifact(self, stored: str) -> Path:
        """A stored artifact path as this machine sees it."""
        path = Path(stored)
        return path if path.is_absolute() else self.artifacts / path

    def run_output(self, stored: str | None, run_id: int) -> Path:
        """A run's output directory here: its stored one, or where it would be written (not run yet)."""
        return self.artifact(stored) if stored else self.run_dir(run_id)

    # ---------------------------------------------------------------- where specs were submitted from

    def stored_workdir(self, cwd: Path | str) -> str:
        """The submit directory as the registry stores it: relative to the project root when under it."""
        cwd = Path(os.path.abspath(cwd))
        if self.project is not None:
            relative = _relative_to(cwd, self.project)
            if relative is not None:
                return str(relative)
        return str(cwd)

    def workdir(self, stored: str) -> Path:
        """A stored submit directory as this machine sees it; ProjectRootMissing when it hangs from a project root
        and this machine names none."""
        path = Path(stored)
        if path.is_absolute():
            return path
        if self.project is None:
            raise ProjectRootMissing(
                f"the spec was submitted from {stored!r} under a project root, and this machine names none: set "
                "TUNELAB_PROJECT (or --project) to where it sees the project")
        return self.project / path
