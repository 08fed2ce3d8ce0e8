"""The [eval] settings beyond the leaderboard profile: [eval.num_fewshot] and include_path, as the spec language
validates, locates errors, hashes and describes them (JSON Schema)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from tunelab.experiments.canonical import resolved_dict, spec_hash
from tunelab.experiments.errors import SpecError
from tunelab.experiments.json_schema import spec_json_schema
from tunelab.experiments.loader import load_spec, load_specs

from tests.helpers import MINIMAL_SPEC, write_file


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def test_shots_per_task_as_a_table_or_inline(tmp_path):
    table_text = MINIMAL_SPEC + "\n[eval.num_fewshot]\narc_challenge = 0\nmmlu = 3\n"
    table = load_spec(write_file(tmp_path, table_text)).spec
    assert table.eval.num_fewshot == {"arc_challenge": 0, "mmlu": 3}
    inline_text = MINIMAL_SPEC + "\n[eval]\nnum_fewshot = { hellaswag = 0 }\n"
    inline = load_spec(write_file(tmp_path, inline_text, "b.toml")).spec
    assert inline.eval.num_fewshot == {"hellaswag": 0}
    assert load_spec(write_file(tmp_path, MINIMAL_SPEC, "c.toml")).spec.eval.num_fewshot == {}


def test_an_unknown_task_is_named_at_its_line_with_a_suggestion(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + "\n[eval.num_fewshot]\nhellaswag = 0\narc_chalenge = 0\n")
    error = error_of(path)
    assert (error.field, error.line) == ("eval.num_fewshot.arc_chalenge", 12)
    assert str(error) == (f"{path}:12: eval.num_fewshot.arc_chalenge: unknown eval task: neither a leaderboard "
                          "benchmark nor one of [eval] tasks (did you mean \"arc_challenge\"?) (got 'arc_chalenge')")


def test_negative_shots_are_refused_at_their_line(tmp_path):
    error = error_of(write_file(tmp_path, MINIMAL_SPEC + "\n[eval.num_fewshot]\narc_challenge = 0\nhellaswag = -1\n"))
    assert (error.field, error.line) == ("eval.num_fewshot.hellaswag", 12)
    assert "greater than or equal to 0" in error.message and "-1" in error.message


@pytest.mark.parametrize(
    ("block", "field", "message"),
    [
        ('[[eval.custom]]\nname = "caps"\npath = "c.jsonl"\n\n[eval.num_fewshot]\ncaps = 1\n',
         "eval.num_fewshot.caps", "custom task: set num_fewshot in its [[eval.custom]] table"),
        ('[eval]\ntasks = ["mmlu_anatomy"]\n\n[eval.num_fewshot]\nmmlu_anatomy = 1\n',
         "eval.num_fewshot.mmlu_anatomy", "set mmlu = N instead"),
        ("[eval.num_fewshot]\nmmlu = 6\n", "eval.num_fewshot", "mmlu takes at most 5 shots"),
        # A name that is not a benchmark must be one of [eval] tasks (a task of include_path).
        ('[eval]\ntasks = ["arc_challenge"]\ninclude_path = "tasks"\n\n[eval.num_fewshot]\nmy_task = 1\n',
         "eval.num_fewshot.my_task", "neither a leaderboard benchmark nor one of [eval] tasks"),
    ],
)
def test_shots_that_cannot_apply_are_errors(tmp_path, block, field, message):
    error = error_of(write_file(tmp_path, MINIMAL_SPEC + "\n" + block))
    assert error.field == field and message in error.message
    assert error.line is not None


def test_shots_for_an_include_path_task_named_in_tasks(tmp_path):
    spec = load_spec(write_file(tmp_path, MINIMAL_SPEC + '\n[eval]\ntasks = ["arc_challenge", "my_task"]\n'
                                               'include_path = "tasks"\n\n[eval.num_fewshot]\nmy_task = 3\n')).spec
    assert (spec.eval.include_path, spec.eval.num_fewshot) == ("tasks", {"my_task": 3})


def test_specs_without_the_new_keys_keep_their_canonical_form_and_hash(tmp_path):
    plain = load_spec(write_file(tmp_path, MINIMAL_SPEC)).spec
    # Exactly the [eval] keys stored before these existed, so stored hashes and eval keys stay valid.
    assert set(resolved_dict(plain)["eval"]) == {"tasks", "limit", "benchmarks_dir", "batch_size", "baseline",
                                                 "custom"}
    written = load_spec(write_file(tmp_path, MINIMAL_SPEC + "\n[eval.num_fewshot]\narc_challenge = 0\n", "b.toml")).spec
    assert spec_hash(written) != spec_hash(plain)
    assert resolved_dict(written)["eval"]["num_fewshot"] == {"arc_challenge": 0}
    # What is stored re-validates to the same spec.
    assert type(written).model_validate(resolved_dict(written)) == written


def test_shots_can_be_swept_and_a_bad_value_points_at_the_sweep(tmp_path):
    specs = load_specs(write_file(tmp_path, MINIMAL_SPEC + '\n[sweep]\n"eval.num_fewshot.arc_challenge" = [0, 25]\n'))
    assert [s.spec.eval.num_fewshot for s in specs] == [{"arc_challenge": 0}, {"arc_challenge": 25}]
    with pytest.raises(SpecError) as info:
        load_specs(write_file(tmp_path, MINIMAL_SPEC + '\n[sweep]\n"eval.num_fewshot.arc_challenge" = [0, -2]\n',
                              "b.toml"))
    assert info.value.line == 11 and "from [sweep] value -2" in str(info.value)


def test_the_json_schema_describes_shots_and_include_path():
    schema = spec_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    base = {"experiment": {"name": "x"}, "model": {"base": "m"}, "data": {"train": "t"}}
    good = base | {"eval": {"include_path": "tasks", "num_fewshot": {"arc_challenge": 0}}}
    assert list(validator.iter_errors(good)) == []
    bad = base | {"eval": {"num_fewshot": {"arc_challenge": -1}}}
    assert [e.message for e in validator.iter_errors(bad)] == ["-1 is less than the minimum of 0"]
    wrong_type = base | {"eval": {"include_path": 3}}
    assert [list(e.absolute_path) for e in validator.iter_errors(wrong_type)] == [["eval", "include_path"]]
    described = json.dumps(schema["$defs"]["EvalSection"]["properties"])
    assert "include_path" in described and "num_fewshot" in described


def test_eval_batch_size_is_a_positive_integer_or_auto(tmp_path):
    auto = write_file(tmp_path, MINIMAL_SPEC + '\n[eval]\nbatch_size = "auto"\n')
    assert load_spec(auto).spec.eval.batch_size == "auto"
    four = write_file(tmp_path, MINIMAL_SPEC + "\n[eval]\nbatch_size = 4\n", "b.toml")
    assert load_spec(four).spec.eval.batch_size == 4
    for value, name in (('"max"', "c.toml"), ("0", "d.toml")):
        error = error_of(write_file(tmp_path, MINIMAL_SPEC + f"\n[eval]\nbatch_size = {value}\n", name))
        assert (error.field, error.line) == ("eval.batch_size", 11)
        assert error.message.startswith('must be a positive integer or "auto"')
