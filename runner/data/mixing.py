"""Multi-task mixtures: draw training examples from several files in proportion to their weights.

Each file's share of the mixture is fixed up front (largest remainder), so the realised proportions
match the weights to within one example; which rows are drawn, and their order, follow the seed.
A file asked for more examples than it holds is repeated, each pass in a fresh order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def allocate(weights: Sequence[float], total: int) -> list[int]:
    """Split `total` examples between sources in proportion to `weights` (largest remainder)."""
    if not weights or any(w <= 0 for w in weights):
        raise ValueError("weights must be positive")
    scale = total / math.fsum(weights)
    exact = [w * scale for w in weights]
    counts = [math.floor(x) for x in exact]
    # Ties go to the earlier source, so the split is the same on every machine.
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


def mix(sources: Sequence[Sequence[T]], weights: Sequence[float], total: int, seed: int) -> tuple[list[T], list[int]]:
    """`total` items drawn from `sources` by `weights`, shuffled together; also how many came from each."""
    counts = allocate(weights, total)
    rng = random.Random(seed)
    drawn: list[T] = []
    for rows, count in zip(sources, counts, strict=True):
        if count and not rows:
            raise ValueError("a source with a positive weight has no rows")
        order: list[int] = []
        while len(order) < count:
            epoch = list(range(len(rows)))
            rng.shuffle(epoch)
            order.extend(epoch)
        drawn.extend(rows[i] for i in order[:count])
    rng.shuffle(drawn)
    return drawn, counts
