"""A spec's Jinja template is bounded: what one rendering may produce and how long it may run. A template that
breaks a bound fails the run once (a DataError, never retried) in one line naming the file and row, instead of
growing the worker until the kernel kills it or looping for ever."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tunelab.runner.data import templates
from tunelab.runner.data.formats import ChatExample, ChatMessage, InstructionExample
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError, retryable

TOKENIZER = SimpleNamespace(bos_token="<s>", eos_token="</s>", name_or_path="tiny")
ROW = InstructionExample("Say hi", "", "hi", line=7)
PATH = Path("train.jsonl")


def _refused(template: str, example=ROW) -> DataError:
    started = time.monotonic()
    with pytest.raises(DataError) as err:
        Renderer(template, TOKENIZER).render(example, PATH)
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert message.startswith("train.jsonl:7: template: ") and "\n" not in message
    assert not retryable(err.value)
    return err.value


def test_a_huge_string_is_refused_before_it_is_built():
    assert "builds a str of 300,000,000 items" in str(_refused("{{ 'x' * 300000000 }}"))
    assert "builds a list" in str(_refused("{{ ([1] * 10000000) | length }}"))


def test_output_that_grows_past_the_bound_is_stopped_while_it_grows():
    template = "{% for i in range(100000) %}{{ 'abcdefghij' }}{% endfor %}{{ instruction }}"
    assert "output for one row passed" in str(_refused(template))


def test_nested_loops_are_stopped_at_the_time_bound(monkeypatch):
    monkeypatch.setattr(templates, "TEMPLATE_SECONDS", 0.5)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ instruction }}"
    assert "took more than 0.5 s to render one row" in str(_refused(loops))


def test_a_power_tower_is_refused():
    assert "integer of more than" in str(_refused("{{ 7 ** 1000000000 }}"))


def test_a_chat_template_is_bounded_too(monkeypatch):
    monkeypatch.setattr(templates, "TEMPLATE_SECONDS", 0.5)
    chat = ChatExample((ChatMessage("user", "hi"), ChatMessage("assistant", "hello")), line=7)
    spin = ("{% for m in messages %}{% for i in range(100000) %}{% for j in range(100000) %}{{ m.role[:0] }}"
            "{% endfor %}{% endfor %}{{ m.content }}{% endfor %}")
    assert "took more than 0.5 s" in str(_refused(spin, chat))


def test_ordinary_templates_render_as_before():
    renderer = Renderer("{{ bos_token }}Q: {{ instruction * 2 }}{% for i in range(3) %}.{% endfor %}\nA: ", TOKENIZER)
    rendered = renderer.render(ROW, PATH)
    assert rendered.segments[0].text == "<s>Q: Say hiSay hi...\nA: "
    chat = ChatExample((ChatMessage("user", "hi"), ChatMessage("assistant", "hello")))
    assert [s.text for s in Renderer("chatml", TOKENIZER).render(chat, PATH).segments] == [
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "hello<|im_end|>\n"]
