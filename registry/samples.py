"""What a run's models wrote for its [eval.samples] prompts: the records the runner stores and the reports read.

The fine-tuned model and its base each answer every prompt (one `generatedsample` row per model and prompt);
reading pairs them by the prompt's position, so a page shows prompt, reference, base and fine-tuned side by side.
registry/run_records.py reads them with a run's record, in plain SQL, so `tunelab show` needs no SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GeneratedText:
    """One prompt and what one model wrote for it."""

    position: int
    prompt: str
    reference: str | None
    output: str


@dataclass
class SamplePair:
    """One prompt of a run with its reference and what each of the run's models wrote (None: not generated)."""

    position: int
    prompt: str
    reference: str | None
    base: str | None = None
    finetuned: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the generation settings the outputs were written with


# A sample row's columns as pair_rows reads them (registry/run_records.py selects them after the run's id).
SAMPLE_COLUMNS = "model_kind, position, prompt, reference, output, settings_json"


def pair_rows(rows: Iterable[Sequence[Any]]) -> list[SamplePair]:
    """One run's sample rows (SAMPLE_COLUMNS, in id order) as prompts with each model's output, in prompt order.

    A prompt recorded twice for one model (never by the runner, which forgets an attempt's samples) keeps its
    later row.
    """
    pairs: dict[int, SamplePair] = {}
    for kind, position, prompt, reference, output, settings_json in rows:
        pair = pairs.setdefault(position, SamplePair(position, prompt, reference))
        if kind == "base":
            pair.base = output
        elif kind == "finetuned":
            pair.finetuned = output
        pair.settings = pair.settings or json.loads(settings_json or "{}")
    return [pairs[position] for position in sorted(pairs)]
