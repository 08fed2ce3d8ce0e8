"""Prompts as the model sees them, rendered by `[data] template` as supervised training renders a prompt; and the
prompt rows online RL trains on, with their fingerprint.

A plain-text prompt is rendered as an instruction row without input, a list of messages as a conversation ending in
the generation prompt. Preference pairs (runner/data/preference.py) and feedback rows (runner/data/feedback.py) render
their prompts here too, so every method sees a prompt the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path
from typing import Any

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import Spec
from tunelab.runner.data.formats import ChatMessage, InstructionExample, read_prompt_rows
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError, RunFailed


def render_prompt(renderer: Renderer, prompt: str | tuple[ChatMessage, ...], path: Path, line: int) -> str:
    """The text the model is given before its answer: a plain prompt as an instruction without input, a
    conversation with the generation prompt appended."""
    if isinstance(prompt, str):
        rendered = renderer.render(InstructionExample(prompt, "", "", line=line), path)
        return "".join(segment.text for segment in takewhile(lambda s: not s.trainable, rendered.segments))
    return renderer.chat_renderer()([{"role": m.role, "content": m.content} for m in prompt], True)


def one_data_file(spec: Spec, workdir: Path) -> Path:
    """The one data file of a method that reads a single file (reward, rloo, grpo, kto; the spec checks it)."""
    if not isinstance(spec.data.train, str):
        raise RunFailed(f'method.kind = "{spec.method.kind}" reads one data file: [data] train must be a path')
    return spec_path(spec.data.train, workdir)


@dataclass(frozen=True)
class PromptRow:
    """A rendered prompt, the prompt as the file wrote it (a conversation: its last user message), and the row's
    other fields, handed to the reward function."""

    prompt: str
    original: str
    fields: dict[str, Any] = field(default_factory=dict)


def _as_written(prompt: str | tuple[ChatMessage, ...]) -> str:
    if isinstance(prompt, str):
        return prompt
    return next((m.content for m in reversed(prompt) if m.role == "user"), prompt[-1].content)


def read_prompts(path: Path, tokenizer, template: str) -> list[PromptRow]:
    """The prompt rows of `path`, rendered; every row must carry the same other fields (they become columns)."""
    renderer = Renderer(template, tokenizer)
    rows = read_prompt_rows(path)
    names = [name for name, _ in rows[0].fields]
    prompts = []
    for row in rows:
        fields = dict(row.fields)
        if list(fields) != names:
            raise DataError(path, f"every row needs the same fields: this one has {sorted(fields) or 'none'} "
                            f"besides the prompt, the first row {names or 'none'}", line=row.line)
        prompt = render_prompt(renderer, row.prompt, path, row.line)
        if not prompt.strip():
            raise DataError(path, "the prompt must not be empty", line=row.line)
        prompts.append(PromptRow(prompt, _as_written(row.prompt), fields))
    return prompts


def fingerprint_prompts(rows: list[PromptRow], tokenizer) -> str:
    """sha256 of the prompt token ids online RL generates from, with each row's other fields, in order."""
    digest = hashlib.sha256()
    for row in rows:
        ids = tokenizer(row.prompt, add_special_tokens=False)["input_ids"]
        digest.update(b"prompt:" + b",".join(str(i).encode() for i in ids) + b";")
        if row.fields:
            digest.update(json.dumps(row.fields, sort_keys=True).encode() + b";")
    return digest.hexdigest()


def prompt_dataset(rows: list[PromptRow]):
    """The rows as the datasets.Dataset trl's online trainers read: a `prompt` column and one per other field."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {"prompt": [row.prompt for row in rows]}
    for name in rows[0].fields if rows else {}:
        columns[name] = [row.fields[name] for row in rows]
    return Dataset.from_dict(columns)
