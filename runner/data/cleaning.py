"""Clean rows before training, counting what was left out: empty rows, exact duplicates, over-length rows.

The counts go into the registry with the run (Run.data_stats_json), so `tunelab show` tells how much
of a file was actually trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.runner.data.formats import ChatExample, Example, InstructionExample, PreferenceExample, TextExample

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)

Feature = dict[str, list[int]]


@dataclass
class CleaningCounts:
    rows: int = 0  # rows read from the file
    empty: int = 0  # nothing to learn: the response (or text) is empty or whitespace only
    duplicates: int = 0  # exact repeats of an earlier row of the same file
    overlength_dropped: int = 0  # longer than max_seq_len and left out (or nothing trainable left after the cut)
    overlength_truncated: int = 0  # longer than max_seq_len and cut to it

    @property
    def kept(self) -> int:
        return self.rows - self.empty - self.duplicates - self.overlength_dropped


def is_empty(example: Example) -> bool:
    """Whether a row has nothing to learn from."""
    if isinstance(example, InstructionExample):
        return not example.output.strip()
    if isinstance(example, ChatExample):
        return not any(m.role == "assistant" and m.content.strip() for m in example.messages)
    if isinstance(example, TextExample):
        return not example.text.strip()
    if isinstance(example, PreferenceExample):
        return not example.chosen.strip() or not example.rejected.strip()
    raise TypeError(f"not a data row: {example!r}")


def drop_empty_and_duplicates(rows: list[Example], *, dedupe: bool) -> tuple[list[Example], CleaningCounts]:
    """Rows worth training on, in file order; duplicates compare every field but the line number."""
    counts = CleaningCounts(rows=len(rows))
    seen: set[Example] = set()
    kept: list[Example] = []
    for row in rows:
        if is_empty(row):
            counts.empty += 1
        elif dedupe and row in seen:
            counts.duplicates += 1
        else:
            seen.add(row)
            kept.append(row)
    return kept, counts


def has_trainable_token(feature: Feature) -> bool:
    # labels[0] is never a target: a causal LM predicts token t from the tokens before it.
    return any(label != IGNORE_INDEX for label in feature["labels"][1:])


def fit_length(features: list[Feature], *, max_seq_len: int, overlength: str,
               counts: CleaningCounts) -> list[Feature]:
    """Apply `[data] overlength` ("drop" | "truncate") and update `counts`.

    A truncated row whose response was cut away entirely is dropped as well: it would train on nothing.
    """
    fitted: list[Feature] = []
    for feature in features:
        if len(feature["input_ids"]) > max_seq_len:
            if overlength == "drop":
                counts.overlength_dropped += 1
                continue
            feature = {key: values[:max_seq_len] for key, values in feature.items()}
            if not has_trainable_token(feature):
                counts.overlength_dropped += 1
                continue
            counts.overlength_truncated += 1
        fitted.append(feature)
    return fitted
