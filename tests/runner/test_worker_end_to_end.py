"""submit -> worker -> succeeded, with checkpoints, metrics and eval rows; a failing run doesn't stop the worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.runner.training.checkpoints import MARKER

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worked(tmp_path_factory, tiny_model_dir):
    """Queue a run that will fail (its data file vanishes after submit) and then a good one; drain the queue once."""
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    data = root / "missing.jsonl"
    data.write_text('{"instruction": "i", "output": "o"}\n', encoding="utf-8")
    broken = write_spec(root / "broken.toml", name="broken", model_dir=tiny_model_dir, train=data, baseline=False)
    good = write_spec(root / "good.toml", name="good", model_dir=tiny_model_dir, kind="lora",
                      max_steps=4, save_every=2)
    submitted = invoke_json(home, "submit", str(broken), str(good))
    data.unlink()
    result = invoke(home, "worker", "--until-empty", "--quiet")
    return home, submitted, result


def test_worker_goes_on_after_a_failed_run(worked):
    home, submitted, result = worked
    assert result.exit_code == 0, result.output
    broken_id, good_id = (s["run_id"] for s in submitted)
    assert f"run {broken_id}: failed" in result.output
    assert f"run {good_id}: succeeded" in result.output
    broken = invoke_json(home, "show", str(broken_id))
    assert broken["summary"]["status"] == "failed"
    assert "missing.jsonl" in broken["summary"]["error"]
    assert "not found" in broken["summary"]["error"]


def test_succeeded_run_has_checkpoints_metrics_and_scores(worked):
    home, submitted, _ = worked
    detail = invoke_json(home, "show", str(submitted[1]["run_id"]))
    assert detail["summary"]["status"] == "succeeded"
    assert [c["step"] for c in detail["checkpoints"]] == [2, 4]
    for checkpoint in detail["checkpoints"]:
        assert (Path(checkpoint["path"]) / MARKER).is_file()
    assert [m["step"] for m in detail["metrics"]] == [1, 2, 3, 4]
    assert all(m["loss"] is not None and m["loss"] > 0 for m in detail["metrics"])
    scores = {(s["model_kind"], s["task"]): s for s in detail["scores"]}
    assert set(scores) == {("finetuned", "arc_challenge"), ("finetuned", "capitals"),
                           ("base", "arc_challenge"), ("base", "capitals")}
    arc = scores[("finetuned", "arc_challenge")]
    assert (arc["metric"], arc["num_fewshot"], arc["limit"]) == ("acc_norm", 25, 2)
    assert 0.0 <= arc["value"] <= 1.0
    assert arc["lm_eval_version"] == "0.4.13"
    assert scores[("finetuned", "capitals")]["metric"] == "acc"
    assert (Path(detail["output_dir"]) / "final" / "adapter_config.json").is_file()


def test_ls_lists_both_runs_with_status(worked):
    home, submitted, _ = worked
    listed = {r["run_id"]: r for r in invoke_json(home, "ls")}
    assert listed[submitted[0]["run_id"]]["status"] == "failed"
    assert listed[submitted[1]["run_id"]]["status"] == "succeeded"
    assert "arc_challenge" in listed[submitted[1]["run_id"]]["scores"]


def test_report_lists_finetuned_and_base(worked, tmp_path):
    from html.parser import HTMLParser

    home, submitted, _ = worked
    out = tmp_path / "lb.html"
    result = invoke(home, "report", "-o", str(out))
    assert result.exit_code == 0, result.output

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.kinds = []

        def handle_starttag(self, tag, attrs):
            if tag == "tr" and dict(attrs).get("data-kind"):
                self.kinds.append(dict(attrs)["data-kind"])

    parser = Rows()
    parser.feed(out.read_text())
    assert sorted(parser.kinds) == ["base", "finetuned"]


def test_the_base_model_is_evaluated_again_when_a_task_file_changed(tmp_path, tiny_model_dir):
    # The base's scores come from the content-keyed eval cache, which sees the task's data: an edited file
    # is evaluated again rather than copied from the earlier run of the same base and settings.

    home = tmp_path / "home"
    items = tmp_path / "capitals_mc.jsonl"
    rows = (REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl").read_text(encoding="utf-8").splitlines()
    items.write_text("\n".join(rows[:8]) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path / "s.toml", name="base-again", model_dir=tiny_model_dir, max_steps=2, tasks=(),
                      limit=0, custom=False,
                      extra=f'[[eval.custom]]\nname = "capitals"\npath = "{items}"\n')

    def base_items(run_id: int) -> int:
        (row,) = [s for s in invoke_json(home, "show", str(run_id))["scores"]
                  if s["model_kind"] == "base" and s["task"] == "capitals"]
        return row["n_samples"]

    (first,) = invoke_json(home, "submit", str(spec))
    assert "succeeded" in invoke(home, "worker", "--until-empty", "--quiet").output
    items.write_text("\n".join(rows[:5]) + "\n", encoding="utf-8")
    (second,) = invoke_json(home, "submit", "--force", str(spec))
    assert "succeeded" in invoke(home, "worker", "--until-empty", "--quiet").output
    assert (base_items(first["run_id"]), base_items(second["run_id"])) == (8, 5)
