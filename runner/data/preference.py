"""Preference rows for DPO: prompt, chosen and rejected, with the prompt rendered by `[data] template` as
supervised training renders it; and their fingerprint (the token ids DPO trains on)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import Spec
from tunelab.runner.data.formats import read_preference_rows
from tunelab.runner.data.prompts import render_prompt
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError, RunFailed


@dataclass(frozen=True)
class PreferencePair:
    """One row ready for DPO: the prompt as the model sees it (template applied), and the two answers."""

    prompt: str
    chosen: str
    rejected: str


def data_path(spec: Spec, workdir: Path) -> Path:
    """The preference file a DPO run trains on; what DPO cannot take (yet) is refused in one line."""
    if spec.data.format != "preference":
        raise RunFailed(f'method.kind = "dpo" trains on preference rows: set [data] format = "preference" '
                        f'(it is "{spec.data.format}")')
    if not isinstance(spec.data.train, str):
        raise RunFailed('method.kind = "dpo" reads one preference file: [data] train must be a path, not a mixture')
    if spec.data.validation is not None:
        raise RunFailed('method.kind = "dpo" does not take [data] validation data yet; leave it unset')
    return spec_path(spec.data.train, workdir)


def read_pairs(path: Path, tokenizer, template: str) -> list[PreferencePair]:
    """Preference rows of `path` with their prompts rendered by `[data] template`.

    A plain-text prompt is rendered as an instruction row without input, a list of messages as a
    conversation ending in the generation prompt, so DPO sees prompts exactly as supervised training did.
    """
    renderer = Renderer(template, tokenizer)
    pairs = []
    for row in read_preference_rows(path):
        prompt = render_prompt(renderer, row.prompt, path, row.line)
        if not row.chosen.strip() or not row.rejected.strip():
            raise DataError(path, "chosen and rejected must not be empty", line=row.line)
        pairs.append(PreferencePair(prompt, row.chosen, row.rejected))
    return pairs


def fingerprint_pairs(pairs: list[PreferencePair], tokenizer) -> str:
    """sha256 of the token ids DPO trains on (prompt, chosen, rejected of every pair, in order)."""
    digest = hashlib.sha256()
    for pair in pairs:
        for name, text in (("prompt", pair.prompt), ("chosen", pair.chosen), ("rejected", pair.rejected)):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            digest.update(name.encode() + b":" + b",".join(str(i).encode() for i in ids) + b";")
    return digest.hexdigest()
