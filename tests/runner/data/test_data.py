"""Training data: formats (JSONL and CSV), templates and exact loss masks, cleaning counts, validation
splits, mixtures, the data fingerprint, and all of it end to end through the registry."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tunelab.experiments.schema import Spec
from tunelab.runner.data.cleaning import IGNORE_INDEX
from tunelab.runner.data.formats import (
    ChatExample,
    ChatMessage,
    InstructionExample,
    PreferenceExample,
    TextExample,
    read_preference_rows,
    read_rows,
)
from tunelab.runner.data.mixing import allocate, mix
from tunelab.runner.data.prepare import prepare_data, tokenize_rows
from tunelab.runner.data.templates import ALPACA_PROMPT, CHATML_TEMPLATE, Renderer
from tunelab.runner.errors import DataError, RunFailed

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_jsonl

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Capital of Kanora?"},
    {"role": "assistant", "content": "Branpastead"},
    {"role": "user", "content": "And of Mirand?"},
    {"role": "assistant", "content": "Doushaewick"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from tunelab.runner.training.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _spec(model_dir: Path, **data) -> Spec:
    return Spec.model_validate({"experiment": {"name": "d", "seed": 7}, "model": {"base": str(model_dir)},
                                "data": data})


def _features(tokenizer, rows, template: str = "alpaca", *, train_on_prompt: bool = False):
    return tokenize_rows(rows, Renderer(template, tokenizer), tokenizer, Path("t.jsonl"),
                         train_on_prompt=train_on_prompt)


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return path


# ---------------------------------------------------------------- formats


FORMAT_ROWS = {
    "instruction": [{"instruction": "Name a capital.", "input": "", "output": "Thasport"},
                    {"instruction": "Translate", "input": "a, \"quoted\"\nline", "output": "x"}],
    "chat": [{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}],
    "text": [{"text": "Thasport is the capital of Tobaerovia."}, {"text": "Second\ndocument, with a comma."}],
    "preference": [{"prompt": "Capital of Kanora?", "chosen": "Branpastead", "rejected": "Paris"},
                   {"prompt": "Capital of Mirand?", "chosen": "Doushaewick", "rejected": "I won't say"}],
}


@pytest.mark.parametrize("data_format", sorted(FORMAT_ROWS))
def test_each_format_reads_the_same_rows_from_jsonl_and_csv(tmp_path, data_format):
    rows = FORMAT_ROWS[data_format]
    from_jsonl = read_rows(write_jsonl(tmp_path / "d.jsonl", rows), data_format)
    from_csv = read_rows(_write_csv(tmp_path / "d.csv", rows), data_format)
    assert from_jsonl == from_csv and len(from_jsonl) == 2
    assert [row.line for row in from_jsonl] == [1, 2]
    assert [row.line for row in from_csv] == [2, 3]  # line 1 is the header
    expected_type = {"instruction": InstructionExample, "chat": ChatExample, "text": TextExample,
                     "preference": PreferenceExample}[data_format]
    assert all(isinstance(row, expected_type) for row in from_jsonl)


def test_csv_rows_spanning_lines_are_numbered_by_their_first_line(tmp_path):
    path = _write_csv(tmp_path / "d.csv", FORMAT_ROWS["instruction"] + [{"instruction": "", "input": "", "output": 5}])
    rows = read_rows(path, "instruction")
    assert [row.line for row in rows] == [2, 3, 5]  # row 2 takes lines 3-4 (a newline inside quotes)


@pytest.mark.parametrize(("name", "data_format", "text", "line", "message"), [
    ("bad.jsonl", "instruction", '{"instruction": "a", "output": "b"}\n\n{"instruction": "a",\n', 3, "invalid JSON"),
    ("bad.jsonl", "instruction", '{"instruction": "a", "output": "b"}\n["a"]\n', 2, "JSON object"),
    ("bad.jsonl", "instruction", '{"instruction": "a"}\n', 1, 'field "output"'),
    ("bad.jsonl", "instruction", '{"instruction": "a", "input": 3, "output": "b"}\n', 1, 'field "input"'),
    ("bad.jsonl", "chat", '{"messages": [{"role": "user", "content": "a"}]}\n{"messages": []}\n', 2, "non-empty"),
    ("bad.jsonl", "chat", '{"messages": [{"role": "robot", "content": "a"}]}\n', 1, "messages[0].role"),
    ("bad.jsonl", "chat", '{"messages": [{"role": "user", "content": 1}]}\n', 1, "messages[0].content"),
    ("bad.jsonl", "text", '{"text": "a"}\n{"body": "b"}\n', 2, 'field "text"'),
    ("bad.jsonl", "preference", '{"prompt": "p", "chosen": "c"}\n', 1, 'field "rejected"'),
    ("bad.jsonl", "preference", '{"prompt": 3, "chosen": "c", "rejected": "r"}\n', 1, 'field "prompt"'),
    ("bad.csv", "instruction", "instruction,output\na,b\nc\n", 3, 'field "output"'),
    ("bad.csv", "instruction", "instruction,output\na,b,c\n", 2, "more fields than the header"),
    ("bad.csv", "chat", 'messages\n"[{""role"": ""user""}"\n', 2, "JSON list of messages"),
    ("bad.csv", "text", "", 1, "no header row"),
])
def test_malformed_rows_are_errors_naming_file_and_line(tmp_path, name, data_format, text, line, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_rows(path, data_format)
    assert info.value.path == path and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value)


def test_missing_and_empty_files_are_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_rows(tmp_path / "nope.jsonl", "instruction")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        read_rows(tmp_path / "empty.jsonl", "text")


def test_preference_rows_take_a_text_or_a_conversation_prompt(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 1, "prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " Hello.", "rejected": " Go away."},
        {"prompt": CONVERSATION[:2], "chosen": "Branpastead", "rejected": "Paris"},
    ])
    first, second = read_preference_rows(path)
    assert (first.prompt, first.chosen, first.rejected) == ("\n\nHuman: hi\n\nAssistant:", " Hello.", " Go away.")
    assert second.prompt == (ChatMessage("system", "Answer briefly."), ChatMessage("user", "Capital of Kanora?"))


def test_corpora_shaped_like_the_public_ones_read_in_full_with_the_check_script(tmp_path):
    # Extra columns (ids, sources, full transcripts), Human/Assistant text prompts whose answers start with a
    # space, conversation prompts and non-ASCII text, as in self-instruct, hh-rlhf and LLaMA-Factory's demos.
    sets = tmp_path / "datasets"
    (sets / "instructions").mkdir(parents=True)
    (sets / "pairs").mkdir()
    write_jsonl(sets / "instructions" / "train.jsonl", [
        {"id": f"seed_task_{i}/0", "source": "seed_tasks", "instruction": f"Name capital n\u00ba{i}.",
         "input": "" if i % 2 else "Kanora\u2019s north", "output": "Branpastead \u2014 on the river."}
        for i in range(30)])
    write_jsonl(sets / "pairs" / "test.jsonl", [
        {"id": f"hh/{i}", "prompt": f"\n\nHuman: capital {i}?\n\nAssistant:", "chosen": " Branpastead.",
         "rejected": " I won\u2019t say.", "chosen_full": "...", "rejected_full": "..."} for i in range(20)]
        + [{"id": "dpo/0", "prompt": CONVERSATION[:2], "chosen": "Branpastead", "rejected": "Paris"}])
    script = [sys.executable, str(REPO_ROOT / "scripts" / "check_datasets.py"), str(sets)]

    done = subprocess.run([*script, "--expect", "instructions/train.jsonl=30", "--expect", "pairs/test.jsonl=21"],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["instructions/train.jsonl: 30 instruction rows",
                                        "pairs/test.jsonl: 21 preference rows"]
    rows = read_rows(sets / "instructions" / "train.jsonl", "instruction")
    assert rows[0] == InstructionExample("Name capital n\u00ba0.", "Kanora\u2019s north",
                                         "Branpastead \u2014 on the river.")
    pairs = read_preference_rows(sets / "pairs" / "test.jsonl")
    assert (pairs[0].prompt, pairs[0].chosen) == ("\n\nHuman: capital 0?\n\nAssistant:", " Branpastead.")

    (sets / "pairs" / "test.jsonl").write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p"}\n')
    failed = subprocess.run([*script, "--expect", "instructions/train.jsonl=31"], capture_output=True, text=True,
                            check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        "error: instructions/train.jsonl: 30 rows, expected 31",
        f'error: {sets / "pairs" / "test.jsonl"}:2: missing or non-string field "chosen"']


# ---------------------------------------------------------------- templates and loss masks


def test_instruction_rows_train_on_the_response_and_eos_only(tokenizer):
    row = InstructionExample("Name the capital city of Kanora.", "", "Branpastead")
    (feature,) = _features(tokenizer, [row])
    prompt, response = _ids(tokenizer, ALPACA_PROMPT.format(instruction=row.instruction)), _ids(tokenizer, row.output)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert feature["input_ids"] == [bos, *prompt, *response, eos]
    assert feature["labels"] == [IGNORE_INDEX] * (1 + len(prompt)) + [*response, eos]
    (everything,) = _features(tokenizer, [row], train_on_prompt=True)
    assert everything["labels"] == everything["input_ids"]


def test_chat_rows_train_on_the_assistant_turns_only(tokenizer):
    row = _chat(CONVERSATION)
    (feature,) = _features(tokenizer, [row], "chatml")
    pieces = [("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nCapital of Kanora?<|im_end|>\n"
               "<|im_start|>assistant\n", False), ("Branpastead<|im_end|>\n", True),
              ("<|im_start|>user\nAnd of Mirand?<|im_end|>\n<|im_start|>assistant\n", False),
              ("Doushaewick<|im_end|>\n", True)]
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]
    for text, trainable in pieces:
        ids = _ids(tokenizer, text)
        input_ids += ids
        labels += ids if trainable else [IGNORE_INDEX] * len(ids)
    assert feature["input_ids"] == input_ids
    assert feature["labels"] == labels
    trained = [token for token in feature["labels"] if token != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Branpastead<|im_end|>\nDoushaewick<|im_end|>\n"


def _chat(messages: list[dict]) -> ChatExample:
    return ChatExample(tuple(ChatMessage(m["role"], m["content"]) for m in messages), line=1)


def test_a_single_exchange_renders_alike_as_a_chat_or_an_instruction_row(tokenizer):
    chat = _chat(CONVERSATION[1:3])
    instruction = InstructionExample("Capital of Kanora?", "", "Branpastead")
    assert _features(tokenizer, [chat], "alpaca") == _features(tokenizer, [instruction], "alpaca")
    assert _features(tokenizer, [chat], "chatml") == _features(tokenizer, [instruction], "chatml")


def test_text_rows_train_on_every_token(tokenizer):
    (feature,) = _features(tokenizer, [TextExample("Thasport is the capital of Tobaerovia.")])
    body = _ids(tokenizer, "Thasport is the capital of Tobaerovia.")
    assert feature["input_ids"] == [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
    assert feature["labels"][1:] == feature["input_ids"][1:]


def test_the_tokenizer_template_is_used_and_its_absence_is_a_clear_error(tokenizer):
    row = _chat(CONVERSATION)
    assert not tokenizer.chat_template  # the tiny tokenizer has none
    with pytest.raises(RunFailed, match="has no chat template"):
        _features(tokenizer, [row], "tokenizer")
    tokenizer.chat_template = CHATML_TEMPLATE
    try:
        assert _features(tokenizer, [row], "tokenizer") == _features(tokenizer, [row], "chatml")
    finally:
        tokenizer.chat_template = None


def test_a_jinja_template_renders_instruction_prompts_and_chats(tokenizer):
    template = "{{ bos_token }}Q: {{ instruction }}{% if input %} ({{ input }}){% endif %}\nA: "
    (feature,) = _features(tokenizer, [InstructionExample("Capital of Kanora?", "today", "Branpastead")], template)
    prompt = [tokenizer.bos_token_id, *_ids(tokenizer, "Q: Capital of Kanora? (today)\nA: ")]
    assert feature["input_ids"] == [*prompt, *_ids(tokenizer, "Branpastead"), tokenizer.eos_token_id]
    assert feature["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)

    chat = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}")
    (feature,) = _features(tokenizer, [_chat(CONVERSATION[1:3])], chat)
    trained = [token for token in feature["labels"] if token != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Branpastead\n"


@pytest.mark.parametrize(("template", "message"), [
    ("{{ instruction.__class__.__mro__ }}", "template: "),  # the sandbox refuses attribute escapes
    ("{{ instructions }}", "'instructions' is undefined"),
    ("{{ raise_exception('no system prompts here') }}", "no system prompts here"),
])
def test_template_errors_name_the_row(tokenizer, template, message):
    with pytest.raises(DataError, match=message) as info:
        _features(tokenizer, [InstructionExample("a", "", "b", line=4)], template)
    assert info.value.line == 4


def test_a_chat_template_that_rewrites_earlier_turns_is_refused(tokenizer):
    # Renders only the last message: masks could not be exact, so it is an error, not a silent mistake.
    template = "{{ messages[-1].content if messages else '' }}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(DataError, match="not a prefix"):
        _features(tokenizer, [_chat(CONVERSATION)], template)


@pytest.mark.parametrize(("template", "message"), [
    ("vicuna", "unknown template 'vicuna'"),
    ("{% for m in messages %}{{ m }}", "invalid Jinja template"),
])
def test_the_spec_checks_template_names_and_jinja_syntax(template, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _spec(Path("m"), train="t.jsonl", template=template)


@pytest.mark.parametrize(("data", "message"), [
    ({"train": "t.jsonl", "validation": 1.0}, "between 0 and 1"),
    ({"train": [], "format": "chat"}, "at least one"),
    ({"train": [{"path": "a.jsonl", "weight": 0}]}, "greater than 0"),
    ({"train": "t.jsonl", "mixture_examples": 10}, "only when train is a list"),
])
def test_the_spec_checks_data_keys(data, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _spec(Path("m"), **data)


def test_a_mixture_error_points_at_its_line(tmp_path):
    from tunelab.experiments.errors import SpecError
    from tunelab.experiments.loader import load_spec

    path = tmp_path / "s.toml"
    path.write_text('[experiment]\nname = "m"\n[model]\nbase = "x"\n[data]\nformat = "chat"\n\n'
                    '[[data.train]]\npath = "a.jsonl"\n\n[[data.train]]\npath = "b.jsonl"\nweight = -1\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert (info.value.field, info.value.line) == ("data.train.1.weight", 13)


# ---------------------------------------------------------------- cleaning, validation, mixtures


def _capital_rows(count: int, start: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in CAPITALS.read_text().splitlines()]
    return rows[start:start + count]


@pytest.mark.parametrize(("overlength", "dropped", "truncated"), [("drop", 2, 0), ("truncate", 1, 1)])
def test_cleaning_counts_empty_duplicate_and_overlength_rows(tmp_path, tiny_model_dir, tokenizer, overlength,
                                                              dropped, truncated):
    rows = _capital_rows(20)
    long_answer = {"instruction": "Describe Kanora.", "input": "", "output": " ".join(["Branpastead"] * 200)}
    long_prompt = {"instruction": " ".join(["Kanora"] * 200), "input": "", "output": "Yes."}
    data = [*rows, rows[3], rows[5], rows[3], {"instruction": "Empty?", "input": "", "output": " \n\t"},
            long_answer, long_prompt]
    path = write_jsonl(tmp_path / "t.jsonl", data)
    prepared = prepare_data(_spec(tiny_model_dir, train=str(path), max_seq_len=128, overlength=overlength),
                            tokenizer, tmp_path)
    (source,) = prepared.stats.sources
    assert (source.rows, source.empty, source.duplicates) == (26, 1, 3)
    # A truncated prompt leaves no response to train on: dropped even when truncating.
    assert (source.overlength_dropped, source.overlength_truncated) == (dropped, truncated)
    assert source.kept == len(prepared.train) == 20 + truncated
    assert all(len(f["input_ids"]) <= 128 for f in prepared.train)
    kept = prepared.train[:20]
    assert kept == prepare_data(_spec(tiny_model_dir, train=str(write_jsonl(tmp_path / "c.jsonl", rows)),
                                      max_seq_len=128), tokenizer, tmp_path).train
    without = prepare_data(_spec(tiny_model_dir, train=str(path), max_seq_len=128, dedupe=False), tokenizer,
                           tmp_path)
    assert without.stats.sources[0].duplicates == 0 and len(without.train) == 24


def test_a_validation_fraction_is_held_out_with_the_seed(tmp_path, tiny_model_dir, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", _capital_rows(40))
    spec = _spec(tiny_model_dir, train=str(path), validation=0.25)
    prepared = prepare_data(spec, tokenizer, tmp_path)
    assert (len(prepared.train), len(prepared.validation)) == (30, 10)
    assert prepared.stats.sources[0].held_out == 10 and prepared.stats.validation_examples == 10
    seen = {tuple(f["input_ids"]) for f in prepared.train}
    assert not seen & {tuple(f["input_ids"]) for f in prepared.validation}
    assert len(seen | {tuple(f["input_ids"]) for f in prepared.validation}) == 40
    again = prepare_data(spec, tokenizer, tmp_path)
    assert again.validation == prepared.validation
    other = prepare_data(Spec.model_validate({**spec.model_dump(), "experiment": {"name": "d", "seed": 8}}),
                         tokenizer, tmp_path)
    assert other.validation != prepared.validation


def test_a_validation_file_is_cleaned_and_counted_too(tmp_path, tiny_model_dir, tokenizer):
    train = write_jsonl(tmp_path / "t.jsonl", _capital_rows(20))
    held = write_jsonl(tmp_path / "v.jsonl", [*_capital_rows(6, start=40), _capital_rows(1, start=40)[0]])
    prepared = prepare_data(_spec(tiny_model_dir, train=str(train), validation=held.name), tokenizer, tmp_path)
    assert (len(prepared.train), len(prepared.validation)) == (20, 6)
    stats = prepared.stats.validation_file
    assert (stats.path, stats.rows, stats.duplicates, stats.kept) == (str(held), 7, 1, 6)


def test_allocation_follows_the_weights_to_one_example():
    assert allocate([3, 1], 400) == [300, 100]
    assert allocate([1, 1, 1], 10) == [4, 3, 3]  # a tie goes to the earlier source
    assert allocate([0.5, 0.25, 0.25], 7) == [3, 2, 2]  # remainders 0.5, 0.75, 0.75
    assert sum(allocate([0.7, 0.2, 0.1], 1001)) == 1001


def test_mixing_realises_the_weights_deterministically_with_the_seed():
    big, small = [("big", i) for i in range(500)], [("small", i) for i in range(40)]
    drawn, counts = mix([big, small], [3, 1], 400, seed=7)
    assert counts == [300, 100] and len(drawn) == 400
    realised = Counter(name for name, _ in drawn)
    assert realised == {"big": 300, "small": 100}
    # The small source is repeated: every row 2 or 3 times (100 = 2 passes of 40 + 20).
    assert sorted(Counter(i for name, i in drawn if name == "small").values()) == [2] * 20 + [3] * 20
    # Shuffled together: the first quarter already holds roughly 3:1 (binomial sd ~4.3 around 75).
    assert 60 <= sum(name == "big" for name, _ in drawn[:100]) <= 90
    assert mix([big, small], [3, 1], 400, seed=7)[0] == drawn
    assert mix([big, small], [3, 1], 400, seed=8)[0] != drawn


def test_a_mixture_of_formats_is_drawn_by_weight(tmp_path, tiny_model_dir, tokenizer):
    write_jsonl(tmp_path / "capitals.jsonl", _capital_rows(30))
    write_jsonl(tmp_path / "chats.jsonl", [{"messages": [CONVERSATION[1], {"role": "assistant",
                                                                           "content": f"Answer number {i}"}]}
                                           for i in range(10)])
    _write_csv(tmp_path / "notes.csv", [{"text": f"Note {i} about Kanora."} for i in range(10)])
    spec = _spec(tiny_model_dir, train=[{"path": "capitals.jsonl", "weight": 2},
                                        {"path": "chats.jsonl", "format": "chat", "weight": 1},
                                        {"path": "notes.csv", "format": "text", "weight": 1}], mixture_examples=80)
    prepared = prepare_data(spec, tokenizer, tmp_path)
    assert [s.drawn for s in prepared.stats.sources] == [40, 20, 20]
    assert [s.weight for s in prepared.stats.sources] == [2.0, 1.0, 1.0]
    assert prepared.stats.train_examples == len(prepared.train) == 80
    texts = [tokenizer.decode(f["input_ids"]) for f in prepared.train]
    assert sum("Answer number" in text for text in texts) == 20
    assert sum("about Kanora." in text and "###" not in text for text in texts) == 20


def test_preference_rows_are_not_supervised_fine_tuning_data(tmp_path, tiny_model_dir, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", FORMAT_ROWS["preference"])
    with pytest.raises(RunFailed, match="preference"):
        prepare_data(_spec(tiny_model_dir, train=str(path), format="preference"), tokenizer, tmp_path)


# ---------------------------------------------------------------- the data fingerprint


def _legacy_fingerprint(path: Path, tokenizer, max_seq_len: int, train_on_prompt: bool) -> str:
    """The fingerprint as recorded before formats, cleaning and packing existed (kept here verbatim in effect)."""
    import hashlib

    digest = hashlib.sha256()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        prompt = ALPACA_PROMPT.format(instruction=row["instruction"])
        ids = [tokenizer.bos_token_id, *_ids(tokenizer, prompt), *_ids(tokenizer, row["output"]),
               tokenizer.eos_token_id][:max_seq_len]
        masked = min(1 + len(_ids(tokenizer, prompt)), len(ids))
        labels = list(ids) if train_on_prompt else [IGNORE_INDEX] * masked + ids[masked:]
        for key, values in (("input_ids", ids), ("labels", labels)):
            digest.update(key.encode() + b",".join(str(v).encode() for v in values) + b";")
    return digest.hexdigest()


@pytest.mark.parametrize(("max_seq_len", "train_on_prompt"), [(96, False), (20, True)])
def test_fingerprints_recorded_before_still_match_plain_instruction_data(tiny_model_dir, tokenizer, max_seq_len,
                                                                         train_on_prompt):
    from tunelab.runner.training.recipes import fingerprint_spec_data

    spec = _spec(tiny_model_dir, train=str(CAPITALS), max_seq_len=max_seq_len, train_on_prompt=train_on_prompt)
    assert fingerprint_spec_data(spec, REPO_ROOT) == _legacy_fingerprint(CAPITALS, tokenizer, max_seq_len,
                                                                         train_on_prompt)


def test_the_fingerprint_follows_everything_that_changes_the_token_stream(tmp_path, tiny_model_dir):
    from tunelab.runner.training.recipes import fingerprint_spec_data

    write_jsonl(tmp_path / "chats.jsonl", [{"messages": CONVERSATION}])
    write_jsonl(tmp_path / "notes.jsonl", [{"text": "Thasport."}, {"text": "Kanora."}])
    variants = [
        {"train": str(CAPITALS)},
        {"train": str(CAPITALS), "packing": True},
        {"train": str(CAPITALS), "validation": 0.1},
        {"train": str(CAPITALS), "template": "chatml"},
        {"train": str(CAPITALS), "max_seq_len": 80},
        {"train": "chats.jsonl", "format": "chat"},
        {"train": "chats.jsonl", "format": "chat", "template": "chatml"},
        {"train": "notes.jsonl", "format": "text"},
        {"train": [{"path": str(CAPITALS), "weight": 3}, {"path": "notes.jsonl", "format": "text"}]},
        {"train": [{"path": str(CAPITALS), "weight": 1}, {"path": "notes.jsonl", "format": "text"}]},
    ]
    fingerprints = [fingerprint_spec_data(_spec(tiny_model_dir, **data), tmp_path) for data in variants]
    assert len(set(fingerprints)) == len(variants)
    assert fingerprint_spec_data(_spec(tiny_model_dir, **variants[-1]), tmp_path) == fingerprints[-1]


# ---------------------------------------------------------------- end to end: registry and `show --json`


@pytest.mark.slow
def test_cleaning_counts_and_validation_loss_reach_the_registry(tmp_path, tiny_model_dir):
    from tunelab.runner.training.recipes import fingerprint_spec_data

    rows = _capital_rows(40)
    long_rows = [{"instruction": f"Describe {name}.", "output": " ".join([name] * 150)}
                 for name in ("Kanora", "Mirand")]
    write_jsonl(tmp_path / "capitals.jsonl", [*rows, rows[0], rows[1], rows[2], {"instruction": "x", "output": " "},
                                              *long_rows])
    write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": f"Capital {i}?"},
                                                         {"role": "assistant", "content": f"City {i}"}]}
                                           for i in range(12)])
    spec = tmp_path / "s.toml"
    spec.write_text(f"""[experiment]
name = "data-e2e"
seed = 7

[model]
base = "{tiny_model_dir}"

[data]
max_seq_len = 192
overlength = "drop"
validation = 0.25
packing = true

[[data.train]]
path = "{tmp_path / "capitals.jsonl"}"
weight = 3

[[data.train]]
path = "{tmp_path / "chats.jsonl"}"
format = "chat"
weight = 1

[method]
kind = "lora"
r = 4
alpha = 8

[train]
max_steps = 4
save_every = 4
eval_every = 2
batch_size = 4
learning_rate = 1e-3

[eval]
tasks = []
baseline = false

[[eval.custom]]
name = "capitals"
path = "{REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl"}"
limit = 2
""")
    home = tmp_path / "home"
    result = invoke(home, "run", "--quiet", str(spec))
    assert result.exit_code == 0, result.output
    (run,) = invoke_json(home, "ls")
    detail = invoke_json(home, "show", str(run["run_id"]))
    assert detail["summary"]["status"] == "succeeded", detail["summary"]["error"]
    capitals, chats = detail["data_stats"]["sources"]
    assert {k: capitals[k] for k in ("rows", "empty", "duplicates", "overlength_dropped", "kept", "held_out")} == \
        {"rows": 46, "empty": 1, "duplicates": 3, "overlength_dropped": 2, "kept": 40, "held_out": 10}
    assert (chats["rows"], chats["kept"], chats["held_out"]) == (12, 12, 3)
    # 30 + 9 examples by weight 3:1 -> 29.25 : 9.75, the spare one to the larger remainder.
    assert (capitals["drawn"], chats["drawn"]) == (29, 10)
    assert detail["data_stats"]["validation_examples"] == 13 and detail["num_train_examples"] == 39
    assert detail["data_stats"]["packed_sequences"] < 39
    losses = [(m["step"], m["loss"] is not None, m["eval_loss"] is not None) for m in detail["metrics"]]
    assert sorted(s for s, train, _ in losses if train) == [1, 2, 3, 4]
    assert sorted(s for s, _, evaluated in losses if evaluated) == [2, 4]  # every 2 steps; 4 is also the end
    assert all(m["eval_loss"] > 0 for m in detail["metrics"] if m["eval_loss"] is not None)
    with sqlite3.connect(home / "registry.db") as connection:
        (recorded,) = connection.execute("SELECT data_fingerprint FROM run WHERE id = ?", (run["run_id"],)).fetchone()
    assert recorded == fingerprint_spec_data(Spec.model_validate(detail["spec"]), tmp_path)
