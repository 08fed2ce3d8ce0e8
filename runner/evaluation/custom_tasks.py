"""The spec's custom tasks (`[[eval.custom]]`): multiple-choice JSONL rows of question, choices and answer,
evaluated as a whole `multiple_choice` task of their own in the prompt format the fine-tunes train on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import CustomTask
from tunelab.runner.data.templates import ALPACA_PROMPT
from tunelab.runner.errors import EvaluationSpecError
from tunelab.runner.evaluation.tasks import TASK_PREFIX, GeneratedTask, TaskPlan, write_task_yaml

# The prompt the instruction fine-tunes are trained on (the spec's `alpaca` template), so a custom task scores
# a fine-tuned model on its own format; the question goes where the instruction does (lm-eval's Jinja).
QUESTION_PROMPT = ALPACA_PROMPT.format(instruction="{{question}}")


def plan_custom(custom: CustomTask, base_dir: Path, out_dir: Path) -> TaskPlan:
    """Check a custom task's rows and write its task YAML into `out_dir`."""
    path = spec_path(custom.path, base_dir).resolve()
    rows = check_custom_rows(path)
    if custom.num_fewshot >= rows:
        raise EvaluationSpecError(
            f"custom task {custom.name}: num_fewshot = {custom.num_fewshot} needs more than {rows} row(s) in {path}"
        )
    lm_name = f"{TASK_PREFIX}custom_{custom.name}"
    config: dict[str, Any] = {
        "task": lm_name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": QUESTION_PROMPT,
        "doc_to_target": "answer",
        "doc_to_choice": "choices",
        # The response follows the template's "### Response:\n" directly, as in training.
        "target_delimiter": "",
        "num_fewshot": custom.num_fewshot,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    if custom.num_fewshot:
        # Shots from the same file; lm-eval leaves an item out of its own shots when fewshot_split == test_split.
        config["fewshot_split"] = "test"
    yaml_path = out_dir / f"{lm_name}.yaml"
    write_task_yaml(yaml_path, config)
    task = GeneratedTask(
        lm_name=lm_name,
        reported=custom.name,
        task_group=None,
        lm_metric="acc",
        metric="acc",
        num_fewshot=custom.num_fewshot,
        leaderboard_settings=True,
        yaml_path=yaml_path,
        data_files=(path,),
    )
    return TaskPlan(custom.name, (task,), custom=True)


def check_custom_rows(path: Path) -> int:
    """Validate a custom task's JSONL (rows of question, choices, answer index); return the number of rows."""
    if not path.is_file():
        raise EvaluationSpecError(f"custom task file {path} is missing")
    rows = 0
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvaluationSpecError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            problem = _custom_row_problem(row)
            if problem:
                raise EvaluationSpecError(f"{path}:{number}: {problem}")
            rows += 1
    if rows == 0:
        raise EvaluationSpecError(f"custom task file {path} has no rows")
    return rows


def _custom_row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object with question, choices and answer"
    if not isinstance(row.get("question"), str):
        return "`question` must be a string"
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        return "`choices` must be a list of at least two strings"
    answer = row.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return f"`answer` must be the index (0-{len(choices) - 1}) of the right choice"
    return None
