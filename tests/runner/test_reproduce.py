"""`tunelab reproduce`: a CPU run re-runs bit-identically; a doctored record (changed data) is refused."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("repro")
    data = root / "train.jsonl"
    shutil.copy(REPO_ROOT / "examples" / "data" / "capitals_train.jsonl", data)
    spec = write_spec(root / "s.toml", name="repro", model_dir=tiny_model_dir, train=data, kind="full",
                      max_steps=4, save_every=2, tasks=(), baseline=False)
    home = root / "home"
    result = invoke(home, "run", "--quiet", str(spec))
    assert result.exit_code == 0, result.output
    (run,) = invoke_json(home, "ls")
    return home, run["run_id"], data


def test_reproduce_verify_is_bit_identical(original):
    home, run_id, _ = original
    result = invoke(home, "reproduce", "--quiet", "--verify", "--json", str(run_id))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["verdict"]["reproduced"] and report["verdict"]["bit_identical"]
    checks = {c["what"]: c for c in report["verdict"]["checks"]}
    assert checks["final weights"]["ok"] and checks["final weights"]["difference"] == "equal"
    assert checks["loss curve"]["difference"] == "max |Δ| 0"
    assert "capitals (finetuned)" in checks
    new = invoke_json(home, "show", str(report["new_run_id"]))
    assert new["summary"]["status"] == "succeeded"


def test_changed_data_is_refused_and_nothing_runs(original):
    home, run_id, data = original
    before = len(invoke_json(home, "ls"))
    rows = data.read_text().splitlines()
    data.write_text("\n".join(rows[1:]) + "\n")  # the record still says the old data
    result = invoke(home, "reproduce", "--quiet", str(run_id))
    assert result.exit_code == 1
    assert "training data" in result.output and "changed" in result.output
    assert len(invoke_json(home, "ls")) == before
