"""The import contracts of pyproject.toml hold (scripts/lint_imports.py runs import-linter over the installed
layout; `make lint` runs it too), and each contract breaks when the code does what it forbids."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "lint_imports.py"
CONTRACTS = ("rooms", "runner-rooms", "no-cycles", "light-query-path")


def _script():
    spec = importlib.util.spec_from_file_location("lint_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_import_contracts_hold():
    done = subprocess.run([sys.executable, str(SCRIPT), "--no-logo"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in done.stdout


@pytest.mark.parametrize(("module", "added", "broken"), [
    # The old cycle at the runner's core: model loading importing the recipes that import it.
    ("tunelab/runner/training/methods.py", "from tunelab.runner.training import recipes\n", {"no-cycles"}),
    # A room reaching up into the orchestration (which imports that room: a cycle between rooms too).
    ("tunelab/runner/data/cleaning.py", "from tunelab.runner import execute\n", {"runner-rooms", "no-cycles"}),
    ("tunelab/experiments/schema.py", "from tunelab.registry import db\n", {"rooms", "no-cycles"}),
    # Reports reaching into the runner: against the layers, and (through the runner) towards torch.
    ("tunelab/reports/scores.py", "from tunelab.runner import lineage\n", {"rooms", "light-query-path"}),
    ("tunelab/registry/queries.py", "def _heavy():\n    import torch\n", {"light-query-path"}),
    ("tunelab/listing.py", "from tunelab.runner.training import models\n", {"light-query-path"}),
])
def test_each_contract_catches_what_it_forbids(tmp_path, module, added, broken):
    lint = _script()
    lint.lay_out_installed(tmp_path)
    with (tmp_path / module).open("a", encoding="utf-8") as handle:
        handle.write(added)
    failing = {contract for contract in CONTRACTS
               if lint.lint_imports(tmp_path, ["--no-logo", "--contract", contract], capture_output=True).returncode}
    assert failing == broken


def test_the_check_sees_the_installed_layout_and_every_room(tmp_path):
    lint = _script()
    lint.lay_out_installed(tmp_path)
    assert (tmp_path / "tunelab" / "runner" / "training" / "recipes.py").is_file()
    assert (tmp_path / "tunelab" / "registry" / "migrations" / "versions").is_dir()
    # A room that pyproject did not list (so an install would leave it out) is missing: the layers say so.
    shutil.rmtree(tmp_path / "tunelab" / "runner" / "evaluation")
    assert lint.lint_imports(tmp_path, ["--no-logo", "--contract", "runner-rooms"], capture_output=True).returncode
