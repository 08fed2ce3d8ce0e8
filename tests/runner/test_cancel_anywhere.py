"""`tunelab cancel` is honoured while data is prepared and while the model is evaluated, not only between training
steps: the run's stop check (its heartbeat's "cancelled") is asked at every row, inside a template's rendering,
before each eval task and at every batch lm-eval scores."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tunelab.experiments.schema import EvalSection, Spec
from tunelab.runner.data import templates
from tunelab.runner.data.formats import InstructionExample
from tunelab.runner.data.prepare import prepare_data
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import RunCancelled
from tunelab.runner.evaluation.harness import evaluate

from tests.helpers import REPO_ROOT, write_jsonl

SLOW = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ instruction }}"


def test_a_cancel_stops_a_slow_template_at_once(monkeypatch):
    monkeypatch.setattr(templates, "TEMPLATE_SECONDS", 120.0)  # far beyond the cancel
    cancelled = threading.Event()
    renderer = Renderer(SLOW, SimpleNamespace(bos_token="", eos_token=""), cancelled.is_set)
    threading.Timer(0.3, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(RunCancelled, match="cancelled while preparing data"):
        renderer.render(InstructionExample("a", "", "b"), Path("t.jsonl"))
    assert time.monotonic() - started < 5


def test_a_cancel_stops_data_preparation_between_rows(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    rows = [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(50)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    spec = Spec.model_validate({"experiment": {"name": "d"}, "model": {"base": str(tiny_model_dir)},
                                "data": {"train": str(path)}})
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 10

    with pytest.raises(RunCancelled, match="cancelled while preparing data"):
        prepare_data(spec, AutoTokenizer.from_pretrained(tiny_model_dir), tmp_path, should_stop=should_stop)
    assert len(asked) == 11  # stopped at the eleventh row, not after all fifty


@pytest.mark.slow
def test_a_cancel_stops_an_evaluation_at_the_next_batch(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batches = []

    def should_stop() -> bool:
        batches.append(1)
        return len(batches) > 3  # the check before the task, then two batches

    settings = EvalSection(tasks=["arc_challenge"], benchmarks_dir=str(REPO_ROOT / "examples" / "benchmarks"),
                           limit=8, batch_size=1, num_fewshot={"arc_challenge": 0})
    with pytest.raises(RunCancelled, match="cancelled while evaluating"):
        evaluate(model, tokenizer, settings, workdir=tmp_path, base_dir=REPO_ROOT, seed=1, dtype="float32",
                 should_stop=should_stop)
    assert len(batches) == 4  # 8 items x 4 choices would be 32 batches


def test_tunelab_cancel_stops_a_worker_stuck_in_data_preparation(tmp_path, tiny_model_dir, monkeypatch):
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.run_state import cancel

    from tests.helpers import invoke, invoke_json, write_spec

    monkeypatch.setattr(templates, "TEMPLATE_SECONDS", 600.0)  # only the cancel can end it
    spec = write_spec(tmp_path / "spin.toml", name="spin", model_dir=tiny_model_dir, max_steps=2, tasks=(),
                      baseline=False)  # the default custom task: a spec must name something to evaluate
    spec.write_text(spec.read_text().replace("max_seq_len = 96\n", f"max_seq_len = 96\ntemplate = '{SLOW}'\n"))
    home = tmp_path / "home"
    (submitted,) = invoke_json(home, "submit", str(spec))
    registry = open_registry(default_url(home))
    threading.Timer(3.0, cancel, args=(registry, submitted["run_id"])).start()
    started = time.monotonic()
    result = invoke(home, "worker", "--until-empty", "--quiet", "--heartbeat", "0.5", "--stale-after", "60")
    assert time.monotonic() - started < 60
    assert f"run {submitted['run_id']}: cancelled" in result.output, result.output
    assert invoke_json(home, "show", str(submitted["run_id"]))["summary"]["status"] == "cancelled"
