"""`tunelab ls --where/--sort`: the query language's grammar, its SQL on both backends, and its errors.

Every test that touches a database takes the `registry` fixture, so it runs unchanged on any backend
that fixture is parametrised over; here it is one registry per backend for the whole module, since the
tests only read.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from tunelab.registry.errors import RegistryError
from tunelab.registry.models import Experiment, Run
from tunelab.registry.queries import run_scores
from tunelab.registry.query_help import FIELDS_HELP
from tunelab.registry.recording import record_scores
from tunelab.registry.run_query import query_runs
from tunelab.registry.scores import Score
from tunelab.registry.submissions import NewExperiment, submit
from tunelab.registry.where import SECTIONS, And, Comparison, Not, Or, QueryError, parse, where_clause
from tunelab.reports.scores import headline_scores

BENCH = ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")
ALL_SECTIONS = ", ".join(SECTIONS)


def _spec(name: str, tags: list[str], **sections) -> str:
    spec = {"experiment": {"name": name, "description": "", "tags": tags, "seed": sections.pop("seed", 1234)}}
    spec.update(sections)
    return json.dumps(spec, sort_keys=True)


def _score(task: str, value: float, *, model_kind: str = "finetuned", task_group: str | None = None) -> Score:
    return Score(model_kind=model_kind, model_name="m", task=task, metric="acc_norm", value=value, stderr=None,
                 num_fewshot=0, limit=0, n_samples=10, task_group=task_group, comparable=True,
                 lm_eval_version="0.4")


TINY = "examples/models/tiny-llama"
# name -> (tags, spec sections, status, final loss, scores); submitted in this order, so ids increase.
RUNS = {
    "lora-small": (["demo", "lora"], dict(
        seed=1, model={"base": TINY}, data={"train_on_prompt": False}, method={"kind": "lora", "r": 8},
        train={"learning_rate": 2e-4}, eval={"tasks": list(BENCH)},
    ), "succeeded", 1.5, [
        _score("arc_challenge", 0.10),  # superseded by the later row below
        _score("hellaswag", 0.50), _score("mmlu", 0.30), _score("truthfulqa_mc2", 0.40),
        _score("arc_challenge", 0.40), _score("capitals", 0.90),
    ]),
    "lora-big": (["sweep"], dict(
        seed=2, model={"base": "meta-llama/Llama-3-8B"}, data={"train_on_prompt": False},
        method={"kind": "lora", "r": 64}, train={"learning_rate": 1e-4}, eval={"tasks": ["arc_challenge", "hellaswag"]},
    ), "succeeded", 0.5, [_score("arc_challenge", 0.25), _score("hellaswag", 0.60)]),
    "full-ft": (["demo"], dict(
        seed=3, model={"base": TINY}, data={"train_on_prompt": False}, method={"kind": "full"},
        train={"learning_rate": 1e-5}, eval={"tasks": ["arc_challenge"]},
    ), "failed", None, [
        _score("arc_challenge", 0.35), _score("arc_challenge", 0.90, model_kind="base"),
        _score("mmlu_anatomy", 0.99, task_group="mmlu"),
    ]),
    "Odd_Name 50%": ([], dict(
        model={"base": TINY}, data={"train_on_prompt": True}, method={"kind": "lora"},
    ), "queued", None, []),
    # A stored spec with values of unexpected types: they must never match, nor break PostgreSQL's casts.
    "mistyped": (["x"], dict(method={"kind": 1}, train={"learning_rate": "fast"}), "queued", None, []),
}
NEWEST_FIRST = ["mistyped", "Odd_Name 50%", "full-ft", "lora-big", "lora-small"]


@pytest.fixture(scope="module")
def registry(module_registry):
    """The tests below only read the runs that `run_ids` stores: one registry per backend serves them all."""
    return module_registry


@pytest.fixture(scope="module")
def run_ids(registry) -> dict[str, int]:
    """The runs above, stored in `registry`; returns their ids by name."""
    new = [
        NewExperiment(name=name, description="", tags=tags, spec_path=f"{name}.toml", spec_text="",
                      resolved_json=_spec(name, tags, **sections), spec_hash=f"hash-{name}", workdir="/tmp")
        for name, (tags, sections, *_rest) in RUNS.items()
    ]
    ids = {name: s.run_id for name, s in zip(RUNS, submit(registry, new), strict=True)}
    with registry.session() as session:
        for name, (_tags, _sections, status, loss, _scores) in RUNS.items():
            run = session.get(Run, ids[name])
            run.status, run.final_loss = status, loss
            session.add(run)
        session.commit()
    for name, (*_rest, scores) in RUNS.items():
        record_scores(registry, ids[name], scores)
    return ids


def names(registry, **options) -> list[str]:
    return [summary.name for summary in query_runs(registry, **options)]


def matching(registry, where: str) -> set[str]:
    return set(names(registry, where=where))


# --- operators and fields ---------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "expected"), [
    ('method.kind = "lora"', {"lora-small", "lora-big", "Odd_Name 50%"}),
    ('method.kind != "lora"', {"full-ft"}),  # "mistyped" holds a number there: no string comparison matches
    ("method.kind = 1", {"mistyped"}),
    ("method.kind < 1", set()),
    ('method.kind > "g"', {"lora-small", "lora-big", "Odd_Name 50%"}),
    ("train.learning_rate < 1.5e-4", {"lora-big", "full-ft"}),
    ("train.learning_rate <= 1e-4", {"lora-big", "full-ft"}),
    ("train.learning_rate > 1e-4", {"lora-small"}),
    ("train.learning_rate >= 0.0001", {"lora-small", "lora-big"}),
    ("train.learning_rate = 2e-4", {"lora-small"}),
    ("train.learning_rate != 2e-4", {"lora-big", "full-ft"}),
    ("train.learning_rate > 0", {"lora-small", "lora-big", "full-ft"}),
    ('train.learning_rate = "fast"', {"mistyped"}),
    ("experiment.seed = 2", {"lora-big"}),
    ("method.r >= 16", {"lora-big"}),
    ("method.r > -1", {"lora-small", "lora-big"}),
    ("model.base = 'meta-llama/Llama-3-8B'", {"lora-big"}),
    ("data.train_on_prompt = true", {"Odd_Name 50%"}),
    ("data.train_on_prompt = FALSE", {"lora-small", "lora-big", "full-ft"}),
    ("data.train_on_prompt != true", {"lora-small", "lora-big", "full-ft"}),
    ('name = "full-ft"', {"full-ft"}),
    ('name != "full-ft"', set(NEWEST_FIRST) - {"full-ft"}),
    ('name < "l"', {"full-ft", "Odd_Name 50%"}),  # byte order: capitals sort before lower case
    ('name >= "lora-small"', {"lora-small", "mistyped"}),
    ('status = "succeeded"', {"lora-small", "lora-big"}),
    ('status != "queued"', {"lora-small", "lora-big", "full-ft"}),
    ("loss < 1", {"lora-big"}),
    ("loss >= 0.5", {"lora-small", "lora-big"}),
    ('created >= "2000-01-01"', set(NEWEST_FIRST)),
    ('created < "2000-01-01T00:00:00+02:00"', set()),
])
def test_comparisons(registry, run_ids, where, expected):
    assert matching(registry, where) == expected


def test_run_id_fields(registry, run_ids):
    assert matching(registry, f"id = {run_ids['lora-big']}") == {"lora-big"}
    assert matching(registry, f"run > {run_ids['full-ft']}") == {"Odd_Name 50%", "mistyped"}
    assert matching(registry, f"run <= {run_ids['lora-big']}") == {"lora-small", "lora-big"}


@pytest.mark.parametrize(("where", "expected"), [
    ('tags contains "demo"', {"lora-small", "full-ft"}),
    ('tags contains "DEMO"', set()),  # tags match whole and exactly
    ('tags contains "dem"', set()),
    ('name contains "LORA"', {"lora-small", "lora-big"}),  # text: case-insensitive substring
    ('name contains "%"', {"Odd_Name 50%"}),  # LIKE wildcards in the value are plain characters
    ('name contains "_"', {"Odd_Name 50%"}),
    ('name contains "d_n"', {"Odd_Name 50%"}),
    ('status contains "eed"', {"lora-small", "lora-big"}),
    ('model.base contains "LLAMA"', {"lora-small", "lora-big", "full-ft", "Odd_Name 50%"}),
    ('eval.tasks contains "mmlu"', {"lora-small"}),  # a list in the spec: has that element
    ('eval.tasks contains "mm"', set()),
    ('experiment.tags contains "sweep"', {"lora-big"}),
    ('train.learning_rate contains "fa"', {"mistyped"}),
])
def test_contains(registry, run_ids, where, expected):
    assert matching(registry, where) == expected


@pytest.mark.parametrize(("where", "expected"), [
    ("arc_challenge > 0.3", {"lora-small", "full-ft"}),
    ("arc_challenge < 0.2", set()),  # the superseded 0.10 does not count
    ("arc_challenge > 0.5", set()),  # nor does the base model's 0.90
    ("mmlu = 0.3", {"lora-small"}),
    ("hellaswag != 0.5", {"lora-big"}),
    ("capitals >= 0.9", {"lora-small"}),  # a custom task
    ("average > 0.41", {"lora-big"}),
    ("average >= 0.35", {"lora-small", "lora-big", "full-ft"}),
    ("average < 0.39", {"full-ft"}),
])
def test_scores(registry, run_ids, where, expected):
    assert matching(registry, where) == expected


# --- logic --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "expected"), [
    # and binds tighter than or, on either side
    ('tags contains "demo" or method.kind = "lora" and status = "queued"', {"lora-small", "full-ft", "Odd_Name 50%"}),
    ('method.kind = "lora" and status = "queued" or tags contains "demo"', {"lora-small", "full-ft", "Odd_Name 50%"}),
    ('(tags contains "demo" or method.kind = "lora") and status = "queued"', {"Odd_Name 50%"}),
    ('((tags contains "demo") or (method.kind = "full" and (status = "failed")))', {"lora-small", "full-ft"}),
    ('not tags contains "demo"', {"lora-big", "Odd_Name 50%", "mistyped"}),
    ('not not tags contains "demo"', {"lora-small", "full-ft"}),
    ('not (status = "queued" or status = "failed")', {"lora-small", "lora-big"}),
    # not binds tighter than and
    ('not method.kind = "lora" and not status = "queued"', {"full-ft"}),
    # a run without the value fails the comparison, so `not` picks it up
    ("not arc_challenge > 0.3", {"lora-big", "Odd_Name 50%", "mistyped"}),
    ("not train.learning_rate > 0", {"Odd_Name 50%", "mistyped"}),
    ("not loss < 1", {"lora-small", "full-ft", "Odd_Name 50%", "mistyped"}),
    ('method.kind = "lora" AND NOT tags Contains "sweep" Or status = "failed"',
     {"lora-small", "Odd_Name 50%", "full-ft"}),
])
def test_logic(registry, run_ids, where, expected):
    assert matching(registry, where) == expected


def test_parse_tree_follows_precedence():
    tree = parse('id = 1 or status = "queued" and not (name = "a" or name = "b")')
    assert isinstance(tree, Or) and len(tree.operands) == 2
    first, second = tree.operands
    assert isinstance(first, Comparison) and (first.field.kind, first.op, first.value.value) == ("id", "=", 1)
    assert isinstance(second, And)
    assert isinstance(second.operands[1], Not) and isinstance(second.operands[1].operand, Or)


@pytest.mark.parametrize(("text", "value"), [
    ('"a\\"b"', 'a"b'), ("'it\\'s'", "it's"), ('"back\\\\slash"', "back\\slash"), ('"tab\\there"', "tab\there"),
    ("'say \"hi\"'", 'say "hi"'), ("1e-4", 1e-4), ("-2.5", -2.5), ("42", 42), (".5", 0.5), ("TRUE", True),
])
def test_literals(text, value):
    parsed = parse(f"name = {text}" if isinstance(value, str) else f"train.learning_rate = {text}")
    assert parsed.value.value == value and type(parsed.value.value) is type(value)


# --- sorting and limits -------------------------------------------------------------------------------

def _python_average(registry, run_ids) -> dict[str, float]:
    scores = run_scores(registry, list(run_ids.values()))
    averages = {name: headline_scores(scores.get(i, []), "finetuned").get("average") for name, i in run_ids.items()}
    return {name: value for name, value in averages.items() if value is not None}


def test_default_order_is_newest_first(registry, run_ids):
    assert names(registry) == NEWEST_FIRST
    assert names(registry, descending=False) == NEWEST_FIRST[::-1]


def test_sort_by_average_matches_the_listings_and_puts_missing_last(registry, run_ids):
    by_average = sorted(_python_average(registry, run_ids).items(), key=lambda item: -item[1])
    assert [name for name, _ in by_average] == ["lora-big", "lora-small", "full-ft"]
    assert names(registry, sort="average") == ["lora-big", "lora-small", "full-ft", "mistyped", "Odd_Name 50%"]
    assert names(registry, sort="average", descending=False) == [
        "full-ft", "lora-small", "lora-big", "mistyped", "Odd_Name 50%"]


def test_sort_by_score(registry, run_ids):
    assert names(registry, sort="arc_challenge") == ["lora-small", "full-ft", "lora-big", "mistyped", "Odd_Name 50%"]
    assert names(registry, sort="capitals", descending=False)[:1] == ["lora-small"]


def test_sort_by_spec_path_puts_missing_values_last(registry, run_ids):
    # numbers first, then a stored string, then runs without the key
    assert names(registry, sort="train.learning_rate") == [
        "lora-small", "lora-big", "full-ft", "mistyped", "Odd_Name 50%"]
    assert names(registry, sort="train.learning_rate", descending=False) == [
        "full-ft", "lora-big", "lora-small", "mistyped", "Odd_Name 50%"]
    assert names(registry, sort="method.r", descending=False) == [
        "lora-small", "lora-big", "mistyped", "Odd_Name 50%", "full-ft"]


def test_sort_by_text_is_bytewise(registry, run_ids):
    assert names(registry, sort="name", descending=False) == [
        "Odd_Name 50%", "full-ft", "lora-big", "lora-small", "mistyped"]
    assert names(registry, sort="loss") == ["lora-small", "lora-big", "mistyped", "Odd_Name 50%", "full-ft"]


def test_limit_status_and_where_combine(registry, run_ids):
    assert names(registry, sort="average", limit=2) == ["lora-big", "lora-small"]
    assert names(registry, limit=1) == ["mistyped"]
    assert names(registry, status="succeeded", sort="average", descending=False) == ["lora-small", "lora-big"]
    assert names(registry, where='tags contains "demo"', sort="arc_challenge", limit=1) == ["lora-small"]


def test_summaries_are_filled_in(registry, run_ids):
    (summary,) = query_runs(registry, where='name = "lora-big"')
    assert (summary.run_id, summary.method, summary.base_model, summary.tags, summary.status) == (
        run_ids["lora-big"], "lora", "meta-llama/Llama-3-8B", ["sweep"], "succeeded")


def test_one_select_whatever_the_expression(registry, run_ids):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(registry.engine, "before_cursor_execute", count)
    try:
        result = names(registry, where="average > 0 and arc_challenge > 0 or tags contains \"x\"", sort="mmlu")
    finally:
        event.remove(registry.engine, "before_cursor_execute", count)
    assert result == ["lora-small", "mistyped", "full-ft", "lora-big"]
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")


# --- SQL for both dialects ----------------------------------------------------------------------------

def _compiled(where: str, dialect):
    statement = select(Run.id).join(Experiment, Experiment.id == Run.experiment_id).where(where_clause(parse(where)))
    return statement.compile(dialect=dialect)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_literals_are_bound_parameters(dialect):
    hostile = "x'; DROP TABLE run; --"
    where = f'name = "{hostile}" or method.kind contains "{hostile}" or tags contains "{hostile}"'
    compiled = _compiled(where, dialect)
    assert "DROP" not in str(compiled)
    assert list(compiled.params.values()).count(hostile) >= 3


def test_spec_paths_compile_per_dialect():
    lite = str(_compiled("train.learning_rate > 1e-4", sqlite.dialect()))
    assert "JSON_EXTRACT(experiment.resolved_json, ?)" in lite and "json_type(experiment.resolved_json, ?)" in lite
    # SQLite's CAST(... AS JSON) would turn the text into the number 0
    assert "AS JSON" not in lite
    pg = str(_compiled("train.learning_rate > 1e-4", postgresql.dialect()))
    assert "CAST(experiment.resolved_json AS JSON) #>> %(" in pg and "json_typeof(" in pg
    assert "@>" in str(_compiled('tags contains "a"', postgresql.dialect()))
    assert "json_each(experiment.tags_json)" in str(_compiled('tags contains "a"', sqlite.dialect()))


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "headline", "column"), [
    ('method.kind = "lora" drop table run', 'unexpected token "drop" at column 22: expected and/or', 22),
    ('name = "abc', 'unterminated string at column 8: expected a closing "', 8),
    ("foo.bar = 1", f'unknown spec section "foo" at column 1: expected one of {ALL_SECTIONS}', 1),
    ("x = 1 and optim.lr > 2", f'unknown spec section "optim" at column 11: expected one of {ALL_SECTIONS}', 11),
    ("method.kind =", "unexpected end of expression at column 14: expected a value: a quoted string, a number, "
                      "true or false", 14),
    ("arc_challenge > and", 'unexpected token "and" at column 17: expected a value: a quoted string, a number, '
                            "true or false", 17),
    ('method.kind = "lora" and', 'unexpected end of expression at column 25: expected a field name, "not" or "("',
     25),
    ("not", 'unexpected end of expression at column 4: expected a field name, "not" or "("', 4),
    ("method.kind", "unexpected end of expression at column 12: expected an operator: = != < <= > >= contains", 12),
    ('(status = "queued"', 'unclosed "(" at column 1: expected a matching ")"', 1),
    ('(status = "queued" x', 'unexpected token "x" at column 20: expected and/or or ")"', 20),
    ('status = "queued")', 'unexpected token ")" at column 18: expected and/or', 18),
    ("", 'empty expression at column 1: expected a comparison such as method.kind = "lora"', 1),
    ("tags > 1", 'unexpected operator ">" for tags at column 6: expected contains, as in tags contains "demo"', 6),
    ("arc_challenge contains 1", 'unexpected operator "contains" for arc_challenge at column 15: '
                                 "expected = != < <= > >=", 15),
    ('arc_challenge = "high"', 'unexpected string "high" at column 17: expected a number for arc_challenge', 17),
    ("name = 3", "unexpected number 3 at column 8: expected a quoted string for name", 8),
    ("name contains 3", "unexpected number 3 at column 15: expected a quoted string after contains", 15),
    ("data.train_on_prompt > true", 'unexpected operator ">" for true/false at column 22: expected = or !=', 22),
    ('method = "lora"', '"method" is a spec section, not a value at column 1: expected one of its keys, '
                        "such as method.kind", 1),
    ("name = 'a\\q'", "unknown escape \\q at column 10: expected one of \\\" \\' \\\\ \\n \\t", 10),
    ("train.learning_rate > 1.2.3", "malformed number at column 23", 23),
    ("method. = 1", 'a key must follow "." at column 7', 7),
    ('status = "sucess"', 'unknown status "sucess" at column 10: expected one of queued, running, succeeded, '
                          "failed, cancelled, pruned", 10),
    ('created > "yesterday"', 'bad date "yesterday" at column 11: expected a date such as "2024-05-01 12:00"', 11),
    ("id == 1", 'unexpected token "=" at column 5: expected a value: a quoted string, a number, true or false', 5),
    ("(" * 100 + "id = 1" + ")" * 100, "expression nested too deeply at column 65", 65),
])
def test_errors_point_at_the_offending_token(where, headline, column):
    with pytest.raises(QueryError) as caught:
        parse(where)
    lines = str(caught.value).splitlines()
    assert lines[0] == headline
    assert caught.value.column == column
    assert lines[1] == f"  {where}"
    assert lines[2] == "  " + " " * (column - 1) + "^"


def test_caret_stays_under_the_token_across_newlines():
    with pytest.raises(QueryError) as caught:
        parse('status = "queued"\n\tand ?')
    assert str(caught.value).splitlines()[1:] == ['  status = "queued"  and ?', "  " + " " * 23 + "^"]


@pytest.mark.parametrize(("sort", "headline"), [
    ("tags", "cannot sort by tags at column 1: expected a field with one value per run"),
    ("foo.bar", f'unknown spec section "foo" at column 1: expected one of {ALL_SECTIONS}'),
    ("average desc", 'unexpected token "desc" at column 9: expected a single field name'),
    ("-average", "unexpected character '-' at column 1"),
])
def test_bad_sort_fields(registry, sort, headline):
    with pytest.raises(QueryError) as caught:
        query_runs(registry, sort=sort)
    assert str(caught.value).splitlines()[0] == headline


@pytest.mark.parametrize(("where", "headline"), [
    ("train.lr > 1", 'unknown spec key "train.lr" (did you mean "train.learning_rate" or "train.lr_scheduler"?) '
                     "at column 1"),
    ("method.kidn = 8", 'unknown spec key "method.kidn" (did you mean "method.kind"?) at column 1'),
    ("train.learning_rate.x > 0", '"train.learning_rate" is a value, not a table at column 1: expected just '
                                  "train.learning_rate"),
    ("arc > 0.1", 'unknown field "arc" (did you mean "arc_challenge"?) at column 1'),
    ("capitalz > 0.1", 'unknown field "capitalz" (did you mean "capitals"?) at column 1'),
    ("mmlu_anatomy > 0", '"mmlu_anatomy" is an MMLU subject, not a field at column 1: expected mmlu, the mean of '
                         "its subjects"),
    ("zzz > 0", 'unknown field "zzz" at column 1: expected a run fact (id, name, status, created, loss, tags), a spec '
                "key such as train.learning_rate, average, or a task with scores: arc_challenge, hellaswag, mmlu, "
                "truthfulqa_mc2, capitals"),
])
def test_an_unknown_field_is_an_error_with_the_nearest_names(registry, run_ids, where, headline):
    with pytest.raises(QueryError) as caught:
        query_runs(registry, where=where)
    assert str(caught.value).splitlines()[0] == headline
    with pytest.raises(QueryError):
        query_runs(registry, sort=where.split()[0])


def test_fields_that_exist_but_hold_no_value_yet_are_fine(registry, run_ids):
    # A spec key no stored spec sets, a table of free keys, a task with a score: no error, and what matches.
    assert matching(registry, "eval.num_fewshot.arc_challenge = 0") == set()
    assert matching(registry, "capitals >= 0.9") == {"lora-small"}


@pytest.mark.parametrize(("where", "headline"), [
    ("id > 1" + "0" * 5000, "number out of range at column 6: expected an integer between -9223372036854775807 and "
                            "9223372036854775807, or a decimal number"),
    (f"id = {2**63}", "number out of range at column 6: expected an integer between -9223372036854775807 and "
                      "9223372036854775807, or a decimal number"),
    ("loss < 1e999", "number out of range at column 8: expected a finite decimal number"),
    (" and ".join(["id > 0"] * 1001), "expression too long: more than 256 comparisons at column 2817"),
])
def test_numbers_and_expressions_no_database_can_take_are_errors(registry, run_ids, where, headline):
    with pytest.raises(QueryError) as caught:
        query_runs(registry, where=where)
    assert str(caught.value).splitlines()[0] == headline


def test_the_longest_expression_allowed_runs_on_the_database(registry, run_ids):
    many = " and ".join(["train.learning_rate > 0", "arc_challenge > 0.3"] * 128)
    assert matching(registry, many) == {"lora-small", "full-ft"}
    assert matching(registry, " or ".join(["name = \"full-ft\""] * 256)) == {"full-ft"}
    # 64-bit integers compare with the 32-bit id column on PostgreSQL too.
    assert matching(registry, f"id < {2**63 - 1} and arc_challenge > 0.3") == {"lora-small", "full-ft"}
    assert matching(registry, f"id > {2**40} or method.r > {2**62}") == set()


def test_query_error_is_a_registry_error():
    assert issubclass(QueryError, RegistryError)


# --- injection ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "headline"), [
    ('name = "x"; DROP TABLE run; --', "unexpected character ';' at column 11"),
    ("name = x' OR '1'='1", 'unexpected token "x" at column 8: expected a value: a quoted string, a number, '
                            "true or false"),
    ('name = "x" OR 1=1', 'unexpected number 1 at column 15: expected a field name, "not" or "("'),
    ("id = 1; DELETE FROM run", "unexpected character ';' at column 7"),
    ("id = 1 -- comment", "unexpected character '-' at column 8"),
    ("id = 1 /* x */", "unexpected character '/' at column 8"),
])
def test_injection_attempts_are_parse_errors(registry, run_ids, where, headline):
    with pytest.raises(QueryError) as caught:
        query_runs(registry, where=where)
    assert str(caught.value).splitlines()[0] == headline
    assert inspect(registry.engine).has_table("run")
    assert names(registry) == NEWEST_FIRST


@pytest.mark.parametrize("where", [
    "name = \"x' OR '1'='1\"",
    'name = "\\"; DROP TABLE run; --"',
    "name contains \"' OR 1=1 --\"",
    'tags contains "demo\\"]"',
])
def test_quotes_inside_strings_are_only_data(registry, run_ids, where):
    assert matching(registry, where) == set()
    assert inspect(registry.engine).has_table("run")
    assert names(registry) == NEWEST_FIRST


def test_help_names_the_fields_and_operators():
    for word in ("method.kind", "arc_challenge", "average", "tags", "contains", "created", "--sort"):
        assert word in FIELDS_HELP
