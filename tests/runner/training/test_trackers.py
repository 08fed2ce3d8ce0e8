"""[track] report_to: the Trainer's TensorBoard and MLflow integrations, read back with their own readers; one tracker
run per tunelab run, continued on a resume; a tracker that is not installed is refused at submit."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.schema import Spec
from tunelab.runner.training import trackers

from tests.helpers import REPO_ROOT, invoke, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _spec(model_dir: Path | str = "tiny", track: dict | None = None) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "tracked", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"train": str(CAPITALS), "max_seq_len": 96, "validation": 0.25},
        "method": {"kind": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 4, "save_every": 2, "eval_every": 2, "batch_size": 4, "learning_rate": 1e-3},
        **({"track": track} if track is not None else {}),
    })


def test_trackers_reach_the_training_arguments(tmp_path):
    from tunelab.runner.training.trainer import training_arguments

    output = tmp_path / "12"
    args = training_arguments(_spec(track={"report_to": ["tensorboard", "mlflow"]}), output / "checkpoints", "cpu")
    assert args.report_to == ["tensorboard", "mlflow"] and args.run_name == "tunelab-run-12"
    assert training_arguments(_spec(), output / "checkpoints", "cpu").report_to == []


def test_trackers_change_no_hash():
    assert spec_hash(_spec(track={"report_to": ["tensorboard"]})) == spec_hash(_spec())
    with pytest.raises(ValueError, match="names a tracker twice"):
        _spec(track={"report_to": ["mlflow", "mlflow"]})


def test_spec_params_are_the_flattened_spec():
    params = trackers.spec_params(_spec())
    assert params["train.learning_rate"] == "0.001" and params["method.kind"] == "lora"
    assert params["method.target_modules"] == '["q_proj", "v_proj"]'


@pytest.mark.parametrize(("tracker", "package", "message"), [
    ("mlflow", ("mlflow_missing_here", "track"),
     "report_to \"mlflow\" needs mlflow_missing_here, which is not installed: pip install 'tunelab[track]'"),
    ("wandb", ("wandb_missing_here", None),
     'report_to "wandb" needs wandb_missing_here, which is not installed: pip install wandb_missing_here'),
])
def test_a_tracker_not_installed_is_refused_at_submit(tmp_path, tiny_model_dir, monkeypatch, tracker, package,
                                                      message):
    monkeypatch.setitem(trackers.TRACKER_PACKAGES, tracker, package)
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tiny_model_dir, tasks=(), baseline=False,
                      extra=f'[track]\nreport_to = ["{tracker}"]\n')
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1
    line_no = spec.read_text().splitlines().index(f'report_to = ["{tracker}"]') + 1
    assert result.output.strip() == f"Error: {spec}:{line_no}: track.report_to: {message}"


@pytest.mark.slow
def test_tensorboard_and_mlflow_get_the_run_and_a_resume_continues_it(tiny_model_dir, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    store = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store, as the issue asks
    spec = _spec(tiny_model_dir, track={"report_to": ["tensorboard", "mlflow"]})
    output = tmp_path / "runs" / "5"
    calls = iter(range(1, 100))
    paused = train(spec, workdir=REPO_ROOT, output_dir=output,
                   hooks=TrainHooks(on_metrics=lambda m: None, on_checkpoint=lambda *a: None,
                                    should_pause=lambda: next(calls) >= 2))
    assert paused.interrupted and paused.global_step == 2
    resumed = train(spec, workdir=REPO_ROOT, output_dir=output,
                    hooks=TrainHooks(on_metrics=lambda m: None, on_checkpoint=lambda *a: None))
    assert resumed.resumed_from == 2 and resumed.global_step == 4

    client = MlflowClient(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "tunelab-run-5" and run.data.tags["tunelab.run"] == "5"
    assert run.data.params["spec.train.learning_rate"] == "0.001"
    assert run.data.params["spec.experiment.name"] == "tracked"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")} >= {2, 4}

    # Both attempts write into the one TensorBoard run directory (an event file each).
    files = sorted((output / "tracking" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2
    steps: list[int] = []
    for events in files:
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        steps += [event.step for event in accumulator.Scalars("train/loss")]
    assert sorted(steps) == [1, 2, 3, 4]
