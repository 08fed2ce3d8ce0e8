"""Helpers shared by tests: driving the CLI and writing small specs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from tunelab.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def invoke_json(home: Path, *args: str):
    result = invoke(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_spec(
    path: Path,
    *,
    name: str,
    model_dir: Path,
    train: Path | str | None = None,
    kind: str = "lora",
    max_steps: int = 4,
    save_every: int = 2,
    tasks: tuple[str, ...] = ("arc_challenge",),
    limit: int = 2,
    custom: bool = True,
    baseline: bool = True,
    extra: str = "",
) -> Path:
    """A spec that trains a few steps on the capitals data and evaluates on a couple of items."""
    train = train or REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
    method = '[method]\nkind = "full"\n' if kind == "full" else '[method]\nkind = "lora"\nr = 4\nalpha = 8\n'
    custom_block = (
        f'[[eval.custom]]\nname = "capitals"\npath = "{REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl"}"\n'
        if custom else ""
    )
    task_list = ", ".join(f'"{t}"' for t in tasks)
    path.write_text(
        f"""[experiment]
name = "{name}"
tags = ["test"]
seed = 7

[model]
base = "{model_dir}"

[data]
train = "{train}"
max_seq_len = 96

{method}
[train]
max_steps = {max_steps}
save_every = {save_every}
batch_size = 4
learning_rate = 1e-3

[eval]
tasks = [{task_list}]
limit = {limit}
benchmarks_dir = "{REPO_ROOT / "examples" / "benchmarks"}"
baseline = {"true" if baseline else "false"}
batch_size = 4

{custom_block}{extra}""",
        encoding="utf-8",
    )
    return path


def plant_user_modules(directory: Path, *, tunelab: bool = False) -> Path:
    """A user's own modules named like tunelab's folders (and, with `tunelab`, like tunelab itself), each
    failing loudly when imported: a working directory that must change nothing for tunelab."""
    names = ["runner.py", "registry.py", "reports.py", "experiments/__init__.py"] + (["tunelab.py"] if tunelab else [])
    for name in names:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"raise RuntimeError('the user\\'s own {name} was imported')\n", encoding="utf-8")
    return directory
