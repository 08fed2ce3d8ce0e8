"""Items that flipped between two evaluations of the same task, and whether the change is more than chance.

Pure functions over the compact per-item logs the runner stores (`{doc_id, target, pick, correct, ...}`), so
they serve the run comparison, the leaderboard and tests alike. Significance is McNemar's exact test: under
"no difference" each discordant item is equally likely to have flipped either way, so the count of one kind is
Binomial(b + c, 1/2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

RIGHT_TO_WRONG = "right_to_wrong"
WRONG_TO_RIGHT = "wrong_to_right"


class FlipError(ValueError):
    """Two logs that cannot be paired item by item (the same item with different gold answers)."""


@dataclass(frozen=True)
class FlipSummary:
    """The 2x2 table of one task's paired items, and McNemar's exact p-value for it."""

    task: str
    paired: int  # items present in both logs
    both_right: int
    both_wrong: int
    right_to_wrong: int  # right before, wrong after (b)
    wrong_to_right: int  # wrong before, right after (c)
    unpaired: int  # items in only one of the logs (a different limit, say); left out of the test
    p_value: float

    @property
    def net(self) -> int:
        """Items gained minus items lost."""
        return self.wrong_to_right - self.right_to_wrong


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


def _by_doc(samples: Sequence[Mapping]) -> dict[int, Mapping]:
    items: dict[int, Mapping] = {}
    for sample in samples:
        doc_id = int(sample["doc_id"])
        if doc_id in items:
            raise FlipError(f"item {doc_id} appears twice in one log")
        items[doc_id] = sample
    return items


def _paired(before: Sequence[Mapping], after: Sequence[Mapping]) -> tuple[list[tuple[Mapping, Mapping]], int]:
    first, second = _by_doc(before), _by_doc(after)
    pairs = []
    for doc_id in sorted(first.keys() & second.keys()):
        a, b = first[doc_id], second[doc_id]
        if a.get("target") != b.get("target"):
            raise FlipError(
                f"item {doc_id} has gold answer {a.get('target')!r} in one log and {b.get('target')!r} in the "
                "other: the two evaluations did not score the same data"
            )
        pairs.append((a, b))
    unpaired = len(first.keys() ^ second.keys())
    return pairs, unpaired


def flipped_items(before: Sequence[Mapping], after: Sequence[Mapping]) -> list[dict]:
    """Items right in one log and wrong in the other, by doc_id, each with its direction and both picks."""
    pairs, _ = _paired(before, after)
    return [
        {
            "doc_id": int(a["doc_id"]),
            "target": a.get("target"),
            "pick_before": a.get("pick"),
            "pick_after": b.get("pick"),
            "direction": RIGHT_TO_WRONG if a["correct"] else WRONG_TO_RIGHT,
        }
        for a, b in pairs
        if bool(a["correct"]) != bool(b["correct"])
    ]


def flip_summary(task: str, before: Sequence[Mapping], after: Sequence[Mapping]) -> FlipSummary:
    """The paired 2x2 table of one task and its McNemar exact p-value."""
    pairs, unpaired = _paired(before, after)
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for a, b in pairs:
        counts[(bool(a["correct"]), bool(b["correct"]))] += 1
    lost, gained = counts[(True, False)], counts[(False, True)]
    return FlipSummary(
        task=task,
        paired=len(pairs),
        both_right=counts[(True, True)],
        both_wrong=counts[(False, False)],
        right_to_wrong=lost,
        wrong_to_right=gained,
        unpaired=unpaired,
        p_value=mcnemar_exact(lost, gained),
    )


def flips_by_task(
    before: Mapping[str, Sequence[Mapping]], after: Mapping[str, Sequence[Mapping]]
) -> dict[str, FlipSummary]:
    """One summary per task logged in both evaluations (e.g. base model and fine-tuned), in `before`'s order."""
    return {task: flip_summary(task, before[task], after[task]) for task in before if task in after}
