"""Evaluation results that say what they are: the leaderboard's few-shot seed whatever the training seed, a profile
that names what departs from the leaderboard's settings, and items whose prompt was cut to the model's context
counted, stored and marked not comparable."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.experiments.benchmarks import LEADERBOARD_FEWSHOT_SEED
from tunelab.experiments.canonical import canonical_json
from tunelab.experiments.schema import EvalSection
from tunelab.registry.scores import Score
from tunelab.reports.eval_settings import not_comparable_reasons
from tunelab.runner.evaluation.harness import evaluate
from tunelab.runner.evaluation.leaderboard import profile_of
from tunelab.runner.evaluation.targets import settings_key

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE = REPO_ROOT / "examples" / "benchmarks"


def _run(model, tokenizer, settings: EvalSection, tmp_path: Path, *, seed: int):
    """Evaluate, returning the outcome and the contexts lm-eval built, per task and item."""
    import lm_eval

    contexts: dict = {}
    real = lm_eval.simple_evaluate

    def spy(*args, **kwargs):
        results = real(*args, **kwargs)
        for task, samples in results["samples"].items():
            contexts[task] = {s["doc_id"]: s["arguments"][0][0] for s in samples}
        return results

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", spy)
        outcome = evaluate(model, tokenizer, settings, workdir=tmp_path / f"work-{seed}-{settings.fewshot_seed}",
                           base_dir=REPO_ROOT, seed=seed, dtype="float32")
    return outcome, contexts


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def short_context_lm(tmp_path_factory):
    """The tiny Llama with a 64-token context: a 5-shot MMLU prompt does not fit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tunelab.runner.training.tiny_model import build_tiny_model, default_corpus

    out = build_tiny_model(tmp_path_factory.mktemp("short-llama"), default_corpus(REPO_ROOT), vocab_size=1024,
                           hidden_size=32, num_layers=2, num_heads=2, seed=0, max_position_embeddings=64)
    return AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)


def test_the_fewshot_seed_is_the_leaderboards_unless_set_and_its_default_keeps_the_specs_form():
    assert EvalSection().fewshot_seed == LEADERBOARD_FEWSHOT_SEED == 1234
    assert "fewshot_seed" not in EvalSection().model_dump()  # existing specs keep their hash
    assert EvalSection(fewshot_seed=7).model_dump()["fewshot_seed"] == 7
    assert "leaderboard" in EvalSection.model_fields["fewshot_seed"].description
    # The settings key names it even at its default: shots drawn before it existed followed the training seed.
    key = settings_key(EvalSection(), dtype="float32", seed=1, lm_eval_version="0.4.13")
    assert key != settings_key(EvalSection(fewshot_seed=7), dtype="float32", seed=1, lm_eval_version="0.4.13")
    assert canonical_json(EvalSection().model_dump()) == canonical_json(EvalSection(fewshot_seed=1234).model_dump())


def test_the_profile_is_the_leaderboards_only_when_nothing_departs_from_it():
    full = {"num_fewshot": 25, "leaderboard_settings": True, "truncated_items": 0}
    assert profile_of({"limit": 0, "fewshot_seed": 1234}, {"arc_challenge": full}) == ("openllm-v1", [])
    # A fingerprint from before the few-shot seed and the truncation count were recorded.
    assert profile_of({"limit": 0}, {"arc_challenge": {"num_fewshot": 25, "leaderboard_settings": True}})[0] \
        == "openllm-v1"
    cases = {
        "limit 3 items per task": ({"limit": 3}, {"arc_challenge": full}),
        "few-shot seed 7 (the leaderboard's: 1234)": ({"fewshot_seed": 7}, {"arc_challenge": full}),
        "arc_challenge 0-shot (the leaderboard's: 25)": ({}, {"arc_challenge": dict(full, num_fewshot=0)}),
        "hellaswag shots from the validation split": (
            {}, {"hellaswag": {"num_fewshot": 10, "leaderboard_settings": False, "fewshot_split": "validation"}}),
        "part of mmlu": ({}, {"mmlu": {"num_fewshot": 5, "leaderboard_settings": False}}),
        "mmlu: 3 item(s) longer than the model's context": (
            {}, {"mmlu": {"num_fewshot": 5, "leaderboard_settings": True, "truncated_items": 3}}),
        "no leaderboard benchmark": ({}, {"my_task": {"num_fewshot": 0}}),
    }
    for deviation, (header, tasks) in cases.items():
        assert profile_of(header, tasks) == ("custom", [deviation])


@pytest.mark.slow
def test_fewshot_examples_do_not_follow_the_training_seed(tiny_lm, tmp_path):
    model, tokenizer = tiny_lm
    settings = EvalSection(tasks=["arc_challenge"], benchmarks_dir=str(SAMPLE), limit=3,
                           num_fewshot={"arc_challenge": 2})
    seven, at_seven = _run(model, tokenizer, settings, tmp_path, seed=7)
    _, at_eight = _run(model, tokenizer, settings, tmp_path, seed=8)
    assert at_seven == at_eight  # two training seeds, the same prompts
    assert seven.fingerprint["fewshot_seed"] == 1234
    # Another few-shot seed: other prompts, recorded, never leaderboard-comparable.
    other = settings.model_copy(update={"fewshot_seed": 99, "num_fewshot": {}})
    moved, at_other = _run(model, tokenizer, other, tmp_path, seed=7)
    same_shots, at_default = _run(model, tokenizer, other.model_copy(update={"fewshot_seed": 1234}), tmp_path, seed=7)
    assert at_other != at_default
    assert moved.fingerprint["fewshot_seed"] == 99 and moved.fingerprint["profile"] == "custom"
    assert "few-shot seed 99 (the leaderboard's: 1234)" in moved.fingerprint["deviations"]
    assert [s.comparable for s in moved.scores] == [False]
    (recorded,) = moved.recorded_as(model_kind="finetuned", model_name="m", eval_key="k")
    assert "few-shot seed 99 (the leaderboard's: 1234)" in not_comparable_reasons(recorded)


@pytest.mark.slow
def test_prompts_longer_than_the_context_are_counted_stored_and_not_comparable(short_context_lm, tiny_lm, tmp_path):
    model, tokenizer = short_context_lm
    settings = EvalSection(tasks=["mmlu_anatomy", "mmlu_virology"], benchmarks_dir=str(SAMPLE), limit=2)
    outcome, _ = _run(model, tokenizer, settings, tmp_path, seed=1)
    entry = outcome.fingerprint["tasks"]["mmlu"]
    assert entry["truncated_items"] == 4
    assert entry["truncated_by_task"] == {"mmlu_anatomy": 2, "mmlu_virology": 2}
    assert "mmlu: 4 item(s) longer than the model's context" in outcome.fingerprint["deviations"]
    assert not any(score.comparable for score in outcome.scores)
    recorded = outcome.recorded_as(model_kind="finetuned", model_name="m", eval_key="k")
    anatomy = next(s for s in recorded if s.task == "mmlu_anatomy")
    assert "2 item(s) longer than the model's context, cut from the left" in not_comparable_reasons(anatomy)
    whole = next(s for s in recorded if s.task == "mmlu")
    assert "4 item(s) longer than the model's context, cut from the left" in not_comparable_reasons(whole)

    # The same items with the 2,048-token context: nothing cut, nothing counted.
    fits, _ = _run(*tiny_lm, settings.model_copy(update={"fewshot_seed": 1234}), tmp_path / "fits", seed=1)
    assert fits.fingerprint["tasks"]["mmlu"]["truncated_items"] == 0
    assert "truncated_by_task" not in fits.fingerprint["tasks"]["mmlu"]


def test_a_score_recorded_before_the_count_has_no_truncation_reason():
    old = Score(task="mmlu_anatomy", metric="acc", value=0.5, stderr=None, num_fewshot=5, n_samples=2,
                task_group="mmlu", comparable=False, limit=2,
                fingerprint={"limit": 2, "tasks": {"mmlu": {"num_fewshot": 5}}})
    assert not_comparable_reasons(old) == ["limit 2 items per task"]
