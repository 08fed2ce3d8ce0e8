"""Tasks from a directory of lm-eval task YAMLs ([eval] include_path), evaluated on the tiny model for real: the
YAML's prompt (a Python helper included), its first metric, the spec's shots, data found beside the YAML whatever
the working directory, and the errors a user sees for a missing directory, task or data file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tunelab.experiments.schema import EvalSection
from tunelab.runner.errors import EvaluationError
from tunelab.runner.evaluation.harness import evaluate
from tunelab.runner.evaluation.planning import plan_tasks

from tests.helpers import CAPITAL_QUESTIONS, TASK_YAML, write_task_dir

SEED = 1234
REPO_ROOT = Path(__file__).resolve().parents[3]

@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _evaluate(tiny_lm, project: Path, monkeypatch, **settings):
    """Evaluate with lm-eval's raw results captured, from a working directory that is not the project."""
    import lm_eval

    raw: dict = {}
    real = lm_eval.simple_evaluate
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: raw.setdefault("r", real(*a, **k)))
    elsewhere = project / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)  # a worker runs wherever it was started; the task's data must still be found
    values = {"tasks": ["capitals_yaml"], "include_path": "tasks"} | settings
    outcome = evaluate(*tiny_lm, EvalSection(**values), workdir=project / "work", base_dir=project, seed=SEED,
                       dtype="float32")
    return outcome, raw["r"]


@pytest.mark.slow
def test_a_yaml_task_is_scored_on_its_first_metric_with_its_own_prompt(tiny_lm, tmp_path, monkeypatch):
    write_task_dir(tmp_path)
    outcome, raw = _evaluate(tiny_lm, tmp_path, monkeypatch)
    (score,) = outcome.scores
    lm_result = raw["results"]["tunelab_include_capitals_yaml"]
    # acc_norm is listed first in the YAML (lm-eval itself would order acc first for multiple choice).
    assert (score.task, score.metric, score.num_fewshot, score.n_samples) == ("capitals_yaml", "acc_norm", 0, 6)
    assert score.value == pytest.approx(lm_result["acc_norm,none"])
    assert score.comparable is True
    first = raw["samples"]["tunelab_include_capitals_yaml"][0]
    assert first["arguments"][0][0] == "Q: What is the capital of France?\nA:"  # helpers.prompt, beside the YAML
    rows = outcome.samples["capitals_yaml"]
    assert [r["target"] for r in rows] == [row["answer"] for row in CAPITAL_QUESTIONS]
    assert all(r["correct"] == (r["pick"] == r["target"]) for r in rows)
    assert score.value == pytest.approx(sum(r["score"] for r in rows) / len(rows))
    entry = outcome.fingerprint["tasks"]["capitals_yaml"]
    assert entry["num_fewshot"] == 0 and len(entry["data_sha256"]) == 64
    # No leaderboard benchmark: the result is not an Open LLM Leaderboard one, and the profile says so.
    fingerprint = outcome.fingerprint
    assert (fingerprint["profile"], fingerprint["deviations"]) == ("custom", ["no leaderboard benchmark"])


@pytest.mark.slow
def test_the_spec_sets_a_yaml_tasks_shots(tiny_lm, tmp_path, monkeypatch):
    write_task_dir(tmp_path)
    outcome, raw = _evaluate(tiny_lm, tmp_path, monkeypatch, num_fewshot={"capitals_yaml": 2})
    assert outcome.scores[0].num_fewshot == 2 and raw["n-shot"] == {"tunelab_include_capitals_yaml": 2}
    for sample in raw["samples"]["tunelab_include_capitals_yaml"]:
        context = sample["arguments"][0][0]
        assert context.count("Q: ") == 3 and context.count(sample["doc"]["question"]) == 1


GENERATE = """\
task: adding
dataset_path: json
dataset_kwargs:
  data_files: sums.jsonl
test_split: train
output_type: generate_until
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
filter_list:
  - name: first-number
    filter:
      - function: regex
        regex_pattern: "(\\\\d+)"
        fallback: "0"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow
def test_a_generation_task_reports_its_metric_under_its_filter(tiny_lm, tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "adding.yaml").write_text(GENERATE, encoding="utf-8")
    sums = [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(5)]
    (tmp_path / "tasks" / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sums), encoding="utf-8")
    outcome, raw = _evaluate(tiny_lm, tmp_path, monkeypatch, tasks=["adding"])
    (score,) = outcome.scores
    assert score.metric == "exact_match,first-number"
    assert score.value == pytest.approx(raw["results"]["tunelab_include_adding"]["exact_match,first-number"])
    rows = outcome.samples["adding"]
    assert [r["doc_id"] for r in rows] == list(range(5))  # one row per item, not one per filter
    assert all(r["pick"] is None and r["choices"] == [] and r["correct"] == (r["score"] == 1.0) for r in rows)
    # The tiny model writes no digits, so the fallback "0" is every answer: right for "0 plus 0" alone.
    assert [r["correct"] for r in rows] == [True, False, False, False, False] and score.value == pytest.approx(0.2)


def test_benchmarks_yaml_tasks_and_custom_tasks_keep_the_order_of_tasks(tmp_path):
    write_task_dir(tmp_path)
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CAPITAL_QUESTIONS), encoding="utf-8")
    settings = EvalSection(tasks=["mmlu_anatomy", "capitals_yaml", "arc_challenge", "mmlu_virology"],
                           include_path="tasks", custom=[{"name": "mine", "path": "c.jsonl"}])
    plans = plan_tasks(settings, benchmarks_dir=REPO_ROOT / "examples" / "benchmarks", base_dir=tmp_path,
                       out_dir=tmp_path / "out")
    assert [(p.name, p.requested, p.included) for p in plans] == [
        ("mmlu", ("mmlu_anatomy", "mmlu_virology"), False), ("capitals_yaml", ("capitals_yaml",), True),
        ("arc_challenge", ("arc_challenge",), False), ("mine", (), False)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": ["capitals_yml"]}, r"unknown eval task\(s\) 'capitals_yml': .*include_path .*tasks "
                                      r"\(its tasks: capitals_yaml\)"),
        ({"tasks": ["all_mine"]}, r"'all_mine' is an lm-eval group; name its tasks instead"),
        ({"tasks": ["geography"]}, r"'geography' is an lm-eval tag; name its tasks instead"),
        ({"include_path": "no-such-dir"}, r"task directory .*no-such-dir \(from \[eval\] include_path\) does not"),
        ({"tasks": ["gsm8k"], "include_path": ""}, r"unknown eval task.*'gsm8k'.*include_path"),
    ],
)
def test_what_a_user_gets_wrong_is_named(tmp_path, change, message):
    write_task_dir(tmp_path)
    settings = EvalSection(**({"tasks": ["capitals_yaml"], "include_path": "tasks"} | change))
    with pytest.raises(EvaluationError, match=message):
        plan_tasks(settings, benchmarks_dir=None, base_dir=tmp_path, out_dir=tmp_path / "out")


def test_a_missing_data_file_is_named_before_the_model_runs(tmp_path):
    tasks = write_task_dir(tmp_path)
    (tasks / "data" / "capitals.jsonl").unlink()
    with pytest.raises(EvaluationError, match=r"task capitals_yaml .*capitals\.yaml\): data file data/capitals\.jsonl"
                                              r" not found"):
        plan_tasks(EvalSection(tasks=["capitals_yaml"], include_path="tasks"), benchmarks_dir=None,
                   base_dir=tmp_path, out_dir=tmp_path / "out")


def test_data_files_may_be_globs_and_relative_to_the_submit_directory(tmp_path):
    import yaml

    tasks = write_task_dir(tmp_path)
    (tmp_path / "shared").mkdir()
    for i in range(2):
        (tmp_path / "shared" / f"part{i}.jsonl").write_text(json.dumps(CAPITAL_QUESTIONS[i]) + "\n", encoding="utf-8")
    globbed = TASK_YAML.replace("data/capitals.jsonl", "shared/part*.jsonl")
    (tasks / "capitals.yaml").write_text(globbed, encoding="utf-8")
    (plan,) = plan_tasks(EvalSection(tasks=["capitals_yaml"], include_path="tasks"), benchmarks_dir=None,
                         base_dir=tmp_path, out_dir=tmp_path / "out")
    files = [str(tmp_path / "shared" / f"part{i}.jsonl") for i in range(2)]
    assert [str(f) for f in plan.tasks[0].data_files] == files
    wrapper = yaml.safe_load(plan.tasks[0].yaml_path.read_text())
    assert wrapper["dataset_kwargs"]["data_files"] == {"test": files}
    assert wrapper["include"] == str(tasks / "capitals.yaml")
