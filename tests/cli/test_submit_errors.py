"""Bad specs through the CLI: one clear line naming file and field, non-zero exit, nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import select
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.models import Experiment, Run

from tests.helpers import invoke, invoke_json, write_spec


def count_rows(home) -> tuple[int, int]:
    registry = open_registry(default_url(home))
    with registry.session() as session:
        return (session.exec(select(func.count()).select_from(Experiment)).one(),
                session.exec(select(func.count()).select_from(Run)).one())


def test_invalid_spec_exits_non_zero_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    good = write_spec(tmp_path / "good.toml", name="good", model_dir=tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("learning_rate = 1e-3", 'learning_rate = "high"'))
    result = invoke(home, "submit", str(good), str(bad))
    assert result.exit_code != 0
    assert "train.learning_rate" in result.output
    assert str(bad) in result.output
    assert "Traceback" not in result.output
    assert count_rows(home) == (0, 0)


def test_broken_toml_names_line(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "broken.toml"
    bad.write_text('[experiment]\nname = "x"\n[model\nbase = "m"\n')
    result = invoke(home, "submit", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3" in result.output
    assert "invalid TOML" in result.output


def test_missing_field_names_it(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "nomodel.toml"
    bad.write_text('[experiment]\nname = "x"\n\n[data]\ntrain = "t.jsonl"\n')
    result = invoke(home, "submit", str(bad))
    assert result.exit_code == 1
    assert "model: required field is missing" in result.output


def test_submit_json_and_dry_run(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tmp_path)
    dry = invoke_json(home, "submit", "--dry-run", str(spec))
    assert [(d["spec"], d["name"], d["valid"]) for d in dry] == [(str(spec), "s", True)]
    assert count_rows(home) == (0, 0)
    submitted = invoke_json(home, "submit", str(spec))
    assert len(submitted) == 1 and {"experiment_id", "run_id"} <= set(submitted[0])
    listed = invoke_json(home, "ls")
    assert [(r["run_id"], r["status"], r["name"]) for r in listed] == [(submitted[0]["run_id"], "queued", "s")]


def test_show_unknown_run_is_a_clear_error(tmp_path):
    result = invoke(tmp_path / "home", "show", "42")
    assert result.exit_code == 1
    assert "no run with id 42" in result.output


@pytest.mark.parametrize("command", [["submit"], ["submit", "--dry-run"], ["run"]])
def test_an_unknown_eval_task_is_refused_before_anything_is_stored_or_trained(tmp_path, command):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tmp_path, tasks=("arc_challenge", "truthfulqa"))
    result = invoke(home, *command, str(spec))
    assert result.exit_code == 1
    assert result.output == (f'Error: {spec}:25: eval.tasks: unknown eval task "truthfulqa" (did you mean '
                             '"truthfulqa_mc2"?)\n')
    assert count_rows(home) == (0, 0)


def test_a_spec_whose_data_vanished_is_refused_by_submit(tmp_path):
    home = tmp_path / "home"
    data = tmp_path / "train.jsonl"
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tmp_path, train=data)
    result = invoke(home, "submit", str(spec))
    assert result.output == f"Error: {spec}:10: data.train: file not found: {data}\n"
    assert count_rows(home) == (0, 0)


@pytest.mark.parametrize("value", [str(10**20), str(-(10**20))])
def test_dry_run_and_submit_agree_on_a_priority_out_of_bounds(tmp_path, value):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tmp_path, extra=f"[resources]\npriority = {value}\n")
    dry, real = invoke(home, "submit", "--dry-run", str(spec)), invoke(home, "submit", str(spec))
    assert dry.exit_code == real.exit_code == 1 and dry.output == real.output
    assert "resources.priority: Input should be" in real.output and "Traceback" not in real.output
    option = invoke(home, "submit", "--priority", value, str(write_spec(tmp_path / "t.toml", name="t",
                                                                        model_dir=tmp_path)))
    assert option.exit_code == 2 and "is not in the range -1000000<=x<=1000000" in option.output
    assert count_rows(home) == (0, 0)
