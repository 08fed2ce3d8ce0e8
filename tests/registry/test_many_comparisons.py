"""Holm–Bonferroni over many comparisons and paired-bootstrap intervals, against hand-computed values; intervals
are stored beside p-values as scores are recorded."""

from __future__ import annotations

import pytest
from tunelab.registry.queries import run_scores
from tunelab.registry.recording import record_scores
from tunelab.registry.scores import Score
from tunelab.registry.significance import bootstrap_interval, holm_adjusted, item_value, paired_differences
from tunelab.registry.submissions import NewExperiment, submit

from tests.helpers import item_log, logs_b1_c9


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_one_and_keeps_the_order():
    # Sorted: 0.01*4 = 0.04, 0.03*3 = 0.09, 0.04*2 = 0.08 -> 0.09 (never below the one before), 0.20*1 = 0.20.
    assert holm_adjusted([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    # Capped at 1; a single comparison is left as it is.
    assert holm_adjusted([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjusted([0.03]) == [0.03]
    assert holm_adjusted([]) == []


def test_holm_takes_back_a_mark_that_chance_alone_would_give_among_many():
    # The best of 20 variants at p = 0.01: significant alone, not once the 20 comparisons are counted.
    adjusted = holm_adjusted([0.01] + [0.5] * 19)
    assert adjusted[0] == pytest.approx(0.20)


def test_bootstrap_interval_on_hand_computable_cases():
    # Every item changed by the same amount: the interval is that amount.
    assert bootstrap_interval([[0.5] * 7]) == (0.5, 0.5)
    # Two items, changes 0 and 1: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are 0 and 1.
    assert bootstrap_interval([[0.0, 1.0]]) == (0.0, 1.0)
    # Items are resampled within their task: two tasks each of constant change give their mean, exactly.
    assert bootstrap_interval([[1.0, 1.0], [0.0, 0.0, 0.0]]) == (0.5, 0.5)


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    changes = [1.0] * 30 + [0.0] * 70  # mean 0.3, standard error sqrt(0.3 * 0.7 / 100) = 0.0458
    low, high = bootstrap_interval([changes])
    assert low == pytest.approx(0.3 - 1.96 * 0.0458, abs=0.02)
    assert high == pytest.approx(0.3 + 1.96 * 0.0458, abs=0.02)
    assert bootstrap_interval([changes]) == (low, high)
    assert bootstrap_interval([changes], seed=1) != (low, high)


def test_item_values_are_scores_else_right_or_wrong():
    assert item_value({"score": 0.25, "correct": None}) == 0.25
    assert item_value({"correct": True}) == 1.0
    assert item_value({"correct": None}) is None
    before, after = logs_b1_c9()
    # Item 0 lost (-1), items 1-2 right in both (0), items 3-11 gained (+1).
    assert paired_differences(before, after) == [-1.0, 0.0, 0.0] + [1.0] * 9


def _score(kind: str, value: float, samples: list[dict], metric: str = "acc") -> Score:
    return Score(model_kind=kind, model_name="tiny" if kind == "base" else "run", task="arc_challenge",
                 metric=metric, value=value, stderr=None, num_fewshot=0, limit=0, n_samples=None,
                 lm_eval_version="0.4.13", fingerprint={"eval_key": "k1"}, samples=samples)


def _run(registry) -> int:
    (done,) = submit(registry, [NewExperiment(name="r", description="", tags=[], spec_path="s.toml", spec_text="",
                                              resolved_json="{}", spec_hash="r", workdir="/")])
    return done.run_id


def test_the_interval_is_stored_with_the_p_value_and_read_back(registry):
    before, after = logs_b1_c9()
    run = _run(registry)
    record_scores(registry, run, [_score("finetuned", 11 / 12, after), _score("base", 3 / 12, before)])
    (tuned,) = [s for s in run_scores(registry, [run])[run] if s.model_kind == "finetuned"]
    assert tuned.vs_base_p == pytest.approx(0.021484375)
    assert tuned.vs_base_ci_low == bootstrap_interval([paired_differences(before, after)])[0]
    assert tuned.vs_base_ci_low < 8 / 12 < tuned.vs_base_ci_high <= 1.0


def test_an_mc2_score_has_an_interval_but_no_p_value(registry):
    run = _run(registry)
    mass = [{"doc_id": i, "target": 0, "correct": None, "score": 0.5 + i / 20} for i in range(4)]
    record_scores(registry, run, [_score("finetuned", 0.6, mass, "mc2"),
                                  _score("base", 0.5, [dict(item, score=0.5) for item in mass], "mc2")])
    (tuned,) = [s for s in run_scores(registry, [run])[run] if s.model_kind == "finetuned"]
    assert tuned.vs_base_p is None
    assert 0.0 <= tuned.vs_base_ci_low <= tuned.vs_base_ci_high <= 0.15


def test_no_interval_without_both_logs(registry):
    run = _run(registry)
    record_scores(registry, run, [_score("finetuned", 0.5, item_log([True, False])), _score("base", 0.5, None)])
    (tuned,) = [s for s in run_scores(registry, [run])[run] if s.model_kind == "finetuned"]
    assert (tuned.vs_base_p, tuned.vs_base_ci_low, tuned.vs_base_ci_high) == (None, None, None)
