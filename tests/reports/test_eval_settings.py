"""What an evaluation's fingerprint says: why a score is not leaderboard-comparable, what differs between two
evaluations, and when an average is not the leaderboard's."""

from __future__ import annotations

from dataclasses import replace

from tunelab.reports.eval_settings import (
    average_caveats,
    describe,
    differing,
    model_settings,
    not_comparable_reasons,
    score_settings,
)
from tunelab.reports.marks import delta_class, delta_text

from tests.helpers import scores


def one(task: str, **changes):
    (score,) = scores("finetuned", "run:1", {task: 0.5})
    return replace(score, **changes)


def test_reasons_a_score_is_not_comparable_come_from_its_record():
    assert not_comparable_reasons(one("arc_challenge", num_fewshot=25)) == []
    assert not_comparable_reasons(one("arc_challenge", comparable=False, limit=4, num_fewshot=25)) == [
        "limit 4 items per task"]
    assert not_comparable_reasons(one("mmlu", comparable=False, num_fewshot=0)) == [
        "0 shots (the leaderboard's: 5)"]
    offline = {"eval_key": "k", "tasks": {"hellaswag": {"fewshot_split": "validation", "leaderboard_settings": False}}}
    assert not_comparable_reasons(one("hellaswag", comparable=False, num_fewshot=10, fingerprint=offline)) == [
        "few-shot examples from the validation split"]
    partial = {"tasks": {"mmlu": {"subtasks": 3, "leaderboard_settings": False}}}
    assert not_comparable_reasons(one("mmlu", comparable=False, num_fewshot=5, fingerprint=partial)) == [
        "part of MMLU (3 subjects)"]
    assert not_comparable_reasons(one("capitals", comparable=False)) == ["not at leaderboard settings"]


def test_settings_that_differ_are_named_with_their_values_new_fingerprint_keys_included():
    fingerprint = {"eval_key": "k", "batch_size": 8, "limit": 0, "chat_template": 0,
                   "tasks": {"arc_challenge": {"num_fewshot": 25, "config_sha256": "a" * 64}}}
    first = one("arc_challenge", num_fewshot=25, fingerprint=fingerprint)
    second = one("arc_challenge", num_fewshot=0, fingerprint={**fingerprint, "batch_size": 1, "chat_template": 1})
    settings = [score_settings(first), score_settings(second)]
    assert settings[0]["task config"] == "aaaaaaaa"  # hashes shortened
    assert differing(settings) == ["batch size", "chat template", "shots"]
    assert describe(settings[1], differing(settings)) == "batch size 1, chat template 1, shots 0"
    assert differing([model_settings([first]), model_settings([second])]) == [
        "batch size", "chat template", "ARC shots"]


def test_an_average_names_what_keeps_it_from_being_the_leaderboards():
    every = dict.fromkeys(("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"), True)
    assert average_caveats(every) == []
    assert average_caveats({"capitals": False}) == []  # no leaderboard benchmark: no average at all
    assert average_caveats({**every, "mmlu": False, "capitals": False}) == [
        "includes scores not leaderboard-comparable (MMLU)"]
    assert average_caveats({"arc_challenge": True}) == ["without HellaSwag, MMLU, TruthfulQA"]


def test_a_change_that_rounds_to_zero_is_shown_as_no_change():
    assert (delta_text(-0.00001), delta_class(-0.00001)) == ("+0.0000", "flat")
    assert (delta_text(-0.0001), delta_class(-0.0001)) == ("-0.0001", "down")
    assert (delta_text(-0.0004, digits=1, scale=100), delta_class(-0.0004, digits=1, scale=100)) == ("+0.0", "flat")
    assert (delta_text(0.002, digits=1, scale=100), delta_class(0.002, digits=1, scale=100)) == ("+0.2", "up")
    assert (delta_text(None), delta_class(None)) == ("", "flat")
