"""What a reward model reads: the token ids of a prompt and one answer, ended by EOS; and the training and held-out
pairs of a reward run, tokenised so, with what became of the rows.

`reward_ids` is the one definition: the reward recipe trains on it, scores its held-out pairs with it, and an RL run
scores its completions with it (runner/training/rewards.py), so a reward model is never asked about text laid out
otherwise than it learned. Pairs longer than `[data] max_seq_len` are cut to it or left out, as `[data] overlength`
says, and counted.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import Spec
from tunelab.runner.data.preference import PreferencePair, read_pairs
from tunelab.runner.data.prepare import DataStats, SourceStats, hold_out
from tunelab.runner.data.prompts import one_data_file
from tunelab.runner.errors import DataError


def reward_ids(tokenizer, prompt: str, answer: str) -> list[int]:
    """The token ids a reward model scores: BOS (where the tokenizer adds one), prompt, answer, EOS."""
    text = prompt + answer
    eos = tokenizer.eos_token or ""
    if eos and not text.endswith(eos):
        text += eos
    return tokenizer(text)["input_ids"]


@dataclass(frozen=True)
class TokenPair:
    chosen_ids: list[int]
    rejected_ids: list[int]


@dataclass
class RewardData:
    train: list[TokenPair]
    held_out: list[TokenPair]
    stats: DataStats

    def fingerprint(self) -> str:
        """sha256 of the token ids trained on, then of the held-out pairs the run is scored on."""
        digest = hashlib.sha256()
        for part, pairs in ((b"train", self.train), (b"held-out", self.held_out)):
            digest.update(part + b";")
            for pair in pairs:
                for ids in (pair.chosen_ids, pair.rejected_ids):
                    digest.update(b",".join(str(i).encode() for i in ids) + b";")
        return digest.hexdigest()


@dataclass
class _Counts:
    dropped: int = 0
    truncated: int = 0


def _tokenised(pairs: list[PreferencePair], tokenizer, spec: Spec, counts: _Counts) -> list[TokenPair]:
    limit, drop = spec.data.max_seq_len, spec.data.overlength == "drop"
    kept = []
    for pair in pairs:
        chosen, rejected = (reward_ids(tokenizer, pair.prompt, a) for a in (pair.chosen, pair.rejected))
        if max(len(chosen), len(rejected)) > limit:
            if drop:
                counts.dropped += 1
                continue
            counts.truncated += 1
            chosen, rejected = chosen[:limit], rejected[:limit]
        kept.append(TokenPair(chosen, rejected))
    return kept


def _source_stats(path: Path, rows: int, kept: int, counts: _Counts, held_out: int = 0) -> SourceStats:
    return SourceStats(path=str(path), format="preference", weight=None, rows=rows, empty=0, duplicates=0,
                       overlength_dropped=counts.dropped, overlength_truncated=counts.truncated, kept=kept,
                       held_out=held_out)


def reward_data(spec: Spec, tokenizer, workdir: Path) -> RewardData:
    """The training and held-out pairs of a reward run: `[data] validation` is a preference file, or the fraction
    of the training pairs held out with the experiment seed (as supervised training holds out examples)."""
    path = one_data_file(spec, workdir)
    pairs = read_pairs(path, tokenizer, spec.data.template)
    counts = _Counts()
    train = _tokenised(pairs, tokenizer, spec, counts)
    validation = spec.data.validation
    validation_file = None
    if isinstance(validation, float):
        train, held = hold_out(train, validation, random.Random(spec.experiment.seed), path)
        source = _source_stats(path, len(pairs), len(train) + len(held), counts, held_out=len(held))
    elif isinstance(validation, str):
        held_path = spec_path(validation, workdir)
        held_pairs = read_pairs(held_path, tokenizer, spec.data.template)
        held_counts = _Counts()
        held = _tokenised(held_pairs, tokenizer, spec, held_counts)
        source = _source_stats(path, len(pairs), len(train), counts)
        validation_file = _source_stats(held_path, len(held_pairs), len(held), held_counts)
    else:
        raise DataError(path, 'kind = "reward" needs held-out pairs: set [data] validation')
    if not train or not held:
        raise DataError(path, f"{len(train)} training and {len(held)} held-out pair(s) within max_seq_len "
                        f"{spec.data.max_seq_len}: a reward model needs both")
    tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in train)
    stats = DataStats(sources=[source], validation_file=validation_file, train_examples=len(train),
                      validation_examples=len(held), train_tokens=tokens, trainable_tokens=tokens)
    return RewardData(train, held, stats)
