"""benchmarks/train_overhead.py: the first-step probe its processes load, and the figures it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks.train_overhead import HOOKS, Timing, _epoch, paired, report
from tests.helpers import REPO_ROOT

TRAIN_ONE_STEP = """
import sys
from benchmarks.plain_trainer import PlainConfig, train
train(PlainConfig(model=sys.argv[1], data=sys.argv[2], output_dir=sys.argv[3], steps=1, batch_size=2, max_seq_len=64,
                  data_format="instruction"))
"""


@pytest.mark.slow
def test_the_probe_records_when_the_first_training_step_begins(tmp_path, tiny_model_dir):
    first_step = tmp_path / "first-step"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HOOKS), str(REPO_ROOT)]), FIRST_STEP_FILE=str(first_step))
    started = time.time()
    subprocess.run([sys.executable, "-c", TRAIN_ONE_STEP, str(tiny_model_dir),
                    str(REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"), str(tmp_path / "out")],
                   env=env, check=True, capture_output=True)
    # After the imports and the model's loading, before the process ended.
    assert started + 0.5 < float(first_step.read_text()) < time.time()


def test_without_the_variable_the_probe_is_inert(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(HOOKS))
    env.pop("FIRST_STEP_FILE", None)
    done = subprocess.run([sys.executable, "-c", "import sys; print(any(type(f).__name__ == '_PatchWhenImported' "
                           "for f in sys.meta_path))"], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_registry_timestamps_are_read_as_utc():
    assert _epoch("1970-01-01 00:00:10.500000") == 10.5
    assert _epoch("1970-01-01T01:00:10+01:00") == 10.0


def test_ratios_are_paired_repeat_by_repeat(capsys):
    # Medians of each side would give 1.0; the paired ratios are 2, 0.5 and 1.5.
    assert paired([2.0, 1.0, 3.0], [1.0, 2.0, 2.0]) == 1.5
    plain = [Timing(100.0, 4.0), Timing(200.0, 5.0), Timing(100.0, 6.0)]
    run = [Timing(99.0, 4.4), Timing(190.0, 5.5), Timing(101.0, 6.0)]
    worker = [Timing(100.0, 0.2), Timing(200.0, 0.5), Timing(98.0, 0.3)]
    report(plain, run, worker)
    out = capsys.readouterr().out
    assert "paired median ratio tunelab run / plain:    0.990" in out
    assert "paired median ratio tunelab worker / plain: 1.000" in out
    assert "paired median ratio tunelab worker / plain: 0.050" in out  # first steps: 0.05, 0.1, 0.05 of plain's
