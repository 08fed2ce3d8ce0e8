"""A model name is read one way everywhere (training, evaluation, lineage, doctor): directory, run, hub id, missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.experiments.paths import spec_path
from tunelab.runner.errors import RunFailed
from tunelab.runner.evaluation.targets import EvalTargetError, model_dir_for
from tunelab.runner.training.models import ModelLocation, locate_model, resolve_model_path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models" / "mine").mkdir(parents=True)
    (tmp_path / "submit" / "models" / "local").mkdir(parents=True)
    return tmp_path / "submit"


def test_a_model_name_is_a_directory_a_run_a_hub_id_or_missing(workdir, tmp_path):
    home = tmp_path / "home"
    assert locate_model("models/local", workdir) == ModelLocation("directory", workdir / "models" / "local")
    assert locate_model("~/models/mine", workdir) == ModelLocation("directory", home / "models" / "mine")
    assert locate_model(str(home / "models" / "mine"), workdir).kind == "directory"
    assert locate_model("run:12", workdir) == ModelLocation("run", run_id=12)
    assert locate_model("org/model", workdir) == ModelLocation("hub")
    # Written as a path: a directory that is not there is never taken for a hub id.
    for name in ("./gone", "~/gone", "/gone/model", "models/gone/deeper"):
        assert locate_model(name, workdir) == ModelLocation("missing", spec_path(name, workdir)), name


def test_training_and_evaluation_read_a_base_alike(workdir):
    assert resolve_model_path("~/models/mine", workdir) == str(model_dir_for("~/models/mine", workdir=workdir))
    assert resolve_model_path("org/model", workdir) == "org/model"
    with pytest.raises(RunFailed, match="not found: .*gone"):
        resolve_model_path("./gone", workdir)
    with pytest.raises(EvalTargetError, match="gone does not exist"):
        model_dir_for("./gone", workdir=workdir)
    with pytest.raises(RunFailed, match="names a run"):
        resolve_model_path("run:3", workdir)

