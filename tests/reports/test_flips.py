"""Flipped items and McNemar's exact test on constructed per-item logs with hand-computed answers."""

from __future__ import annotations

from math import comb

import pytest
from tunelab.reports.flips import (
    RIGHT_TO_WRONG,
    WRONG_TO_RIGHT,
    FlipError,
    flip_summary,
    flipped_items,
    flips_by_task,
    mcnemar_exact,
)


def _log(outcomes: list[bool], *, target: int = 0, start: int = 0) -> list[dict]:
    # A wrong answer picks choice 1; the gold is choice 0.
    return [
        {"doc_id": start + i, "target": target, "pick": target if right else target + 1, "correct": right}
        for i, right in enumerate(outcomes)
    ]


def test_mcnemar_b1_c9_matches_the_binomial_tail_by_hand():
    # n = 10 discordant pairs; P(X <= 1) = (C(10,0) + C(10,1)) / 2^10 = 11/1024; two-sided doubles it.
    assert 2 * (comb(10, 0) + comb(10, 1)) / 2**10 == 0.021484375
    assert mcnemar_exact(1, 9) == 0.021484375
    assert mcnemar_exact(9, 1) == 0.021484375  # symmetric


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (5, 5, 1.0),  # 2 * P(X <= 5 | n=10) > 1, capped
        (0, 6, 2 / 64),  # 2 * (1/2)^6
        (2, 8, 2 * (1 + 10 + 45) / 1024),
        (0, 1, 1.0),
    ],
)
def test_mcnemar_exact_values(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=0, abs=1e-15)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_flips_and_summary_on_a_constructed_pair():
    # 20 items: 6 right in both, 3 wrong in both, 1 lost (right -> wrong), 9 gained, and 1 only in `before`.
    before = _log([True] * 6 + [False] * 3 + [True] + [False] * 9 + [True])
    after = _log([True] * 6 + [False] * 3 + [False] + [True] * 9)
    flips = flipped_items(before, after)
    assert [f["doc_id"] for f in flips if f["direction"] == RIGHT_TO_WRONG] == [9]
    assert [f["doc_id"] for f in flips if f["direction"] == WRONG_TO_RIGHT] == list(range(10, 19))
    assert flips[0] == {"doc_id": 9, "target": 0, "pick_before": 0, "pick_after": 1, "direction": RIGHT_TO_WRONG}

    summary = flip_summary("arc_challenge", before, after)
    assert (summary.paired, summary.both_right, summary.both_wrong) == (19, 6, 3)
    assert (summary.right_to_wrong, summary.wrong_to_right, summary.unpaired) == (1, 9, 1)
    assert summary.net == 8
    assert summary.p_value == 0.021484375


def test_logs_are_paired_by_doc_id_not_position():
    before = _log([True, False, True])
    after = list(reversed(_log([True, False, False])))
    assert [(f["doc_id"], f["direction"]) for f in flipped_items(before, after)] == [(2, RIGHT_TO_WRONG)]


def test_flips_by_task_covers_tasks_logged_in_both():
    before = {"hellaswag": _log([True, True]), "arc_challenge": _log([False, False]), "capitals": _log([True])}
    after = {"arc_challenge": _log([True, True]), "hellaswag": _log([True, False])}
    summaries = flips_by_task(before, after)
    assert list(summaries) == ["hellaswag", "arc_challenge"]
    assert (summaries["arc_challenge"].wrong_to_right, summaries["arc_challenge"].p_value) == (2, 0.5)
    assert summaries["hellaswag"].right_to_wrong == 1


def test_different_gold_answers_for_one_item_are_an_error():
    with pytest.raises(FlipError, match="item 0 has gold answer 0 in one log and 2"):
        flipped_items(_log([True]), _log([True], target=2))


def test_a_duplicated_item_is_an_error():
    with pytest.raises(FlipError, match="appears twice"):
        flip_summary("t", _log([True]) + _log([False]), _log([True]))


def test_picks_flip_where_the_metric_has_no_right_or_wrong_but_there_is_no_p_value():
    # TruthfulQA MC2, or a multiple-choice task scored by F1 over the task: `correct` is None, `pick_right` says
    # whether the pick was a right answer. Flips are shown; McNemar's test would not be about the score.
    def picks(outcomes: list[bool]) -> list[dict]:
        return [dict(item, correct=None, pick_right=item["correct"], score=0.5) for item in _log(outcomes)]

    before, after = picks([True, False, False]), picks([False, True, True])
    assert [(f["doc_id"], f["direction"]) for f in flipped_items(before, after)] == [
        (0, RIGHT_TO_WRONG), (1, WRONG_TO_RIGHT), (2, WRONG_TO_RIGHT)]
    summary = flip_summary("truthfulqa_mc2", before, after)
    assert (summary.right_to_wrong, summary.wrong_to_right, summary.p_value) == (1, 2, None)


def test_an_older_mc2_log_flips_on_its_pick_and_has_no_p_value():
    # Written before pick_right: `correct` was whether the pick was a true answer; the score is the mass.
    before = [dict(item, score=0.4) for item in _log([True, False])]
    after = [dict(item, score=0.6) for item in _log([False, True])]
    assert [f["direction"] for f in flipped_items(before, after)] == [RIGHT_TO_WRONG, WRONG_TO_RIGHT]
    assert flip_summary("truthfulqa_mc2", before, after).p_value is None


def test_generated_answers_scored_over_the_task_neither_flip_nor_test():
    def generated(n: int) -> list[dict]:
        return [{"doc_id": i, "target": "x", "pick": None, "correct": None, "pick_right": None, "score": None}
                for i in range(n)]

    summary = flip_summary("bleu_task", generated(4), generated(4))
    assert flipped_items(generated(4), generated(4)) == []
    assert (summary.paired, summary.right_to_wrong, summary.wrong_to_right, summary.p_value) == (4, 0, 0, None)
