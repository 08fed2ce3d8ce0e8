"""McNemar's exact test on two per-item logs of the same task: is a change in score more than chance?

Pure Python with no heavy imports, so the registry can store a fine-tuned score's p-value against its base when
the score is recorded, and reports can use the same functions. A log is a list of `{doc_id, target, correct, ...}`.
Under "no difference" each discordant item is equally likely to have flipped either way, so the count of one kind
is Binomial(b + c, 1/2).

The test is only about the reported score when that score is the share of items right: an item's `correct` is
None where its outcome is no right/wrong of the reported metric (BLEU or F1 computed over the whole task,
TruthfulQA's MC2 probability mass), and then there is no p-value at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

# Metrics whose per-item value is a score, not a right/wrong: McNemar's test says nothing about a change in them.
# (MC2 is the probability mass on the true answers; the argmax over the answers is another quantity.)
UNTESTED_METRICS = frozenset({"mc2"})

# Stored in evalresult.vs_base_p for a fine-tuned score whose pair was checked and has no p-value (no paired
# test exists: different items, no base log, non-binary outcomes). Never a p-value; readers show nothing.
NO_P_VALUE = -1.0


class PairingError(ValueError):
    """Two logs that cannot be paired item by item (the same item with different gold answers)."""


def outcome(item: Mapping) -> bool | None:
    """Whether the item is right under the reported metric; None when its result is no right/wrong."""
    correct = item.get("correct")
    if correct is None:
        return None
    # Logs written before `correct` could be None guessed it where the item's own value is not 0 or 1 (none for
    # a metric computed over the whole task, a probability mass for MC2): that value gives them away.
    if "score" in item and item["score"] not in (0, 1):
        return None
    return bool(correct)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for `b` and `c` discordant pairs: 2 * P(X <= min(b, c)), X ~ Bin(b+c, 1/2).

    Computed in exact rational arithmetic, capped at 1; 1.0 when there are no discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def by_doc(samples: Sequence[Mapping]) -> dict[int, Mapping]:
    """A log's items by doc_id; an item logged twice is an error."""
    items: dict[int, Mapping] = {}
    for sample in samples:
        doc_id = int(sample["doc_id"])
        if doc_id in items:
            raise PairingError(f"item {doc_id} appears twice in one log")
        items[doc_id] = sample
    return items


def paired_items(before: Sequence[Mapping], after: Sequence[Mapping]) -> tuple[list[tuple[Mapping, Mapping]], int]:
    """The items present in both logs (by doc_id, in doc_id order) and the count of items in only one of them."""
    first, second = by_doc(before), by_doc(after)
    pairs = []
    for doc_id in sorted(first.keys() & second.keys()):
        a, b = first[doc_id], second[doc_id]
        if a.get("target") != b.get("target"):
            raise PairingError(
                f"item {doc_id} has gold answer {a.get('target')!r} in one log and {b.get('target')!r} in the "
                "other: the two evaluations did not score the same data"
            )
        pairs.append((a, b))
    return pairs, len(first.keys() ^ second.keys())


def discordant_counts(before: Sequence[Mapping], after: Sequence[Mapping]) -> tuple[int, int] | None:
    """(b, c): paired items right before and wrong after, and wrong before and right after.

    None when a paired item has no right/wrong outcome in either log (see `outcome`): there is no such count.
    """
    pairs, _ = paired_items(before, after)
    outcomes = [(outcome(a), outcome(b)) for a, b in pairs]
    if any(a is None or b is None for a, b in outcomes):
        return None
    lost = sum(1 for a, b in outcomes if a and not b)
    gained = sum(1 for a, b in outcomes if not a and b)
    return lost, gained


def pooled_p_value(logs: Sequence[tuple[Sequence[Mapping], Sequence[Mapping]]]) -> float | None:
    """McNemar's exact p-value over the items of several tasks at once (the subjects of a group such as MMLU).

    Each `(before, after)` pair is one task's two logs; items are paired within their task only. None when any
    paired item has no right/wrong outcome: a test of some items would not be a test of the reported score.
    """
    lost = gained = 0
    for before, after in logs:
        counts = discordant_counts(before, after)
        if counts is None:
            return None
        lost, gained = lost + counts[0], gained + counts[1]
    return mcnemar_exact(lost, gained)


# ---------------------------------------------------------------- many comparisons, and how large a change is

# Resamples of a paired bootstrap, and its seed: the same logs always give the same interval.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601
CONFIDENCE = 0.95


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the k-th smallest of m is multiplied by m - k + 1,
    made non-decreasing in that order, capped at 1. A change is significant at level a when its adjusted
    p-value is below a, which keeps the chance of any false mark among the m at most a."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def item_value(item: Mapping) -> float | None:
    """An item's own value under the reported metric: its `score` (1/0 for accuracy, the probability mass for
    MC2), else its right/wrong; None when it has neither."""
    score = item.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        return float(score)
    verdict = outcome(item)
    return None if verdict is None else float(verdict)


def paired_differences(before: Sequence[Mapping], after: Sequence[Mapping]) -> list[float] | None:
    """after - before for each item in both logs (doc_id order); None when an item has no value in either."""
    pairs, _ = paired_items(before, after)
    values = [(item_value(a), item_value(b)) for a, b in pairs]
    if not values or any(a is None or b is None for a, b in values):
        return None
    return [b - a for a, b in values]


def bootstrap_interval(strata: Sequence[Sequence[float]], *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the change of a score, by a paired bootstrap over items.

    `strata` holds each task's per-item differences (after - before); the score is the unweighted mean of the
    tasks' means (MMLU: of its subjects), so items are resampled within their task. Seeded: the same
    differences always give the same interval.
    """
    import numpy as np  # only where intervals are made (recording a score), never on the query path

    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("every stratum needs at least one item")
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for stratum in strata:
        diffs = np.asarray(stratum, dtype=float)
        picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
        means += diffs[picks].mean(axis=1)
    means /= len(strata)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)
