"""Training data, from the spec's files to the features the Trainer consumes.

read rows (formats.py) -> drop empty rows and duplicates (cleaning.py) -> render with the template
(templates.py) and tokenise with loss masks -> fit max_seq_len -> hold out a validation fraction ->
mix several files by weight (mixing.py) -> pack (packing.py), all in runner/data/. `prepare_data` does
all of it once; training and the data fingerprint share it. Preference rows (DPO) are read by
runner/data/preference.py instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import DataSection, Spec
from tunelab.runner.data.cleaning import (
    IGNORE_INDEX,
    CleaningCounts,
    Feature,
    drop_empty_and_duplicates,
    fit_length,
)
from tunelab.runner.data.formats import Example, read_rows
from tunelab.runner.data.mixing import mix
from tunelab.runner.data.packing import pack
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError, RunFailed

SFT_FORMATS = ("instruction", "chat", "text")
T = TypeVar("T")


@dataclass(frozen=True)
class DataSource:
    """One training file, resolved: where it is, its format and its mixture weight."""

    path: Path
    format: str
    weight: float = 1.0


@dataclass
class SourceStats:
    """What became of one file's rows (the JSON stored with the run)."""

    path: str
    format: str
    weight: float | None
    rows: int
    empty: int
    duplicates: int
    overlength_dropped: int
    overlength_truncated: int
    kept: int
    held_out: int = 0  # kept rows set aside as validation ([data] validation = a fraction)
    drawn: int = 0  # training examples taken from this file (a mixture repeats or leaves out rows)

    @classmethod
    def of(cls, source: DataSource, counts: CleaningCounts, *, mixture: bool) -> SourceStats:
        return cls(path=str(source.path), format=source.format, weight=source.weight if mixture else None,
                   rows=counts.rows, empty=counts.empty, duplicates=counts.duplicates,
                   overlength_dropped=counts.overlength_dropped, overlength_truncated=counts.overlength_truncated,
                   kept=counts.kept)


@dataclass
class DataStats:
    sources: list[SourceStats]
    validation_file: SourceStats | None
    train_examples: int
    validation_examples: int
    train_tokens: int  # tokens of the training examples (no padding)
    trainable_tokens: int  # of which the loss is computed on
    packed_sequences: int | None = None  # rows the examples were packed into ([data] packing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    train: list[Feature]  # what the Trainer iterates: examples, or packed rows of them
    validation: list[Feature] = field(default_factory=list)  # never packed
    stats: DataStats | None = None

    @property
    def num_examples(self) -> int:
        return self.stats.train_examples if self.stats else len(self.train)


def data_sources(data: DataSection, workdir: Path) -> list[DataSource]:
    """The training files of `[data] train`: one file, or a mixture's entries."""
    if isinstance(data.train, str):
        return [DataSource(spec_path(data.train, workdir), data.format)]
    return [DataSource(spec_path(entry.path, workdir), entry.format or data.format, entry.weight)
            for entry in data.train]


def prepare_data(spec: Spec, tokenizer: Any, workdir: Path,
                 should_stop: Callable[[], bool] = lambda: False) -> PreparedData:
    """Everything between the spec's data files and the Trainer, for supervised fine-tuning.

    `should_stop` (the run was cancelled) is asked at every row and inside a template's rendering: RunCancelled.
    """
    data, seed = spec.data, spec.experiment.seed
    sources = data_sources(data, workdir)
    for source in sources:
        if source.format not in SFT_FORMATS:
            raise RunFailed(f'{source.path}: format "{source.format}" (prompt, chosen, rejected) is for preference '
                            "methods; supervised fine-tuning trains on instruction, chat or text rows")
    renderer = Renderer(data.template, tokenizer, should_stop)
    mixture = not isinstance(data.train, str)
    split = random.Random(seed)
    parts: list[list[Feature]] = []
    stats: list[SourceStats] = []
    validation: list[Feature] = []
    for source in sources:
        features, counts = _load(source, renderer, tokenizer, data)
        source_stats = SourceStats.of(source, counts, mixture=mixture)
        if isinstance(data.validation, float):
            features, held = hold_out(features, data.validation, split, source.path)
            validation.extend(held)
            source_stats.held_out = len(held)
        parts.append(features)
        stats.append(source_stats)
    validation_stats = None
    if isinstance(data.validation, str):
        held_source = DataSource(spec_path(data.validation, workdir), data.format)
        validation, counts = _load(held_source, renderer, tokenizer, data)
        validation_stats = SourceStats.of(held_source, counts, mixture=False)

    if mixture:
        total = data.mixture_examples or sum(len(part) for part in parts)
        train, drawn = mix(parts, [s.weight for s in sources], total, seed)
    else:
        train, drawn = parts[0], [len(parts[0])]
    for source_stats, count in zip(stats, drawn, strict=True):
        source_stats.drawn = count
    summary = DataStats(
        sources=stats, validation_file=validation_stats, train_examples=len(train),
        validation_examples=len(validation), train_tokens=sum(len(f["input_ids"]) for f in train),
        trainable_tokens=sum(sum(1 for label in f["labels"][1:] if label != IGNORE_INDEX) for f in train),
    )
    if data.packing:
        train = pack(train, data.max_seq_len)
        summary.packed_sequences = len(train)
    return PreparedData(train=train, validation=validation, stats=summary)


def _load(source: DataSource, renderer: Renderer, tokenizer: Any, data: DataSection) -> tuple[list[Feature],
                                                                                              CleaningCounts]:
    rows, counts = drop_empty_and_duplicates(read_rows(source.path, source.format), dedupe=data.dedupe)
    features = tokenize_rows(rows, renderer, tokenizer, source.path, train_on_prompt=data.train_on_prompt)
    features = fit_length(features, max_seq_len=data.max_seq_len, overlength=data.overlength, counts=counts)
    if not features:
        raise DataError(source.path, f"no rows left to train on: {counts.rows} read, {counts.empty} empty, "
                        f"{counts.duplicates} duplicates, {counts.overlength_dropped} over max_seq_len "
                        f"{data.max_seq_len}")
    return features, counts


def hold_out(features: list[T], fraction: float, rng: random.Random,
             path: Path) -> tuple[list[T], list[T]]:
    """Split off round(fraction * n) examples (at least one, leaving at least one); both parts keep file order."""
    if len(features) < 2:
        raise DataError(path, f"{len(features)} usable row(s): too few to hold out a validation fraction")
    size = min(max(round(len(features) * fraction), 1), len(features) - 1)
    order = list(range(len(features)))
    rng.shuffle(order)
    held = set(order[:size])
    return ([f for i, f in enumerate(features) if i not in held],
            [f for i, f in enumerate(features) if i in held])


def tokenize_rows(rows: list[Example], renderer: Renderer, tokenizer: Any, path: Path, *,
                  train_on_prompt: bool) -> list[Feature]:
    """input_ids = BOS + rendered segments (+ EOS); labels copy the trainable segments' tokens, else IGNORE_INDEX.

    BOS is added when the tokenizer has one and the template did not already write it; EOS (trainable)
    follows instruction and text rows, while chat templates end their turns themselves.
    """
    rendered = [renderer.render(row, path) for row in rows]
    texts = [segment.text for item in rendered for segment in item.segments]
    tokenized = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    features = []
    for item in rendered:
        input_ids: list[int] = []
        labels: list[int] = []
        for segment in item.segments:
            tokens = list(next(tokenized))
            input_ids.extend(tokens)
            labels.extend(tokens if segment.trainable or train_on_prompt else [IGNORE_INDEX] * len(tokens))
        if bos is not None and (not input_ids or input_ids[0] != bos):
            input_ids.insert(0, bos)
            labels.insert(0, bos if train_on_prompt else IGNORE_INDEX)
        if item.eos and eos is not None:
            input_ids.append(eos)
            labels.append(eos)
        features.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels})
    return features
