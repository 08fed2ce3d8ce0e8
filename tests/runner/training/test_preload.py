"""Time to first step: a worker imports the training stack once, while idle, and freezes it out of the garbage
collector's walks; a run imports nothing its method does not use before it trains."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tunelab.registry.roots import Roots
from tunelab.runner import worker as worker_module
from tunelab.runner.execute import StopRequest
from tunelab.runner.worker import work

from tests.helpers import REPO_ROOT, write_spec

# Needed only by evaluation (lm_eval) or by dpo (trl); a supervised run must reach its first step without them.
NOT_FOR_TRAINING = ("lm_eval", "trl")


def _python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_preparing_a_process_imports_the_training_stack_and_freezes_it_once():
    found = _python(f"""
import gc, json, sys
from tunelab.runner.training.preload import prepare_process
before = gc.get_freeze_count()
prepare_process()
frozen = gc.get_freeze_count()
later = [[index] for index in range(1000)]  # made after: never frozen
prepare_process()
print(json.dumps({{"before": before, "frozen": frozen, "again": gc.get_freeze_count(),
                  "trainer": "transformers.trainer" in sys.modules,
                  "unneeded": sorted(set({NOT_FOR_TRAINING!r}) & set(sys.modules))}}))
""")
    assert found["before"] == 0 and found["frozen"] > 100_000  # torch and transformers: hundreds of thousands
    assert found["again"] == found["frozen"]
    assert found["trainer"] and found["unneeded"] == []


@pytest.mark.slow
def test_a_supervised_run_trains_without_lm_eval_or_trl(tmp_path, tiny_model_dir):
    spec = write_spec(tmp_path / "s.toml", name="imports", model_dir=tiny_model_dir, kind="lora", max_steps=1,
                      save_every=5, tasks=(), custom=False, baseline=False)
    found = _python(f"""
import json, sys
from pathlib import Path
import tunelab.runner.execute  # everything a worker imports
from tunelab.experiments.loader import load_spec
from tunelab.runner.training.recipes import train
from tunelab.runner.training.trainer import TrainHooks
from tunelab.registry.roots import Roots

seen = []
hooks = TrainHooks(on_metrics=lambda _m: seen.append(sorted(set({NOT_FOR_TRAINING!r}) & set(sys.modules))),
                   on_checkpoint=lambda *_a: None)
train(load_spec(Path({str(spec)!r})).spec, workdir=Path({str(tmp_path)!r}), output_dir=Path({str(tmp_path / "run")!r}),
      hooks=hooks, device="cpu")
print(json.dumps({{"at_first_step": seen[0]}}))
""")
    assert found["at_first_step"] == []


def _idle_worker(registry, tmp_path, monkeypatch, **options) -> list[str]:
    """What a worker on an empty queue does, in order, until its first sleep ends it."""
    calls: list[str] = []
    stop = StopRequest()
    monkeypatch.setattr(worker_module, "prepare_process", lambda: calls.append("prepare"))

    def sleep(_seconds: float) -> None:
        calls.append("sleep")
        stop.request("test")

    work(registry, roots=Roots(tmp_path), sleep=sleep, stop=stop, stale_after=None, **options)
    return calls


def test_an_idle_worker_prepares_for_training_before_it_waits(registry, tmp_path, monkeypatch):
    assert _idle_worker(registry, tmp_path, monkeypatch) == ["prepare", "sleep"]


def test_a_worker_that_exits_on_an_empty_queue_imports_nothing(registry, tmp_path, monkeypatch):
    assert _idle_worker(registry, tmp_path, monkeypatch, until_empty=True) == []
