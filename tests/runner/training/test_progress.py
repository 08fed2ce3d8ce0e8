"""Training progress: step, loss, non-padding tokens per second and ETA, shown and kept in the registry."""

from __future__ import annotations

import pytest
from tunelab.experiments.loader import load_spec
from tunelab.runner.training.recipes import train
from tunelab.runner.training.trainer import TokenCounter, TrainHooks

from tests.helpers import invoke, invoke_json, write_spec


def test_the_token_counter_counts_real_tokens_not_padding():
    features = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
                {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9]}]

    def pad_to_five(batch):
        return {"input_ids": [f["input_ids"] + [0] * (5 - len(f["input_ids"])) for f in batch]}

    counter = TokenCounter(pad_to_five)
    batch = counter(features)
    assert sum(len(row) for row in batch["input_ids"]) == 10  # padded
    assert counter.tokens == 8
    counter(features[:1])
    assert counter.tokens == 11
    # Validation batches go through the same collator: handed on without their mark, not counted.
    from tunelab.runner.training.trainer import VALIDATION_MARK

    seen = []
    counter = TokenCounter(lambda batch: seen.append(batch) or batch)
    counter([{**features[0], VALIDATION_MARK: True}])
    assert counter.tokens == 0 and seen == [[features[0]]]


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True])
def test_training_reports_tokens_per_second_and_an_eta(tmp_path, tiny_model_dir, packing):
    spec_path = write_spec(tmp_path / "s.toml", name="progress", model_dir=tiny_model_dir, max_steps=6, save_every=10,
                           tasks=(), custom=False, baseline=False)
    text = spec_path.read_text().replace("max_seq_len = 96", f"max_seq_len = 96\npacking = {str(packing).lower()}")
    text = text.replace("[train]\n", "[train]\nlogging_steps = 2\n")
    spec_path.write_text(text)
    seen = []
    train(load_spec(spec_path).spec, workdir=tmp_path, output_dir=tmp_path / "run",
          hooks=TrainHooks(on_metrics=lambda _m: None, on_checkpoint=lambda *_a: None, on_progress=seen.append))
    assert [p.step for p in seen] == [2, 4, 6]
    assert all(p.total == 6 and p.loss is not None for p in seen)
    assert all(p.tokens_per_second is not None and p.tokens_per_second > 0 for p in seen)
    assert seen[-1].eta_seconds == 0 and seen[0].eta_seconds > 0


@pytest.mark.slow
def test_the_worker_keeps_the_latest_figures_for_show(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="progress-show", model_dir=tiny_model_dir, max_steps=4,
                      tasks=(), baseline=False)
    (submitted,) = invoke_json(home, "submit", str(spec))
    assert "succeeded" in invoke(home, "worker", "--until-empty", "--quiet").output
    detail = invoke_json(home, "show", str(submitted["run_id"]))
    progress = detail["progress"]
    assert progress["step"] == progress["total"] == 4 and progress["tokens_per_second"] > 0
    text = invoke(home, "show", str(submitted["run_id"])).output
    assert "progress: step 4/4" in text and "tokens/s" in text
    # Plain JSON numbers for scripts: the figures by name, the last one reached at the end of training.
    assert set(progress) == {"step", "total", "loss", "tokens_per_second", "eta_seconds"}
    assert isinstance(progress["loss"], float) and progress["eta_seconds"] == 0


def test_show_gives_the_eta_only_while_the_run_is_running():
    from tunelab.show import progress_line

    figures = {"step": 40, "total": 100, "loss": 1.23456, "tokens_per_second": 1234.4, "eta_seconds": 3725.4}
    assert progress_line(figures, running=True) == "step 40/100, loss 1.2346, 1,234 tokens/s, ETA 1:02:05"
    assert progress_line(figures, running=False) == "step 40/100, loss 1.2346, 1,234 tokens/s"
    done = dict(figures, step=100, eta_seconds=0.0)  # evaluating now: no ETA of training left
    assert progress_line(done, running=True) == "step 100/100, loss 1.2346, 1,234 tokens/s"
    assert progress_line({"step": 1, "total": 5, "loss": None, "tokens_per_second": None, "eta_seconds": None},
                         running=True) == "step 1/5"
