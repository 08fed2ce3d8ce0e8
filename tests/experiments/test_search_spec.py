"""[search]: distributions, samplers and objectives validated with file:line errors; the schema covers it; grid
order is [sweep]'s; [notify] leaves the spec's hash alone."""

from __future__ import annotations

import json
import tomllib

import jsonschema
import pytest
from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.errors import SpecError
from tunelab.experiments.json_schema import spec_json_schema
from tunelab.experiments.loader import load_spec, load_specs

from tests.helpers import MINIMAL_SPEC, write_file

SEARCH = MINIMAL_SPEC + """validation = 0.25

[train]
eval_every = 2

[eval]
tasks = ["arc_challenge"]

[[eval.custom]]
name = "capitals"
path = "c.jsonl"

[search]
sampler = "tpe"
trials = 6
objective = "capitals"
pruner = "median"

[search.params]
"train.learning_rate" = {low = 1e-5, high = 1e-2, log = true}
"method.r" = {choices = [4, 8, 16]}
"train.warmup_steps" = {low = 0, high = 4}
"""


def _error(tmp_path, text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_specs(write_file(tmp_path, text))
    return caught.value


def _line(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_a_search_loads_as_one_spec_with_its_distributions(tmp_path):
    (loaded,) = load_specs(write_file(tmp_path, SEARCH))
    search = loaded.search
    assert (search.sampler, search.target_trials, search.trial_cap, search.maximize) == ("tpe", 6, 12, True)
    assert [d.describe() for d in search.params.values()] == [
        "float 1e-05 .. 0.01 log", "choice of 4, 8, 16", "int 0 .. 4"]
    assert loaded.spec.experiment.name == "t" and "search" not in loaded.raw


def test_grid_takes_the_sweep_order_and_counts_its_combinations(tmp_path):
    text = (SEARCH.replace('sampler = "tpe"\ntrials = 6', 'sampler = "grid"')
            .replace("{low = 1e-5, high = 1e-2, log = true}", "{choices = [1e-4, 1e-3]}")
            .replace('"train.warmup_steps" = {low = 0, high = 4}\n', ""))
    (loaded,) = load_specs(write_file(tmp_path, text))
    assert loaded.search.target_trials == 6
    assert [loaded.search.grid_point(n) for n in (0, 1, 5)] == [
        {"train.learning_rate": 1e-4, "method.r": 4}, {"train.learning_rate": 1e-4, "method.r": 8},
        {"train.learning_rate": 1e-3, "method.r": 16}]


@pytest.mark.parametrize(("change", "field", "needle", "message"), [
    (('objective = "capitals"', 'objective = "capitols"'), "search.objective", "objective =", "unknown objective"),
    (("validation = 0.25\n", ""), "search.pruner", "pruner =", "validation loss"),
    (("low = 1e-5, high", "lo = 1e-5, high"), "search.params.train.learning_rate.lo", '"train.learning_rate"',
     'did you mean "low"'),
    (("[4, 8, 16]", "[4, 8, 0]"), "method.r", '"method.r"', "greater than 0 (got 0) (from [search] value 0"),
    (("{low = 0, high = 4}", "{low = 4, high = 0}"), "search.params.train.warmup_steps", '"train.warmup_steps"',
     "low (4) is above high (0)"),
    (('sampler = "tpe"', 'sampler = "grid"'), "search", "[search]", "the grid sampler takes choices only"),
    (("trials = 6", "trials = 6\nmax_trials = 2"), "search", "[search]", "max_trials (2) is below trials (6)"),
    (("trials = 6", "trials = 6\nworkers = 2"), "search.workers", "workers =", "unknown key"),
])
def test_errors_name_the_file_line_and_field(tmp_path, change, field, needle, message):
    text = SEARCH.replace(*change)
    error = _error(tmp_path, text)
    assert error.field == field
    assert error.line == _line(text, needle), str(error)
    assert message in str(error)
    assert str(error).startswith(f"{tmp_path / 'spec.toml'}:{error.line}: ")


def test_a_spec_has_a_sweep_or_a_search_not_both(tmp_path):
    error = _error(tmp_path, SEARCH + '\n[sweep]\n"method.r" = [4, 8]\n')
    assert error.field == "search" and "not both" in str(error)


def test_run_refuses_a_search_spec(tmp_path):
    with pytest.raises(SpecError, match="defines a search"):
        load_spec(write_file(tmp_path, SEARCH))


def test_the_schema_covers_search_and_notify(tmp_path):
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = tomllib.loads(SEARCH + '\n[notify]\nwebhook = "http://127.0.0.1:9/hook"\n')
    jsonschema.validate(document, schema)
    document["search"]["params"]["method.r"] = {"chioces": [4]}
    with pytest.raises(jsonschema.ValidationError, match="chioces"):
        jsonschema.validate(document, schema)
    assert "tpe" in json.dumps(schema["properties"]["search"])


def test_notify_is_validated_and_left_out_of_the_hash(tmp_path):
    plain = load_spec(write_file(tmp_path, MINIMAL_SPEC, "a.toml")).spec
    told = load_spec(write_file(tmp_path, MINIMAL_SPEC + '\n[notify]\nwebhook = "http://127.0.0.1:9/h"\n'
                                "events = [\"failed\"]\n", "b.toml")).spec
    assert told.notify.webhook == "http://127.0.0.1:9/h" and told.notify.events == ["failed"]
    assert spec_hash(plain) == spec_hash(told)
    assert "notify" not in plain.model_dump(mode="json")
    error = _error(tmp_path, MINIMAL_SPEC + '\n[notify]\nwebhook = "ftp://x"\n')
    assert error.field == "notify.webhook"
