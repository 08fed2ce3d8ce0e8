"""Sequence packing: several examples in one max_seq_len row, none attending to another.

Positions restart at 0 for each example, and the collator builds a 4D block-diagonal causal mask.
Position ids alone do not isolate examples with transformers' eager and SDPA attention (they only
rotate the embeddings), so the mask is what keeps a packed example's logits equal to its logits alone.
The mask is additive (0 = attend, the dtype's minimum = blocked), which both of those accept.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from tunelab.runner.data.cleaning import IGNORE_INDEX, Feature

SEQ_LENGTHS = "seq_lengths"  # feature key: lengths of the examples packed into the row, in order


def pack(features: list[Feature], max_seq_len: int) -> list[Feature]:
    """Best-fit decreasing: the longest example first, each into the fullest row it still fits.

    Within a row the examples keep their order in `features`. Every example must fit in max_seq_len.
    The first label of each example is ignored: it would otherwise be predicted from the example before it.
    """
    order = sorted(range(len(features)), key=lambda i: (-len(features[i]["input_ids"]), i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row index), sorted
    for index in order:
        length = len(features[index]["input_ids"])
        if length > max_seq_len:
            raise ValueError(f"example of {length} tokens does not fit in max_seq_len {max_seq_len}")
        slot = bisect.bisect_left(free, (length, -1))
        if slot < len(free):
            room, row = free.pop(slot)
        else:
            room, row = max_seq_len, len(rows)
            rows.append([])
        rows[row].append(index)
        bisect.insort(free, (room - length, row))
    return [_join([features[i] for i in sorted(members)]) for members in rows]


def _join(members: list[Feature]) -> Feature:
    input_ids: list[int] = []
    labels: list[int] = []
    for member in members:
        input_ids.extend(member["input_ids"])
        labels.append(IGNORE_INDEX)
        labels.extend(member["labels"][1:])
    return {"input_ids": input_ids, "labels": labels, SEQ_LENGTHS: [len(m["input_ids"]) for m in members]}


@dataclass
class PackedCollator:
    """Pads a batch of rows (packed or not) and gives each its position ids and block-diagonal mask.

    `dtype` is the model's compute dtype (torch.float32, torch.bfloat16...): an additive mask must match it.
    A row without SEQ_LENGTHS is one example.
    """

    pad_token_id: int
    dtype: Any = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        dtype = self.dtype or torch.float32
        width = max(len(f["input_ids"]) for f in features)
        batch = len(features)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((batch, width), dtype=torch.long)
        allowed = torch.zeros((batch, 1, width, width), dtype=torch.bool)
        for row, feature in enumerate(features):
            length = len(feature["input_ids"])
            input_ids[row, :length] = torch.tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.tensor(feature["labels"], dtype=torch.long)
            start = 0
            for size in feature.get(SEQ_LENGTHS) or [length]:
                end = start + size
                position_ids[row, start:end] = torch.arange(size)
                allowed[row, 0, start:end, start:end] = torch.ones(size, size, dtype=torch.bool).tril()
                start = end
            # Padding attends to itself only: no row of the mask is all blocked (that would give NaN).
            pad = torch.arange(length, width)
            allowed[row, 0, pad, pad] = True
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": mask}
