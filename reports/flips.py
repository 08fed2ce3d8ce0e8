"""Items that flipped between two evaluations of the same task, and whether the change is more than chance.

Pure functions over the compact per-item logs the runner stores (`{doc_id, target, pick, correct, ...}`), so
they serve the run comparison, the leaderboard and tests alike. Significance is McNemar's exact test, from
registry/significance.py (the registry stores each fine-tuned score's p-value against its base with it).

An item flips when its right/wrong changes: the reported metric's own (`correct`), or, where the metric has none
for the item (F1 over the task, TruthfulQA's MC2), whether its multiple-choice pick was a right answer. Those
flips are shown, but they are not the reported score: such a task has no p-value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunelab.registry.significance import PairingError, mcnemar_exact, outcome, paired_items

RIGHT_TO_WRONG = "right_to_wrong"
WRONG_TO_RIGHT = "wrong_to_right"

# Two logs that cannot be paired item by item; the name callers of this module know it by.
FlipError = PairingError

__all__ = ["FlipError", "FlipSummary", "RIGHT_TO_WRONG", "WRONG_TO_RIGHT", "answered_right", "flip_summary",
           "flipped_items", "flips_by_task", "mcnemar_exact"]


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
    p_value: float | None  # None when an item's outcome is no right/wrong of the reported metric

    @property
    def net(self) -> int:
        """Items gained minus items lost."""
        return self.wrong_to_right - self.right_to_wrong


def answered_right(item: Mapping) -> bool | None:
    """Whether an item was answered right, for flips: the metric's verdict, else whether its pick was right.

    None for an item with neither (a generated answer scored only over the whole task).
    """
    verdict = outcome(item)
    if verdict is None:
        # A log from before pick_right has none: its `correct` was then the pick's.
        verdict = item["pick_right"] if "pick_right" in item else item.get("correct")
    return None if verdict is None else bool(verdict)


def flipped_items(before: Sequence[Mapping], after: Sequence[Mapping]) -> list[dict]:
    """Items right in one log and wrong in the other, by doc_id, each with its direction and both picks."""
    pairs, _ = paired_items(before, after)
    flips = []
    for a, b in pairs:
        right_before, right_after = answered_right(a), answered_right(b)
        if right_before is None or right_after is None or right_before == right_after:
            continue
        flips.append({
            "doc_id": int(a["doc_id"]),
            "target": a.get("target"),
            "pick_before": a.get("pick"),
            "pick_after": b.get("pick"),
            "direction": RIGHT_TO_WRONG if right_before else WRONG_TO_RIGHT,
        })
    return flips


def flip_summary(task: str, before: Sequence[Mapping], after: Sequence[Mapping]) -> FlipSummary:
    """The paired 2x2 table of one task (items without a right/wrong left out) and its McNemar exact p-value."""
    pairs, unpaired = paired_items(before, after)
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for a, b in pairs:
        right_before, right_after = answered_right(a), answered_right(b)
        if right_before is not None and right_after is not None:
            counts[(right_before, right_after)] += 1
    lost, gained = counts[(True, False)], counts[(False, True)]
    testable = all(outcome(a) is not None and outcome(b) is not None for a, b in pairs)
    return FlipSummary(
        task=task,
        paired=len(pairs),
        both_right=counts[(True, True)],
        both_wrong=counts[(False, False)],
        right_to_wrong=lost,
        wrong_to_right=gained,
        unpaired=unpaired,
        p_value=mcnemar_exact(lost, gained) if testable else None,
    )


def flips_by_task(
    before: Mapping[str, Sequence[Mapping]], after: Mapping[str, Sequence[Mapping]]
) -> dict[str, FlipSummary]:
    """One summary per task logged in both evaluations (e.g. base model and fine-tuned), in `before`'s order."""
    return {task: flip_summary(task, before[task], after[task]) for task in before if task in after}
