"""The built wheel: one import name, `tunelab`, holding every room of the repository; installed into a fresh
virtual environment it runs the command line and a small training run, from a folder of decoy modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, write_spec

# The repository folders and the import names they install as (pyproject.toml's package-dir).
ROOMS = {"tunelab": "tunelab", "experiments": "tunelab/experiments", "registry": "tunelab/registry",
         "runner": "tunelab/runner", "reports": "tunelab/reports"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline, with this environment's setuptools, from a copy of what the build reads (so
    that nothing is written into the working tree)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    for folder in ROOMS:
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(out), str(source)], check=True)
    (built,) = out.glob("tunelab-*.whl")
    return built


def test_the_wheel_holds_one_import_name_with_every_room_in_it(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/RECORD"))
        record = archive.read(f"{dist_info}/RECORD").decode()
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
    files = {line.split(",")[0] for line in record.splitlines() if line}
    assert top_level == ["tunelab"]
    assert {path.split("/")[0] for path in files} == {"tunelab", dist_info}
    # Every module and template of every room ships, under its tunelab.* name (a sub-package left out of
    # pyproject's package list would be missing here).
    expected = {f"{ROOMS[folder]}/{path.relative_to(REPO_ROOT / folder).as_posix()}"
                for folder in ROOMS for path in (REPO_ROOT / folder).rglob("*")
                if path.suffix in (".py", ".j2", ".mako") and "__pycache__" not in path.parts}
    assert expected - files == set()


def _site_packages(venv: Path) -> Path:
    asked = [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    return Path(subprocess.run(asked, capture_output=True, text=True, check=True).stdout.strip())


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_the_cli_and_a_training_run(wheel, tmp_path, tiny_model_dir):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The third-party packages come from this environment (no download); this environment's own site
    # directory is only appended to sys.path, so its .pth files (the editable tunelab) stay inactive.
    (_site_packages(venv) / "test_environment.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True)

    # The user's folder holds modules named like the repository's folders: none may be imported.
    work = tmp_path / "work"
    (work / "experiments").mkdir(parents=True)
    for decoy in ("runner.py", "registry.py", "reports.py", "experiments/__init__.py"):
        (work / decoy).write_text(f"raise SystemExit('the user\\'s {decoy} was imported')\n")
    environ = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ |= {"PATH": f"{venv / 'bin'}{os.pathsep}{environ.get('PATH', '')}"}

    def tunelab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "tunelab"), "--home", str(work / "home"), *args], cwd=work,
                              env=environ, capture_output=True, text=True, check=False)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import tunelab; print(tunelab.__file__)"],
                           cwd=work, env=environ, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(_site_packages(venv) / "tunelab")

    help_text = tunelab("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "run" in help_text.stdout and "worker" in help_text.stdout

    spec = write_spec(work / "tiny.toml", name="from-wheel", model_dir=tiny_model_dir, max_steps=2, save_every=2,
                      tasks=(), limit=2, baseline=False)
    ran = tunelab("run", "--quiet", str(spec))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (run,) = json.loads(tunelab("ls", "--json").stdout)
    detail = json.loads(tunelab("show", str(run["run_id"]), "--json").stdout)
    assert detail["summary"]["status"] == "succeeded", detail["summary"]["error"]
    assert [m["step"] for m in detail["metrics"] if m["loss"] is not None] == [1, 2]
    assert {score["task"] for score in detail["scores"]} == {"capitals"}
