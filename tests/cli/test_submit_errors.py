"""Bad specs through the CLI: one clear line naming file and field, non-zero exit, nothing written."""

from __future__ import annotations

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
