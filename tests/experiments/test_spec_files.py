"""What a spec names is checked before anything is stored or trained: each eval task is known, each file and
directory is there, of the right kind and readable. Errors name the file, line and field that wrote it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from tunelab.experiments.benchmarks import MMLU_SUBJECTS
from tunelab.experiments.canonical import canonical_json, experiment_hash, resolved_dict, spec_hash
from tunelab.experiments.errors import SpecError
from tunelab.experiments.files import check_spec_files
from tunelab.experiments.loader import load_for_submit, load_spec
from tunelab.experiments.schema import stored_spec

from tests.helpers import MINIMAL_SPEC, REPO_ROOT, write_file, write_task_dir

# MINIMAL_SPEC with absolute paths, for specs checked from another directory than the repository.
ABSOLUTE_SPEC = MINIMAL_SPEC.replace('"examples/', f'"{REPO_ROOT}/examples/')


def refused(path: Path, workdir: Path = REPO_ROOT) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_for_submit([path], workdir)
    return info.value


# ---------------------------------------------------------------- eval tasks


def test_an_unknown_eval_task_is_refused_at_its_line_with_the_nearest_name(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + '\n[eval]\ntasks = ["arc_challenge", "truthfulqa"]\n')
    error = refused(path)
    assert (error.path, error.line, error.field) == (path, 11, "eval.tasks")
    assert error.message == 'unknown eval task "truthfulqa" (did you mean "truthfulqa_mc2"?)'


@pytest.mark.parametrize(("tasks", "expected"), [
    ('["mmlu_astrology"]', 'unknown eval task "mmlu_astrology" (did you mean "mmlu_astronomy"?)'),
    ('["mmlu", "mmlu_anatomy"]', "names both mmlu (all 57 subjects) and single subjects (mmlu_anatomy)"),
    ('["gsm8k"]', 'unknown eval task "gsm8k": known are arc_challenge, hellaswag, mmlu, truthfulqa_mc2, '
                  "mmlu_<subject>, the [[eval.custom]] names and the tasks of an [eval] include_path directory"),
])
def test_task_names_the_harness_would_refuse_are_refused_at_submit(tmp_path, tasks, expected):
    error = refused(write_file(tmp_path, MINIMAL_SPEC + f"\n[eval]\ntasks = {tasks}\n"))
    assert error.field == "eval.tasks" and error.message.startswith(expected)


def test_every_kind_of_task_name_is_known(tmp_path):
    write_task_dir(tmp_path)
    custom = tmp_path / "mine.jsonl"
    custom.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n', encoding="utf-8")
    spec = ABSOLUTE_SPEC + (
        '\n[eval]\ntasks = ["arc_challenge", "mmlu_anatomy", "mmlu_world_religions", "capitals_yaml", "mine"]\n'
        f'include_path = "tasks"\n\n[[eval.custom]]\nname = "mine"\npath = "{custom}"\n')
    (loaded,) = load_for_submit([write_file(tmp_path, spec)], tmp_path)
    assert loaded.spec.eval.harness_tasks == ["arc_challenge", "mmlu_anatomy", "mmlu_world_religions", "capitals_yaml"]


def test_include_path_names_its_tasks_groups_and_tags(tmp_path):
    write_task_dir(tmp_path)
    base = ABSOLUTE_SPEC + '\n[eval]\ninclude_path = "tasks"\n'
    typo = refused(write_file(tmp_path, base + 'tasks = ["capitals_yml"]\n'), tmp_path)
    assert typo.message == 'unknown eval task "capitals_yml" (did you mean "capitals_yaml"?)'
    group = refused(write_file(tmp_path, base + 'tasks = ["all_mine"]\n'), tmp_path)
    assert group.message == (f'unknown eval task "all_mine": it is an lm-eval group in include_path '
                             f"{tmp_path / 'tasks'}; name its tasks instead")
    far = refused(write_file(tmp_path, base + 'tasks = ["zzz"]\n'), tmp_path)
    assert far.message.endswith("(its tasks: capitals_yaml)")


def test_a_custom_task_named_like_a_benchmark_is_refused_at_its_name(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + '\n[[eval.custom]]\nname = "hellaswag"\n'
                      f'path = "{REPO_ROOT}/examples/data/capitals_mc.jsonl"\n')
    error = refused(path)
    assert (error.line, error.field) == (11, "eval.custom.0.name")
    assert "leaderboard benchmark" in error.message


def test_the_mmlu_subjects_are_the_installed_lm_evals():
    from tunelab.runner.evaluation.leaderboard import mmlu_subjects, official_tasks_dir

    assert list(MMLU_SUBJECTS) == mmlu_subjects(official_tasks_dir())
    assert sorted(p.name for p in (REPO_ROOT / "examples" / "benchmarks" / "mmlu").iterdir()) == list(MMLU_SUBJECTS)


# ---------------------------------------------------------------- files and directories


@pytest.mark.parametrize(("block", "line", "field", "message"), [
    ('[data]\ntrain = "missing.jsonl"\n', 8, "data.train", "file not found: {tmp}/missing.jsonl"),
    ('[data]\ntrain = "."\n', 8, "data.train", "is a directory, not a file: {tmp}"),
    ('[data]\ntrain = "{repo}/examples/data/capitals_train.jsonl"\nvalidation = "val.jsonl"\n', 9, "data.validation",
     "file not found: {tmp}/val.jsonl"),
    ('[data]\ntrain = "{repo}/examples/data/capitals_train.jsonl"\n\n[[eval.custom]]\nname = "c"\npath = "c.jsonl"\n',
     12, "eval.custom.0.path", "file not found: {tmp}/c.jsonl"),
    ('[data]\n[[data.train]]\npath = "{repo}/examples/data/capitals_train.jsonl"\n[[data.train]]\npath = "b.jsonl"\n',
     11, "data.train.1.path", "file not found: {tmp}/b.jsonl"),
    ('[data]\ntrain = "{repo}/examples/data/capitals_train.jsonl"\n[eval]\ninclude_path = "no-tasks"\n', 10,
     "eval.include_path", "directory not found: {tmp}/no-tasks"),
    ('[data]\ntrain = "{repo}/examples/data/capitals_train.jsonl"\n[eval]\nbenchmarks_dir = "{repo}/README.md"\n', 10,
     "eval.benchmarks_dir", "is a regular file, not a directory: {repo}/README.md"),
])
def test_a_missing_or_misplaced_file_is_refused_at_its_line(tmp_path, block, line, field, message):
    text = f'[experiment]\nname = "t"\n\n[model]\nbase = "{REPO_ROOT}/examples/models/tiny-llama"\n\n{block}'
    path = write_file(tmp_path, text.format(repo=REPO_ROOT, tmp=tmp_path))
    error = refused(path, tmp_path)
    assert (error.path, error.line, error.field) == (path, line, field)
    assert error.message == message.format(repo=REPO_ROOT, tmp=tmp_path)


@pytest.mark.parametrize(("base", "message"), [
    ("./no-model", "base model directory not found: {tmp}/no-model"),
    ("{repo}/README.md", "is a regular file, not a base model directory: {repo}/README.md"),
])
def test_a_model_path_that_is_no_model_directory_is_refused(tmp_path, base, message):
    spec = MINIMAL_SPEC.replace('base = "examples/models/tiny-llama"', f'base = "{base}"').format(repo=REPO_ROOT)
    error = refused(write_file(tmp_path, spec.replace("examples/data", f"{REPO_ROOT}/examples/data")), tmp_path)
    assert (error.line, error.field) == (5, "model.base")
    assert error.message == message.format(repo=REPO_ROOT, tmp=tmp_path)


def test_a_hub_id_and_an_earlier_run_are_not_files(tmp_path):
    for base in ("some-org/some-model", "run:3"):
        spec = MINIMAL_SPEC.replace('"examples/models/tiny-llama"', f'"{base}"')
        (loaded,) = load_for_submit([write_file(tmp_path, spec)], REPO_ROOT)
        assert loaded.spec.model.base == base


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    error = refused(write_file(tmp_path, ABSOLUTE_SPEC.replace(f"{REPO_ROOT}/examples/data/capitals_train.jsonl",
                                                               "pipe.jsonl")), tmp_path)
    assert error.message == f"is a FIFO (named pipe), not a file: {tmp_path / 'pipe.jsonl'}"


def test_an_unreadable_file_is_refused(tmp_path, monkeypatch):
    data = tmp_path / "secret.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    real_open = os.open

    def open_as_another_user(path, flags, *args, **kwargs):
        # Permissions do not stop root (which runs these tests in CI): the refusal a user would get, simulated.
        if Path(path) == data:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    spec = write_file(tmp_path, MINIMAL_SPEC.replace("examples/data/capitals_train.jsonl", str(data)))
    monkeypatch.setattr(os, "open", open_as_another_user)
    error = refused(spec)
    assert (error.field, error.message) == ("data.train", f"cannot be read (Permission denied): {data}")


def test_a_path_written_in_an_extended_file_is_located_there(tmp_path):
    parent = write_file(tmp_path, MINIMAL_SPEC.replace("capitals_train.jsonl", "gone.jsonl"), "base.toml")
    child = write_file(tmp_path, '[experiment]\nname = "child"\nextends = "base.toml"\n\n[train]\nmax_steps = 2\n')
    error = refused(child)
    assert (error.path, error.line, error.field) == (parent, 8, "data.train")


def test_a_swept_path_is_located_at_its_sweep_key(tmp_path):
    spec = MINIMAL_SPEC + '\n[sweep]\n"data.train" = ["examples/data/capitals_train.jsonl", "gone.jsonl"]\n'
    error = refused(write_file(tmp_path, spec))
    assert (error.line, error.field) == (11, "data.train")
    assert error.message == f"file not found: {REPO_ROOT / 'gone.jsonl'}"


def test_a_stored_spec_is_checked_against_the_files_as_they_are_now(tmp_path):
    """What a worker calls before it trains: files that vanished since submit fail the run at once."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "i", "output": "o"}\n', encoding="utf-8")
    path = write_file(tmp_path, ABSOLUTE_SPEC.replace(f"{REPO_ROOT}/examples/data/capitals_train.jsonl",
                                                      "train.jsonl"))
    (loaded,) = load_for_submit([path], tmp_path)
    stored = stored_spec(canonical_json(resolved_dict(loaded.spec)))
    check_spec_files(stored, tmp_path, path="spec.toml")  # all there
    data.unlink()
    with pytest.raises(SpecError) as info:
        check_spec_files(stored, tmp_path, path="spec.toml")
    assert str(info.value) == f"spec.toml: data.train: file not found: {data}"


# ---------------------------------------------------------------- what the registry's key covers


def test_relative_paths_are_part_of_the_experiments_key(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "examples").mkdir(parents=True)
        (tmp_path / name / "examples" / "models").symlink_to(REPO_ROOT / "examples" / "models")
        (tmp_path / name / "examples" / "data").symlink_to(REPO_ROOT / "examples" / "data")
    (loaded,) = load_for_submit([write_file(tmp_path, MINIMAL_SPEC)], tmp_path / "a")
    spec = loaded.spec
    from_a, from_b = experiment_hash(spec, tmp_path / "a"), experiment_hash(spec, tmp_path / "b")
    assert from_a != from_b and spec_hash(spec) not in (from_a, from_b)
    assert experiment_hash(spec, tmp_path / "a") == from_a
    absolute = load_spec(write_file(tmp_path, MINIMAL_SPEC.replace('"examples/', f'"{REPO_ROOT}/examples/'),
                                    "abs.toml")).spec
    # A spec that names only absolute paths keeps the key it always had, from whichever directory.
    assert experiment_hash(absolute, tmp_path / "a") == experiment_hash(absolute, tmp_path / "b") == spec_hash(absolute)
