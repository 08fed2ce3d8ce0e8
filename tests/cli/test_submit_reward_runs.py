"""`submit` of an online RL spec whose reward_model names a run: the run must exist and be a reward model; otherwise
one line naming the file, the line and the field, and nothing written."""

from __future__ import annotations

import json

from sqlalchemy import func
from sqlmodel import select
from tunelab.registry.models import Experiment

from tests.helpers import REPO_ROOT, finished_run, invoke, write_file

RLHF_SPEC = """\
[experiment]
name = "rlhf"

[model]
base = "{model}"

[data]
train = "{prompts}"
format = "prompt"

[method]
kind = "rloo"
reward_model = "run:{run_id}"

[train]
batch_size = 8
"""
REWARD_SPEC = json.dumps({"experiment": {"name": "rm"}, "model": {"base": "tiny"},
                          "method": {"kind": "reward", "weights": "full"}})


def _submit(tmp_path, registry_url, run_id: int):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "The capital of France is"}\n', encoding="utf-8")
    spec = write_file(tmp_path, RLHF_SPEC.format(run_id=run_id, prompts=prompts,
                                                 model=REPO_ROOT / "examples" / "models" / "tiny-llama"))
    return spec, invoke(tmp_path / "home", "--db", registry_url, "submit", str(spec))


def _experiments(registry) -> int:
    with registry.session() as session:
        return session.exec(select(func.count()).select_from(Experiment)).one()


def test_a_reward_run_that_is_not_a_reward_model_is_refused(tmp_path, registry, registry_url):
    lora_run = finished_run(registry, "sft")
    spec, result = _submit(tmp_path, registry_url, lora_run)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {spec}:13: method.reward_model: run {lora_run} (sft) is a lora run, "
                                     'not a reward model (kind = "reward")')
    assert _experiments(registry) == 1  # the lora run's own, nothing more


def test_a_reward_run_that_does_not_exist_is_refused(tmp_path, registry, registry_url):
    spec, result = _submit(tmp_path, registry_url, 41)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {spec}:13: method.reward_model: there is no run 41 in this registry"
    assert _experiments(registry) == 0


def test_a_reward_run_of_this_registry_is_accepted(tmp_path, registry, registry_url):
    reward_run = finished_run(registry, "rm", resolved=REWARD_SPEC)
    _, result = _submit(tmp_path, registry_url, reward_run)
    assert result.exit_code == 0, result.output
    assert _experiments(registry) == 2
