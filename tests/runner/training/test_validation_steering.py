"""Training steered by the validation loss: early stopping on a plateau, the best checkpoint as the final weights
(recorded on the run), and both carried across a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tunelab.experiments.schema import Spec

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _spec(model_dir: Path, *, learning_rate: float, train: dict) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "steering-test", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"train": str(CAPITALS), "max_seq_len": 96, "validation": 0.25},
        "method": {"kind": "full"},
        "train": {"max_steps": 20, "save_every": 2, "eval_every": 2, "batch_size": 4,
                  "learning_rate": learning_rate, **train},
    })


def _train(spec: Spec, output_dir: Path, *, pause_after: int | None = None):
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    metrics: list[dict] = []
    steps = iter(range(1, 10**6))
    pause = (lambda: next(steps) >= pause_after) if pause_after else (lambda: False)
    outcome = train(spec, workdir=REPO_ROOT, output_dir=output_dir,
                    hooks=TrainHooks(on_metrics=metrics.append, on_checkpoint=lambda *args: None,
                                     should_pause=pause))
    return outcome, metrics


PLATEAU = {"early_stopping_patience": 2, "early_stopping_threshold": 0.01}


@pytest.mark.slow
def test_early_stopping_stops_on_a_plateau_and_a_resume_keeps_counting(tiny_model_dir, tmp_path):
    # A learning rate this small leaves the validation loss where it was: a plateau from the first evaluation.
    spec = _spec(tiny_model_dir, learning_rate=1e-9, train=PLATEAU)
    outcome, metrics = _train(spec, tmp_path / "whole")
    evaluated = [m["step"] for m in metrics if "eval_loss" in m]
    assert outcome.global_step < 20 and not outcome.interrupted
    assert evaluated[:3] == [2, 4, 6] and outcome.global_step == 6

    paused, _ = _train(spec, tmp_path / "resumed", pause_after=4)
    assert paused.interrupted and paused.global_step == 4
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"] == 1
    resumed, _ = _train(spec, tmp_path / "resumed")
    # A fresh counter would wait two more evaluations (step 8); the kept one stops where the whole run did.
    assert resumed.resumed_from == 4 and resumed.global_step == outcome.global_step


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.slow
def test_load_best_makes_the_best_checkpoint_the_final_weights_and_records_its_step(tiny_model_dir, tmp_path):
    import torch

    spec = write_spec(tmp_path / "s.toml", name="best", model_dir=tiny_model_dir, kind="full", max_steps=12,
                      save_every=2, tasks=(), baseline=False)
    text = spec.read_text().replace("learning_rate = 1e-3\n", "learning_rate = 3e-2\neval_every = 2\n"
                                    "load_best = true\nkeep_checkpoints = 2\n")
    spec.write_text(text.replace("max_seq_len = 96\n", "max_seq_len = 96\nvalidation = 0.25\n"))
    home = tmp_path / "home"
    result = invoke(home, "run", "--quiet", str(spec))
    assert result.exit_code == 0, result.output
    detail = invoke_json(home, "show", "1")
    losses = {m["step"]: m["eval_loss"] for m in detail["metrics"] if m.get("eval_loss") is not None}
    assert sorted(losses)[:6] == [2, 4, 6, 8, 10, 12]
    best = min((step for step in losses if step <= 12), key=losses.get)
    assert detail["best_step"] == best
    output = Path(detail["output_dir"])
    # keep_checkpoints = 2 keeps the best besides the two newest.
    kept = sorted(int(p.name.removeprefix("checkpoint-")) for p in (output / "checkpoints").glob("checkpoint-*"))
    assert best in kept and kept[-2:] == [10, 12]
    final, chosen = _weights(output / "final"), _weights(output / "checkpoints" / f"checkpoint-{best}")
    assert final.keys() == chosen.keys()
    assert all(torch.equal(final[name], chosen[name]) for name in final)
    assert "step " + str(best) in invoke(home, "show", "1").output
