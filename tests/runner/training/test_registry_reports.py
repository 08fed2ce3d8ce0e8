"""Training's reports reach the registry in batches: nothing in a training step waits for the registry, every metric
row up to a checkpoint is recorded before that checkpoint is written, and the rest when training ends.

The SIGKILL case against a real worker is in test_resume.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event
from tunelab.experiments.loader import load_spec
from tunelab.registry.recording import MetricPoint
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import claim_next
from tunelab.registry.submissions import NewExperiment, submit
from tunelab.runner.training import registry_hooks as hooks_module
from tunelab.runner.training.checkpoints import complete_checkpoints
from tunelab.runner.training.progress import RunProgress, TrainingProgress
from tunelab.runner.training.recipes import train
from tunelab.runner.training.registry_hooks import BufferedReports, registry_hooks

from tests.helpers import write_spec

NEVER = 3600.0  # a background interval no test waits for: only flushes the code asks for write


def _running_run(registry, name: str = "reports") -> int:
    (submitted,) = submit(registry, [NewExperiment(name=name, description="", tags=[], spec_path="s.toml",
                                                   spec_text="", resolved_json="{}", spec_hash=name, workdir="/")])
    assert claim_next(registry, "w") == submitted.run_id
    return submitted.run_id


def _metric_steps(registry, run_id: int) -> list[int]:
    return [row[0] for row in registry.rows("SELECT step FROM trainmetric WHERE run_id = :r AND loss IS NOT NULL "
                                            "ORDER BY step, id", {"r": run_id})]


def _progress_json(registry, run_id: int) -> str | None:
    return registry.rows("SELECT progress_json FROM run WHERE id = :r", {"r": run_id})[0][0]


class Commits:
    """Counts the transactions committed on an engine."""

    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._one)

    def _one(self, _connection) -> None:
        self.count += 1


# ---- the buffer -----------------------------------------------------------------------------------------------


def test_reports_wait_in_memory_and_a_flush_writes_them_in_one_transaction(registry):
    run_id = _running_run(registry)
    reports = BufferedReports(registry, run_id, NEVER)
    commits = Commits(registry.engine)
    for step in range(1, 21):
        reports.add(MetricPoint(step=step, loss=1.0 / step))
        reports.set_progress(TrainingProgress(step, 20, 1.0 / step, 100.0, 20.0 - step))
    assert commits.count == 0 and _metric_steps(registry, run_id) == []
    commits.count = 0
    reports.flush()
    # One commit for the twenty rows, one for the latest figures.
    assert commits.count == 2
    assert _metric_steps(registry, run_id) == list(range(1, 21))
    assert '"step": 20' in _progress_json(registry, run_id)
    reports.flush()  # nothing pending: nothing written, nothing twice
    assert commits.count == 2 and _metric_steps(registry, run_id) == list(range(1, 21))


def test_a_failed_write_keeps_its_rows_for_the_next_one(registry, monkeypatch):
    run_id = _running_run(registry)
    reports = BufferedReports(registry, run_id, NEVER)
    for step in (1, 2):
        reports.add(MetricPoint(step=step, loss=0.5))
    real = hooks_module.record_metrics

    def fail_once(*_args, **_kwargs):
        monkeypatch.setattr(hooks_module, "record_metrics", real)
        raise OSError("the registry went away")

    monkeypatch.setattr(hooks_module, "record_metrics", fail_once)
    with pytest.raises(OSError, match="went away"):
        reports.flush()
    reports.add(MetricPoint(step=3, loss=0.5))
    reports.flush()
    assert _metric_steps(registry, run_id) == [1, 2, 3]


def test_the_background_thread_writes_while_training_runs_and_the_rest_on_leaving(registry):
    run_id = _running_run(registry)
    reports = BufferedReports(registry, run_id, every_seconds=0.05)
    with reports.background():
        reports.add(MetricPoint(step=1, loss=0.5))
        deadline = time.monotonic() + 30
        while not _metric_steps(registry, run_id):
            assert time.monotonic() < deadline, "the background thread wrote nothing"
            time.sleep(0.02)
        reports.every_seconds = NEVER  # from here on only the exit writes
        time.sleep(0.1)  # the thread's current wait still uses the short interval
        reports.add(MetricPoint(step=2, loss=0.4))
    assert _metric_steps(registry, run_id) == [1, 2]
    assert not [t for t in threading.enumerate() if t.name == f"tunelab-reports-{run_id}"]


def test_the_error_that_ended_training_is_the_one_raised(registry, monkeypatch):
    run_id = _running_run(registry)
    reports = BufferedReports(registry, run_id, NEVER)

    def registry_down(*_args, **_kwargs):
        raise OSError("the registry went away")

    monkeypatch.setattr(hooks_module, "record_metrics", registry_down)
    with pytest.raises(ValueError, match="training broke"), reports.background():
        reports.add(MetricPoint(step=1, loss=0.5))
        raise ValueError("training broke")


def test_a_background_write_refused_for_good_reaches_the_training_loop_and_writes_nothing(registry):
    """The run was taken over: the thread stops retrying and training's next report raises RunNotHeld (so the
    worker ends the attempt as lost), and not a row is written for a worker that no longer holds the run."""
    from tunelab.registry.errors import RunNotHeld

    run_id = _running_run(registry)  # held by "w"
    reports = BufferedReports(registry, run_id, every_seconds=0.05, held_by="stale")
    with pytest.raises(RunNotHeld), reports.background():
        reports.add(MetricPoint(step=1, loss=0.5))
        deadline = time.monotonic() + 30
        while True:  # the training loop, reporting until it hears
            assert time.monotonic() < deadline, "the refusal never reached the training loop"
            time.sleep(0.02)
            reports.set_progress(TrainingProgress(1, 20, 0.5, 100.0, 19.0))
    assert _metric_steps(registry, run_id) == [] and _progress_json(registry, run_id) is None
    assert not [t for t in threading.enumerate() if t.name == f"tunelab-reports-{run_id}"]


def test_a_validation_loss_is_written_at_once_with_the_rows_before_it(registry, tmp_path):
    """Whatever decides on a validation loss (a search's pruner) reads it back from the registry right away."""
    run_id = _running_run(registry)
    hooks = registry_hooks(registry, run_id, RunProgress(run_id, "t", enabled=False), Roots(tmp_path),
                           report_seconds=NEVER)
    hooks.on_metrics({"step": 1, "epoch": 0.1, "loss": 0.9})
    assert _metric_steps(registry, run_id) == []  # a training step's row waits
    hooks.on_metrics({"step": 2, "epoch": 0.2, "loss": 0.8})
    hooks.on_metrics({"step": 2, "epoch": 0.2, "eval_loss": 0.7})
    assert _metric_steps(registry, run_id) == [1, 2]
    evals = registry.rows("SELECT step, eval_loss FROM trainmetric WHERE run_id = :r AND eval_loss IS NOT NULL",
                          {"r": run_id})
    assert [tuple(row) for row in evals] == [(2, 0.7)]


# ---- in training ------------------------------------------------------------------------------------------------


def _spec(tmp_path: Path, model_dir: Path, *, steps: int, save_every: int):
    path = write_spec(tmp_path / f"s{steps}.toml", name=f"reports-{steps}", model_dir=model_dir, kind="full",
                      max_steps=steps, save_every=save_every, tasks=(), custom=False, baseline=False)
    return load_spec(path).spec


@pytest.mark.slow
def test_logged_steps_cost_no_commit_of_their_own(registry, tmp_path, tiny_model_dir):
    """Four times the steps (each one logged), the same transactions: the rows go in at the end, all of them."""
    commits = {}
    for steps in (6, 24):
        run_id = _running_run(registry, f"steps-{steps}")
        hooks = registry_hooks(registry, run_id, RunProgress(run_id, "t", enabled=False), Roots(tmp_path),
                           report_seconds=NEVER)
        counter = Commits(registry.engine)
        train(_spec(tmp_path, tiny_model_dir, steps=steps, save_every=steps + 1), workdir=tmp_path,
              output_dir=tmp_path / f"run-{steps}", hooks=hooks, device="cpu")
        event.remove(registry.engine, "commit", counter._one)
        commits[steps] = counter.count
        assert _metric_steps(registry, run_id) == list(range(1, steps + 1))
        assert f'"step": {steps}' in _progress_json(registry, run_id)
    # The resume check at the start, then the rows and the figures at the end.
    assert commits == {6: 3, 24: 3}


@pytest.mark.slow
def test_every_row_up_to_a_checkpoint_is_recorded_before_the_checkpoint_is_written(registry, tmp_path,
                                                                                  tiny_model_dir):
    run_id = _running_run(registry)
    hooks = registry_hooks(registry, run_id, RunProgress(run_id, "t", enabled=False), Roots(tmp_path),
                           report_seconds=NEVER)
    checkpoints = tmp_path / "run" / "checkpoints"
    flushes: list[tuple[list[int], list[int]]] = []  # (rows recorded, checkpoints on disk) after each flush
    recorded: list[tuple[int, list[int]]] = []  # (checkpoint, rows recorded) as each checkpoint is recorded

    def flush() -> None:
        hooks_flush()
        flushes.append((_metric_steps(registry, run_id), [c.step for c in complete_checkpoints(checkpoints)]))

    def on_checkpoint(step, loss, path) -> None:
        recorded.append((step, _metric_steps(registry, run_id)))
        hooks_checkpoint(step, loss, path)

    hooks_flush, hooks_checkpoint = hooks.flush, hooks.on_checkpoint
    hooks = dataclasses.replace(hooks, flush=flush, on_checkpoint=on_checkpoint)
    train(_spec(tmp_path, tiny_model_dir, steps=7, save_every=3), workdir=tmp_path, output_dir=tmp_path / "run",
          hooks=hooks, device="cpu")
    # Before checkpoints 3 and 6 are on disk, the rows up to them are in; the last one when training ends.
    assert flushes == [([1, 2, 3], []), ([1, 2, 3, 4, 5, 6], [3])]
    assert recorded == [(3, [1, 2, 3]), (6, [1, 2, 3, 4, 5, 6])]
    assert _metric_steps(registry, run_id) == [1, 2, 3, 4, 5, 6, 7]
    steps = registry.rows("SELECT step FROM checkpoint WHERE run_id = :r ORDER BY step", {"r": run_id})
    assert [row[0] for row in steps] == [3, 6]

