"""Text from specs, data, the registry and the filesystem reaches the terminal as text: its control characters
(escape sequences, bells, carriage returns, bidirectional overrides) are shown escaped by every command."""

from __future__ import annotations

import json

import pytest
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.run_state import claim_next, retry_or_fail
from tunelab.registry.submissions import NewExperiment, submit

from tests.helpers import invoke, queue_unchecked, record_scores, scores, write_spec
from tunelab.terminal import printable

CLEAR = "\x1b[2J"  # clears the screen
TITLE = "\x1b]0;pwned\x07"  # retitles the window
RTL = "\u202e"  # reverses what follows
RAW = (CLEAR, TITLE, RTL, "\x1b", "\x07", "\r")


def test_printable_escapes_control_characters_and_keeps_text():
    assert printable(f"a{CLEAR}b{RTL}c\td\ne\r") == "a\\x1b[2Jb\\u202ec\\td\\ne\\r"
    assert printable("two\nlines\x07", keep_newlines=True) == "two\nlines\\x07"
    assert printable("héllo wörld 日本 🙂") == "héllo wörld 日本 🙂"
    assert printable(42) == "42"


@pytest.fixture
def home(tmp_path):
    """Two runs stored before names were checked at submit: control characters in name, tags, error and scores."""
    home = tmp_path / "home"
    registry = open_registry(default_url(home))
    new = [NewExperiment(name=f"evil{CLEAR}{i}", description=TITLE, tags=[f"t{RTL}ag"], spec_path=f"s{TITLE}.toml",
                         spec_text="", resolved_json=json.dumps({"model": {"base": f"m{CLEAR}"}}),
                         spec_hash=f"h{i}", workdir="/") for i in (1, 2)]
    runs = [s.run_id for s in submit(registry, new)]
    assert claim_next(registry, "w") == runs[0]
    retry_or_fail(registry, runs[0], "w", f"failed at {TITLE}{CLEAR}", retryable=False)
    record_scores(registry, runs[1], scores("finetuned", f"run:{runs[1]}", {f"task{CLEAR}": 0.5}))
    registry.engine.dispose()
    return home


@pytest.mark.parametrize("args", [["ls"], ["ls", "--format", "csv"], ["ls", "--json"], ["show", "1"], ["show", "2"],
                                  ["show", "1", "--json"], ["compare", "1", "2"]])
def test_no_command_prints_a_control_character_it_read(home, args):
    result = invoke(home, *args)
    assert result.exit_code == 0, result.output
    assert not any(raw in result.output for raw in RAW), repr(result.output)
    assert "evil\\x1b[2J" in result.output or "evil\\u001b[2J" in result.output


def test_an_error_quoting_a_path_or_a_word_typed_is_escaped(tmp_path):
    spec = tmp_path / f"bad{CLEAR}.toml"
    spec.write_text("[experiment\n", encoding="utf-8")
    for args in (["submit", str(spec)], [f"sh{CLEAR}ow"], ["ls", "--where", f"name = 1{CLEAR}"],
                 [f"--ho{CLEAR}me", "x", "ls"]):
        result = invoke(tmp_path / "home", *args)
        assert result.exit_code != 0
        assert "\x1b" not in result.output and "\\x1b[2J" in result.output, repr(result.output)


def test_the_workers_lines_are_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The spec's TOML writes the escape as \u001b (a raw ESC is no valid TOML): the model path holds ESC.
    spec = write_spec(tmp_path / "s.toml", name="w", model_dir=tmp_path / "gone\\u001b[2J")
    queue_unchecked(tmp_path / "home", spec)  # its model vanished after submit: the run fails before training
    result = invoke(tmp_path / "home", "worker", "--until-empty")
    assert "run 1: failed" in result.output and "gone\\x1b[2J" in result.output
    assert "\x1b" not in result.output


def test_the_training_progress_lines_are_escaped(capsys):
    from tunelab.runner.training.progress import RunProgress

    with RunProgress(7, f"evil{CLEAR}[bold]x[/bold]") as progress:
        progress.note(f"evaluating task{TITLE}")
    err = capsys.readouterr().err
    assert "run 7 evil\\x1b[2J[bold]x[/bold]: training" in err and "evaluating task\\x1b]0;pwned\\x07" in err
    assert not any(raw in err for raw in RAW)
