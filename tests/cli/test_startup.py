"""`tunelab --help` and `tunelab ls` must not import torch, transformers or lm-eval."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import sys, json
from click.testing import CliRunner
from tunelab.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "lm_eval", "peft", "datasets") if m in sys.modules)
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""


def probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_library():
    assert probe("--help") == {"exit": 0, "heavy": []}


def test_ls_imports_no_heavy_library(tmp_path):
    assert probe("--home", str(tmp_path), "ls") == {"exit": 0, "heavy": []}
    assert probe("--home", str(tmp_path), "ls", "--json") == {"exit": 0, "heavy": []}
