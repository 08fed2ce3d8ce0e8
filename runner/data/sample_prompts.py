"""Prompts for [eval.samples]: what the fine-tuned model and its base are asked to write after training.

Two sources. A JSONL file of `prompt` rows (text used as written, an optional `reference`) or of rows in the
[data] format (instruction with optional input and output, or messages), rendered with the spec's template up to
the response, as training renders them; the output, or the last assistant message, is the reference. Or a fraction
of the validation examples exactly as training held them out: the tokens before an example's last response are the
prompt, that response the reference. Either way a prompt is token ids, BOS first as in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.runner.data.cleaning import IGNORE_INDEX, Feature
from tunelab.runner.data.formats import ChatExample, ChatMessage, InstructionExample, read_records
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError


@dataclass(frozen=True)
class SamplePrompt:
    text: str  # the prompt as the model reads it (template applied), as pages show it
    input_ids: tuple[int, ...]  # what generation starts from
    reference: str | None


def _with_bos(ids: list[int], tokenizer: Any) -> tuple[int, ...]:
    bos = tokenizer.bos_token_id
    return tuple([bos, *ids] if bos is not None and (not ids or ids[0] != bos) else ids)


def _string(record: dict[str, Any], key: str, path: Path, line: int, *, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise DataError(path, f'missing or non-string field "{key}"', line=line)
    return value


def _messages(record: dict[str, Any], path: Path, line: int) -> tuple[ChatMessage, ...]:
    value = record.get("messages")
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value):
        raise DataError(path, 'field "messages" must be a non-empty list of {role, content} messages', line=line)
    return tuple(ChatMessage(m["role"], m["content"]) for m in value)


def prompts_from_file(path: Path, renderer: Renderer, tokenizer: Any) -> list[SamplePrompt]:
    """Every row of a prompts file, in file order (see the module's docstring for the rows it takes)."""
    prompts = []
    for line, record in read_records(path):
        if "prompt" in record:
            text = _string(record, "prompt", path, line)
            reference = _string(record, "reference", path, line, required=False)
        elif "messages" in record:
            messages = _messages(record, path, line)
            last = messages[-1]
            reference = last.content if last.role == "assistant" else None
            text = renderer.prompt_text(ChatExample(messages, line=line), path)
        elif "instruction" in record:
            reference = _string(record, "output", path, line, required=False)
            example = InstructionExample(_string(record, "instruction", path, line),
                                         _string(record, "input", path, line, required=False) or "",
                                         reference or "", line=line)
            text = renderer.prompt_text(example, path)
        else:
            raise DataError(path, 'a prompt row needs "prompt", "instruction" or "messages"', line=line)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompts.append(SamplePrompt(text, _with_bos(ids, tokenizer), reference))
    if not prompts:
        raise DataError(path, "no prompts")
    return prompts


def prompt_of_feature(feature: Feature, tokenizer: Any) -> SamplePrompt | None:
    """An example's tokens before its last response (the prompt), and that response (the reference); None for an
    example with no response tokens."""
    labels = feature["labels"]
    trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    if not trained:
        return None
    end = trained[-1] + 1
    start = end - 1
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    if start == 0:  # trained on every token: no prompt to start from
        return None
    ids = tuple(feature["input_ids"][:start])
    reference = tokenizer.decode(feature["input_ids"][start:end], skip_special_tokens=True).strip()
    return SamplePrompt(tokenizer.decode(ids, skip_special_tokens=True), ids, reference)


def prompts_from_validation(features: list[Feature], tokenizer: Any, fraction: float,
                            seed: int) -> list[SamplePrompt]:
    """`fraction` of the validation examples (at least one), drawn with `seed`, in their order."""
    prompts = [p for p in (prompt_of_feature(f, tokenizer) for f in features) if p is not None]
    if not prompts:
        raise DataError(Path("[data] validation"), "no validation example has a response to prompt for samples")
    size = max(round(len(prompts) * fraction), 1)
    chosen = set(random.Random(seed).sample(range(len(prompts)), size))
    return [p for i, p in enumerate(prompts) if i in chosen]
