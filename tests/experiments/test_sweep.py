"""[sweep] expansion: Cartesian product, naming, and errors pointing at the sweep key."""

from __future__ import annotations

import pytest
from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.errors import SpecError
from tunelab.experiments.loader import load_spec, load_specs

SPEC = """\
[experiment]
name = "sw"

[model]
base = "m"

[data]
train = "t.jsonl"

[sweep]
"method.r" = [8, 16]
"train.learning_rate" = [1e-4, 2e-4]
"""


def test_cartesian_product_in_declaration_order(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    loaded = load_specs(path)
    assert [item.spec.experiment.name for item in loaded] == [
        "sw/method.r=8,train.learning_rate=0.0001",
        "sw/method.r=8,train.learning_rate=0.0002",
        "sw/method.r=16,train.learning_rate=0.0001",
        "sw/method.r=16,train.learning_rate=0.0002",
    ]
    assert [(i.spec.method.r, i.spec.train.learning_rate) for i in loaded] == [
        (8, 1e-4), (8, 2e-4), (16, 1e-4), (16, 2e-4)]
    assert loaded[0].sweep_point == {"method.r": 8, "train.learning_rate": 1e-4}
    assert len({spec_hash(i.spec) for i in loaded}) == 4


def test_bad_sweep_value_points_at_the_sweep_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC.replace("[8, 16]", "[8, 0]"))
    with pytest.raises(SpecError) as info:
        load_specs(path)
    assert info.value.field == "method.r"
    assert info.value.line == 11
    assert "greater than 0" in str(info.value)


def test_unknown_sweep_key_is_an_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC.replace('"method.r"', '"method.rank"'))
    with pytest.raises(SpecError, match="unknown key"):
        load_specs(path)


def test_empty_sweep_list_is_an_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC.replace("[8, 16]", "[]"))
    with pytest.raises(SpecError) as info:
        load_specs(path)
    assert info.value.field == "sweep.method.r"
    assert info.value.line == 11


def test_load_spec_refuses_a_sweep(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    with pytest.raises(SpecError, match="sweep of 4"):
        load_spec(path)
