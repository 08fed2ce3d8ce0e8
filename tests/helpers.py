"""Builders shared by tests of more than one module: driving the CLI, writing specs, data files and lm-eval task
directories, and filling registries with known runs and scores. Test modules import from here (or use
fixtures), never from each other."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import text
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.loader import load_all, load_specs
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores, update_run
from tunelab.registry.run_state import claim_next, prune, retry_or_fail, succeed
from tunelab.registry.scores import Score
from tunelab.registry.search_records import search_record
from tunelab.registry.searches import create_search, search_from_loaded
from tunelab.registry.submissions import NewExperiment, NewSweep, from_loaded, submit
from tunelab.runner.search import ask_trial, trial_ended

from tunelab.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- the CLI and specs


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def invoke_json(home: Path, *args: str):
    result = invoke(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_spec(
    path: Path,
    *,
    name: str,
    model_dir: Path,
    train: Path | str | None = None,
    kind: str = "lora",
    max_steps: int = 4,
    save_every: int = 2,
    tasks: tuple[str, ...] = ("arc_challenge",),
    limit: int = 2,
    custom: bool = True,
    baseline: bool = True,
    extra: str = "",
) -> Path:
    """A spec that trains a few steps on the capitals data and evaluates on a couple of items."""
    train = train or REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
    method = '[method]\nkind = "full"\n' if kind == "full" else '[method]\nkind = "lora"\nr = 4\nalpha = 8\n'
    custom_block = (
        f'[[eval.custom]]\nname = "capitals"\npath = "{REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl"}"\n'
        if custom else ""
    )
    task_list = ", ".join(f'"{t}"' for t in tasks)
    path.write_text(
        f"""[experiment]
name = "{name}"
tags = ["test"]
seed = 7

[model]
base = "{model_dir}"

[data]
train = "{train}"
max_seq_len = 96

{method}
[train]
max_steps = {max_steps}
save_every = {save_every}
batch_size = 4
learning_rate = 1e-3

[eval]
tasks = [{task_list}]
limit = {limit}
benchmarks_dir = "{REPO_ROOT / "examples" / "benchmarks"}"
baseline = {"true" if baseline else "false"}
batch_size = 4

{custom_block}{extra}""",
        encoding="utf-8",
    )
    return path


def queue_unchecked(home: Path, spec: Path, *, workdir: Path | None = None) -> int:
    """Queue `spec` as `submit` stores it, without submit's checks of the files and tasks it names: a run whose files
    vanished or changed after it was submitted, as `tunelab doctor` and a worker may find it. Returns its run id."""
    registry = open_registry(default_url(home))
    try:
        (done,) = submit(registry, [from_loaded(load_all([spec])[0], workdir=str(workdir or Path.cwd()))])
    finally:
        registry.engine.dispose()
    return done.run_id


def plant_user_modules(directory: Path, *, tunelab: bool = False) -> Path:
    """A user's own modules named like tunelab's folders (and, with `tunelab`, like tunelab itself), each
    failing loudly when imported: a working directory that must change nothing for tunelab."""
    names = ["runner.py", "registry.py", "reports.py", "experiments/__init__.py"] + (["tunelab.py"] if tunelab else [])
    for name in names:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"raise RuntimeError('the user\\'s own {name} was imported')\n", encoding="utf-8")
    return directory


# The smallest valid spec, for the spec language's own tests.
MINIMAL_SPEC = """\
[experiment]
name = "t"

[model]
base = "examples/models/tiny-llama"

[data]
train = "examples/data/capitals_train.jsonl"
"""


def write_file(directory: Path, content: str, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- lm-eval tasks and the hub cache

# Multiple-choice rows for custom and YAML tasks.
CAPITAL_QUESTIONS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome", "Madrid"], "answer": 0},
    {"question": "What is the capital of Italy?", "choices": ["Berlin", "Rome", "Lisbon"], "answer": 1},
    {"question": "What is the capital of Spain?", "choices": ["Madrid", "Vienna", "Oslo"], "answer": 0},
    {"question": "What is the capital of Germany?", "choices": ["Paris", "Bern", "Berlin"], "answer": 2},
    {"question": "What is the capital of Austria?", "choices": ["Vienna", "Prague", "Athens"], "answer": 0},
    {"question": "What is the capital of Norway?", "choices": ["Dublin", "Oslo", "Warsaw"], "answer": 1},
]

# A shared base (not a task: lm-eval indexes *.yaml only), included by the task below.
TASK_TEMPLATE_YAML = """\
output_type: multiple_choice
doc_to_text: !function helpers.prompt
doc_to_choice: "{{choices}}"
doc_to_target: answer
metric_list:
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
TASK_YAML = """\
include: _capitals_template
task: capitals_yaml
tag: geography
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/capitals.jsonl
test_split: test
fewshot_split: test
"""
TASK_HELPERS_PY = 'def prompt(doc):\n    return "Q: " + doc["question"] + "\\nA:"\n'
TASK_GROUP_YAML = "group: all_mine\ntask:\n  - capitals_yaml\n"


def write_task_dir(root: Path) -> Path:
    """An [eval] include_path directory: a YAML task over its own data, a Python helper and a group."""
    tasks = root / "tasks"
    (tasks / "data").mkdir(parents=True)
    (tasks / "_capitals_template").write_text(TASK_TEMPLATE_YAML, encoding="utf-8")
    (tasks / "capitals.yaml").write_text(TASK_YAML, encoding="utf-8")
    (tasks / "helpers.py").write_text(TASK_HELPERS_PY, encoding="utf-8")
    (tasks / "group.yaml").write_text(TASK_GROUP_YAML, encoding="utf-8")
    write_jsonl(tasks / "data" / "capitals.jsonl", CAPITAL_QUESTIONS)
    return tasks


def fake_hub_model(hub_cache: Path, repo_id: str, model_dir: Path) -> None:
    """A hub cache entry as huggingface_hub lays it out: refs/main naming a snapshot of the files."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(model_dir, repo / "snapshots" / ("0" * 40))


# ---------------------------------------------------------------- registries with known contents

FIRST_REVISION_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def fill_first_revision(engine) -> None:
    """One experiment, run, checkpoint, two metrics and a score, as the schema's first revision stored them."""
    now = FIRST_REVISION_TIME
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO experiment (id, name, description, tags_json, spec_path, spec_text, resolved_json, "
            "spec_hash, workdir, created_at) VALUES (1, 'old', 'd', '[\"x\"]', 's.toml', 'text', "
            "'{\"method\": {\"kind\": \"lora\"}, \"model\": {\"base\": \"m\"}}', 'h1', '/w', :now)"), {"now": now})
        c.execute(text(
            "INSERT INTO run (id, experiment_id, status, priority, created_at, final_loss) "
            "VALUES (1, 1, 'succeeded', 0, :now, 0.25)"), {"now": now})
        c.execute(text(
            "INSERT INTO checkpoint (run_id, step, loss, path, created_at) VALUES (1, 10, 0.5, '/c', :now)"),
            {"now": now})
        c.execute(text("INSERT INTO trainmetric (run_id, step, loss) VALUES (1, 1, 2.0), (1, 2, 1.5)"))
        c.execute(text(
            "INSERT INTO evalresult (run_id, model_kind, model_name, task, metric, value, num_fewshot, \"limit\", "
            "comparable, lm_eval_version, fingerprint_json, created_at) VALUES "
            "(1, 'finetuned', 'run:1', 'arc_challenge', 'acc_norm', 0.31, 25, 0, :t, '0.4.13', '{}', :now)"),
            {"now": now, "t": True})


# A run name that would run script if a page did not escape it.
EVIL = "<img src=x onerror=alert(1)>"
# The leaderboard benchmarks and their reported metrics.
BENCH = {name: benchmark.metric for name, benchmark in LEADERBOARD.items()}


def scores(kind: str, name: str, values: dict[str, float], key: str = "k1") -> list[Score]:
    """Score rows of one model, {task: value}, each on its benchmark's metric (hellaswag not comparable)."""
    return [
        Score(model_kind=kind, model_name=name, task=task, metric=BENCH.get(task, "acc"), value=value,
              stderr=0.01, num_fewshot=0, limit=0, n_samples=10, task_group=None,
              comparable=task != "hellaswag", lm_eval_version="0.4.13", fingerprint={"eval_key": key})
        for task, value in values.items()
    ]


def finished_run(registry, name: str, resolved: str = '{"method": {"kind": "lora"}, "model": {"base": "tiny"}}'):
    """A run submitted, claimed and succeeded with a final loss of 0.5; returns its id."""
    (s,) = submit(registry, [NewExperiment(name=name, description="", tags=["t"], spec_path="s.toml", spec_text="",
                                           resolved_json=resolved, spec_hash=name, workdir="/")])
    assert claim_next(registry, "w") == s.run_id
    update_run(registry, s.run_id, final_loss=0.5)
    assert succeed(registry, s.run_id, "w") == "succeeded"
    return s.run_id


def subject_scores(kind: str, name: str, values: dict[str, float]) -> list[Score]:
    """MMLU subject rows (members of the mmlu group), as the runner records them."""
    (template,) = scores(kind, name, {"mmlu": 0.0})
    return [replace(template, task=f"mmlu_{subject}", task_group="mmlu", value=value)
            for subject, value in values.items()]


def add_run(registry, name: str, steps: int = 12) -> int:
    """A finished run with training and validation losses, and scores (MMLU subjects too) for it and its base."""
    run = finished_run(registry, name)
    record_metrics(registry, run, [MetricPoint(step=s, loss=2.0 / s + len(name) / 100, learning_rate=1e-3)
                                   for s in range(1, steps + 1)])
    record_metrics(registry, run, [MetricPoint(step=s, eval_loss=2.5 / s) for s in (4, 8, 12)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.4, "mmlu": 0.5}))
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", {"anatomy": 0.5, "virology": 0.25}))
    record_scores(registry, run, scores("base", "tiny", {"arc_challenge": 0.3, "mmlu": 0.45}))
    record_scores(registry, run, subject_scores("base", "tiny", {"anatomy": 0.6, "virology": 0.2}))
    return run


B1_C9 = 0.021484375  # 2 * (C(10,0) + C(10,1)) / 2**10


def item_log(outcomes: list[bool], *, target: int = 0) -> list[dict]:
    """Per-item records of a multiple-choice task, right or wrong as given."""
    return [{"doc_id": i, "target": target, "pick": target if right else target + 1, "correct": right}
            for i, right in enumerate(outcomes)]


def logs_b1_c9() -> tuple[list[dict], list[dict]]:
    """12 items: the base right on 0-2; the fine-tuned model loses item 0 (b = 1) and gains items 3-11 (c = 9)."""
    before = item_log([True] * 3 + [False] * 9)
    after = item_log([False] + [True] * 11)
    return before, after


# ---------------------------------------------------------------- searches, without training

# A random search of 4 trials on validation loss, median pruner: a spec that never trains in these tests.
SEARCH_SPEC = MINIMAL_SPEC + """validation = 0.25

[train]
eval_every = 2
max_steps = 6

[search]
sampler = "random"
trials = 4
seed = 11
objective = "val_loss"
pruner = "median"

[search.params]
"train.learning_rate" = {low = 1e-5, high = 1e-2, log = true}
"method.r" = {choices = [4, 8, 16]}
"""


def new_search(registry, directory: Path, text: str = SEARCH_SPEC) -> int:
    (loaded,) = load_specs(write_file(directory, text))
    return create_search(registry, search_from_loaded(loaded, workdir=str(directory)))


def end_trial(registry, run_id: int, losses: dict[int, float], status: str = "succeeded", worker: str = "w") -> None:
    """What a worker records of a trial it ran: validation losses, training facts, the end."""
    record_metrics(registry, run_id, [MetricPoint(step=step, eval_loss=value) for step, value in losses.items()])
    update_run(registry, run_id, train_seconds=2.0, final_loss=min(losses.values()))
    if status == "succeeded":
        assert succeed(registry, run_id, worker) == "succeeded"
    elif status == "pruned":
        assert prune(registry, run_id, worker) == "pruned"
    else:
        assert retry_or_fail(registry, run_id, worker, "DataError: no such file", retryable=False) == "failed"
    trial_ended(registry, run_id)


def run_search(registry, search_id: int, losses_of, status_of=lambda number: "succeeded", *,
               by_params: bool = False) -> list[int]:
    """Drain a search with one worker; the run ids in the order they were drawn. `losses_of` takes the trial's
    number, or with `by_params` its parameters."""
    runs = []
    while (run_id := ask_trial(registry, "w")) is not None:
        number = len(runs)
        runs.append(run_id)
        params = search_record(registry, search_id).trials[number].params
        end_trial(registry, run_id, losses_of(params if by_params else number), status_of(number))
    return runs


def sweep_runs(registry, name: str, points: dict[float, float], *, steps: int = 8) -> list[int]:
    """A finished sweep over train.learning_rate: one run per (learning rate, ARC score) in `points`, with
    training losses and scores for it and its base; returns the run ids in point order."""
    sweep = NewSweep(name=name, spec_path="sweep.toml",
                     definition_json=json.dumps({"train.learning_rate": list(points)}))
    experiments = [NewExperiment(name=f"{name}/lr={lr:g}", description="", tags=["t"], spec_path="sweep.toml",
                                 spec_text="", resolved_json=json.dumps({"method": {"kind": "lora"},
                                                                        "train": {"learning_rate": lr}}),
                                 spec_hash=f"{name}-{lr}", workdir="/", sweep=sweep,
                                 sweep_point_json=json.dumps({"train.learning_rate": lr}))
                   for lr in points]
    runs = []
    for submitted, (lr, arc) in zip(submit(registry, experiments), points.items(), strict=True):
        assert claim_next(registry, "w") == submitted.run_id
        record_metrics(registry, submitted.run_id, [MetricPoint(step=s, loss=1.0 / s + lr * 100, learning_rate=lr)
                                                    for s in range(1, steps + 1)])
        update_run(registry, submitted.run_id, final_loss=1.0 / steps + lr * 100, train_seconds=10.0)
        assert succeed(registry, submitted.run_id, "w") == "succeeded"
        record_scores(registry, submitted.run_id, scores("finetuned", f"run:{submitted.run_id}",
                                                         {"arc_challenge": arc}))
        record_scores(registry, submitted.run_id, scores("base", "tiny", {"arc_challenge": 0.25}))
        runs.append(submitted.run_id)
    return runs
