"""Render rows as text segments, each marked trainable or not: prompt templates and chat templates.

`[data] template` is "alpaca", "chatml", "tokenizer" (the tokenizer's own chat template) or a Jinja
string, rendered in a sandbox with bounds on what one rendering may produce and how long it may take
(BoundedSandbox): a template that breaks one fails the run once, at its first row, in one line.

Chat templates render a whole conversation; the trainable part of each assistant turn is the
text that rendering the conversation up to that turn adds after the generation prompt, so the masks
are exact for any template that renders each turn as a prefix of the next (all common ones do).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tunelab.runner.data.formats import ChatExample, ChatMessage, Example, InstructionExample, TextExample
from tunelab.runner.errors import DataError, RunCancelled, RunFailed

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)
ALPACA_PREAMBLE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
ALPACA_PROMPT = ALPACA_PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = (
    ALPACA_PREAMBLE_WITH_INPUT + "\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Multi-turn Alpaca for chat rows: a single exchange renders exactly like an instruction row without input.
ALPACA_CHAT_TEMPLATE = (
    "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}"
    "{% else %}{{ preamble }}{% endif %}"
    "{% for message in messages if message.role != 'system' %}"
    "{% if message.role == 'user' %}{{ '\\n\\n### Instruction:\\n' + message.content + '\\n\\n### Response:\\n' }}"
    "{% else %}{{ message.content + eos_token }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


@dataclass(frozen=True)
class Rendered:
    """A row as text: segments in order, and whether an EOS token (trainable) follows them."""

    segments: tuple[Segment, ...]
    eos: bool


ChatRenderer = Callable[[list[dict[str, str]], bool], str]


# What one rendering of a Jinja template may produce and take: a row's own text four times over plus this much,
# and this long. A real template adds a few hundred characters in microseconds; without bounds a spec's
# `{{ 'x' * 300000000 }}` grows a worker until the kernel kills it, and nested loops never end.
TEMPLATE_EXTRA_CHARS = 100_000
TEMPLATE_SECONDS = 5.0
_MAX_POWER_BITS = 4_096  # `**` on integers: 2 ** 10 ** 10 would compute for ever


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with bounds: every call, attribute look-up and `*` / `**` checks the rendering's deadline, and
    `*` refuses a string or list longer than the rendering's budget (jinja's sandbox already caps `range`)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, should_stop: Callable[[], bool] = lambda: False, **options: Any) -> None:
        super().__init__(**options)
        self.deadline = math.inf
        self.budget = TEMPLATE_EXTRA_CHARS
        self.should_stop = should_stop  # a cancel is honoured inside a slow template too

    def render(self, template: Template, **variables: Any) -> str:
        """`template` rendered within the bounds; a SecurityError (a TemplateError) when it breaks one."""
        self.budget = TEMPLATE_EXTRA_CHARS + 4 * sum(len(str(value)) for value in variables.values())
        self.deadline = time.monotonic() + TEMPLATE_SECONDS
        chunks, size = [], 0
        # Chunk by chunk, so that output is measured while it grows rather than after.
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > self.budget:
                raise SecurityError(f"the template's output for one row passed {self.budget:,} characters")
            self._tick()
            chunks.append(chunk)
        return "".join(chunks)

    def _tick(self) -> None:
        if self.should_stop():
            raise RunCancelled("cancelled while preparing data")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the template took more than {TEMPLATE_SECONDS:g} s to render one row")

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return super().call(*args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int) \
                        and len(sequence) * times > self.budget:
                    raise SecurityError(f"the template builds a {type(sequence).__name__} of "
                                        f"{len(sequence) * times:,} items (at most {self.budget:,})")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right * left.bit_length() > _MAX_POWER_BITS:
            raise SecurityError(f"the template computes an integer of more than {_MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _sandbox(*, chat: bool, should_stop: Callable[[], bool]) -> BoundedSandbox:
    """A sandboxed, bounded Jinja environment; unknown variables are errors, not empty strings.

    Chat templates get transformers' whitespace handling (trim_blocks, lstrip_blocks), so a template
    copied from a tokenizer_config.json renders the same here; prompt templates render verbatim.
    """
    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = BoundedSandbox(should_stop, trim_blocks=chat, lstrip_blocks=chat, undefined=StrictUndefined)
    env.globals["raise_exception"] = raise_exception
    return env


class Renderer:
    """Renders rows of any SFT format with one `[data] template`."""

    def __init__(self, template: str, tokenizer: Any, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.template = template
        self.should_stop = should_stop
        self.tokenizer = tokenizer
        self._chat: ChatRenderer | None = None
        named = template in ("alpaca", "chatml", "tokenizer")
        self._env = _sandbox(chat=False, should_stop=should_stop)
        self._prompt = None if named else self._env.from_string(template)
        self._specials = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or ""}

    def render(self, example: Example, path: Path) -> Rendered:
        if self.should_stop():
            raise RunCancelled("cancelled while preparing data")
        try:
            if isinstance(example, TextExample):
                return Rendered((Segment(example.text, True),), eos=True)
            if isinstance(example, InstructionExample):
                if self.template in ("chatml", "tokenizer"):
                    return self._conversation(_as_messages(example), path, example.line)
                return Rendered((Segment(self._instruction_prompt(example), False), Segment(example.output, True)),
                                eos=True)
            if isinstance(example, ChatExample):
                return self._conversation(example.messages, path, example.line)
        except TemplateError as exc:
            raise DataError(path, f"template: {exc}", line=example.line) from None
        raise DataError(path, f"{type(example).__name__} rows cannot be rendered for supervised fine-tuning",
                        line=example.line)

    def prompt_text(self, example: InstructionExample | ChatExample, path: Path) -> str:
        """The text a generation for this row starts from, rendered as training renders its prompt: an instruction
        row up to its response, a conversation up to its last assistant turn (or where the next turn would begin)."""
        try:
            if isinstance(example, InstructionExample) and self.template not in ("chatml", "tokenizer"):
                return self._instruction_prompt(example)
            messages = _as_messages(example)[:1] if isinstance(example, InstructionExample) else example.messages
            if messages[-1].role == "assistant":
                messages = messages[:-1]
            return self.chat_renderer()([{"role": m.role, "content": m.content} for m in messages], True)
        except TemplateError as exc:
            raise DataError(path, f"template: {exc}", line=example.line) from None

    def _instruction_prompt(self, example: InstructionExample) -> str:
        if self._prompt is not None:
            return self._env.render(self._prompt, instruction=example.instruction, input=example.input,
                                    **self._specials)
        return alpaca_prompt(example)

    def chat_renderer(self) -> ChatRenderer:
        """messages, add_generation_prompt -> text, for the configured template."""
        if self._chat is not None:
            return self._chat
        if self.template == "tokenizer":
            if not getattr(self.tokenizer, "chat_template", None):
                raise RunFailed(f'[data] template = "tokenizer", but the tokenizer of {self._tokenizer_name()} has no '
                                'chat template; use "chatml", "alpaca" or a Jinja template string')

            def render_with_tokenizer(messages: list[dict[str, str]], generation_prompt: bool) -> str:
                return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=generation_prompt)

            self._chat = render_with_tokenizer
        else:
            source = {"chatml": CHATML_TEMPLATE, "alpaca": ALPACA_CHAT_TEMPLATE}.get(self.template, self.template)
            env = _sandbox(chat=True, should_stop=self.should_stop)
            compiled = env.from_string(source)

            def render_with_jinja(messages: list[dict[str, str]], generation_prompt: bool) -> str:
                return env.render(compiled, messages=messages, add_generation_prompt=generation_prompt,
                                  preamble=ALPACA_PREAMBLE, **self._specials)

            self._chat = render_with_jinja
        return self._chat

    def _tokenizer_name(self) -> str:
        return repr(getattr(self.tokenizer, "name_or_path", "") or "the model")

    def _conversation(self, messages: tuple[ChatMessage, ...], path: Path, line: int) -> Rendered:
        """Prompt segments up to each assistant turn, then that turn (trainable); text after the last is dropped."""
        render = self.chat_renderer()
        plain = [{"role": m.role, "content": m.content} for m in messages]
        segments: list[Segment] = []
        done = ""
        for index, message in enumerate(messages):
            if message.role != "assistant":
                continue
            prompt = render(plain[:index], True)
            full = render(plain[: index + 1], False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise DataError(path, "the chat template does not render this conversation turn by turn (an earlier "
                                "turn's text is not a prefix of the next), so the assistant turns cannot be masked "
                                "exactly", line=line)
            segments.append(Segment(prompt[len(done):], False))
            segments.append(Segment(full[len(prompt):], True))
            done = full
        return Rendered(tuple(segments), eos=False)


def _as_messages(example: InstructionExample) -> tuple[ChatMessage, ...]:
    """An instruction row as a one-exchange conversation (for chat templates): the input follows the instruction."""
    user = f"{example.instruction}\n\n{example.input}" if example.input.strip() else example.instruction
    return (ChatMessage("user", user), ChatMessage("assistant", example.output))


def alpaca_prompt(example: InstructionExample) -> str:
    """The Alpaca prompt of an instruction row (what the default template trains on, before the response)."""
    if example.input.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=example.instruction, input=example.input)
    return ALPACA_PROMPT.format(instruction=example.instruction)
