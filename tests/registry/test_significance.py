"""A fine-tuned score's p-value against its base, stored as scores are recorded, on constructed per-item logs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select
from tunelab.registry.models import EvalResult
from tunelab.registry.queries import run_scores
from tunelab.registry.recording import record_scores, update_vs_base_p
from tunelab.registry.scores import Score
from tunelab.registry.significance import NO_P_VALUE, PairingError, discordant_counts, mcnemar_exact, pooled_p_value
from tunelab.registry.submissions import NewExperiment, submit

from tests.helpers import B1_C9, item_log, logs_b1_c9


def record(kind: str, task: str, value: float, samples: list[dict] | None, *, task_group: str | None = None,
           name: str | None = None, eval_key: str = "k1") -> Score:
    return Score(model_kind=kind, model_name=name or ("tiny" if kind == "base" else "run"), task=task,
                 metric="acc", value=value, stderr=None, num_fewshot=0, limit=0, n_samples=None,
                 task_group=task_group, comparable=True, lm_eval_version="0.4.13",
                 fingerprint={"eval_key": eval_key}, samples=samples)


def new_run(registry, name: str = "r") -> int:
    (submitted,) = submit(registry, [NewExperiment(name=name, description="", tags=[], spec_path="s.toml",
                                                   spec_text="", resolved_json="{}", spec_hash=name, workdir="/")])
    return submitted.run_id


def p_values(registry, run_id: int) -> dict[str, float | None]:
    return {row.task: row.vs_base_p for row in run_scores(registry, [run_id])[run_id]
            if row.model_kind == "finetuned" and row.task_group is None}


def test_pure_functions_on_a_known_case():
    before, after = logs_b1_c9()
    assert discordant_counts(before, after) == (1, 9)
    assert mcnemar_exact(1, 9) == B1_C9
    assert pooled_p_value([(before[:6], after[:6]), (before[6:], after[6:])]) == B1_C9
    with pytest.raises(PairingError):
        discordant_counts(item_log([True]), item_log([True], target=2))


def test_p_value_is_stored_once_the_base_is_recorded_after_the_fine_tuned_model(registry):
    # The runner's order: the fine-tuned model is evaluated first, its base after.
    run = new_run(registry)
    before, after = logs_b1_c9()
    record_scores(registry, run, [record("finetuned", "arc_challenge", 11 / 12, after)])
    assert p_values(registry, run) == {"arc_challenge": None}
    record_scores(registry, run, [record("base", "arc_challenge", 3 / 12, before)])
    assert p_values(registry, run) == {"arc_challenge": B1_C9}


def test_p_value_when_the_base_comes_first_and_none_without_logs(registry):
    run = new_run(registry)
    before, after = logs_b1_c9()
    record_scores(registry, run, [record("base", "arc_challenge", 0.25, before),
                                  record("base", "hellaswag", 0.3, None)])
    record_scores(registry, run, [record("finetuned", "arc_challenge", 0.9, after),
                                  record("finetuned", "hellaswag", 0.4, item_log([True, False]))])
    assert p_values(registry, run) == {"arc_challenge": B1_C9, "hellaswag": None}


def test_mmlu_pools_the_items_of_its_subjects(registry):
    run = new_run(registry)
    before, after = logs_b1_c9()
    subjects = {"mmlu_anatomy": (before[:5], after[:5]), "mmlu_virology": (before[5:], after[5:])}
    record_scores(registry, run, [record("finetuned", "mmlu", 0.9, None)] + [
        record("finetuned", task, 0.9, pair[1], task_group="mmlu") for task, pair in subjects.items()])
    record_scores(registry, run, [record("base", "mmlu", 0.25, None)] + [
        record("base", task, 0.25, pair[0], task_group="mmlu") for task, pair in subjects.items()])
    assert p_values(registry, run) == {"mmlu": B1_C9}


def test_a_reused_base_reads_the_logs_of_the_evaluation_it_was_copied_from(registry):
    before, after = logs_b1_c9()
    first, second = new_run(registry, "first"), new_run(registry, "second")
    record_scores(registry, first, [record("base", "arc_challenge", 0.25, before)])
    # A base evaluated before with the same settings is copied to the next run without its logs.
    record_scores(registry, second, [record("finetuned", "arc_challenge", 0.9, after)])
    record_scores(registry, second, [record("base", "arc_challenge", 0.25, None)])
    assert p_values(registry, second) == {"arc_challenge": B1_C9}
    # Other settings (another eval_key) are another evaluation: no p-value from it.
    third = new_run(registry, "third")
    record_scores(registry, third, [record("finetuned", "arc_challenge", 0.9, after, eval_key="k2"),
                                    record("base", "arc_challenge", 0.25, None, eval_key="k2")])
    assert p_values(registry, third) == {"arc_challenge": None}


def test_logs_of_different_items_give_no_p_value(registry):
    run = new_run(registry)
    record_scores(registry, run, [record("base", "arc_challenge", 0.5, item_log([True, False]))])
    record_scores(registry, run, [record("finetuned", "arc_challenge", 0.5, item_log([True, True], target=3))])
    assert p_values(registry, run) == {"arc_challenge": None}


# ---------------------------------------------------------------- items without a right/wrong


def unscored(outcomes: list[bool]) -> list[dict]:
    """A log whose items have no right/wrong of the reported metric (BLEU over the task, MC2): correct is None."""
    return [{"doc_id": i, "target": 0, "pick": 0 if right else 1, "correct": None, "pick_right": right,
             "score": None} for i, right in enumerate(outcomes)]


def test_no_p_value_when_an_item_has_no_right_or_wrong():
    before, after = logs_b1_c9()
    with_none = [dict(item, correct=None) if item["doc_id"] == 5 else item for item in after]
    assert discordant_counts(before, with_none) is None
    assert pooled_p_value([(before[:5], after[:5]), (before[5:], with_none[5:])]) is None
    # A log written before correct could be None guessed it; the item's own value (not 0 or 1) gives it away.
    guessed = [dict(item, correct=False, score=None) for item in before]
    assert pooled_p_value([(guessed, after)]) is None
    mass = [dict(item, score=0.7) for item in after]
    assert pooled_p_value([(before, mass)]) is None
    assert pooled_p_value([([dict(i, score=float(i["correct"])) for i in before], after)]) == B1_C9


def test_a_base_always_wrong_against_a_model_always_right_on_bleu_gets_no_p_value(registry):
    run = new_run(registry)
    record_scores(registry, run, [record("base", "capitals", 0.0, unscored([False] * 12)),
                                  record("finetuned", "capitals", 1.0, unscored([True] * 12))])
    # Logs written before correct could be None: every item "wrong" for both models, whatever BLEU said.
    old = [{"doc_id": i, "target": "x", "pick": None, "correct": False, "score": None} for i in range(12)]
    other = new_run(registry, "old")
    record_scores(registry, other, [record("base", "capitals", 0.0, old), record("finetuned", "capitals", 1.0, old)])
    assert p_values(registry, run) == p_values(registry, other) == {"capitals": None}


def test_mc2_gets_no_p_value_even_from_right_or_wrong_items(registry):
    # The test would be about the argmax pick; the score is the probability mass on the true answers.
    run = new_run(registry)
    before, after = logs_b1_c9()
    record_scores(registry, run, [replace(record("base", "truthfulqa_mc2", 0.3, before), metric="mc2"),
                                  replace(record("finetuned", "truthfulqa_mc2", 0.6, after), metric="mc2")])
    assert p_values(registry, run) == {"truthfulqa_mc2": None}


def test_mmlu_with_subjects_logged_for_one_model_only_gets_no_p_value(registry):
    run = new_run(registry)
    before, after = logs_b1_c9()
    record_scores(registry, run, [record("finetuned", "mmlu", 0.9, None),
                                  record("finetuned", "mmlu_anatomy", 0.9, after[:5], task_group="mmlu"),
                                  record("finetuned", "mmlu_virology", 0.9, None, task_group="mmlu")])
    record_scores(registry, run, [record("base", "mmlu", 0.25, None),
                                  record("base", "mmlu_anatomy", 0.25, before[:5], task_group="mmlu"),
                                  record("base", "mmlu_virology", 0.25, before[5:], task_group="mmlu")])
    assert p_values(registry, run) == {"mmlu": None}  # a test of anatomy alone is no test of MMLU


# ---------------------------------------------------------------- a pair is checked once


def stored_p(registry, run_id: int) -> dict[str, float | None]:
    with registry.engine.connect() as connection:
        rows = connection.execute(select(EvalResult.task, EvalResult.vs_base_p).where(
            EvalResult.run_id == run_id, EvalResult.model_kind == "finetuned", EvalResult.task_group.is_(None)))
        return dict(rows.all())


def refuse_reading_logs(monkeypatch) -> None:
    def refuse(session, result_id):
        raise AssertionError(f"read the per-item log of score {result_id} again")

    monkeypatch.setattr("tunelab.registry.recording._log_of", refuse)


def test_a_pair_without_a_test_is_checked_once_and_shows_no_p_value(registry, monkeypatch):
    from tunelab.registry.queries import run_detail

    run = new_run(registry)
    before, after = logs_b1_c9()
    record_scores(registry, run, [record("base", "arc_challenge", 0.5, item_log([True, False])),
                                  record("base", "capitals", 0.0, unscored([False] * 3)),
                                  record("base", "hellaswag", 0.25, before)])
    record_scores(registry, run, [record("finetuned", "arc_challenge", 0.5, item_log([True, True], target=3)),
                                  record("finetuned", "capitals", 1.0, unscored([True] * 3)),
                                  record("finetuned", "hellaswag", 0.9, after)])
    assert stored_p(registry, run) == {"arc_challenge": NO_P_VALUE, "capitals": NO_P_VALUE, "hellaswag": B1_C9}
    # Readers show no p-value for a checked pair without one.
    assert p_values(registry, run) == {"arc_challenge": None, "capitals": None, "hellaswag": B1_C9}
    assert {s.task: s.vs_base_p for s in run_detail(registry, run).scores if s.model_kind == "finetuned"} == {
        "arc_challenge": None, "capitals": None, "hellaswag": B1_C9}
    refuse_reading_logs(monkeypatch)
    assert update_vs_base_p(registry, run) == 0  # checked once: its logs are not read again
