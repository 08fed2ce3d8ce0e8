"""[resources] strategy: ddp through torchrun, fsdp and deepspeed through accelerate's launcher and config; on this
machine's CPUs, two processes over gloo where PyTorch allows it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from tunelab.experiments.canonical import resolved_dict, spec_hash
from tunelab.experiments.schema import Spec
from tunelab.registry.roots import Roots
from tunelab.runner.training.strategies import accelerate_config, launch_command

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _spec(resources: dict | None = None) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "sharded", "seed": 7},
        "model": {"base": "tiny"},
        "data": {"train": str(CAPITALS)},
        "train": {"grad_accum": 2},
        "resources": resources or {},
    })


def test_ddp_keeps_torchrun_and_the_hash():
    spec = _spec({"gpus": 2, "strategy": "ddp"})
    assert spec_hash(spec) == spec_hash(_spec({"gpus": 2}))
    assert launch_command(Path("job.json"), spec=resolved_dict(spec), nproc=2, device="cuda", output_dir=Path("."),
                          torchrun=["torchrun"]) == ["torchrun"]


def test_fsdp_goes_through_accelerates_launcher_with_a_full_shard_config(tmp_path):
    spec = resolved_dict(_spec({"gpus": 2, "strategy": "fsdp"}))
    command = launch_command(tmp_path / "job.json", spec=spec, nproc=2, device="cuda", output_dir=tmp_path,
                             torchrun=["torchrun"])
    assert command[:4] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    assert command[5:] == ["-m", "tunelab.runner.training.distributed_train", str(tmp_path / "job.json")]
    config = json.loads(Path(command[4]).read_text())
    assert config["distributed_type"] == "FSDP" and config["num_processes"] == 2
    assert config["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert config["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # accelerate reads it back as its own launch configuration.
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(command[4]).distributed_type == "FSDP"


def test_deepspeed_config_has_the_zero_stage():
    resources = resolved_dict(_spec({"gpus": 4, "strategy": "deepspeed", "zero_stage": 3}))["resources"]
    config = accelerate_config(resources, nproc=4, device="cuda", grad_accum=2, port=29999)
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == 3
    assert config["deepspeed_config"]["gradient_accumulation_steps"] == 2


@pytest.mark.parametrize(("resources", "message"), [
    ({"strategy": "fsdp"}, 'strategy = "fsdp" shards over several processes: set gpus = N > 1'),
    ({"gpus": 2, "zero_stage": 3}, 'zero_stage applies to strategy = "deepspeed"'),
])
def test_strategy_keys_are_checked(resources, message):
    with pytest.raises(ValueError, match=message):
        _spec(resources)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_deepspeed_is_refused_at_submit_where_it_is_not_installed(tmp_path, tiny_model_dir):
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tiny_model_dir, tasks=(), baseline=False,
                      extra='[resources]\ngpus = 2\nstrategy = "deepspeed"\n')
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1
    line = spec.read_text().splitlines().index('strategy = "deepspeed"') + 1
    assert result.output.strip() == (f'Error: {spec}:{line}: resources.strategy: "deepspeed" needs deepspeed, which '
                                     "is not installed: pip install deepspeed (it builds against the installed "
                                     "torch and CUDA)")


@pytest.mark.slow
def test_the_accelerate_launch_path_on_two_cpu_processes_trains_checkpoints_and_records_once(tmp_path,
                                                                                              tiny_model_dir):
    """accelerate's launcher, its config and the process module, end to end. On CPUs accelerate runs the processes
    data-parallel (its MULTI_CPU state drops the FSDP plugin): the sharding itself needs GPUs to be exercised."""
    from tunelab.experiments.loader import load_spec
    from tunelab.registry.db import open_registry
    from tunelab.registry.queries import run_detail
    from tunelab.registry.run_state import claim_run
    from tunelab.runner.training.distributed import train_distributed
    from tunelab.runner.training.progress import RunProgress
    from tunelab.runner.training.registry_hooks import registry_hooks

    home = tmp_path / "home"
    spec_path = write_spec(tmp_path / "fsdp.toml", name="fsdp", model_dir=tiny_model_dir, kind="full", max_steps=4,
                           save_every=2, tasks=(), baseline=False,
                           extra='[resources]\ngpus = 2\nstrategy = "fsdp"\n')
    (submitted,) = invoke_json(home, "submit", str(spec_path))
    run_id = submitted["run_id"]
    registry = open_registry(f"sqlite:///{home / 'registry.db'}")
    assert claim_run(registry, run_id, "test")
    progress = RunProgress(run_id, "t", enabled=False)
    output_dir = home / "runs" / str(run_id)
    roots = Roots(home)
    outcome = train_distributed(registry, run_id, load_spec(spec_path).spec, workdir=spec_path.parent,
                                output_dir=output_dir, roots=roots,
                                hooks=registry_hooks(registry, run_id, progress, roots),
                                nproc=2, device="cpu", progress=progress)
    assert not outcome.interrupted and outcome.global_step == 4
    detail = run_detail(registry, run_id)
    assert [m["step"] for m in detail.metrics if m.get("loss") is not None] == [1, 2, 3, 4]
    assert [c["step"] for c in detail.checkpoints] == [2, 4]
    assert json.loads((output_dir / "accelerate-config.json").read_text())["distributed_type"] == "FSDP"
    assert (output_dir / "final" / "model.safetensors").is_file()
