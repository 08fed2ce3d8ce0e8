"""Data files as they come: a directory or FIFO named for what it is (and a FIFO never waited on), a UTF-8
byte-order mark accepted, a line in another encoding named by its line, and a CSV quote left open refused at the
row where it opens."""

from __future__ import annotations

import os
import threading

import pytest
from tunelab.runner.data.formats import InstructionExample, read_rows
from tunelab.runner.errors import DataError

ROW = '{"instruction": "Say hi", "output": "hi"}\n'


def test_a_directory_is_named_a_directory(tmp_path):
    (tmp_path / "train.jsonl").mkdir()
    with pytest.raises(DataError, match="is a directory, not a data file") as err:
        read_rows(tmp_path / "train.jsonl", "instruction")
    assert "not found" not in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_named_a_fifo_and_never_waited_on(tmp_path):
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    outcome: list = []

    def read():
        try:
            read_rows(fifo, "instruction")
        except DataError as err:
            outcome.append(str(err))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader that opened the FIFO, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO waited for a writer")
    assert outcome == [f"{fifo}: is a FIFO (named pipe), not a data file"]


@pytest.mark.parametrize("name, text", [
    ("bom.jsonl", ROW + ROW),
    ("bom.csv", "instruction,output\nSay hi,hi\nSay hi,hi\n"),
])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = read_rows(path, "instruction")
    assert rows == [InstructionExample("Say hi", "", "hi")] * 2
    assert [row.line for row in rows] == [1, 2] if name.endswith(".jsonl") else [2, 3]


@pytest.mark.parametrize("name, head", [("mixed.jsonl", ROW * 3), ("mixed.csv", "instruction,output\nok,ok\nok,ok\n")])
def test_a_line_in_another_encoding_is_named_by_its_line(tmp_path, name, head):
    path = tmp_path / name
    latin = ('{"instruction": "caf\u00e9", "output": "x"}\n' if name.endswith(".jsonl") else "caf\u00e9,x\n")
    path.write_bytes(head.encode("utf-8") + latin.encode("latin-1") + head.encode("utf-8"))
    with pytest.raises(DataError) as err:
        read_rows(path, "instruction")
    assert err.value.line == 4
    assert str(err.value).startswith(f"{path}:4: not UTF-8 text (byte 0xe9 at column")
    assert "at byte" not in str(err.value)


def test_a_csv_quote_left_open_in_the_last_row_is_refused_with_its_line(tmp_path):
    path = tmp_path / "open.csv"
    path.write_text('instruction,output\nSay hi,hi\n"Say\nbye,bye\n', encoding="utf-8")
    with pytest.raises(DataError, match="unterminated quoted field") as err:
        read_rows(path, "instruction")
    assert err.value.line == 3
    # Closed, the same row is one instruction spanning two lines.
    path.write_text('instruction,output\nSay hi,hi\n"Say\nbye",bye\n', encoding="utf-8")
    assert [row.instruction for row in read_rows(path, "instruction")] == ["Say hi", "Say\nbye"]
