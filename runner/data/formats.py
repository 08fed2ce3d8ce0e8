"""Read data files into typed rows: instruction, chat, text and preference, from JSONL or CSV.

A file is CSV when its name ends in .csv (same column names as the JSONL keys), JSONL otherwise.
Every malformed row is a DataError naming the file and line; nothing here tokenises.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


Example = InstructionExample | ChatExample | TextExample | PreferenceExample


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


# ---------------------------------------------------------------- records: (line, dict) from JSONL or CSV


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(path, "data file not found")
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_records(path)
        else:
            yield from _jsonl_records(path)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
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
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise DataError(path, "no header row", line=1)
        start = reader.line_num + 1
        try:
            for record in reader:
                if None in record:
                    raise DataError(path, f"more fields than the header's {len(reader.fieldnames)}", line=start)
                # A short row leaves its last columns None: as good as absent.
                yield start, {key: value for key, value in record.items() if value is not None}
                start = reader.line_num + 1
        except csv.Error as exc:
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


_PARSERS = {"instruction": _instruction, "chat": _chat, "text": _text, "preference": _preference}
