"""Read data files into typed rows: instruction, chat, text, preference, prompt and feedback, from JSONL or CSV.

A file is CSV when its name ends in .csv (same column names as the JSONL keys), JSONL otherwise; either is UTF-8,
with or without a byte-order mark. Every malformed row (bad JSON, a line in another encoding, a quote never
closed) is a DataError naming the file and line; a path that is not a regular file is named for what it is.
Nothing here tokenises.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tunelab.experiments.paths import file_kind
from tunelab.runner.errors import DataError

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str
    output: str
    # Where the row came from; not part of the row's identity (two equal rows are duplicates wherever they are).
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ChatExample:
    messages: tuple[ChatMessage, ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class TextExample:
    text: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class PreferenceExample:
    """A preference pair; `prompt` is plain text or, in JSONL, a list of chat messages."""

    prompt: str | tuple[ChatMessage, ...]
    chosen: str
    rejected: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class PromptExample:
    """A prompt for online RL (plain text or, in JSONL, a list of chat messages); `fields` are the row's other
    fields (strings, numbers, booleans), which reach the reward function."""

    prompt: str | tuple[ChatMessage, ...]
    fields: tuple[tuple[str, str | int | float | bool], ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class FeedbackExample:
    """One answer to a prompt with a verdict on it: `label` true for a good answer, false for a bad one (KTO)."""

    prompt: str | tuple[ChatMessage, ...]
    completion: str
    label: bool
    line: int = field(default=0, compare=False)


Example = InstructionExample | ChatExample | TextExample | PreferenceExample | PromptExample | FeedbackExample


def read_rows(path: Path, data_format: str) -> list[Example]:
    """All rows of `path` in `data_format`, in file order; an empty file is an error."""
    parse = _PARSERS[data_format]
    rows = [parse(record, path, line) for line, record in _records(path)]
    if not rows:
        raise DataError(path, "no rows")
    return rows


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) of every row of a JSONL or CSV file, unvalidated: for readers of their own row shapes."""
    yield from _records(Path(path))


def read_preference_rows(path: Path) -> list[PreferenceExample]:
    """Rows of prompt, chosen and rejected (JSONL or CSV), validated; for preference methods such as DPO."""
    return [row for row in read_rows(Path(path), "preference") if isinstance(row, PreferenceExample)]


def read_prompt_rows(path: Path) -> list[PromptExample]:
    """Rows of a prompt and optional other fields (JSONL or CSV), validated; for online RL."""
    return [row for row in read_rows(Path(path), "prompt") if isinstance(row, PromptExample)]


def read_feedback_rows(path: Path) -> list[FeedbackExample]:
    """Rows of prompt, completion and label (JSONL or CSV), validated; for KTO."""
    return [row for row in read_rows(Path(path), "feedback") if isinstance(row, FeedbackExample)]


# ---------------------------------------------------------------- records: (line, dict) from JSONL or CSV


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(path, "data file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        # Never opened: a FIFO would wait for a writer forever, a directory is no data.
        raise DataError(path, f"is {file_kind(mode)}, not a data file")
    if path.suffix.lower() == ".csv":
        yield from _csv_records(path)
    else:
        yield from _jsonl_records(path)


def _text_lines(path: Path, handle: BinaryIO) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 file (a byte-order mark at its start skipped), numbered from 1; a line that is not
    UTF-8 is an error naming it (a file of mixed encodings fails at its first foreign line, not a byte offset)."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}; "
                            "save the file as UTF-8)", line=number) from None


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, text in _text_lines(path, handle):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc.msg}", line=number) from None
            if not isinstance(record, dict):
                raise DataError(path, "each line must be a JSON object", line=number)
            yield number, record


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        # strict: a quoted field still open at the end of the file is an error, not a row that ends there.
        reader = csv.DictReader((text for _, text in _text_lines(path, handle)), strict=True)
        start = 1
        try:
            if not reader.fieldnames:
                raise DataError(path, "no header row", line=1)
            start = reader.line_num + 1
            for record in reader:
                if None in record:
                    raise DataError(path, f"more fields than the header's {len(reader.fieldnames)}", line=start)
                # A short row leaves its last columns None: as good as absent.
                yield start, {key: value for key, value in record.items() if value is not None}
                start = reader.line_num + 1
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise DataError(path, "unterminated quoted field: the row that starts here has a \" that is never "
                                "closed", line=start) from None
            raise DataError(path, f"invalid CSV: {exc}", line=reader.line_num) from None


# ---------------------------------------------------------------- one record -> one typed row


def _string(record: dict[str, Any], key: str, path: Path, line: int, *, default: str | None = None) -> str:
    value = record.get(key, default)
    if not isinstance(value, str):
        raise DataError(path, f'missing or non-string field "{key}"', line=line)
    return value


def _instruction(record: dict[str, Any], path: Path, line: int) -> InstructionExample:
    instruction = _string(record, "instruction", path, line)
    output = _string(record, "output", path, line)
    extra = record.get("input", "")
    if extra is None or not isinstance(extra, str):
        raise DataError(path, 'field "input" must be a string', line=line)
    return InstructionExample(instruction, extra, output, line=line)


def _messages(value: Any, key: str, path: Path, line: int) -> tuple[ChatMessage, ...]:
    if isinstance(value, str) and path.suffix.lower() == ".csv":
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(path, f'column "{key}" must hold a JSON list of messages: {exc.msg}', line=line) from None
    if not isinstance(value, list) or not value:
        raise DataError(path, f'field "{key}" must be a non-empty list of {{role, content}} messages', line=line)
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise DataError(path, f"{key}[{index}] must be an object with role and content", line=line)
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise DataError(path, f"{key}[{index}].role must be one of {', '.join(CHAT_ROLES)} (got {role!r})",
                            line=line)
        if not isinstance(content, str):
            raise DataError(path, f"{key}[{index}].content must be a string", line=line)
        messages.append(ChatMessage(role, content))
    return tuple(messages)


def _chat(record: dict[str, Any], path: Path, line: int) -> ChatExample:
    return ChatExample(_messages(record.get("messages"), "messages", path, line), line=line)


def _text(record: dict[str, Any], path: Path, line: int) -> TextExample:
    return TextExample(_string(record, "text", path, line), line=line)


def _preference(record: dict[str, Any], path: Path, line: int) -> PreferenceExample:
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        prompt = _messages(prompt, "prompt", path, line)
    elif not isinstance(prompt, str):
        raise DataError(path, 'missing field "prompt" (a string, or a list of messages)', line=line)
    return PreferenceExample(prompt, _string(record, "chosen", path, line), _string(record, "rejected", path, line),
                             line=line)


def _prompt_of(record: dict[str, Any], path: Path, line: int) -> str | tuple[ChatMessage, ...]:
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        return _messages(prompt, "prompt", path, line)
    if not isinstance(prompt, str):
        raise DataError(path, 'missing field "prompt" (a string, or a list of messages)', line=line)
    return prompt


def _prompt(record: dict[str, Any], path: Path, line: int) -> PromptExample:
    prompt = _prompt_of(record, path, line)
    fields = []
    for key, value in sorted(record.items()):
        if key == "prompt":
            continue
        if not isinstance(value, str | int | float | bool):
            raise DataError(path, f'field "{key}" must be a string, a number or a boolean (it goes to the reward '
                            "function)", line=line)
        fields.append((key, value))
    return PromptExample(prompt, tuple(fields), line=line)


_LABELS = {"true": True, "1": True, "false": False, "0": False}


def _feedback(record: dict[str, Any], path: Path, line: int) -> FeedbackExample:
    prompt = _prompt_of(record, path, line)
    label = record.get("label")
    if isinstance(label, str) and path.suffix.lower() == ".csv":
        label = _LABELS.get(label.strip().lower(), label)
    if not isinstance(label, bool):
        raise DataError(path, 'field "label" must be true (a good answer) or false (a bad one)', line=line)
    return FeedbackExample(prompt, _string(record, "completion", path, line), label, line=line)


_PARSERS = {"instruction": _instruction, "chat": _chat, "text": _text, "preference": _preference,
            "prompt": _prompt, "feedback": _feedback}
