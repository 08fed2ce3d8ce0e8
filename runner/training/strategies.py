"""[resources] strategy: how the processes of a `gpus = N > 1` run share the model.

ddp keeps a copy per process and launches through torchrun (runner/training/distributed.py). fsdp and deepspeed
shard it and launch through accelerate's own launcher (`accelerate launch --config_file`), with a config file
written into the run's output directory: the launcher turns it into the environment from which the Trainer's
Accelerator builds its FSDP or DeepSpeed plugin. The processes run the same module as under torchrun
(runner/training/distributed_train.py), so checkpoints, stop, pause and resume work as for ddp.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

from tunelab.experiments.schema import Spec

ACCELERATE_CONFIG = "accelerate-config.json"
PROCESS_MODULE = "tunelab.runner.training.distributed_train"


def strategy_problem(spec: Spec) -> tuple[tuple[str, ...], str] | None:
    """What this installation lacks for [resources] strategy, or None."""
    if spec.resources.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return ("resources", "strategy"), ('"deepspeed" needs deepspeed, which is not installed: pip install '
                                           "deepspeed (it builds against the installed torch and CUDA)")
    return None


def accelerate_config(resources: dict[str, Any], *, nproc: int, device: str, grad_accum: int,
                      port: int) -> dict[str, Any]:
    """accelerate's launch configuration for a run's [resources] (its stored form) on `nproc` processes."""
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0, "num_processes": nproc,
        "main_process_port": port, "mixed_precision": "no", "same_network": True,
        "rdzv_backend": "static", "main_training_function": "main",
    }
    strategy = resources.get("strategy", "ddp")
    if strategy == "fsdp":
        config.update(distributed_type="FSDP", fsdp_config={
            "fsdp_version": 1, "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # each decoder block its own unit
            "fsdp_backward_prefetch": "BACKWARD_PRE", "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_use_orig_params": True,  # frozen and trained weights side by side (LoRA, freeze)
            # Every process loads the whole base from disk (no rank-0-only loading), so no broadcast of it is needed.
            "fsdp_sync_module_states": False, "fsdp_cpu_ram_efficient_loading": False, "fsdp_offload_params": False,
        })
    elif strategy == "deepspeed":
        config.update(distributed_type="DEEPSPEED", deepspeed_config={
            "zero_stage": resources.get("zero_stage", 2), "gradient_accumulation_steps": grad_accum,
            "offload_optimizer_device": "none", "offload_param_device": "none", "zero3_init_flag": False,
            "zero3_save_16bit_model": True,
        })
    else:
        raise ValueError(f"strategy {strategy!r} is launched by torchrun, not accelerate")
    return config


def free_port() -> int:
    # Two runs on one machine (or two test sessions) must not meet on accelerate's default port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate_command(job_file: Path, config_file: Path) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "-m", PROCESS_MODULE, str(job_file)]


def write_accelerate_config(output_dir: Path, config: dict[str, Any]) -> Path:
    """The launcher's config file in the run's output directory (JSON, which accelerate reads like its YAML)."""
    import json

    path = output_dir / ACCELERATE_CONFIG
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def launch_command(job_file: Path, *, spec: dict[str, Any], nproc: int, device: str, output_dir: Path,
                   torchrun: list[str]) -> list[str]:
    """The command that starts a run's processes: `torchrun` as given for ddp, accelerate's launcher otherwise."""
    resources = spec.get("resources", {})
    if resources.get("strategy", "ddp") == "ddp":
        return torchrun
    config = accelerate_config(resources, nproc=nproc, device=device, grad_accum=spec["train"]["grad_accum"],
                               port=free_port())
    return accelerate_command(job_file, write_accelerate_config(output_dir, config))
