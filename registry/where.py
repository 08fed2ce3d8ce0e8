"""The `tunelab ls --where` language: a tokenizer and recursive-descent parser to a small AST, and its
translation into SQLAlchemy expressions. No SQL text is built from user input: every literal is bound.

    expression := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := FIELD ("=" | "!=" | "<" | "<=" | ">" | ">=" | "contains") VALUE
    VALUE      := "string" | 'string' | number | true | false
"""

from __future__ import annotations

import operator
import re
import types
import typing
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    String,
    Text,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement
from tunelab.experiments.benchmarks import LEADERBOARD, LEADERBOARD_AVERAGE, MMLU_SUBJECTS, Average
from tunelab.experiments.schema import Spec
from tunelab.experiments.suggest import close_names, did_you_mean
from tunelab.registry.errors import RegistryError
from tunelab.registry.models import EvalResult, Experiment, Run, RunStatus, SearchTrial, TrainMetric

SECTIONS: tuple[str, ...] = tuple(Spec.model_fields)
MAX_NESTING = 64
# Comparisons in one expression: each nests one level deeper in the SQL an AND or OR chain becomes, and SQLite
# refuses an expression tree deeper than 1,000. Far more than a person writes.
MAX_COMPARISONS = 256
# Integers are bound as 64-bit SQL integers; more digits than that can hold are refused before Python parses them.
_MAX_INT = 2**63 - 1
_MAX_INT_DIGITS = len(str(_MAX_INT))
# The task names with scores in the registry, read when a bare field name is not a leaderboard benchmark.
TaskNames = Callable[[], Collection[str]]


class QueryError(RegistryError):
    """A --where or --sort expression that cannot be parsed; the message points at the offending spot."""

    def __init__(self, reason: str, expression: str, position: int, expected: str | None = None) -> None:
        self.reason = reason
        self.expression = expression
        self.position = position
        self.column = position + 1
        self.expected = expected
        headline = f"{reason} at column {self.column}" + (f": expected {expected}" if expected else "")
        # Tabs and newlines would knock the caret out of line with the text above it.
        shown = "".join(" " if ch.isspace() else ch for ch in expression)
        super().__init__(f"{headline}\n  {shown}\n  {' ' * position}^")


# --- tokens -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # "name", "keyword", "string", "number", "op", "(", ")" or "end"
    text: str  # as written
    position: int  # 0-based offset into the expression
    value: str | int | float | None = None


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATORS = ("<=", ">=", "!=", "=", "<", ">")  # two-character operators first
_KEYWORDS = frozenset({"and", "or", "not", "contains", "true", "false"})
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


def _tokens(expression: str) -> Iterator[Token]:
    """Tokens one at a time, so the leftmost mistake is the one reported."""
    i, n = 0, len(expression)
    while True:
        while i < n and expression[i].isspace():
            i += 1
        if i == n:
            yield Token("end", "", n)
            return
        ch = expression[i]
        if ch in "()":
            yield Token(ch, ch, i)
            i += 1
        elif op := next((o for o in _OPERATORS if expression.startswith(o, i)), None):
            yield Token("op", op, i)
            i += len(op)
        elif ch in "\"'":
            token = _string(expression, i)
            yield token
            i += len(token.text)
        elif number := _NUMBER.match(expression, i):
            end = number.end()
            if end < n and (expression[end].isalnum() or expression[end] in "_."):
                raise QueryError("malformed number", expression, i)
            text = number.group()
            yield Token("number", text, i, _number(text, expression, i))
            i = end
        elif name := _NAME.match(expression, i):
            end = name.end()
            if end < n and expression[end] == ".":
                raise QueryError('a key must follow "."', expression, end)
            text = name.group()
            yield Token("keyword" if text.lower() in _KEYWORDS else "name", text, i)
            i = end
        else:
            raise QueryError(f"unexpected character {ch!r}", expression, i)


def _number(text: str, expression: str, position: int) -> int | float:
    """The value of a number token; QueryError for one no SQL comparison can take (too large, or infinite)."""
    if not any(c in text for c in ".eE"):
        if len(text.lstrip("+-")) <= _MAX_INT_DIGITS and abs(value := int(text)) <= _MAX_INT:
            return value
        raise QueryError("number out of range", expression, position,
                         expected=f"an integer between -{_MAX_INT} and {_MAX_INT}, or a decimal number")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise QueryError("number out of range", expression, position, expected="a finite decimal number")
    return value


def _string(expression: str, start: int) -> Token:
    quote, i, chars = expression[start], start + 1, []
    while i < len(expression):
        ch = expression[i]
        if ch == quote:
            return Token("string", expression[start:i + 1], start, "".join(chars))
        if ch == "\\":
            escaped = expression[i + 1:i + 2]
            if escaped not in _ESCAPES:
                raise QueryError(f"unknown escape \\{escaped}", expression, i, expected='one of \\" \\\' \\\\ \\n \\t')
            chars.append(_ESCAPES[escaped])
            i += 2
        else:
            chars.append(ch)
            i += 1
    raise QueryError("unterminated string", expression, start, expected=f"a closing {quote}")


# --- the AST ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """A resolved field: kind is id, status, name, created, loss, val_loss, tags, spec, score, average, search or
    trial (a search's trial: its search's id, its number)."""

    kind: str
    text: str
    position: int
    path: tuple[str, ...] = ()  # the spec path for "spec", (task,) for "score"


@dataclass(frozen=True)
class Value:
    value: str | int | float | bool | datetime
    position: int


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str  # = != < <= > >= contains
    value: Value
    position: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Comparison | Not | And | Or

_BUILTIN_FIELDS = {"id": "id", "run": "id", "status": "status", "name": "name", "created": "created",
                   "loss": "loss", "tags": "tags", "average": "average", "val_loss": "val_loss",
                   "search": "search", "trial": "trial"}
# What each field compares with; spec paths take any value, as the stored JSON decides.
_WANTS = {"id": "number", "loss": "number", "score": "number", "average": "number", "val_loss": "number",
          "search": "number", "trial": "number", "status": "string", "name": "string", "tags": "string",
          "created": "date"}
_NULLABLE = frozenset({"loss", "score", "average", "spec", "val_loss", "search", "trial"})


def _resolve_field(token: Token, expression: str, tasks: TaskNames | None) -> Field:
    """The field a name means. `tasks`: the names with scores that a bare name may be, asked for only when a name is
    not a leaderboard benchmark (None: any name is taken for a task, unchecked)."""
    parts = tuple(token.text.split("."))
    if len(parts) > 1:
        if parts[0] not in SECTIONS:
            raise QueryError(f'unknown spec section "{parts[0]}"', expression, token.position,
                             expected="one of " + ", ".join(SECTIONS))
        _check_spec_key(parts, token, expression)
        return Field("spec", token.text, token.position, parts)
    name = parts[0]
    if name in _BUILTIN_FIELDS:
        return Field(_BUILTIN_FIELDS[name], name, token.position)
    if name in SECTIONS:
        example = next(iter(Spec.model_fields[name].annotation.model_fields))
        raise QueryError(f'"{name}" is a spec section, not a value', expression, token.position,
                         expected=f"one of its keys, such as {name}.{example}")
    # Any other bare name is a task: the leaderboard's, or one with scores in the registry (a custom task...).
    if tasks is not None and name.startswith("mmlu_") and name[5:] in MMLU_SUBJECTS:
        raise QueryError(f'"{name}" is an MMLU subject, not a field', expression, token.position,
                         expected="mmlu, the mean of its subjects")
    if tasks is not None and name not in LEADERBOARD and name not in (known := tasks()):
        scored = [*LEADERBOARD, *sorted(set(known) - set(LEADERBOARD))]
        close = close_names(name, [*_BUILTIN_FIELDS, *scored])
        expected = ("a run fact (id, name, status, created, loss, tags), a spec key such as train.learning_rate, "
                    "average, or a task with scores: " + ", ".join(scored))
        raise QueryError(f'unknown field "{name}"' + (f" ({did_you_mean(close)})" if close else ""),
                         expression, token.position, expected=None if close else expected)
    return Field("score", name, token.position, (name,))


def _check_spec_key(parts: tuple[str, ...], token: Token, expression: str) -> None:
    """QueryError unless `parts` names a key of the spec (or a key inside one of its tables of free keys, such as
    eval.num_fewshot.arc_challenge)."""
    model: type[BaseModel] = Spec
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            dotted, above = ".".join(parts[:depth + 1]), parts[:depth]
            keys = [".".join((*above, key)) for key in fields]
            close = [".".join((*above, key)) for key in close_names(part, fields)]
            raise QueryError(f'unknown spec key "{dotted}"' + (f" ({did_you_mean(close)})" if close else ""),
                             expression, token.position, expected=None if close else "one of " + ", ".join(keys))
        inner = _section_of(fields[part].annotation)
        if inner is dict:
            return  # a table of free keys: any key below it
        if inner is None:
            if depth + 1 < len(parts):
                raise QueryError(f'"{".".join(parts[:depth + 1])}" is a value, not a table', expression,
                                 token.position, expected=f"just {'.'.join(parts[:depth + 1])}")
            return
        model = inner


def _section_of(annotation: Any) -> type[BaseModel] | type[dict] | None:
    """The spec table a field's annotation holds (a model), `dict` for a table of free keys, None for a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is dict:
        return dict
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_section_of(arg) for arg in typing.get_args(annotation)]
        return next((m for m in members if m is not None), None)
    return None


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "unexpected end of expression"
    if token.kind == "string":
        return f"unexpected string {token.text}"
    if token.kind == "number":
        return f"unexpected number {token.text}"
    return f'unexpected token "{token.text}"'


class _Parser:
    def __init__(self, expression: str, tasks: TaskNames | None = None) -> None:
        self.expression = expression
        self.tasks = tasks
        self._stream = _tokens(expression)
        self.token = next(self._stream)
        self.depth = 0
        self.comparisons = 0

    def advance(self) -> Token:
        token = self.token
        self.token = next(self._stream)
        return token

    def keyword(self, word: str) -> bool:
        return self.token.kind == "keyword" and self.token.text.lower() == word

    def fail(self, expected: str) -> NoReturn:
        raise QueryError(_describe(self.token), self.expression, self.token.position, expected)

    def error(self, reason: str, position: int, expected: str | None = None) -> NoReturn:
        raise QueryError(reason, self.expression, position, expected)

    def nested(self, parse: Callable[[], Node], position: int) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error("expression nested too deeply", position)
        try:
            return parse()
        finally:
            self.depth -= 1

    def expression_(self) -> Node:
        if self.token.kind == "end":
            self.error("empty expression", 0, expected='a comparison such as method.kind = "lora"')
        node = self.or_()
        if self.token.kind != "end":
            self.fail("and/or")
        return node

    def or_(self) -> Node:
        operands = [self.and_()]
        while self.keyword("or"):
            self.advance()
            operands.append(self.and_())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_(self) -> Node:
        operands = [self.not_()]
        while self.keyword("and"):
            self.advance()
            operands.append(self.not_())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_(self) -> Node:
        if self.keyword("not"):
            return Not(self.nested(self.not_, self.advance().position))
        if self.token.kind == "(":
            opening = self.advance()
            node = self.nested(self.or_, opening.position)
            if self.token.kind == "end":
                self.error('unclosed "("', opening.position, expected='a matching ")"')
            if self.token.kind != ")":
                self.fail('and/or or ")"')
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        if self.token.kind != "name":
            self.fail('a field name, "not" or "("')
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            self.error(f"expression too long: more than {MAX_COMPARISONS} comparisons", self.token.position)
        field = _resolve_field(self.advance(), self.expression, self.tasks)
        if not (self.token.kind == "op" or self.keyword("contains")):
            self.fail("an operator: = != < <= > >= contains")
        op_token = self.advance()
        op = op_token.text.lower()
        if self.token.kind in ("string", "number"):
            token = self.advance()
            value = Value(token.value, token.position)
        elif self.keyword("true") or self.keyword("false"):
            token = self.advance()
            value = Value(token.text.lower() == "true", token.position)
        else:
            self.fail("a value: a quoted string, a number, true or false")
        return self.checked(Comparison(field, op, value, op_token.position), token)

    def checked(self, node: Comparison, value_token: Token) -> Comparison:
        """Reject comparisons that can never make sense, while the positions are at hand."""
        field, op, value = node.field, node.op, node.value.value
        if field.kind == "tags" and op != "contains":
            self.error(f'unexpected operator "{op}" for tags', node.position,
                       expected='contains, as in tags contains "demo"')
        if op == "contains" and field.kind not in ("tags", "status", "name", "spec"):
            self.error(f'unexpected operator "contains" for {field.text}', node.position, expected="= != < <= > >=")
        if op == "contains" and not isinstance(value, str):
            self.fail_value(value_token, "a quoted string after contains")
        if isinstance(value, bool) and op not in ("=", "!="):
            self.error(f'unexpected operator "{op}" for true/false', node.position, expected="= or !=")
        wants = _WANTS.get(field.kind)
        if wants == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.fail_value(value_token, f"a number for {field.text}")
        if wants in ("string", "date") and not isinstance(value, str):
            self.fail_value(value_token, f"a quoted {'date' if wants == 'date' else 'string'} for {field.text}")
        if field.kind == "status" and op in ("=", "!=") and value not in {s.value for s in RunStatus}:
            self.error(f'unknown status "{value}"', value_token.position,
                       expected="one of " + ", ".join(s.value for s in RunStatus))
        if wants == "date":
            return Comparison(field, op, Value(self.date(value, value_token), node.value.position), node.position)
        return node

    def fail_value(self, token: Token, expected: str) -> NoReturn:
        self.error(_describe(token).replace("token", "value"), token.position, expected)

    def date(self, text: str, token: Token) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.error(f"bad date {token.text}", token.position, expected='a date such as "2024-05-01 12:00"')
        # Stored times are UTC; a date written without a zone is taken as UTC too.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse(expression: str, tasks: TaskNames | None = None) -> Node:
    """Parse a --where expression into its AST; raises QueryError. `tasks`: the task names a bare field may be
    besides the leaderboard's, asked for when needed (None: any)."""
    return _Parser(expression, tasks).expression_()


def parse_sort(text: str, tasks: TaskNames | None = None) -> Field:
    """Parse a --sort field (the same fields as --where, except tags); raises QueryError."""
    parser = _Parser(text)
    if parser.token.kind != "name":
        parser.fail("a field name such as average or train.learning_rate")
    token = parser.advance()
    if parser.token.kind != "end":
        parser.fail("a single field name")
    field = _resolve_field(token, text, tasks)
    if field.kind == "tags":
        parser.error("cannot sort by tags", token.position, expected="a field with one value per run")
    return field


# --- SQL ----------------------------------------------------------------------------------------------
# A few constructs render differently per dialect. SQLite's JSON functions read the text column
# directly (CAST(... AS JSON) there would turn the text into the number 0); PostgreSQL needs the cast.

class _JsonDocument(FunctionElement):
    """A text column holding JSON, usable with SQLAlchemy's JSON path operators."""

    type = JSON()
    inherit_cache = True


class _JsonTypeIs(FunctionElement):
    """Whether the JSON value at a path has a given type; subclasses name the type."""

    type = Boolean()
    inherit_cache = True
    sqlite_types: tuple[str, ...] = ()
    postgresql_type = ""


class _IsJsonNumber(_JsonTypeIs):
    inherit_cache = True
    sqlite_types = ("integer", "real")
    postgresql_type = "number"


class _IsJsonString(_JsonTypeIs):
    inherit_cache = True
    sqlite_types = ("text",)
    postgresql_type = "string"


class _IsJsonBoolean(_JsonTypeIs):
    inherit_cache = True
    sqlite_types = ("true", "false")
    postgresql_type = "boolean"


class _IsJsonArray(_JsonTypeIs):
    inherit_cache = True
    sqlite_types = ("array",)
    postgresql_type = "array"


class _JsonArrayHas(FunctionElement):
    """Whether the JSON array in a text column (at an optional path) has a string element."""

    type = Boolean()
    inherit_cache = True


class _Bytewise(FunctionElement):
    """Text compared byte by byte, as SQLite does; PostgreSQL would use the database's locale."""

    type = String()
    inherit_cache = True


def _args(element: FunctionElement, compiler, **kw) -> list[str]:
    return [compiler.process(arg, **kw) for arg in element.clauses]


@compiles(_JsonDocument, "sqlite")
def _json_document_sqlite(element, compiler, **kw) -> str:
    return _args(element, compiler, **kw)[0]


@compiles(_JsonDocument, "postgresql")
def _json_document_postgresql(element, compiler, **kw) -> str:
    return f"CAST({_args(element, compiler, **kw)[0]} AS JSON)"


@compiles(_JsonTypeIs, "sqlite")
def _json_type_is_sqlite(element, compiler, **kw) -> str:
    document, path = _args(element, compiler, **kw)
    names = ", ".join(f"'{name}'" for name in element.sqlite_types)
    return f"json_type({document}, {path}) IN ({names})"


@compiles(_JsonTypeIs, "postgresql")
def _json_type_is_postgresql(element, compiler, **kw) -> str:
    document, path = _args(element, compiler, **kw)
    return f"json_typeof(CAST({document} AS JSON) #> {path}) = '{element.postgresql_type}'"


@compiles(_JsonArrayHas, "sqlite")
def _json_array_has_sqlite(element, compiler, **kw) -> str:
    document, value, *path = _args(element, compiler, **kw)
    source = ", ".join([document, *path])
    return f"EXISTS (SELECT 1 FROM json_each({source}) WHERE json_each.value = {value})"


@compiles(_JsonArrayHas, "postgresql")
def _json_array_has_postgresql(element, compiler, **kw) -> str:
    document, value, *path = _args(element, compiler, **kw)
    array = f"(CAST({document} AS JSONB) #> {path[0]})" if path else f"CAST({document} AS JSONB)"
    return f"{array} @> jsonb_build_array(CAST({value} AS TEXT))"


@compiles(_Bytewise, "sqlite")
def _bytewise_sqlite(element, compiler, **kw) -> str:
    return _args(element, compiler, **kw)[0]


@compiles(_Bytewise, "postgresql")
def _bytewise_postgresql(element, compiler, **kw) -> str:
    return f'({_args(element, compiler, **kw)[0]}) COLLATE "C"'


@compiles(_JsonDocument)
@compiles(_JsonTypeIs)
@compiles(_JsonArrayHas)
@compiles(_Bytewise)
def _unsupported(element, compiler, **kw) -> str:
    raise CompileError(f"--where and --sort support SQLite and PostgreSQL, not {compiler.dialect.name}")


_JSON_TYPES: dict[str, type[_JsonTypeIs]] = {
    "number": _IsJsonNumber, "string": _IsJsonString, "boolean": _IsJsonBoolean, "array": _IsJsonArray,
}
_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_ORDERING = frozenset({"<", "<=", ">", ">="})


def _path(path: tuple[str, ...]):
    return literal(path, JSON.JSONPathType())


def _spec_is(json_type: str, path: tuple[str, ...]) -> ColumnElement[bool]:
    return _JSON_TYPES[json_type](Experiment.resolved_json, _path(path))


def _spec_value(path: tuple[str, ...], json_type: str) -> ColumnElement[Any]:
    """The spec value at `path` if it has that JSON type, else NULL: a mistyped value never matches,
    and PostgreSQL is never asked to cast text to a number."""
    at = _JsonDocument(Experiment.resolved_json)[path]
    converted = {"number": at.as_float, "string": at.as_string, "boolean": at.as_boolean}[json_type]()
    return case((_spec_is(json_type, path), converted))


def _headline(table) -> tuple[ColumnElement[bool], ...]:
    # The rows registry.scores.headline_rows picks of the fine-tuned model: top-level tasks only.
    return table.run_id == Run.id, table.model_kind == "finetuned", table.task_group.is_(None)


def _latest(table) -> ColumnElement[bool]:
    """The row is the latest of its run, model and task (a task recorded twice counts once, as in the listings)."""
    later = aliased(EvalResult)
    return ~select(later.id).where(
        later.run_id == table.run_id, later.model_kind == table.model_kind, later.task_group.is_(None),
        later.task == table.task, later.id > table.id,
    ).exists()


def _score(task: str) -> ColumnElement[float]:
    return (select(EvalResult.value).where(*_headline(EvalResult), EvalResult.task == task)
            .order_by(EvalResult.id.desc()).limit(1).scalar_subquery())


def average_sql(average: Average = LEADERBOARD_AVERAGE) -> ColumnElement[float]:
    """`average` (experiments/benchmarks.py) of a run's fine-tuned headline scores, as SQL: AVG over the latest
    score of each of its tasks, which is NULL where the run has none, as Average.of is None."""
    return (select(func.avg(EvalResult.value))
            .where(*_headline(EvalResult), EvalResult.task.in_(average.tasks), _latest(EvalResult))
            .scalar_subquery())


def validation_loss_sql() -> ColumnElement[float]:
    """A run's last validation loss (registry.run_records.last_validation_loss) as SQL: the eval_loss of its
    highest-step validation row, the later row of a step logged twice; NULL without one."""
    return (select(TrainMetric.eval_loss)
            .where(TrainMetric.run_id == Run.id, TrainMetric.eval_loss.is_not(None))
            .order_by(TrainMetric.step.desc(), TrainMetric.id.desc()).limit(1).scalar_subquery())


def _column(field: Field) -> ColumnElement[Any]:
    match field.kind:
        case "id":
            return Run.id
        case "status":
            return Run.status
        case "name":
            return Experiment.name
        case "created":
            return Run.created_at
        case "loss":
            return Run.final_loss
        case "val_loss":
            return validation_loss_sql()
        case "score":
            return _score(field.path[0])
        case "average":
            return average_sql()
        case "search" | "trial":
            linked = SearchTrial.search_id if field.kind == "search" else SearchTrial.number
            return select(linked).where(SearchTrial.experiment_id == Experiment.id).scalar_subquery()
    raise ValueError(f"no single column for {field.kind}")


def _icontains(text: ColumnElement[str], part: str) -> ColumnElement[bool]:
    escaped = part.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return func.lower(text).contains(func.lower(literal(escaped, String())), escape="/")


def _spec_comparison(node: Comparison) -> ColumnElement[bool]:
    path, value = node.field.path, node.value.value
    if node.op == "contains":
        return case(
            (_spec_is("array", path), _JsonArrayHas(Experiment.resolved_json, literal(value, Text()), _path(path))),
            (_spec_is("string", path), _icontains(_spec_value(path, "string"), value)),
            else_=false(),
        )
    if isinstance(value, bool):
        left = _spec_value(path, "boolean")
    elif isinstance(value, int | float):
        left = _spec_value(path, "number")
    else:
        left = _spec_value(path, "string")
    return _COMPARE[node.op](_Bytewise(left) if node.op in _ORDERING and isinstance(value, str) else left,
                             _bound(value))


def _bound(value: Any) -> Any:
    """A literal as a bound parameter; an integer as a 64-bit one, whatever the column it meets (PostgreSQL would
    otherwise cast it to the column's 32-bit INTEGER, and fail on a larger one)."""
    return literal(value, BigInteger()) if isinstance(value, int) and not isinstance(value, bool) else value


def _comparison(node: Comparison) -> ColumnElement[bool]:
    field, value = node.field, _bound(node.value.value)
    if field.kind == "tags":
        return _JsonArrayHas(Experiment.tags_json, literal(value, Text()))
    if field.kind == "spec":
        clause = _spec_comparison(node)
    elif node.op == "contains":
        clause = _icontains(_column(field), value)
    else:
        left = _column(field)
        clause = _COMPARE[node.op](_Bytewise(left) if node.op in _ORDERING and isinstance(value, str) else left, value)
    # A missing value makes SQL's comparison unknown; make it false, so `not` is the exact complement.
    return func.coalesce(clause, false()) if field.kind in _NULLABLE else clause


def where_clause(node: Node) -> ColumnElement[bool]:
    """The SQL condition for a parsed expression, over Run joined with Experiment."""
    match node:
        case Or(operands):
            return or_(*(where_clause(operand) for operand in operands))
        case And(operands):
            return and_(*(where_clause(operand) for operand in operands))
        case Not(operand):
            return not_(where_clause(operand))
    return _comparison(node)


def order_by(field: Field, *, descending: bool) -> list[ColumnElement[Any]]:
    """ORDER BY terms for a --sort field; runs without a value come last either way."""
    if field.kind == "spec":
        # Numbers, then text, then booleans: whatever type the stored spec holds at that path.
        keys = [_spec_value(field.path, "number"), _Bytewise(_spec_value(field.path, "string")),
                _spec_value(field.path, "boolean")]
    elif field.kind in ("status", "name"):
        keys = [_Bytewise(_column(field))]
    else:
        keys = [_column(field)]
    return [(key.desc() if descending else key.asc()).nulls_last() for key in keys]
