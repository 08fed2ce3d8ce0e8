"""Sweeps, duplicate specs, cancel/retry and the JSON Schema, through the CLI."""

from __future__ import annotations

import json
import tomllib

import jsonschema
from sqlmodel import select
from tunelab.experiments.loader import load_spec
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.models import Experiment, Sweep

from tests.helpers import MINIMAL_SPEC, REPO_ROOT, SEARCH_SPEC, invoke, invoke_json, write_file, write_spec


def test_sweep_submits_one_experiment_per_point_linked_to_one_sweep(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="sw", model_dir=tmp_path,
                      extra='[sweep]\n"method.r" = [2, 4]\n"train.learning_rate" = [1e-4, 2e-4]\n')
    dry = invoke_json(home, "submit", "--dry-run", str(spec))
    assert len(dry) == 4
    assert not (home / "registry.db").exists()
    submitted = invoke_json(home, "submit", str(spec))
    assert len({s["sweep_id"] for s in submitted}) == 1 and submitted[0]["sweep_id"] is not None
    registry = open_registry(default_url(home))
    with registry.session() as session:
        names = sorted(e.name for e in session.exec(select(Experiment)).all())
        sweep = session.exec(select(Sweep)).one()
    assert names[0] == "sw/method.r=2,train.learning_rate=0.0001"
    assert json.loads(sweep.definition_json) == {"method.r": [2, 4], "train.learning_rate": [1e-4, 2e-4]}


def test_duplicate_spec_points_at_earlier_experiment_and_force_queues_again(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="dup", model_dir=tmp_path)
    (first,) = invoke_json(home, "submit", str(spec))
    # Same content written differently: still the same resolved spec.
    same = tmp_path / "same.toml"
    same.write_text(spec.read_text().replace("learning_rate = 1e-3", "learning_rate = 0.001"))
    (second,) = invoke_json(home, "submit", str(same))
    assert second == {"experiment_id": first["experiment_id"], "run_id": None,
                      "duplicate_of": first["experiment_id"], "sweep_id": None}
    text = invoke(home, "submit", str(same)).output
    assert f"experiment {first['experiment_id']}" in text and "--force" in text
    (forced,) = invoke_json(home, "submit", "--force", str(same))
    assert forced["experiment_id"] == first["experiment_id"]
    assert forced["run_id"] not in (None, first["run_id"])
    assert len(invoke_json(home, "ls")) == 2


def test_cancel_and_retry(tmp_path):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="c", model_dir=tmp_path)
    (s,) = invoke_json(home, "submit", str(spec))
    assert invoke(home, "cancel", str(s["run_id"])).exit_code == 0
    assert invoke_json(home, "show", str(s["run_id"]))["summary"]["status"] == "cancelled"
    again = invoke(home, "cancel", str(s["run_id"]))
    assert again.exit_code == 1 and "only queued or running" in again.output
    assert invoke(home, "retry", str(s["run_id"])).exit_code == 0
    assert invoke_json(home, "show", str(s["run_id"]))["summary"]["status"] == "queued"
    refused = invoke(home, "retry", str(s["run_id"]))
    assert refused.exit_code == 1 and "only failed or cancelled" in refused.output


def test_json_schema_validates_the_example_specs(tmp_path):
    schema = json.loads(invoke(tmp_path, "schema").output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((REPO_ROOT / "examples" / "specs").glob("*.toml")):
        # Each file as written (some extend base.toml, and set only what differs), and merged.
        assert list(validator.iter_errors(tomllib.loads(path.read_text()))) == [], path
        assert list(validator.iter_errors(load_spec(path).raw)) == [], path
    bad = {"experiment": {"name": "x"}, "model": {"base": "m"}, "data": {"train": "t"}, "train": {"learning_rat": 1}}
    errors = list(validator.iter_errors(bad))
    assert errors and "learning_rat" in errors[0].message


def test_spec_priority_orders_the_queue_and_cli_overrides_it(tmp_path):
    from tunelab.registry.run_state import claim_next

    home = tmp_path / "home"
    low = write_spec(tmp_path / "low.toml", name="low", model_dir=tmp_path)
    high = write_spec(tmp_path / "high.toml", name="high", model_dir=tmp_path, extra="[resources]\npriority = 5\n")
    (low_run,) = invoke_json(home, "submit", str(low))
    (high_run,) = invoke_json(home, "submit", str(high))
    (forced,) = invoke_json(home, "submit", "--priority", "9", "--force", str(low))
    registry = open_registry(default_url(home))
    order = [claim_next(registry, "w") for _ in range(3)]
    assert order == [forced["run_id"], high_run["run_id"], low_run["run_id"]]


def test_a_search_is_planned_with_its_first_trials_and_then_stored_without_queuing_runs(tmp_path):
    spec = write_file(tmp_path, SEARCH_SPEC)
    home = tmp_path / "home"
    plan = invoke(home, "submit", "--dry-run", str(spec))
    assert plan.exit_code == 0, plan.output
    lines = plan.output.splitlines()
    assert lines[0].startswith(f"search  {spec}  t  (random, 4 trials, at most 8; minimize val_loss; pruner median")
    assert lines[1:3] == ["  train.learning_rate: float 1e-05 .. 0.01 log", "  method.r: choice of 4, 8, 16"]
    assert [line.split(":")[0] for line in lines[3:7]] == [f"  trial {n}" for n in range(4)]
    assert not home.exists()
    (created,) = invoke_json(home, "submit", str(spec))
    assert created == {"search_id": 1}
    assert invoke_json(home, "ls") == []
    shown = invoke_json(home, "search", "show", "1")
    assert (shown["status"], shown["asked"], shown["trials"]) == ("running", 0, [])


def test_the_json_schema_takes_partial_files_and_keeps_types_and_list_items_whole(tmp_path):
    validator = jsonschema.Draft202012Validator(json.loads(invoke(tmp_path, "schema").output))
    partial = {"experiment": {"extends": "base.toml"}, "train": {"learning_rate": 1e-3}}
    base_without_a_name = {"model": {"base": "m"}, "data": {"format": "chat"}}
    assert list(validator.iter_errors(partial)) == list(validator.iter_errors(base_without_a_name)) == []
    mistyped = {"train": {"batch_size": "4", "max_steps": True}}
    assert sorted(e.message for e in validator.iter_errors(mistyped)) == [
        "'4' is not of type 'integer'", "True is not of type 'integer'"]
    # A [[eval.custom]] table is never merged with another file's: it must be whole.
    assert [list(e.absolute_path) for e in validator.iter_errors({"eval": {"custom": [{"name": "x"}]}})] == [
        ["eval", "custom", 0]]


def test_resubmitting_a_spec_whose_run_failed_points_at_retry(tmp_path):
    from tunelab.registry.run_state import claim_next, retry_or_fail

    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="broken", model_dir=tmp_path)
    (first,) = invoke_json(home, "submit", str(spec))
    registry = open_registry(default_url(home))
    assert claim_next(registry, "w") == first["run_id"]
    assert retry_or_fail(registry, first["run_id"], "w", "boom", retryable=False) == "failed"
    registry.engine.dispose()
    again = invoke(home, "submit", str(spec))
    assert again.exit_code == 0
    run, experiment = first["run_id"], first["experiment_id"]
    assert again.output == (f"exists  broken: identical spec already submitted as experiment {experiment} (run {run} "
                            f"failed: `tunelab retry {run}` queues it again, resuming from its last checkpoint); "
                            "--force queues a new run\n")
    dry = invoke(home, "submit", "--dry-run", str(spec)).output
    assert f"(run {run} failed: `tunelab retry {run}` queues it again" in dry


def test_dry_run_says_which_experiments_are_new_and_which_exist(tmp_path):
    home = tmp_path / "home"
    two = write_spec(tmp_path / "two.toml", name="sw", model_dir=tmp_path, extra='[sweep]\n"method.r" = [2, 4]\n')
    submitted = invoke_json(home, "submit", str(two))
    three = write_spec(tmp_path / "three.toml", name="sw", model_dir=tmp_path,
                       extra='[sweep]\n"method.r" = [2, 4, 8]\n')
    lines = invoke(home, "submit", "--dry-run", str(three)).output.splitlines()
    assert lines[0] == (f"exists  {three}  sw/method.r=2  as experiment {submitted[0]['experiment_id']} "
                        f"(run {submitted[0]['run_id']} queued: `tunelab show {submitted[0]['run_id']}`)")
    assert lines[1].startswith(f"exists  {three}  sw/method.r=4  as experiment {submitted[1]['experiment_id']} ")
    assert lines[2].startswith(f"new     {three}  sw/method.r=8  (lora, ")
    assert lines[3] == ("1 new experiment(s) would be queued; 2 already in the registry "
                        "(--force queues a new run of each)")
    planned = invoke_json(home, "submit", "--dry-run", str(three))
    assert [p["existing_id"] for p in planned] == [submitted[0]["experiment_id"], submitted[1]["experiment_id"], None]
    assert len(invoke_json(home, "ls")) == 2  # the dry run wrote nothing


def test_the_same_spec_from_another_directory_is_another_experiment(tmp_path, monkeypatch):
    """Relative paths resolve against the directory submit runs in: the same text there names other files."""
    spec = tmp_path / "s.toml"
    spec.write_text(MINIMAL_SPEC, encoding="utf-8")
    home = tmp_path / "home"
    for name in ("a", "b"):
        (tmp_path / name / "examples").mkdir(parents=True)
        for folder in ("models", "data"):
            (tmp_path / name / "examples" / folder).symlink_to(REPO_ROOT / "examples" / folder)
    ids = []
    for name in ("a", "b", "a"):
        monkeypatch.chdir(tmp_path / name)
        (done,) = invoke_json(home, "submit", str(spec))
        ids.append(done["experiment_id"])
    assert ids[0] != ids[1] and ids[2] == ids[0]
