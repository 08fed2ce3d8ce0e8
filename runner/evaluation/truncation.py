"""Items whose prompt did not fit the model's context: lm-eval cuts such a prompt from the left without a word.

lm-eval's HFLM keeps the last `max_length + 1` tokens of a loglikelihood request (context and continuation) and
the last `max_length - max_gen_toks` tokens of a generation's context; the model then answers a question whose
start (for MMLU 5-shot, the first shots, or the instructions) it never saw. The score is still a number, but not
the one a model with a longer context (the leaderboard's) gets, so the evaluation counts such items per task and
marks the task's score not comparable.

The count re-tokenizes the logged requests exactly as HFLM encodes them (`_encode_pair`), so it needs no hook
into lm-eval's loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def truncated_items(lm: Any, logged: Iterable[dict]) -> int:
    """How many of a task's logged items (lm-eval samples) had a request longer than `lm`'s context."""
    max_length = int(lm.max_length)
    seen: set[int] = set()
    count = 0
    for sample in logged:
        doc_id = int(sample["doc_id"])
        if doc_id in seen:  # a task with several filters logs each item once per filter
            continue
        seen.add(doc_id)
        if any(_too_long(lm, args, max_length) for args in sample.get("arguments", ())):
            count += 1
    return count


def _too_long(lm: Any, args: Any, max_length: int) -> bool:
    if not isinstance(args, list | tuple) or not args or not isinstance(args[0], str):
        return False
    context = args[0]
    if len(args) > 1 and isinstance(args[1], str):  # loglikelihood: (context, continuation)
        if context:
            context_tokens, continuation_tokens = lm._encode_pair(context, args[1])
        else:  # lm-eval puts the prefix token in front of an empty context
            context_tokens, continuation_tokens = [0], lm.tok_encode(args[1])
        return len(context_tokens) + len(continuation_tokens) > max_length + 1
    if len(args) > 1 and isinstance(args[1], dict):  # generate_until: (context, generation kwargs)
        budget = args[1].get("max_gen_toks", lm.max_gen_toks)
        return len(lm.tok_encode(context)) > max_length - int(budget)
    return False
