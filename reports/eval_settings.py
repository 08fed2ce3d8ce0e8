"""What an evaluation was run with, read from its scores' fingerprints: why a score is not leaderboard-comparable,
and what differs between evaluations (cells of one leaderboard column, two rows of one base model).

The runner writes the fingerprint (runner/evaluation/harness.py): settings shared by every task ("limit",
"batch_size", "seed", ...) and an entry per task under "tasks" ("num_fewshot", "fewshot_split", hashes of its
config and data). Settings this module has no label for are shown under their own key, so a setting added to the
fingerprint later is still named when it differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tunelab.experiments.benchmarks import LEADERBOARD, LEADERBOARD_AVERAGE, LEADERBOARD_FEWSHOT_SEED, title_of
from tunelab.registry.scores import Score

# The fingerprint's shared settings and a task's own, with the names pages give them.
_SHARED_LABELS = {"lm_eval_version": "lm-eval", "data": "benchmark data", "limit": "limit",
                  "batch_size": "batch size", "dtype": "dtype", "device": "device", "seed": "seed",
                  "fewshot_seed": "few-shot seed"}
_TASK_LABELS = {"num_fewshot": "shots", "fewshot_split": "shots from", "config_sha256": "task config",
                "data_sha256": "task data", "subtasks": "subjects", "truncated_items": "truncated items"}
# Fingerprint entries that are not settings: the registry's key of the whole, and what is derived from the rest.
_NOT_SETTINGS = {"eval_key", "tasks", "profile", "num_fewshot_overrides", "leaderboard_settings", "deviations"}
_HASHES = {"config_sha256", "data_sha256"}
# The registry's key of a whole evaluation's settings, as model_settings labels it.
EVAL_KEY = "settings key"
# The settings that decide whether two cells of one leaderboard column are ranked together: those that change a
# task's number (harness, prompt config, data, shots and where they come from, limit, batch size: padding in a
# batch moves loglikelihoods a little, and "auto" depends on the GPU's memory).
COLUMN_SETTINGS = ("lm-eval", "task config", "task data", "shots from", "shots", "few-shot seed", "limit",
                   "batch size")


def _label(key: str, labels: Mapping[str, str]) -> str:
    return labels.get(key, key.replace("_", " "))


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text[:8] if key in _HASHES else text


def _scalars(entries: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, str]:
    return {_label(key, labels): _text(key, value) for key, value in entries.items()
            if key not in _NOT_SETTINGS and not isinstance(value, dict | list)}


def score_settings(score: Score) -> dict[str, str]:
    """One score's evaluation settings by label: the shared ones, then its task's own (shots, hashes, ...)."""
    fingerprint = score.fingerprint or {}
    settings = _scalars(fingerprint, _SHARED_LABELS)
    settings.setdefault("lm-eval", score.lm_eval_version or "-")
    settings["limit"] = str(score.limit)
    settings.update(_scalars((fingerprint.get("tasks") or {}).get(score.task, {}), _TASK_LABELS))
    settings["shots"] = str(score.num_fewshot)
    return settings


def model_settings(scores: Iterable[Score]) -> dict[str, str]:
    """A model's evaluation settings from its headline scores: the shared ones once, each task's own under its
    title ("ARC shots"), and last the key the registry gives the whole (EVAL_KEY)."""
    settings: dict[str, str] = {}
    key = None
    for score in scores:
        key = (score.fingerprint or {}).get("eval_key", key)
        fingerprint = score.fingerprint or {}
        settings.update(_scalars(fingerprint, _SHARED_LABELS))
        settings.setdefault("limit", str(score.limit))
        task = {**_scalars((fingerprint.get("tasks") or {}).get(score.task, {}), _TASK_LABELS),
                "shots": str(score.num_fewshot)}
        settings.update({f"{title_of(score.task)} {label}": value for label, value in task.items()})
    if key is not None:
        settings[EVAL_KEY] = str(key)[:8]
    return settings


def differing(settings: Sequence[Mapping[str, str]]) -> list[str]:
    """The labels whose values are not the same in every one of `settings` (missing counts as a value), in the
    order they first appear."""
    labels = list(dict.fromkeys(label for entry in settings for label in entry))
    return [label for label in labels if len({entry.get(label, "-") for entry in settings}) > 1]


def describe(settings: Mapping[str, str], labels: Iterable[str]) -> str:
    """"batch size 1, ARC shots 0": the values of `labels` in `settings`."""
    return ", ".join(f"{label} {settings.get(label, '-')}" for label in labels)


def not_comparable_reasons(score: Score) -> list[str]:
    """Why a score is not at leaderboard settings, as far as its record says; [] for a comparable one."""
    if score.comparable:
        return []
    reasons = []
    if score.limit:
        reasons.append(f"limit {score.limit} items per task")
    benchmark = LEADERBOARD.get(score.task)
    if benchmark is not None and score.num_fewshot != benchmark.num_fewshot:
        reasons.append(f"{score.num_fewshot} shots (the leaderboard's: {benchmark.num_fewshot})")
    fingerprint = score.fingerprint or {}
    seed = fingerprint.get("fewshot_seed", LEADERBOARD_FEWSHOT_SEED)
    if seed != LEADERBOARD_FEWSHOT_SEED:
        reasons.append(f"few-shot seed {seed} (the leaderboard's: {LEADERBOARD_FEWSHOT_SEED})")
    if truncated := truncated_items(score):
        reasons.append(f"{truncated} item(s) longer than the model's context, cut from the left")
    entry = (fingerprint.get("tasks") or {}).get(score.task, {})
    if not reasons and entry.get("leaderboard_settings") is False:
        if score.task == "mmlu":
            subjects = entry.get("subtasks")
            reasons.append(f"part of MMLU ({subjects} subjects)" if subjects else "part of MMLU")
        elif entry.get("fewshot_split"):
            reasons.append(f"few-shot examples from the {entry['fewshot_split']} split")
    return reasons or ["not at leaderboard settings"]


def truncated_items(score: Score) -> int:
    """How many of a score's items had a prompt longer than the model's context (an MMLU subject's own count, the
    whole MMLU's for its average); 0 when none were, or when the record is older than the count."""
    tasks = (score.fingerprint or {}).get("tasks") or {}
    if score.task in tasks:
        return int(tasks[score.task].get("truncated_items") or 0)
    group = tasks.get(score.task_group or "", {})
    return int((group.get("truncated_by_task") or {}).get(score.task, 0))


def not_comparable_note(score: Score) -> str:
    """"not leaderboard-comparable: limit 2 items per task" ("" for a comparable score)."""
    reasons = not_comparable_reasons(score)
    return f"not leaderboard-comparable: {'; '.join(reasons)}" if reasons else ""


def average_caveats(comparable: Mapping[str, bool]) -> list[str]:
    """Why a model's leaderboard average is not the leaderboard's: benchmarks it has no score for, and scores in
    it that are not comparable. `comparable`: whether each task the model has a score for is. [] when the
    average stands (or when there is none: no leaderboard benchmark at all)."""
    tasks = LEADERBOARD_AVERAGE.tasks
    if not any(task in comparable for task in tasks):
        return []
    caveats = []
    if missing := [title_of(task) for task in tasks if task not in comparable]:
        caveats.append(f"without {', '.join(missing)}")
    if marked := [title_of(task) for task in tasks if comparable.get(task) is False]:
        caveats.append(f"includes scores not leaderboard-comparable ({', '.join(marked)})")
    return caveats
