"""Paths of runs' files are stored relative to the artifact root, and submit directories relative to the project root,
so that two machines that see the same storage at different places read each other's runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.registry.roots import ProjectRootMissing, Roots


def test_a_run_file_is_stored_relative_to_the_artifact_root_and_found_under_another(tmp_path):
    storage = tmp_path / "storage"
    (storage / "runs" / "3").mkdir(parents=True)
    (tmp_path / "mnt").symlink_to(storage)  # the second machine's mount of the same storage
    here, there = Roots.at(storage), Roots.at(tmp_path / "mnt")
    checkpoint = here.run_dir(3) / "checkpoints" / "checkpoint-10"
    assert here.stored(checkpoint) == "runs/3/checkpoints/checkpoint-10"
    assert there.artifact(here.stored(checkpoint)) == tmp_path / "mnt" / "runs" / "3" / "checkpoints" / "checkpoint-10"
    # A path reached through the symlink (resolved or not) is still under the root.
    assert there.stored(storage / "runs" / "3") == "runs/3"
    assert here.stored(tmp_path / "mnt" / "runs" / "3") == "runs/3"


def test_paths_outside_the_root_and_absolute_stored_paths_stay_as_they_are(tmp_path):
    roots = Roots.at(tmp_path / "art")
    assert roots.stored(tmp_path / "elsewhere" / "x") == str(tmp_path / "elsewhere" / "x")
    assert roots.artifact("/old/home/runs/1").as_posix() == "/old/home/runs/1"
    assert roots.run_output(None, 7) == tmp_path / "art" / "runs" / "7"
    assert roots.evals_dir() == tmp_path / "art" / "evals"


def test_a_submit_directory_under_the_project_root_is_stored_relative_to_it(tmp_path):
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (tmp_path / "other-mount").symlink_to(project)
    submitting = Roots.at(tmp_path / "a", project)
    stored = submitting.stored_workdir(project / "specs")
    assert stored == "specs"
    assert submitting.stored_workdir(project) == "."
    assert Roots.at(tmp_path / "b", tmp_path / "other-mount").workdir(stored) == tmp_path / "other-mount" / "specs"
    # Outside the project root, or with none named, the directory is stored as it is: absolute.
    assert submitting.stored_workdir(tmp_path) == str(tmp_path)
    assert Roots.at(tmp_path / "a").stored_workdir(project / "specs") == str(project / "specs")
    assert Roots.at(tmp_path / "a").workdir(str(tmp_path)) == tmp_path


def test_a_relative_submit_directory_needs_a_project_root_here(tmp_path):
    with pytest.raises(ProjectRootMissing, match="set TUNELAB_PROJECT"):
        Roots.at(tmp_path).workdir("specs")


def test_roots_are_made_absolute_without_resolving_symlinks(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    roots = Roots.at(Path("link"), Path("~"))
    assert roots.artifacts == tmp_path / "link"
    assert roots.project is not None and roots.project.is_absolute() and "~" not in str(roots.project)
