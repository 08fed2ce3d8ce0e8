"""Spec loading: validation errors name file, line and field; extends merges; hashing is canonical."""

from __future__ import annotations

import pytest
from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.errors import SpecError
from tunelab.experiments.loader import load_spec

from tests.helpers import MINIMAL_SPEC, write_file


def test_minimal_spec_gets_defaults(tmp_path):
    loaded = load_spec(write_file(tmp_path, MINIMAL_SPEC))
    assert loaded.spec.method.kind == "lora"
    assert loaded.spec.eval.tasks == ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    assert loaded.spec.train.save_every == 20


def test_missing_required_field_names_file_and_field(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC.replace('train = "examples/data/capitals_train.jsonl"\n', ""))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    error = info.value
    assert error.field == "data.train"
    assert error.path == path
    assert error.line == 7  # the [data] table header
    assert str(error).startswith(f"{path}:7: data.train: ")
    assert "missing" in str(error)


def test_wrong_type_names_line_and_field(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + '\n[train]\nepochs = 1\nlearning_rate = "fast"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "train.learning_rate"
    assert info.value.line == 12
    assert "'fast'" in str(info.value)


def test_out_of_range_value(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + "\n[method]\nkind = \"lora\"\nr = 0\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "method.r"
    assert info.value.line == 12
    assert "greater than 0" in str(info.value)


def test_broken_toml_names_line_and_column(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + "\n[train]\nepochs = = 2\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.line == 11
    assert info.value.column is not None
    assert "invalid TOML" in str(info.value)


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + "\n[train]\nlearning_rat = 0.1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "train.learning_rat"
    assert 'did you mean "learning_rate"' in str(info.value)
    assert info.value.line == 11


def test_lora_keys_on_full_finetune_are_rejected(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + '\n[method]\nkind = "full"\nr = 8\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "full fine-tune" in str(info.value)


def test_unknown_method_kind(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + '\n[method]\nkind = "magic"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "method.kind"
    assert "'magic'" in str(info.value)


def test_extends_deep_merges_child_wins(tmp_path):
    write_file(tmp_path, MINIMAL_SPEC + "\n[train]\nlearning_rate = 0.5\nbatch_size = 4\n", "base.toml")
    child = write_file(tmp_path, '[experiment]\nname = "child"\nextends = "base.toml"\n\n[train]\nbatch_size = 2\n')
    spec = load_spec(child).spec
    assert spec.experiment.name == "child"
    assert spec.train.learning_rate == 0.5
    assert spec.train.batch_size == 2
    assert spec.model.base == "examples/models/tiny-llama"


def test_extends_cycle_is_an_error(tmp_path):
    write_file(tmp_path, MINIMAL_SPEC.replace('name = "t"', 'name = "a"\nextends = "b.toml"'), "a.toml")
    write_file(tmp_path, MINIMAL_SPEC.replace('name = "t"', 'name = "b"\nextends = "a.toml"'), "b.toml")
    with pytest.raises(SpecError, match="cycle"):
        load_spec(tmp_path / "a.toml")


def test_extends_missing_file(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC.replace('name = "t"', 'name = "a"\nextends = "nope.toml"'))
    with pytest.raises(SpecError, match="not found") as info:
        load_spec(path)
    assert info.value.line == 3


def test_hash_ignores_formatting_and_explicit_defaults(tmp_path):
    a = load_spec(write_file(tmp_path, MINIMAL_SPEC, "a.toml")).spec
    b_text = MINIMAL_SPEC + "\n[train]\nlearning_rate = 0.0002   # the default, written differently\n"
    b = load_spec(write_file(tmp_path, b_text, "b.toml")).spec
    c = load_spec(write_file(tmp_path, MINIMAL_SPEC + "\n[train]\nlearning_rate = 3e-4\n", "c.toml")).spec
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(a) != spec_hash(c)


def test_example_specs_are_valid(repo_root):
    paths = sorted((repo_root / "examples" / "specs").glob("*.toml"))
    assert len(paths) >= 3, "the examples should hold specs to check"
    names = [load_spec(path).spec.experiment.name for path in paths]
    assert all(names) and len(set(names)) == len(names)
