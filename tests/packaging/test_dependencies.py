"""What pyproject.toml declares: every package the code imports (checked by deptry), compatible ranges, and the
exact tested set in constraints.txt that this environment was installed from."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DECLARED = [Requirement(line) for line in PYPROJECT["dependencies"]] + [
    Requirement(line) for extra in PYPROJECT["optional-dependencies"].values() for line in extra]


def deptry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deptry", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False)


def pins() -> dict[str, Version]:
    pinned = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pin = line.partition("==")
            assert pin, f"constraints.txt: {line!r} is not NAME==VERSION"
            pinned[canonicalize_name(name)] = Version(pin)
    return pinned


def test_the_shipped_code_and_scripts_import_only_declared_runtime_packages():
    # pyproject's [tool.deptry] applies: tests/ is left out by default and benchmarks/ here, since both
    # may use the dev extra, which a user's install does not have.
    done = deptry(".", "--extend-exclude", "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr


def test_tests_and_benchmarks_import_only_declared_packages():
    # Dev packages are fine here (DEP004), and not every declared package is used here (DEP002); every
    # import must still be declared, not merely installed as another package's dependency.
    done = deptry("tests", "benchmarks", "--exclude", r"\.venv", "--ignore", "DEP002,DEP004")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_declared_package_has_a_range_not_a_pin():
    for requirement in DECLARED:
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators, f"{requirement}: the tested version should be the floor"
        assert "==" not in operators, f"{requirement}: exact pins belong in constraints.txt"


def test_constraints_pin_every_declared_package_inside_its_range():
    pinned = pins()
    for requirement in DECLARED:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is declared, but constraints.txt does not pin it (make constraints)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"constraints.txt pins {name}=={pinned[name]}, outside the declared {requirement}"


def test_this_environment_is_the_pinned_set():
    # What the suite tests is what constraints.txt records (torch's +cpu build label aside).
    pinned = pins()
    wrong = {}
    for requirement in DECLARED:
        name = canonicalize_name(requirement.name)
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            installed = None
        if installed is None or installed.public != str(pinned[name]):
            wrong[name] = (str(pinned[name]), installed and str(installed))
    assert wrong == {}, f"installed versions differ from constraints.txt (pin, installed): {wrong}"
