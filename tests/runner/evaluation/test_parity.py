"""Parity with lm-eval itself: tunelab's evaluate() and the `lm_eval` command-line tool give the same numbers.

Both sides evaluate the same tiny model on the same local benchmark data (the sample the repository ships in
examples/benchmarks) at the leaderboard's shot counts, with the same seed, limit and batch size.
The command line reads the very task YAMLs tunelab generated for its own run (`--include_path` on tunelab's
`lm_eval_tasks/` directory), so prompts, few-shot rules, data and metrics are the same files on both sides; what
differs is only the driver: tunelab wraps an in-memory model in `HFLM` and calls `simple_evaluate` once per
benchmark, the command line loads the model from disk and runs all tasks in one call.

Compared exactly (==, no tolerance): every reported number and its stderr, per task and per MMLU subject, the
shot counts and item counts, and per item the prompts, the log-likelihoods and the compact per-item record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.schema import EvalSection
from tunelab.runner.evaluation.harness import _compact_samples, evaluate
from tunelab.runner.evaluation.planning import plan_tasks

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCHMARKS = REPO_ROOT / "examples" / "benchmarks"
SEED = 1234
LIMIT = 4
BATCH_SIZE = 4
SUBJECTS = ["abstract_algebra", "anatomy", "high_school_geography"]
TASKS = ["arc_challenge", "hellaswag", *(f"mmlu_{s}" for s in SUBJECTS), "truthfulqa_mc2"]


@pytest.fixture(scope="module")
def tunelab_run(tiny_model_dir, tmp_path_factory):
    """tunelab's evaluation, with lm-eval's raw per-item logs captured on the way."""
    import lm_eval
    from transformers import AutoModelForCausalLM, AutoTokenizer

    raw: dict = {"results": {}, "samples": {}, "n-shot": {}}
    real = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        results = real(*args, **kwargs)
        for key in raw:
            raw[key].update(results[key])
        return results

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    workdir = tmp_path_factory.mktemp("tunelab")
    settings = EvalSection(tasks=TASKS, limit=LIMIT, benchmarks_dir=str(BENCHMARKS), batch_size=BATCH_SIZE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", spy)
        outcome = evaluate(model, tokenizer, settings, workdir=workdir, base_dir=REPO_ROOT, seed=SEED, dtype="float32")
    return outcome, raw, workdir / "lm_eval_tasks"


@pytest.fixture(scope="module")
def cli_run(tunelab_run, tiny_model_dir, tmp_path_factory):
    """The same evaluation through the `lm_eval` command, on the YAMLs tunelab generated."""
    _, _, tasks_dir = tunelab_run
    names = sorted(p.stem for p in tasks_dir.glob("tunelab_*.yaml"))
    assert len(names) == len(TASKS)
    out = tmp_path_factory.mktemp("cli")
    command = [
        str(Path(sys.executable).parent / "lm_eval"), "run",
        "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
        "--device", "cpu",
        "--include_path", str(tasks_dir),
        "--tasks", ",".join(names),
        "--limit", str(LIMIT),
        "--batch_size", str(BATCH_SIZE),
        "--seed", str(SEED),
        "--log_samples",
        "--output_path", str(out),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    (results_file,) = out.rglob("results_*.json")
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(results_file.read_text(encoding="utf-8")), samples


def _cli_sample(sample: dict) -> dict:
    """A sample from the command line's JSONL in the in-memory shape (argument tuples, float log-likelihoods)."""
    return dict(
        sample,
        arguments=[(a["arg_0"], a["arg_1"]) for a in sample["arguments"].values()],
        filtered_resps=[(float(ll), greedy == "True") for ll, greedy in sample["filtered_resps"]],
    )


def test_every_number_is_lm_evals_own(tunelab_run, cli_run):
    outcome, _, _ = tunelab_run
    cli, _ = cli_run
    rows = {score.task: score for score in outcome.scores}
    assert set(rows) == {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"} | {f"mmlu_{s}" for s in SUBJECTS}
    for task, row in rows.items():
        if task == "mmlu":
            continue
        lm_metric = "acc" if task.startswith("mmlu_") else LEADERBOARD[task].lm_metric
        theirs = cli["results"][f"tunelab_{task}"]
        assert row.value == theirs[f"{lm_metric},none"], task
        assert row.stderr == theirs[f"{lm_metric}_stderr,none"], task
        assert row.num_fewshot == cli["n-shot"][f"tunelab_{task}"], task
        assert row.n_samples == cli["n-samples"][f"tunelab_{task}"]["effective"] == LIMIT, task
    assert [rows[t].num_fewshot for t in ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")] == [25, 10, 5, 0]


def test_mmlu_is_the_unweighted_mean_of_the_command_lines_subjects(tunelab_run, cli_run):
    outcome, _, _ = tunelab_run
    cli, _ = cli_run
    mmlu = next(s for s in outcome.scores if s.task == "mmlu")
    subjects = [cli["results"][f"tunelab_mmlu_{s}"]["acc,none"] for s in SUBJECTS]
    assert mmlu.value == sum(s.value for s in outcome.scores if s.task_group == "mmlu") / len(SUBJECTS)
    assert mmlu.value == pytest.approx(sum(subjects) / len(subjects), abs=1e-15)
    assert mmlu.comparable is False  # three subjects and a limit: not the leaderboard's MMLU


def test_prompts_loglikelihoods_and_items_are_identical(tunelab_run, cli_run, tmp_path):
    outcome, raw, _ = tunelab_run
    cli, cli_samples = cli_run
    settings = EvalSection(tasks=TASKS, benchmarks_dir=str(BENCHMARKS))
    generated = {
        task.lm_name: task
        for plan in plan_tasks(settings, benchmarks_dir=BENCHMARKS, base_dir=REPO_ROOT, out_dir=tmp_path)
        for task in plan.tasks
    }
    assert set(cli_samples) == set(raw["samples"]) == set(generated)
    for lm_name, ours in raw["samples"].items():
        theirs = sorted((_cli_sample(s) for s in cli_samples[lm_name]), key=lambda s: s["doc_id"])
        ours = sorted(ours, key=lambda s: s["doc_id"])
        assert [s["doc_id"] for s in ours] == [s["doc_id"] for s in theirs] == list(range(LIMIT))
        for a, b in zip(ours, theirs, strict=True):
            assert [tuple(arg) for arg in a["arguments"]] == b["arguments"], (lm_name, a["doc_id"])
            assert [float(r[0]) for r in a["filtered_resps"]] == [r[0] for r in b["filtered_resps"]], lm_name
        # tunelab's per-item record (pick, correct, score) is the one the command line's log gives.
        task = generated[lm_name]
        delimiter = cli["configs"][lm_name].get("target_delimiter", " ")
        assert outcome.samples[task.reported] == _compact_samples(task, theirs, delimiter), lm_name
