"""Build a registry full of synthetic (but realistically shaped) rows, fast, for the scale benchmarks."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.registry.db import Registry
from tunelab.registry.models import Checkpoint, EvalResult, Experiment, Run, TrainMetric
from tunelab.registry.significance import pooled_p_value

TASKS = {name: benchmark.metric for name, benchmark in LEADERBOARD.items()}
SUBJECTS = [f"mmlu_subject_{i:02d}" for i in range(57)]
SHOTS = {name: benchmark.num_fewshot for name, benchmark in LEADERBOARD.items()}


def _fingerprint(eval_key: str) -> str:
    """An evaluation fingerprint of the size and shape the runner stores on every score row (about 1.5 kB)."""
    tasks = {task: {"num_fewshot": SHOTS[task], "fewshot_split": "validation", "leaderboard_settings": True,
                    "config_sha256": f"{task}-config".ljust(64, "0"), "data_sha256": f"{task}-data".ljust(64, "0")}
             for task in TASKS}
    tasks["mmlu"]["subtasks"] = len(SUBJECTS)
    return json.dumps({"profile": "open-llm-leaderboard-v1", "lm_eval_version": "0.4.13", "data": "local",
                       "limit": 0, "batch_size": 8, "dtype": "float32", "seed": 1234, "eval_key": eval_key,
                       "tasks": tasks}, sort_keys=True)


def _item_log(rng: random.Random, items: int, accuracy: float) -> list[dict]:
    """A compact per-item log as the runner stores it (doc_id, gold, pick, right or not, the item's score)."""
    log = []
    for doc_id in range(items):
        correct = rng.random() < accuracy
        log.append({"doc_id": doc_id, "target": doc_id % 4, "pick": doc_id % 4 if correct else (doc_id + 1) % 4,
                    "correct": correct, "score": 1.0 if correct else 0.0})
    return log


def _data_stats(rng: random.Random) -> str:
    rows = 1000 + rng.randrange(200)
    empty, duplicates, dropped = rng.randrange(5), rng.randrange(20), rng.randrange(10)
    kept = rows - empty - duplicates - dropped
    held = kept // 10
    source = {"path": "data/train.jsonl", "format": "instruction", "weight": None, "rows": rows, "empty": empty,
              "duplicates": duplicates, "overlength_dropped": dropped, "overlength_truncated": 0, "kept": kept,
              "held_out": held, "drawn": kept - held}
    return json.dumps({"sources": [source], "validation_file": None, "train_examples": kept - held,
                       "validation_examples": held, "train_tokens": 200 * kept, "trainable_tokens": 80 * kept,
                       "packed_sequences": None})


def fill(registry: Registry, *, experiments: int, metrics_per_run: int, subjects: bool, base: bool = True,
         seed: int = 0, detailed: bool = False, log_items: int = 200) -> None:
    """One succeeded run per experiment, with training metrics and eval results (fine-tuned and base).

    `detailed` adds what a finished run records today: per-item logs on every score (`log_items` items per
    benchmark, a tenth of that per MMLU subject) and the p-value against the base computed from them, the base
    model's MMLU subjects, validation loss every tenth step, data statistics, and full-size fingerprints.
    """
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
                             num_train_examples=1000, output_dir=f"/runs/{i}",
                             data_stats_json=_data_stats(rng) if detailed else None))
        for step in range(1, metrics_per_run + 1):
            metric_rows.append(dict(run_id=i, step=step, loss=3.0 / step + rng.random() * 0.1,
                                    learning_rate=1e-3 * (1 - step / (metrics_per_run + 1)), eval_loss=None))
            if detailed and step % 10 == 0:  # validation loss, on a row of its own as the runner logs it
                metric_rows.append(dict(run_id=i, step=step, loss=None, learning_rate=None,
                                        eval_loss=3.2 / step + 0.3 + rng.random() * 0.05))
        checkpoint_rows.append(dict(run_id=i, step=metrics_per_run, loss=0.5, path=f"/runs/{i}/c", created_at=created))
        result_rows += _results(rng, i, created, subjects=subjects, base=base, detailed=detailed, log_items=log_items)
    with registry.engine.begin() as connection:
        for table, rows in ((Experiment, experiment_rows), (Run, run_rows), (TrainMetric, metric_rows),
                            (Checkpoint, checkpoint_rows), (EvalResult, result_rows)):
            for chunk in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[chunk:chunk + 5000])


def _results(rng: random.Random, run_id: int, created: datetime, *, subjects: bool, base: bool, detailed: bool,
             log_items: int) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    logs: dict[tuple[str, str], list[dict]] = {}
    fingerprint = _fingerprint(f"key-{run_id % 5}") if detailed else json.dumps({"eval_key": "k"})
    for model_kind in ("finetuned", "base") if base else ("finetuned",):
        name = f"run:{run_id}" if model_kind == "finetuned" else f"base-{run_id % 5}"
        tasks = [(task, metric, None) for task, metric in TASKS.items()]
        if subjects and (model_kind == "finetuned" or detailed):
            tasks += [(subject, "acc", "mmlu") for subject in SUBJECTS]
        for task, metric, group in tasks:
            value = rng.random()
            row = dict(run_id=run_id, model_kind=model_kind, model_name=name, task=task, metric=metric, value=value,
                       stderr=0.01 if group is None else 0.05, num_fewshot=SHOTS.get(task, 5), limit=0,
                       n_samples=100, task_group=group, comparable=True, lm_eval_version="0.4.13",
                       fingerprint_json=fingerprint if detailed or group is None else "{}", created_at=created,
                       samples_json=None, vs_base_p=None)  # every row the same keys: one executemany
            # The MMLU headline has no log of its own (its subjects do), as the runner records it.
            if detailed and task != "mmlu":
                log = _item_log(rng, log_items if group is None else max(1, log_items // 10), value)
                logs[(model_kind, task)] = log
                row["samples_json"] = json.dumps(log)
            rows[(model_kind, task)] = row
    if detailed and base:
        for task in TASKS:
            members = [task] if task != "mmlu" else (SUBJECTS if subjects else [])
            if members:
                rows[("finetuned", task)]["vs_base_p"] = pooled_p_value(
                    [(logs[("base", m)], logs[("finetuned", m)]) for m in members])
    return list(rows.values())
