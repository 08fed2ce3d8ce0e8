"""Build a registry full of synthetic (but realistically shaped) rows, fast, for the scale benchmarks."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from registry.db import Registry
from registry.models import Checkpoint, EvalResult, Experiment, Run, TrainMetric

TASKS = {"arc_challenge": "acc_norm", "hellaswag": "acc_norm", "mmlu": "acc", "truthfulqa_mc2": "mc2"}
SUBJECTS = [f"mmlu_subject_{i:02d}" for i in range(57)]


def fill(registry: Registry, *, experiments: int, metrics_per_run: int, subjects: bool, base: bool = True,
         seed: int = 0) -> None:
    """One succeeded run per experiment, with training metrics and eval results (fine-tuned and base)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ["lora", "full", "lora", "qlora"]
    experiment_rows, run_rows, metric_rows, result_rows, checkpoint_rows = [], [], [], [], []
    for i in range(1, experiments + 1):
        kind = kinds[i % len(kinds)]
        spec = {"experiment": {"name": f"exp-{i}", "tags": ["bench", f"group{i % 10}"], "seed": i},
                "model": {"base": f"base-{i % 5}", "dtype": "float32"},
                "method": {"kind": kind, "r": [8, 16, 32][i % 3]},
                "train": {"learning_rate": [1e-4, 2e-4, 5e-4][i % 3], "batch_size": 8, "max_steps": 100}}
        created = start + timedelta(minutes=i)
        experiment_rows.append(dict(id=i, name=f"exp-{i}", description="synthetic", tags_json=json.dumps(
            spec["experiment"]["tags"]), spec_path="bench.toml", spec_text="", resolved_json=json.dumps(
            spec, sort_keys=True), spec_hash=f"hash-{i}", workdir="/", created_at=created))
        run_rows.append(dict(id=i, experiment_id=i, status="succeeded", priority=0, created_at=created,
                             started_at=created, finished_at=created + timedelta(minutes=5),
                             final_loss=rng.uniform(0.5, 2.0), train_seconds=rng.uniform(10, 100),
                             num_train_examples=1000, output_dir=f"/runs/{i}"))
        for step in range(1, metrics_per_run + 1):
            metric_rows.append(dict(run_id=i, step=step, loss=3.0 / step + rng.random() * 0.1,
                                    learning_rate=1e-3 * (1 - step / (metrics_per_run + 1))))
        checkpoint_rows.append(dict(run_id=i, step=metrics_per_run, loss=0.5, path=f"/runs/{i}/c", created_at=created))
        for model_kind in ("finetuned", "base") if base else ("finetuned",):
            name = f"run:{i}" if model_kind == "finetuned" else f"base-{i % 5}"
            for task, metric in TASKS.items():
                result_rows.append(dict(run_id=i, model_kind=model_kind, model_name=name, task=task, metric=metric,
                                        value=rng.random(), stderr=0.01, num_fewshot=0, limit=0, n_samples=100,
                                        task_group=None, comparable=True, lm_eval_version="0.4.13",
                                        fingerprint_json=json.dumps({"eval_key": "k"}), created_at=created))
            if subjects and model_kind == "finetuned":
                for subject in SUBJECTS:
                    result_rows.append(dict(run_id=i, model_kind=model_kind, model_name=name, task=subject,
                                            metric="acc", value=rng.random(), stderr=0.05, num_fewshot=5, limit=0,
                                            n_samples=100, task_group="mmlu", comparable=True,
                                            lm_eval_version="0.4.13", fingerprint_json="{}", created_at=created))
    with registry.engine.begin() as connection:
        for table, rows in ((Experiment, experiment_rows), (Run, run_rows), (TrainMetric, metric_rows),
                            (Checkpoint, checkpoint_rows), (EvalResult, result_rows)):
            for chunk in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[chunk:chunk + 5000])
