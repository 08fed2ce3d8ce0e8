"""Evaluation through lm-eval's official tasks: leaderboard settings, MMLU's unweighted mean, TruthfulQA's mc2,
HellaSwag's few-shot self-exclusion, per-task shots, the evaluation device, custom tasks, and the errors a user
sees when data is missing.

One module-scoped run evaluates the full four-task profile on a copy of the example benchmark sample; the other
tests are small (a custom task, task construction without a model, or errors raised before the model runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tunelab.experiments.schema import CustomTask, EvalSection
from tunelab.runner.data.templates import ALPACA_PROMPT
from tunelab.runner.errors import EvaluationError
from tunelab.runner.evaluation.harness import EvalOutcome, _compact_samples, evaluate, model_device, place_model
from tunelab.runner.evaluation.leaderboard import official_tasks_dir, resolve_benchmarks_dir
from tunelab.runner.evaluation.planning import plan_tasks
from tunelab.runner.evaluation.tasks import GeneratedTask

from tests.helpers import CAPITAL_QUESTIONS

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE = REPO_ROOT / "examples" / "benchmarks"
SEED = 1234


def _rows(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_rows(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def uneven_benchmarks(tmp_path_factory) -> Path:
    """The example sample, with MMLU subjects cut to 1, 2 or 3 test items so subject sizes differ."""
    root = tmp_path_factory.mktemp("benchmarks")
    shutil.copytree(SAMPLE, root, dirs_exist_ok=True)
    for i, subject_dir in enumerate(sorted((root / "mmlu").iterdir())):
        test = subject_dir / "test.jsonl"
        if test.is_file():
            _write_rows(test, _rows(test)[: i % 3 + 1])
    return root


@pytest.fixture(scope="module")
def profile_run(tiny_lm, uneven_benchmarks, tmp_path_factory):
    """The whole Open LLM v1 profile at limit 3, with lm-eval's raw results captured call by call."""
    import lm_eval

    raw: dict = {"results": {}, "samples": {}}
    real = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        results = real(*args, **kwargs)
        raw["results"].update(results["results"])
        raw["samples"].update(results["samples"])
        return results

    messages: list[str] = []
    model, tokenizer = tiny_lm
    settings = EvalSection(benchmarks_dir=str(uneven_benchmarks), limit=3, batch_size=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", spy)
        outcome = evaluate(
            model,
            tokenizer,
            settings,
            workdir=tmp_path_factory.mktemp("work"),
            base_dir=REPO_ROOT,
            seed=SEED,
            dtype="float32",
            progress=messages.append,
        )
    return outcome, raw, messages


def _by_task(outcome: EvalOutcome) -> dict:
    return {score.task: score for score in outcome.scores}


# ---------------------------------------------------------------- the full profile


@pytest.mark.slow
def test_profile_reports_the_four_tasks_at_leaderboard_settings(profile_run):
    outcome, _, messages = profile_run
    scores = _by_task(outcome)
    expected = {
        "arc_challenge": (25, "acc_norm"),
        "hellaswag": (10, "acc_norm"),
        "mmlu": (5, "acc"),
        "truthfulqa_mc2": (0, "mc2"),
    }
    top = [s for s in outcome.scores if s.task_group is None]
    assert [s.task for s in top] == list(expected)
    for task, (shots, metric) in expected.items():
        score = scores[task]
        assert (score.num_fewshot, score.metric) == (shots, metric), task
        assert 0.0 <= score.value <= 1.0
        assert score.stderr is None or score.stderr >= 0
        assert score.comparable is False  # limit > 0
    assert scores["arc_challenge"].n_samples == 3
    assert outcome.lm_eval_version == "0.4.13"
    assert any(m.startswith("evaluating mmlu") for m in messages)


@pytest.mark.slow
def test_profile_mmlu_is_the_unweighted_mean_of_57_subjects(profile_run):
    outcome, raw, _ = profile_run
    subjects = [s for s in outcome.scores if s.task_group == "mmlu"]
    assert len(subjects) == 57
    assert all(s.task.startswith("mmlu_") and s.num_fewshot == 5 and s.metric == "acc" for s in subjects)
    # Each subject row is lm-eval's own number for that subject.
    for s in subjects:
        assert s.value == pytest.approx(raw["results"][f"tunelab_{s.task}"]["acc,none"])
    sizes = [s.n_samples for s in subjects]
    assert set(sizes) == {1, 2, 3}

    unweighted = sum(s.value for s in subjects) / 57
    weighted = sum(s.value * s.n_samples for s in subjects) / sum(sizes)
    mmlu = _by_task(outcome)["mmlu"]
    assert mmlu.value == pytest.approx(unweighted)
    assert weighted != pytest.approx(unweighted)  # so the check above can tell the two apart
    assert mmlu.n_samples == sum(sizes)


@pytest.mark.slow
def test_profile_truthfulqa_reports_lm_evals_acc_as_mc2(profile_run):
    outcome, raw, _ = profile_run
    tqa = _by_task(outcome)["truthfulqa_mc2"]
    lm_result = raw["results"]["tunelab_truthfulqa_mc2"]
    assert tqa.metric == "mc2"
    assert tqa.value == pytest.approx(lm_result["acc,none"])
    assert "mc2,none" not in lm_result  # lm-eval itself has no metric of that name


@pytest.mark.slow
def test_profile_hellaswag_shots_from_validation_are_not_comparable_and_exclude_the_item(profile_run):
    outcome, raw, _ = profile_run
    assert outcome.fingerprint["tasks"]["hellaswag"]["fewshot_split"] == "validation"
    assert outcome.fingerprint["tasks"]["hellaswag"]["leaderboard_settings"] is False
    assert outcome.fingerprint["tasks"]["arc_challenge"]["leaderboard_settings"] is True
    for sample in raw["samples"]["tunelab_hellaswag"]:
        doc = sample["doc"]
        context = sample["arguments"][0][0]
        assert context.endswith(doc["query"])
        assert f"{doc['query']} {doc['choices'][doc['gold']]}" not in context


@pytest.mark.slow
def test_profile_samples_and_fingerprint(profile_run):
    outcome, raw, _ = profile_run
    assert set(outcome.samples) == {s.task for s in outcome.scores} - {"mmlu"}
    for task, rows in outcome.samples.items():
        assert rows and [r["doc_id"] for r in rows] == sorted(r["doc_id"] for r in rows)
        if task != "truthfulqa_mc2":
            # pick is recomputed from the log-likelihoods; lm-eval's own verdict must agree with it.
            assert all(r["correct"] == (r["pick"] == r["target"]) for r in rows), task
            assert all(r["pick_right"] == r["correct"] for r in rows), task
        else:
            # MC2 is a probability mass per item, not a right/wrong: no McNemar test may be made of it.
            assert all(r["correct"] is None and isinstance(r["pick_right"], bool) for r in rows)
            assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    for score in outcome.scores:
        if score.task in outcome.samples:
            rows = outcome.samples[score.task]
            assert score.value == pytest.approx(sum(r["score"] for r in rows) / len(rows))

    fp = outcome.fingerprint
    # A limit and HellaSwag's shots from its scored split: not the leaderboard's numbers, and the profile says why.
    # Some 5-shot MMLU prompts of the sample do not fit even 2,048 tokens of the tiny tokenizer: counted, per subject.
    mmlu = fp["tasks"]["mmlu"]
    assert mmlu["truncated_items"] == sum(mmlu["truncated_by_task"].values()) > 0
    assert fp["deviations"] == ["limit 3 items per task", "hellaswag shots from the validation split",
                                f"mmlu: {mmlu['truncated_items']} item(s) longer than the model's context"]
    assert (fp["profile"], fp["limit"], fp["seed"], fp["dtype"], fp["device"], fp["data"]) == (
        "custom",
        3,
        SEED,
        "float32",
        "cpu",  # where the model was: evaluate() without a device does not move it
        "local",
    )
    assert "num_fewshot_overrides" not in fp
    assert {k: fp["tasks"][k]["fewshot_split"] for k in fp["tasks"]} == {
        "arc_challenge": "train",
        "hellaswag": "validation",
        "mmlu": "dev",
        "truthfulqa_mc2": None,
    }
    assert {k: fp["tasks"][k]["num_fewshot"] for k in fp["tasks"]} == {
        "arc_challenge": 25,
        "hellaswag": 10,
        "mmlu": 5,
        "truthfulqa_mc2": 0,
    }
    assert all(len(fp["tasks"][k]["config_sha256"]) == 64 for k in fp["tasks"])
    json.dumps(fp)  # it goes into the registry as JSON


# ---------------------------------------------------------------- per-item logs


def _generated(metric: str, lm_metric: str) -> GeneratedTask:
    return GeneratedTask(lm_name="tunelab_t", reported="t", task_group=None, lm_metric=lm_metric, metric=metric,
                         num_fewshot=0, leaderboard_settings=True, yaml_path=Path("t.yaml"), data_files=())


def _choice_sample(doc_id: int, lls: list[float], target: int, **metrics) -> dict:
    """An item as lm-eval logs a multiple-choice task: one log-likelihood per choice, and its metric values."""
    return {"doc_id": doc_id, "target": target, "doc": {"question": f"q{doc_id}"},
            "arguments": [[f"q{doc_id}", f" choice {i}"] for i in range(len(lls))],
            "filtered_resps": [[ll, False] for ll in lls], **metrics}


def test_an_items_correct_is_its_right_or_wrong_under_the_reported_metric():
    # acc: lm-eval's own 0/1 per item is the verdict.
    (right, wrong) = _compact_samples(_generated("acc", "acc"), [
        _choice_sample(0, [-1.0, -2.0], 0, acc=1.0), _choice_sample(1, [-1.0, -2.0], 1, acc=0.0)], " ")
    assert (right["correct"], right["pick_right"], wrong["correct"], wrong["pick_right"]) == (True, True, False, False)


def test_a_metric_over_the_whole_task_gives_items_no_right_or_wrong():
    # F1 on a multiple-choice task: lm-eval logs (gold, pick) per item and scores the task as a whole.
    rows = _compact_samples(_generated("f1", "f1"), [
        _choice_sample(0, [-1.0, -2.0], 0, f1=(0, 0)), _choice_sample(1, [-1.0, -2.0], 1, f1=(1, 0))], " ")
    assert [(r["correct"], r["pick_right"], r["score"]) for r in rows] == [(None, True, None), (None, False, None)]
    # BLEU on generated text: no pick, no right/wrong at all; lm-eval's value is kept as it is (not a number).
    generated = [{"doc_id": 0, "target": "Paris", "doc": {"question": "q"}, "arguments": [["q", {}]],
                  "filtered_resps": ["Paris"], "bleu": ("Paris", "Paris")}]
    (row,) = _compact_samples(_generated("bleu", "bleu"), generated, " ", multiple_choice=False)
    assert (row["correct"], row["pick"], row["pick_right"], row["score"], row["choices"]) == (
        None, None, None, None, [])


def test_mc2_items_have_no_right_or_wrong_but_say_whether_the_pick_was_true():
    def mc2_sample(doc_id: int, lls: list[float], labels: list[int], mass: float) -> dict:
        sample = _choice_sample(doc_id, lls, 0, acc=mass)
        sample["doc"]["mc2_targets"] = {"labels": labels}
        return sample

    rows = _compact_samples(_generated("mc2", "acc"), [
        mc2_sample(0, [-3.0, -1.0, -2.0], [1, 1, 0], 0.71),  # the pick (1) is the second true answer
        mc2_sample(1, [-3.0, -2.0, -1.0], [1, 1, 0], 1.0),  # a mass of exactly 1 is still no right/wrong
    ], " ")
    assert [(r["correct"], r["pick"], r["pick_right"], r["score"]) for r in rows] == [
        (None, 1, True, 0.71), (None, 2, False, 1.0)]


# ---------------------------------------------------------------- shots per task ([eval.num_fewshot])


@pytest.fixture(scope="module")
def shots_run(tiny_lm, tmp_path_factory):
    """ARC 0-shot and TruthfulQA 2-shot over the whole sample (no limit), with lm-eval's raw logs captured."""
    import lm_eval

    raw: dict = {"samples": {}, "n-shot": {}}
    real = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        results = real(*args, **kwargs)
        raw["samples"].update(results["samples"])
        raw["n-shot"].update(results["n-shot"])
        return results

    settings = EvalSection(tasks=["arc_challenge", "truthfulqa_mc2"], benchmarks_dir=str(SAMPLE),
                           num_fewshot={"arc_challenge": 0, "truthfulqa_mc2": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", spy)
        outcome = evaluate(*tiny_lm, settings, workdir=tmp_path_factory.mktemp("shots"), base_dir=REPO_ROOT,
                           seed=SEED, dtype="float32")
    return outcome, raw


@pytest.mark.slow
def test_changed_shots_are_what_lm_eval_runs(shots_run):
    outcome, raw = shots_run
    scores = _by_task(outcome)
    assert (scores["arc_challenge"].num_fewshot, scores["truthfulqa_mc2"].num_fewshot) == (0, 2)
    assert raw["n-shot"] == {"tunelab_arc_challenge": 0, "tunelab_truthfulqa_mc2": 2}
    arc = raw["samples"]["tunelab_arc_challenge"]
    assert len(arc) == len(_rows(SAMPLE / "arc_challenge" / "test.jsonl"))
    # 0-shot: the context is the item's own question and nothing else.
    assert all(s["arguments"][0][0] == f"Question: {s['doc']['question']}\nAnswer:" for s in arc)


@pytest.mark.slow
def test_truthfulqa_shots_come_from_its_one_split_never_the_item_itself(shots_run):
    _, raw = shots_run
    questions = [json.loads(row)["question"] for row in _rows(SAMPLE / "truthfulqa" / "mc_validation.jsonl")]
    for sample in raw["samples"]["tunelab_truthfulqa_mc2"]:
        context = sample["arguments"][0][0]
        assert context.count(f"Q: {sample['doc']['question']}") == 1
        assert sum(f"Q: {q}\n" in context for q in questions if q != sample["doc"]["question"]) == 2


@pytest.mark.slow
def test_changed_shots_are_not_leaderboard_comparable_and_the_profile_says_so(shots_run):
    outcome, _ = shots_run
    assert [s.comparable for s in outcome.scores] == [False, False]  # limit 0: only the shots make them so
    fp = outcome.fingerprint
    assert fp["profile"] == "custom"
    assert fp["num_fewshot_overrides"] == {"arc_challenge": 0, "truthfulqa_mc2": 2}
    assert {k: (v["num_fewshot"], v["leaderboard_settings"]) for k, v in fp["tasks"].items()} == {
        "arc_challenge": (0, False), "truthfulqa_mc2": (2, False)}
    assert fp["tasks"]["truthfulqa_mc2"]["fewshot_split"] == "validation"


def test_the_leaderboards_own_shots_are_leaderboard_settings(tmp_path):
    same = EvalSection(tasks=["arc_challenge"], num_fewshot={"arc_challenge": 25})
    (plan,) = plan_tasks(same, benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path / "a")
    assert plan.tasks[0].leaderboard_settings is True
    (plan,) = plan_tasks(EvalSection(tasks=["mmlu_anatomy"], num_fewshot={"mmlu": 0}), benchmarks_dir=SAMPLE,
                         base_dir=tmp_path, out_dir=tmp_path / "b")
    assert plan.tasks[0].leaderboard_settings is False


def test_single_mmlu_subjects_take_mmlus_shots(tmp_path):
    import yaml

    settings = EvalSection(tasks=["mmlu_anatomy", "mmlu_virology"], num_fewshot={"mmlu": 2})
    (plan,) = plan_tasks(settings, benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path / "tasks")
    assert [(t.num_fewshot, t.leaderboard_settings) for t in plan.tasks] == [(2, False), (2, False)]
    assert {yaml.safe_load(t.yaml_path.read_text())["num_fewshot"] for t in plan.tasks} == {2}


@pytest.mark.parametrize(
    ("shots", "message"),
    [
        ({"arc_challenge": 31}, r"arc_challenge: 31-shot needs 31 rows in .*arc_challenge/train\.jsonl .*it has 30"),
        # Shots drawn from the scored split leave the item out: 40 rows give at most 39 shots.
        ({"hellaswag": 40}, r"hellaswag: 40-shot needs 41 rows in .*hellaswag/validation\.jsonl .*it has 40"),
    ],
)
def test_more_shots_than_local_rows_fail_before_the_model_runs(tmp_path, shots, message):
    settings = EvalSection(tasks=list(shots), num_fewshot=shots)
    with pytest.raises(EvaluationError, match=message):
        plan_tasks(settings, benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path / "tasks")


# ---------------------------------------------------------------- the device


def test_the_model_is_moved_to_the_evaluation_device_only_when_elsewhere():
    import torch

    model = torch.nn.Linear(2, 2)
    assert place_model(model, None) == "cpu" and model_device(model) == "cpu"
    assert place_model(model, "cpu") == "cpu"
    # "meta" stands in for an accelerator: a real move, on any machine.
    assert place_model(model, "meta") == "meta" and model_device(model) == "meta"


# ---------------------------------------------------------------- HellaSwag few-shot from its own split


def _hellaswag_tasks(benchmarks: Path, out: Path):
    from lm_eval.tasks import TaskManager

    plan_tasks(EvalSection(tasks=["hellaswag"]), benchmarks_dir=benchmarks, base_dir=out, out_dir=out)
    return TaskManager(include_path=str(out), include_defaults=False)


def _own_shot(doc: dict) -> str:
    return f"{doc['query']} {doc['choices'][doc['gold']]}"


def test_hellaswag_item_is_never_among_its_own_shots(tmp_path):
    # 11 items, 10 shots: without exclusion nearly every item would draw itself.
    bench = tmp_path / "bench"
    _write_rows(bench / "hellaswag" / "validation.jsonl", _rows(SAMPLE / "hellaswag" / "validation.jsonl")[:11])
    task = _hellaswag_tasks(bench, tmp_path / "tasks").load(["tunelab_hellaswag"])["tasks"]["tunelab_hellaswag"]
    task.set_fewshot_seed(SEED)
    docs = list(task.eval_docs)
    assert len(docs) == 11
    for doc in docs:
        context = task.fewshot_context(doc=doc, num_fewshot=10)
        assert _own_shot(doc) not in context
        # ...and the ten shots are exactly the ten other items.
        assert sum(_own_shot(other) in context for other in docs) == 10


def test_stock_lm_eval_would_leak_the_item_into_its_shots(tmp_path):
    """The reason for the override: lm-eval 0.4.13 with only fewshot_split=validation does not exclude the item."""
    from lm_eval.tasks import TaskManager

    bench = _write_rows(tmp_path / "validation.jsonl", _rows(SAMPLE / "hellaswag" / "validation.jsonl")[:11])
    config = {
        "include": str(official_tasks_dir() / "hellaswag" / "hellaswag.yaml"),
        "task": "stock_hellaswag",
        "tag": None,
        "num_fewshot": 10,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"validation": str(bench)}},
        "training_split": None,
        "fewshot_split": "validation",
    }
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "stock.yaml").write_text(json.dumps(config))  # JSON is YAML
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    task = manager.load(["stock_hellaswag"])["tasks"]["stock_hellaswag"]
    task.set_fewshot_seed(SEED)
    leaked = [doc for doc in task.eval_docs if _own_shot(doc) in task.fewshot_context(doc=doc, num_fewshot=10)]
    assert leaked


def test_hellaswag_with_a_local_train_split_keeps_leaderboard_settings(tmp_path):
    bench = tmp_path / "bench"
    rows = _rows(SAMPLE / "hellaswag" / "validation.jsonl")
    _write_rows(bench / "hellaswag" / "validation.jsonl", rows[:5])
    _write_rows(bench / "hellaswag" / "train.jsonl", rows[5:20])
    (plan,) = plan_tasks(
        EvalSection(tasks=["hellaswag"]), benchmarks_dir=bench, base_dir=tmp_path, out_dir=tmp_path / "tasks"
    )
    assert plan.tasks[0].leaderboard_settings is True


# ---------------------------------------------------------------- generated YAMLs


def test_generated_yaml_includes_the_official_task_and_overrides_only_data_and_shots(tmp_path):
    import yaml

    plans = plan_tasks(EvalSection(), benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path / "tasks")
    arc = yaml.safe_load(plans[0].tasks[0].yaml_path.read_text())
    assert arc["include"] == str(official_tasks_dir() / "arc" / "arc_challenge.yaml")
    assert set(arc) == {"include", "task", "tag", "num_fewshot", "dataset_path", "dataset_name", "dataset_kwargs"}
    assert arc["num_fewshot"] == 25 and arc["dataset_path"] == "json" and arc["dataset_name"] is None
    assert set(arc["dataset_kwargs"]["data_files"]) == {"train", "validation", "test"}

    hub = plan_tasks(EvalSection(tasks=["mmlu"]), benchmarks_dir=None, base_dir=tmp_path, out_dir=tmp_path / "hub")
    anatomy = yaml.safe_load((tmp_path / "hub" / "tunelab_mmlu_anatomy.yaml").read_text())
    assert anatomy == {
        "include": str(official_tasks_dir() / "mmlu" / "default" / "mmlu_anatomy.yaml"),
        "task": "tunelab_mmlu_anatomy",
        "tag": None,
        "num_fewshot": 5,
    }
    assert len(hub[0].tasks) == 57


def test_benchmarks_dir_comes_from_the_spec_then_the_environment(tmp_path):
    (tmp_path / "bench").mkdir()
    env = {"TUNELAB_BENCHMARKS_DIR": str(SAMPLE)}
    assert resolve_benchmarks_dir(EvalSection(benchmarks_dir="bench"), tmp_path, env) == tmp_path / "bench"
    assert resolve_benchmarks_dir(EvalSection(), tmp_path, env) == SAMPLE
    assert resolve_benchmarks_dir(EvalSection(), tmp_path, {}) is None
    with pytest.raises(EvaluationError, match="does not exist"):
        resolve_benchmarks_dir(EvalSection(benchmarks_dir="nowhere"), tmp_path, {})


# ---------------------------------------------------------------- custom tasks

def _run_custom(model, tokenizer, tmp_path, monkeypatch, *, num_fewshot=1, batch_size: int | str = 8):
    import lm_eval

    _write_rows(tmp_path / "data" / "capitals.jsonl", CAPITAL_QUESTIONS)
    raw: dict = {}
    real = lm_eval.simple_evaluate
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: raw.setdefault("r", real(*a, **k)))
    settings = EvalSection(
        tasks=[], custom=[CustomTask(name="capitals", path="data/capitals.jsonl", num_fewshot=num_fewshot)],
        batch_size=batch_size,
    )
    outcome = evaluate(
        model, tokenizer, settings, workdir=tmp_path / "work", base_dir=tmp_path, seed=SEED, dtype="float32"
    )
    return outcome, raw["r"]


@pytest.mark.slow
def test_custom_task_scores_acc_on_the_alpaca_prompt(tiny_lm, tmp_path, monkeypatch):
    outcome, raw = _run_custom(*tiny_lm, tmp_path, monkeypatch)
    (score,) = outcome.scores
    assert (score.task, score.metric, score.num_fewshot, score.n_samples) == ("capitals", "acc", 1, 6)
    assert 0.0 <= score.value <= 1.0
    assert score.value == pytest.approx(raw["results"]["tunelab_custom_capitals"]["acc,none"])
    assert score.comparable is True
    assert [r["target"] for r in outcome.samples["capitals"]] == [row["answer"] for row in CAPITAL_QUESTIONS]

    first = raw["samples"]["tunelab_custom_capitals"][0]
    context, continuation = first["arguments"][0]
    # The prompt the fine-tunes train on, with the question as the instruction.
    assert context.endswith(ALPACA_PROMPT.format(instruction=CAPITAL_QUESTIONS[0]["question"]))
    assert continuation == "Paris"  # target_delimiter "": the answer follows "### Response:\n" directly
    assert context.count(CAPITAL_QUESTIONS[0]["question"]) == 1  # its one shot is another row
    assert context.count("### Response:\n") == 2


@pytest.mark.slow
def test_custom_task_with_a_peft_model_leaves_the_adapter_in_place(tiny_lm, tmp_path, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, tokenizer = tiny_lm
    import copy

    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    model.train()
    outcome, _ = _run_custom(model, tokenizer, tmp_path, monkeypatch, num_fewshot=0)
    assert outcome.scores[0].metric == "acc"
    assert isinstance(model, PeftModel) and model.training  # not merged, mode restored


@pytest.mark.slow
def test_evaluation_is_reproducible(tiny_lm, tmp_path, monkeypatch):
    first, _ = _run_custom(*tiny_lm, tmp_path / "a", monkeypatch)
    second, _ = _run_custom(*tiny_lm, tmp_path / "b", monkeypatch)
    assert first.scores == second.scores
    assert first.samples == second.samples
    assert first.fingerprint == second.fingerprint


def test_batch_size_auto_is_lm_evals_own_and_keeps_stdout_clean(tiny_lm, tmp_path, monkeypatch, capsys):
    fixed, _ = _run_custom(*tiny_lm, tmp_path / "fixed", monkeypatch, batch_size=1)
    capsys.readouterr()
    auto, _ = _run_custom(*tiny_lm, tmp_path / "auto", monkeypatch, batch_size="auto")
    captured = capsys.readouterr()
    # lm-eval announces the size it found with print(); `tunelab eval --json` owns stdout.
    assert captured.out == ""
    assert "Determined largest batch size" in captured.err
    assert (fixed.fingerprint["batch_size"], auto.fingerprint["batch_size"]) == (1, "auto")
    assert [s.value for s in auto.scores] == pytest.approx([s.value for s in fixed.scores])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, r"capitals\.jsonl:2: `answer` must be the index"),
        ({"question": "q", "choices": "ab", "answer": 0}, r"capitals\.jsonl:2: `choices` must be a list"),
    ],
)
def test_malformed_custom_rows_are_reported_with_their_line(tiny_lm, tmp_path, row, message):
    _write_rows(tmp_path / "capitals.jsonl", [CAPITAL_QUESTIONS[0], row])
    settings = EvalSection(tasks=[], custom=[CustomTask(name="capitals", path="capitals.jsonl")])
    with pytest.raises(EvaluationError, match=message):
        evaluate(*tiny_lm, settings, workdir=tmp_path / "w", base_dir=tmp_path, seed=SEED, dtype="float32")


# ---------------------------------------------------------------- errors


def test_missing_benchmark_file_is_named(tiny_lm, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(SAMPLE, bench)
    (bench / "mmlu" / "virology" / "dev.jsonl").unlink()
    settings = EvalSection(benchmarks_dir=str(bench), limit=1)
    with pytest.raises(EvaluationError, match=r"benchmark file .*mmlu/virology/dev\.jsonl is missing"):
        evaluate(*tiny_lm, settings, workdir=tmp_path / "w", base_dir=tmp_path, seed=SEED, dtype="float32")


def test_unknown_task_is_an_error(tiny_lm, tmp_path):
    settings = EvalSection(tasks=["arc_challenge", "gsm8k"], benchmarks_dir=str(SAMPLE))
    with pytest.raises(EvaluationError, match="unknown eval task.*'gsm8k'"):
        evaluate(*tiny_lm, settings, workdir=tmp_path / "w", base_dir=tmp_path, seed=SEED, dtype="float32")


def test_custom_name_clashing_with_a_benchmark_is_an_error(tiny_lm, tmp_path):
    _write_rows(tmp_path / "c.jsonl", CAPITAL_QUESTIONS)
    settings = EvalSection(tasks=["hellaswag"], custom=[CustomTask(name="hellaswag", path="c.jsonl")])
    with pytest.raises(EvaluationError, match="hellaswag"):
        evaluate(*tiny_lm, settings, workdir=tmp_path / "w", base_dir=tmp_path, seed=SEED, dtype="float32")


OFFLINE_SCRIPT = """
import sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from tunelab.experiments.schema import EvalSection
from tunelab.runner.errors import EvaluationError
from tunelab.runner.evaluation.harness import evaluate

model_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
try:
    evaluate(model, tokenizer, EvalSection(tasks=["arc_challenge"], limit=1), workdir=work, base_dir=work,
             seed=1, dtype="float32")
except EvaluationError as err:
    print("EvaluationError:", err)
"""


def test_offline_without_local_data_says_what_to_do(tiny_model_dir, tmp_path):
    # A fresh HF_HOME, so no dataset cache on this machine can make the hub data appear available.
    env = {
        k: v for k, v in os.environ.items() if k not in {"TUNELAB_BENCHMARKS_DIR", "HF_DATASETS_CACHE", "HF_HUB_CACHE"}
    }
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tiny_model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("EvaluationError: arc_challenge: the hub dataset is not in the local cache")
    assert "set [eval] benchmarks_dir or TUNELAB_BENCHMARKS_DIR to a local copy" in line


# ---------------------------------------------------------------- single MMLU subjects


def test_single_mmlu_subjects_make_one_partial_mmlu(tmp_path):
    settings = EvalSection(tasks=["mmlu_virology", "arc_challenge", "mmlu_anatomy"])
    plans = plan_tasks(settings, benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path / "tasks")
    assert [p.name for p in plans] == ["mmlu", "arc_challenge"]
    assert [t.reported for t in plans[0].tasks] == ["mmlu_virology", "mmlu_anatomy"]
    assert (plans[0].complete, plans[1].complete) == (False, True)
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [
        "tunelab_arc_challenge.yaml", "tunelab_mmlu_anatomy.yaml", "tunelab_mmlu_virology.yaml"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["mmlu", "mmlu_anatomy"], "both mmlu .all subjects. and single"),
        (["mmlu_anatomy", "mmlu"], "both mmlu .all subjects. and single"),
        (["mmlu_astrology"], "unknown eval task.*'mmlu_astrology'"),
        (["anatomy", "mmlu_virology"], "unknown eval task.*'anatomy'"),
    ],
)
def test_bad_mmlu_subject_requests(tasks, message, tmp_path):
    with pytest.raises(EvaluationError, match=message):
        plan_tasks(EvalSection(tasks=tasks), benchmarks_dir=SAMPLE, base_dir=tmp_path, out_dir=tmp_path)
