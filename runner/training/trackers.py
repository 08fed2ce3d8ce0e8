"""[track] report_to: the Trainer's own tracker integrations (TensorBoard, MLflow, Weights & Biases), named after the
tunelab run, with the run's spec as parameters, and continued (not restarted) when the run resumes.

A run's files live in its output directory, home/runs/<run id> (runner/execute.py): TensorBoard writes its event
files under tracking/ there, and the MLflow run id is kept there so that a resumed run reattaches to it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.experiments.canonical import resolved_dict
from tunelab.experiments.errors import missing_extra
from tunelab.experiments.schema import Spec

# Each tracker: the package it needs, and the tunelab extra that installs it (None: install it yourself).
TRACKER_PACKAGES: dict[str, tuple[str, str | None]] = {
    "tensorboard": ("tensorboard", "track"),
    "mlflow": ("mlflow", "track"),
    "wandb": ("wandb", None),
}
TRACKING_DIR = "tracking"
_MLFLOW_RUN_ID = "mlflow_run_id"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value


def tracker_problem(spec: Spec) -> tuple[tuple[str, ...], str] | None:
    """The first tracker of [track] report_to whose package is not installed, with the message naming what to
    install; None when all are."""
    for name in spec.track.report_to if spec.track else []:
        package, extra = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            needed_for = f'report_to "{name}"'
            return ("track", "report_to"), (missing_extra(package, extra, needed_for) if extra
                                            else f"{needed_for} needs {package}, which is not installed: "
                                            f"pip install {package}")
    return None


def run_name(output_dir: Path) -> str:
    """The tracker run's name: the tunelab run's id (the name of its output directory)."""
    return f"tunelab-run-{output_dir.name}"


def tracker_arguments(spec: Spec, output_dir: Path) -> dict[str, Any]:
    """TrainingArguments for the trackers: none unless [track] report_to names some."""
    report_to = list(spec.track.report_to) if spec.track else []
    if not report_to:
        return {"report_to": []}
    return {"report_to": report_to, "run_name": run_name(output_dir)}


def spec_params(spec: Spec) -> dict[str, str]:
    """The resolved spec flattened to dotted keys ("train.learning_rate"), as a tracker's parameters."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[prefix] = text[:MAX_PARAM_CHARS]

    walk("", resolved_dict(spec))
    return flat


def _tensorboard_into(trainer, directory: Path) -> None:
    # The integration would pick a new directory per attempt (date and host); one directory is one TensorBoard run.
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(directory)


@contextlib.contextmanager
def tracker_runs(spec: Spec, output_dir: Path, trainer) -> Iterator[None]:
    """Around training: TensorBoard's event files in the run's tracking/ directory, and the MLflow run this tunelab
    run reports to, started (or, on a resume, reattached to) here so that the Trainer's MLflowCallback logs into it
    instead of opening a new one."""
    report_to = spec.track.report_to if spec.track else []
    if "tensorboard" in report_to:
        _tensorboard_into(trainer, output_dir / TRACKING_DIR / "tensorboard")
    if "mlflow" not in report_to or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    import mlflow

    id_file = output_dir / TRACKING_DIR / _MLFLOW_RUN_ID
    earlier = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else None
    name = run_name(output_dir)
    run = mlflow.start_run(run_id=earlier, run_name=None if earlier else name,
                           tags={"tunelab.run": output_dir.name})
    try:
        if earlier is None:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run.info.run_id, encoding="utf-8")
            mlflow.log_params({f"spec.{key}": value for key, value in spec_params(spec).items()})
        yield
    finally:
        mlflow.end_run()
