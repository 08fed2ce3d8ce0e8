"""Packing: rows fill up without overflowing, and packed examples cannot see each other.

The isolation tests compare an example's logits packed behind others with its logits alone; they
would fail if the examples attended to each other, as they do with position ids alone (checked too).
"""

from __future__ import annotations

import pytest
from tunelab.runner.data.cleaning import IGNORE_INDEX
from tunelab.runner.data.packing import SEQ_LENGTHS, PackedCollator, pack


def _feature(ids: list[int], prompt: int = 0) -> dict[str, list[int]]:
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX] * prompt + ids[prompt:]}


def test_best_fit_decreasing_fills_rows_without_overflow_and_keeps_every_example_once():
    lengths = [7, 3, 5, 2, 8, 1, 4, 6, 2]
    features = [_feature([100 + i] * n) for i, n in enumerate(lengths)]
    packed = pack(features, max_seq_len=10)
    assert all(len(row["input_ids"]) <= 10 for row in packed)
    assert [sum(row[SEQ_LENGTHS]) for row in packed] == [len(row["input_ids"]) for row in packed]
    # 38 tokens need at least 4 rows of 10; best fit decreasing finds 4.
    assert len(packed) == 4
    members = sorted(token for row in packed for token in dict.fromkeys(row["input_ids"]))
    assert members == [100 + i for i in range(len(lengths))]
    for row in packed:  # within a row the examples keep their data order
        firsts = list(dict.fromkeys(row["input_ids"]))
        assert firsts == sorted(firsts)


def test_the_first_label_of_each_packed_example_is_ignored():
    first, second = _feature([1, 2, 3, 4], prompt=2), _feature([5, 6, 7])
    (row,) = pack([first, second], max_seq_len=16)
    assert row["input_ids"] == [1, 2, 3, 4, 5, 6, 7]
    # Token 5 must not be predicted from example 1's last token; the rest are the examples' own labels.
    assert row["labels"] == [IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX, 6, 7]
    assert row[SEQ_LENGTHS] == [4, 3]


def test_an_example_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        pack([_feature([1] * 11)], max_seq_len=10)


def test_collator_gives_positions_per_example_and_a_block_diagonal_causal_mask():
    import torch

    rows = [{"input_ids": [1, 2, 3, 4, 5], "labels": [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5], SEQ_LENGTHS: [3, 2]},
            {"input_ids": [6, 7], "labels": [IGNORE_INDEX, 7]}]
    batch = PackedCollator(pad_token_id=0)(rows)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 0, 0]]
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    allowed = (batch["attention_mask"] == 0).int()[:, 0].tolist()
    assert allowed[0] == [[1, 0, 0, 0, 0],
                          [1, 1, 0, 0, 0],
                          [1, 1, 1, 0, 0],
                          [0, 0, 0, 1, 0],
                          [0, 0, 0, 1, 1]]
    assert allowed[1] == [[1, 0, 0, 0, 0],
                          [1, 1, 0, 0, 0],
                          [0, 0, 1, 0, 0],  # padding sees itself only, never a real token
                          [0, 0, 0, 1, 0],
                          [0, 0, 0, 0, 1]]
    assert batch["attention_mask"].dtype == torch.float32
    assert batch["attention_mask"].min().item() == torch.finfo(torch.float32).min


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def tiny_llama(request, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=request.param).eval()


def _examples() -> list[dict[str, list[int]]]:
    import torch

    generator = torch.Generator().manual_seed(0)
    return [_feature(torch.randint(5, 1000, (n,), generator=generator).tolist(), prompt=2) for n in (9, 6, 12)]


def test_a_packed_example_has_the_logits_it_has_alone(tiny_llama):
    import torch

    examples = _examples()
    (row,) = pack(examples, max_seq_len=32)
    batch = PackedCollator(pad_token_id=0)([row])
    with torch.no_grad():
        packed = tiny_llama(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=batch["position_ids"]).logits[0]
        start = 0
        for example in examples:  # pack() keeps data order inside a row
            alone = tiny_llama(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            span = packed[start:start + len(example["input_ids"])]
            assert torch.allclose(span, alone, atol=1e-5, rtol=0), (span - alone).abs().max()
            start += len(example["input_ids"])


def test_position_ids_alone_would_let_packed_examples_attend_to_each_other(tiny_llama):
    # The control for the test above: without the block-diagonal mask the later examples' logits change.
    import torch

    examples = _examples()
    (row,) = pack(examples, max_seq_len=32)
    batch = PackedCollator(pad_token_id=0)([row])
    with torch.no_grad():
        packed = tiny_llama(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        last = examples[-1]["input_ids"]
        alone = tiny_llama(input_ids=torch.tensor([last])).logits[0]
    assert (packed[-len(last):] - alone).abs().max() > 1e-2


def test_packed_batch_loss_equals_the_unpacked_loss(tiny_llama):
    # Same tokens predicted from the same context: the summed token loss is the same, packed or not.
    import torch
    import torch.nn.functional as F

    def summed_loss(batch) -> float:
        logits = tiny_llama(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                               ignore_index=IGNORE_INDEX, reduction="sum").item()

    examples = _examples()
    collate = PackedCollator(pad_token_id=0)
    with torch.no_grad():
        packed = summed_loss(collate(pack(examples, max_seq_len=32)))
        unpacked = summed_loss(collate(examples))
    assert packed == pytest.approx(unpacked, rel=1e-5)
