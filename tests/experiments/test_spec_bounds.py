"""Specs a typo or an attack makes unreasonable are refused at once, in one line naming file, line and field:
integers out of their documented bounds, inf and nan, values of the wrong TOML type, names that are blank or hold
control characters, huge sweeps, files that are no regular files, huge specs and endless `extends` chains."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tunelab.experiments.errors import SpecError
from tunelab.experiments.loader import MAX_EXTENDS_DEPTH, MAX_SPEC_BYTES, load_spec, load_specs
from tunelab.experiments.schema import MAX_GPUS, MAX_PRIORITY, MAX_SEED
from tunelab.experiments.sweep import MAX_SWEEP_POINTS

from tests.helpers import MINIMAL_SPEC, write_file


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_specs(path)
    return info.value


@pytest.mark.parametrize(("block", "field", "message"), [
    ("[experiment]\nseed = -1", "experiment.seed", "Input should be greater than or equal to 0 (got -1)"),
    (f"[experiment]\nseed = {2**128}", "experiment.seed", f"Input should be less than or equal to {MAX_SEED}"),
    ("[method]\nr = 1_000_000_000", "method.r", "Input should be less than or equal to 4096 (got 1000000000)"),
    (f"[resources]\npriority = {10**20}", "resources.priority", f"less than or equal to {MAX_PRIORITY}"),
    (f"[resources]\npriority = -{10**20}", "resources.priority", f"greater than or equal to -{MAX_PRIORITY}"),
    (f"[resources]\ngpus = {10**20}", "resources.gpus", f"less than or equal to {MAX_GPUS}"),
    ("[train]\nmax_steps = 10_000_000_000", "train.max_steps", "less than or equal to 1000000000"),
    ("[train]\nlearning_rate = inf", "train.learning_rate", "Input should be a finite number"),
    ("[train]\nlearning_rate = nan", "train.learning_rate", "Input should be a finite number"),
    ("[train]\nepochs = -inf", "train.epochs", "Input should be a finite number"),
    ('[train]\nbatch_size = "4"', "train.batch_size", "Input should be a valid integer (got '4')"),
    ("[train]\nmax_steps = true", "train.max_steps", "Input should be a valid integer (got True)"),
    ("[train]\nbatch_size = 4.0", "train.batch_size", "Input should be a valid integer (got 4.0)"),
    ('[data]\npacking = "yes"', "data.packing", "Input should be a valid boolean (got 'yes')"),
    ("[eval]\nbatch_size = 100_000", "eval.batch_size", "must be at most 65536"),
])
def test_out_of_bounds_and_mistyped_values_are_refused_at_their_line(tmp_path, block, field, message):
    # Appended after MINIMAL_SPEC: a second [experiment] or [data] header would be invalid TOML, so those keys
    # are written in the spec's own tables.
    section, key_value = block.split("\n", 1)
    text = MINIMAL_SPEC + f"\n{block}\n"
    if section in ("[experiment]", "[data]"):
        text = MINIMAL_SPEC.replace(f"{section}\n", f"{section}\n{key_value}\n")
    path = write_file(tmp_path, text)
    error = error_of(path)
    assert error.field == field and message in error.message
    assert error.line == next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(key_value[:6]))


def test_an_integer_is_still_a_float_and_the_bounds_admit_real_values(tmp_path):
    spec = load_spec(write_file(tmp_path, MINIMAL_SPEC + "\n[train]\nepochs = 3\nlearning_rate = 1\n"
                                "\n[resources]\npriority = -5\ngpus = 8\n")).spec
    assert (spec.train.epochs, spec.train.learning_rate, spec.resources.priority) == (3.0, 1.0, -5)


@pytest.mark.parametrize(("line", "field", "message"), [
    ('name = "   "', "experiment.name", "must not be empty or only spaces"),
    ('name = ""', "experiment.name", "must not be empty or only spaces"),
    ('name = "red\\u001b[31m"', "experiment.name", "contains the control character U+001B"),
    ('name = "a\\u0000b"', "experiment.name", "contains the control character U+0000"),
    ('name = "a\\u202eb"', "experiment.name", "contains the control character U+202E"),
    ('tags = ["ok", "\\u0007bell"]', "experiment.tags.1", "contains the control character U+0007"),
    ('tags = [" "]', "experiment.tags.0", "must not be empty or only spaces"),
    ('description = "\\u001b]0;title\\u0007"', "experiment.description", "contains the control character U+001B"),
])
def test_names_that_are_blank_or_hold_control_characters_are_refused(tmp_path, line, field, message):
    text = MINIMAL_SPEC.replace('name = "t"\n', f'name = "t"\n{line}\n') if not line.startswith("name") else \
        MINIMAL_SPEC.replace('name = "t"', line)
    error = error_of(write_file(tmp_path, text))
    assert (error.field, error.line) == (field, 2 if line.startswith("name") else 3)
    assert message in error.message


def test_a_description_may_have_several_lines(tmp_path):
    text = MINIMAL_SPEC.replace('name = "t"\n', 'name = "t"\ndescription = """one\n\ttwo"""\n')
    assert load_spec(write_file(tmp_path, text)).spec.experiment.description == "one\n\ttwo"


def test_a_huge_sweep_is_refused_before_it_is_expanded(tmp_path):
    values = ", ".join(str(i) for i in range(100))
    text = MINIMAL_SPEC + f'\n[sweep]\n"method.r" = [{values}]\n"train.max_steps" = [{values}]\n' \
                          f'"experiment.seed" = [{values}]\n'
    started = time.perf_counter()
    error = error_of(write_file(tmp_path, text))
    assert time.perf_counter() - started < 1.0
    assert (error.field, error.line) == ("sweep", 10)
    assert error.message == (f"[sweep] expands to 1,000,000 experiments; at most {MAX_SWEEP_POINTS:,} per spec "
                             "(split it into several specs)")


def test_a_sweep_of_strings_with_newlines_gets_a_printable_name(tmp_path):
    text = MINIMAL_SPEC + '\n[sweep]\n"data.template" = ["{{ instruction }}\\n", "Q: {{ instruction }}"]\n'
    names = [loaded.spec.experiment.name for loaded in load_specs(write_file(tmp_path, text))]
    assert names == ["t/data.template={{ instruction }}\\n", "t/data.template=Q: {{ instruction }}"]


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_a_spec_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    target = {"device": Path("/dev/zero"), "fifo": tmp_path / "pipe", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    words = {"device": "a character device", "fifo": "a FIFO (named pipe)", "directory": "a directory"}[kind]
    assert error_of(target).message == f"is {words}, not a spec file"
    child = write_file(tmp_path, f'[experiment]\nname = "c"\nextends = "{target}"\n', "child.toml")
    error = error_of(child)
    assert (error.path, error.message) == (target, f"is {words}, not a spec file")


def test_a_spec_larger_than_the_cap_is_refused(tmp_path):
    path = write_file(tmp_path, MINIMAL_SPEC + "#" * MAX_SPEC_BYTES + "\n")
    assert error_of(path).message == f"larger than {MAX_SPEC_BYTES:,} bytes: a spec is a short text file"


def test_an_endless_extends_chain_is_refused_in_one_line(tmp_path):
    write_file(tmp_path, MINIMAL_SPEC, "f0.toml")
    for i in range(1, 1000):
        write_file(tmp_path, f'[experiment]\nextends = "f{i - 1}.toml"\n', f"f{i}.toml")
    error = error_of(tmp_path / "f999.toml")
    assert (error.field, error.message) == ("experiment.extends", f"extends goes deeper than {MAX_EXTENDS_DEPTH} files")


def test_extends_that_branches_without_end_is_refused(tmp_path):
    write_file(tmp_path, MINIMAL_SPEC, "f0.toml")
    for i in range(1, 12):  # each file extends the one below twice: 2**11 files read without a cap
        write_file(tmp_path, f'[experiment]\nextends = ["f{i - 1}.toml", "f{i - 1}.toml"]\n', f"f{i}.toml")
    assert error_of(tmp_path / "f11.toml").message == "extends reads more than 64 files"


def test_text_that_is_not_utf8_names_its_line_and_a_bom_is_fine(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(MINIMAL_SPEC.encode() + b'\n[experiment.x]\ndescription = "caf\xe9"\n')
    error = error_of(bad)
    assert (error.line, error.message) == (11, "not UTF-8 text (byte 0xe9)")
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + MINIMAL_SPEC.encode())
    assert load_spec(bom).spec.experiment.name == "t"
