"""Training data: read instruction JSONL, render the prompt template, tokenise with loss masks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import DataError

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str
    output: str


def read_instruction_jsonl(path: Path) -> list[InstructionExample]:
    """Rows with `instruction`, optional `input`, and `output`; errors name the line."""
    if not path.exists():
        raise DataError(path, "training data file not found")
    examples: list[InstructionExample] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc.msg}", line=number) from None
            if not isinstance(row, dict):
                raise DataError(path, "each line must be a JSON object", line=number)
            for key in ("instruction", "output"):
                if not isinstance(row.get(key), str):
                    raise DataError(path, f'missing or non-string field "{key}"', line=number)
            extra = row.get("input", "")
            if not isinstance(extra, str):
                raise DataError(path, 'field "input" must be a string', line=number)
            examples.append(InstructionExample(row["instruction"], extra, row["output"]))
    if not examples:
        raise DataError(path, "no training examples")
    return examples


def render_prompt(example: InstructionExample) -> str:
    if example.input.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=example.instruction, input=example.input)
    return ALPACA_PROMPT.format(instruction=example.instruction)


def tokenize_examples(
    examples: list[InstructionExample], tokenizer, *, max_seq_len: int, train_on_prompt: bool
) -> list[dict[str, list[int]]]:
    """input_ids = BOS + prompt + response + EOS, truncated; labels mask the prompt unless train_on_prompt."""
    features = []
    for example in examples:
        prompt_ids = tokenizer(render_prompt(example), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(example.output, add_special_tokens=False)["input_ids"]
        prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        suffix = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        input_ids = (prefix + prompt_ids + response_ids + suffix)[:max_seq_len]
        prompt_length = len(prefix) + len(prompt_ids)
        labels = list(input_ids)
        if not train_on_prompt:
            labels[: min(prompt_length, len(labels))] = [IGNORE_INDEX] * min(prompt_length, len(labels))
        features.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels})
    return features
