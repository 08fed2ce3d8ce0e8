"""What a checkpoint was trained with, so a resume never continues it on other data, tokenizer or spec.

Every checkpoint's completion marker carries the identity of its training (spec hash, tokenizer
fingerprint, data fingerprint). Before training resumes from a checkpoint the identity of the
attempt now starting is compared with it; any difference stops the run with a message that says
what changed, instead of silently mixing two trainings into one set of weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab.experiments.canonical import spec_hash
from tunelab.experiments.schema import Spec
from tunelab.runner.errors import RunFailed

# What each field means to a user reading the refusal.
_DESCRIPTIONS = {
    "spec_hash": "the run's resolved spec",
    "tokenizer": "the tokenizer",
    "data": "the training data (data fingerprint of the processed token stream)",
    "reward": "the reward source (the reward run's weights, the judge's weights or the reward function's source)",
}


class IncompatibleCheckpoint(RunFailed):
    """The checkpoint a run would resume from was written by a different training."""


@dataclass(frozen=True)
class TrainingIdentity:
    spec_hash: str
    tokenizer: str
    data: str
    # Online RL: the digest of what scores the completions; None (and left out of the marker) for other methods.
    reward: str | None = None

    def to_json(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides the token ids: vocabulary and merges, special tokens, chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    payload = {
        "class": type(tokenizer).__name__,
        "vocabulary": vocabulary,
        "special": {name: str(value) for name, value in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def identity_for(spec: Spec, tokenizer: Any, data_fingerprint: str, reward: str | None = None) -> TrainingIdentity:
    """The identity of a training of `spec` with `tokenizer` on data of this fingerprint (and, for online RL,
    against the reward source of digest `reward`)."""
    return TrainingIdentity(spec_hash=spec_hash(spec), tokenizer=tokenizer_fingerprint(tokenizer),
                            data=data_fingerprint, reward=reward)


def check_resumable(checkpoint_dir: Path, recorded: dict[str, Any] | None, current: TrainingIdentity) -> None:
    """Raise IncompatibleCheckpoint when `recorded` (from the checkpoint's marker) differs from `current`.

    A checkpoint written before identities were recorded (None) is trusted, as it always was.
    """
    if not recorded:
        return
    changed = [field for field, value in current.to_json().items()
               if field in recorded and recorded[field] != value]
    if not changed:
        return
    what = "; ".join(f"{_DESCRIPTIONS[field]} changed ({recorded[field][:12]} when it was written, "
                     f"{current.to_json()[field][:12]} now)" for field in changed)
    raise IncompatibleCheckpoint(
        f"refusing to resume from {checkpoint_dir}: {what}. Restore what changed to resume, or remove "
        f"{checkpoint_dir.parent} to train from the start")
