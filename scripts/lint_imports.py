"""Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter's `lint-imports`.

The repository's folders install as sub-packages of one import name (pyproject's package-dir mapping:
runner/ -> tunelab.runner, ...), a layout an import graph built from the checkout cannot see. So the
packages pyproject lists are first laid out as they install, in a temporary directory, and `lint-imports`
runs there. A package missing from pyproject's list is missing from the graph too, and the contracts say so.

Usage: python scripts/lint_imports.py [lint-imports options]   (make lint runs it; so does the test suite)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def folder_of(package: str, package_dir: dict[str, str]) -> Path:
    """The repository folder a package installs from, by setuptools' rule: the longest mapped prefix."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return REPO / package_dir[prefix] / Path(*parts[cut:])
    return REPO / Path(*parts)


def lay_out_installed(target: Path) -> None:
    """Copy the Python files of every package pyproject lists to where an install would put them."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for package in setuptools["packages"]:
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for source in folder_of(package, setuptools.get("package-dir", {})).glob("*.py"):
            shutil.copy2(source, destination / source.name)


def lint_imports(layout: Path, argv: list[str], **run: object) -> subprocess.CompletedProcess:
    """Run `lint-imports` (with `argv`) over a laid-out tree, against the contracts in pyproject.toml."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", *argv, str(REPO / "pyproject.toml")]
    # lint-imports puts its working directory first on sys.path: there it finds the laid-out `tunelab`.
    return subprocess.run(command, cwd=layout, check=False, **run)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="tunelab-imports-") as tmp:
        lay_out_installed(Path(tmp))
        return lint_imports(Path(tmp), argv).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
