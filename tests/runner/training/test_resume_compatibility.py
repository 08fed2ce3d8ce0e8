"""A run never resumes from a checkpoint written with another spec, tokenizer or data: it says what changed.

Each case trains one step and pauses (a checkpoint at step 1, as a SIGTERM would leave), changes one thing,
and starts the run again on the same output directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tunelab.experiments.loader import load_spec
from tunelab.runner.training.checkpoint_identity import IncompatibleCheckpoint
from tunelab.runner.training.checkpoints import complete_checkpoints
from tunelab.runner.training.recipes import train
from tunelab.runner.training.trainer import TrainHooks

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow
CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _hooks(*, pause: bool) -> TrainHooks:
    return TrainHooks(on_metrics=lambda _m: None, on_checkpoint=lambda *_a: None, should_pause=lambda: pause)


def _spec(tmp_path: Path, model_dir: Path, data: Path, *, learning_rate: str = "1e-3"):
    path = write_spec(tmp_path / "spec.toml", name="resume-compat", model_dir=model_dir, train=data, max_steps=3,
                      save_every=10, tasks=(), custom=False, baseline=False)
    path.write_text(path.read_text().replace("learning_rate = 1e-3", f"learning_rate = {learning_rate}"))
    return load_spec(path).spec


@pytest.fixture()
def paused(tmp_path, tiny_model_dir):
    """A model copy, a data copy, and a run paused at step 1 on them."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    data = tmp_path / "train.jsonl"
    shutil.copy(CAPITALS, data)
    output = tmp_path / "run"
    outcome = train(_spec(tmp_path, model, data), workdir=tmp_path, output_dir=output, hooks=_hooks(pause=True))
    assert outcome.interrupted and outcome.global_step == 1
    (checkpoint,) = complete_checkpoints(output / "checkpoints")
    assert set(checkpoint.identity) == {"spec_hash", "tokenizer", "data"}
    return tmp_path, model, data, output


def test_an_unchanged_run_resumes_from_its_checkpoint(paused):
    tmp_path, model, data, output = paused
    outcome = train(_spec(tmp_path, model, data), workdir=tmp_path, output_dir=output, hooks=_hooks(pause=False))
    assert outcome.resumed_from == 1 and outcome.global_step == 3 and not outcome.interrupted


def _refusal(paused, spec) -> str:
    tmp_path, _model, _data, output = paused
    with pytest.raises(IncompatibleCheckpoint) as refused:
        train(spec, workdir=tmp_path, output_dir=output, hooks=_hooks(pause=False))
    # Nothing was trained or deleted: the checkpoint is still there for when the change is undone.
    assert [c.step for c in complete_checkpoints(output / "checkpoints")] == [1]
    assert not (output / "final").exists()
    return str(refused.value)


def test_changed_training_data_is_refused(paused):
    tmp_path, model, data, output = paused
    rows = data.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(rows[1:]) + "\n", encoding="utf-8")  # one example fewer
    message = _refusal(paused, _spec(tmp_path, model, data))
    assert message.startswith(f"refusing to resume from {output / 'checkpoints' / 'checkpoint-1'}: the training data")
    assert "tokenizer" not in message and "spec" not in message
    assert f"remove {output / 'checkpoints'} to train from the start" in message


def test_a_changed_tokenizer_is_refused(paused):
    tmp_path, model, data, _output = paused
    config = json.loads((model / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    message = _refusal(paused, _spec(tmp_path, model, data))
    assert "the tokenizer changed" in message
    assert "the training data" not in message  # the chat template does not touch instruction data


def test_a_changed_spec_is_refused(paused):
    tmp_path, model, data, _output = paused
    message = _refusal(paused, _spec(tmp_path, model, data, learning_rate="2e-3"))
    assert "the run's resolved spec changed" in message


def test_the_worker_fails_an_incompatible_resume_without_retrying(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    data = tmp_path / "train.jsonl"
    shutil.copy(CAPITALS, data)
    spec = write_spec(tmp_path / "spec.toml", name="compat-worker", model_dir=tiny_model_dir, train=data,
                      max_steps=4, save_every=2, tasks=(), baseline=False)
    (submitted,) = invoke_json(home, "submit", str(spec))
    run_id = submitted["run_id"]
    # A previous attempt's checkpoint, written with other data (as if the file was edited between attempts).
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(data.read_text().splitlines()[2:]) + "\n")
    spec_other = _spec(tmp_path, tiny_model_dir, other)
    output = home / "runs" / str(run_id)
    train(spec_other, workdir=tmp_path, output_dir=output, hooks=_hooks(pause=True))
    result = invoke(home, "worker", "--until-empty", "--quiet")
    assert f"run {run_id}: failed" in result.output and "queued" not in result.output
    summary = invoke_json(home, "show", str(run_id))["summary"]
    assert summary["error"].startswith("IncompatibleCheckpoint: refusing to resume from")
    assert "the run's resolved spec changed" in summary["error"] and "the training data" in summary["error"]


def test_final_weights_trained_on_other_data_are_refused_too(tmp_path, tiny_model_dir):
    # Training finished, the attempt died in evaluation, then the data changed: the weights must not be
    # recorded as trained on the new data.
    data = tmp_path / "train.jsonl"
    shutil.copy(CAPITALS, data)
    output = tmp_path / "run"
    spec = _spec(tmp_path, tiny_model_dir, data)
    finished = train(spec, workdir=tmp_path, output_dir=output, hooks=_hooks(pause=False))
    assert (output / "final").is_dir() and not finished.interrupted
    again = train(spec, workdir=tmp_path, output_dir=output, hooks=_hooks(pause=False))
    assert again.resumed_from == finished.global_step  # unchanged: picked up, not retrained
    data.write_text("\n".join(data.read_text(encoding="utf-8").splitlines()[1:]) + "\n", encoding="utf-8")
    with pytest.raises(IncompatibleCheckpoint) as refused:
        train(_spec(tmp_path, tiny_model_dir, data), workdir=tmp_path, output_dir=output, hooks=_hooks(pause=False))
    assert str(refused.value).startswith(f"refusing to resume from {output / 'final'}: the training data")
