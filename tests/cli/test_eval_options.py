"""`tunelab eval` options that clash with a run's own [eval] settings fail in one line, as a spec would."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tunelab.experiments.schema import EvalSection
from tunelab.runner.evaluation.targets import EvalTargetError, settings_from_options

from tunelab.cli import cli


def test_dropping_a_task_whose_shots_the_run_set_is_a_clear_error(tmp_path):
    defaults = EvalSection(tasks=["arc_challenge", "capitals_qa"], num_fewshot={"capitals_qa": 2})
    with pytest.raises(EvalTargetError) as refused:
        settings_from_options(defaults, cwd=tmp_path, tasks=["arc_challenge"])
    assert str(refused.value).startswith("eval.num_fewshot.capitals_qa: ")
    assert "unknown eval task: neither a leaderboard benchmark nor one of [eval] tasks" in str(refused.value)


def test_options_that_fit_are_applied(tmp_path):
    settings = settings_from_options(EvalSection(), cwd=tmp_path, tasks=["hellaswag"], limit=3)
    assert (settings.tasks, settings.limit) == (["hellaswag"], 3)


def test_batch_size_auto_is_applied(tmp_path):
    assert settings_from_options(EvalSection(), cwd=tmp_path, batch_size="auto").batch_size == "auto"


@pytest.mark.parametrize("value", ["0", "-1", "max"])
def test_a_bad_batch_size_option_is_refused_before_anything_runs(tmp_path, value):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "eval", "run:1", "--batch-size", value])
    assert result.exit_code == 2
    assert "expected a positive integer or auto" in result.output
    assert not (tmp_path / "home").exists()
