"""Optional packages come with extras: without them, what needs them fails in one line naming the extra."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner
from tunelab.experiments.schema import Spec
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.models import load_base

from tests.helpers import invoke, invoke_json, write_spec
from tunelab.cli import cli

QLORA_MISSING = "method.kind = \"qlora\" needs bitsandbytes, which is not installed: pip install 'tunelab[qlora]'"


@pytest.fixture
def without(monkeypatch):
    """Make a package look uninstalled: a None entry in sys.modules fails its import and hides its spec."""

    def hide(name: str) -> None:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)

    return hide


@pytest.mark.parametrize("url", ["postgresql+psycopg://someone@127.0.0.1:1/registry",
                                 "postgresql://someone@127.0.0.1:1/registry"])  # psycopg is SQLAlchemy's default
def test_a_postgresql_registry_without_psycopg_names_the_postgres_extra(without, url):
    without("psycopg")
    result = CliRunner().invoke(cli, ["--db", url, "ls"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: a PostgreSQL registry needs psycopg, which is not installed: pip install 'tunelab[postgres]'"]


def test_a_qlora_run_without_bitsandbytes_fails_in_one_line_naming_the_qlora_extra(tmp_path, tiny_model_dir,
                                                                                   without):
    without("bitsandbytes")
    spec = write_spec(tmp_path / "s.toml", name="q", model_dir=tiny_model_dir, tasks=(), baseline=False)
    spec.write_text(spec.read_text().replace('kind = "lora"', 'kind = "qlora"'))
    home = tmp_path / "home"
    result = invoke(home, "run", "--quiet", str(spec))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"run 1: failed (RunFailed: {QLORA_MISSING})"]
    (run,) = invoke_json(home, "ls")
    assert invoke_json(home, "show", str(run["run_id"]))["summary"]["error"] == f"RunFailed: {QLORA_MISSING}"


def test_loading_a_qlora_base_without_bitsandbytes_names_the_extra(tiny_model_dir, without):
    # Export and DPO load bases without the training path's early check: the loader says it too.
    without("bitsandbytes")
    spec = Spec.model_validate({"experiment": {"name": "q"}, "model": {"base": str(tiny_model_dir)},
                                "data": {"train": "t.jsonl"}, "method": {"kind": "qlora"}})
    with pytest.raises(RunFailed) as info:
        load_base(str(tiny_model_dir), spec, "cpu")
    assert str(info.value) == QLORA_MISSING
