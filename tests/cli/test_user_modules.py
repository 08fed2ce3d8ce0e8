"""A user's own runner.py, registry.py, reports.py and experiments/ package in the working directory change
nothing for `tunelab run`: the installed distribution owns one import name, `tunelab`.

(The torchrun path, whose processes start in the worker's working directory, is tested in
tests/runner/training/test_distributed.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import plant_user_modules, write_spec

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["console script", "python -m tunelab"])
def test_tunelab_run_ignores_a_users_modules_in_the_working_directory(tmp_path, tiny_model_dir, how):
    # The console script does not put the working directory on sys.path, so even a `tunelab.py` there is
    # harmless; `python -m` does (Python's rule), so only the folders' names are planted for it.
    work = plant_user_modules(tmp_path / "work", tunelab=how == "console script")
    write_spec(work / "spec.toml", name="user-modules", model_dir=tiny_model_dir, max_steps=2, save_every=2, tasks=(),
               baseline=False)
    command = [str(Path(sys.executable).with_name("tunelab"))] if how == "console script" else [sys.executable, "-m",
                                                                                                  "tunelab"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    done = subprocess.run([*command, "--home", str(tmp_path / "home"), "run", "--quiet", "--json", "spec.toml"],
                          cwd=work, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert "was imported" not in done.stderr
