"""Multi-GPU training goes through torchrun. Without GPUs here, the same launch path runs two CPU
processes over gloo: only the device differs from `[resources] gpus = 2` on a GPU machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tunelab.experiments.loader import load_spec
from tunelab.registry.db import open_registry
from tunelab.registry.queries import run_detail
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import claim_run
from tunelab.runner.errors import RunFailed
from tunelab.runner.training.distributed import ERROR_FILE, train_distributed
from tunelab.runner.training.progress import RunProgress
from tunelab.runner.training.registry_hooks import registry_hooks

from tests.helpers import REPO_ROOT, invoke, invoke_json, plant_user_modules, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _submitted(tmp_path: Path, model_dir: Path, name: str, *, train: Path = CAPITALS, gpus: int = 0):
    tmp_path.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    extra = f"[resources]\ngpus = {gpus}\n" if gpus else ""
    spec_path = write_spec(tmp_path / f"{name}.toml", name=name, model_dir=model_dir, train=train, max_steps=6,
                           save_every=2, tasks=(), baseline=False, extra=extra)
    (submitted,) = invoke_json(home, "submit", str(spec_path))
    return home, spec_path, submitted["run_id"]


def _train(home: Path, spec_path: Path, run_id: int, *, pause_when=None):
    registry = open_registry(f"sqlite:///{home / 'registry.db'}")
    assert claim_run(registry, run_id, "test")
    progress = RunProgress(run_id, "t", enabled=False)
    roots = Roots(home)
    hooks = registry_hooks(registry, run_id, progress, roots)
    if pause_when is not None:
        import dataclasses

        hooks = dataclasses.replace(hooks, should_pause=lambda: pause_when(registry))
    output_dir = home / "runs" / str(run_id)
    outcome = train_distributed(registry, run_id, load_spec(spec_path).spec, workdir=spec_path.parent,
                                output_dir=output_dir, roots=roots, hooks=hooks, nproc=2, device="cpu",
                                progress=progress)
    return registry, outcome, output_dir


def _weights(final: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(final / "adapter_model.safetensors")


@pytest.mark.slow
def test_two_processes_train_once_and_record_once(tmp_path, tiny_model_dir):
    home, spec_path, run_id = _submitted(tmp_path, tiny_model_dir, "ddp")
    registry, outcome, output_dir = _train(home, spec_path, run_id)
    assert not outcome.interrupted and outcome.global_step == 6 and outcome.model is not None
    detail = run_detail(registry, run_id)
    # Rank 0 alone writes to the registry: each step and checkpoint once.
    assert [m["step"] for m in detail.metrics if m.get("loss") is not None] == [1, 2, 3, 4, 5, 6]
    assert [c["step"] for c in detail.checkpoints] == [2, 4, 6]
    # Both processes wrote their RNG state into the checkpoint before it was published.
    checkpoint = output_dir / "checkpoints" / "checkpoint-6"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}
    assert (output_dir / "final" / "adapter_model.safetensors").is_file()
    assert not (output_dir / ERROR_FILE).exists()


@pytest.mark.slow
def test_a_pause_checkpoints_every_process_at_one_step_and_the_resume_ends_identical(tmp_path, tiny_model_dir):
    import torch

    home, spec_path, straight = _submitted(tmp_path / "a", tiny_model_dir, "ddp-straight")
    registry_a, _, output_a = _train(home, spec_path, straight)

    home_b, spec_b, paused = _submitted(tmp_path / "b", tiny_model_dir, "ddp-paused")
    # Asked before the processes are up (they take seconds to import): they pause after their first step.
    registry_b, outcome, output_b = _train(home_b, spec_b, paused, pause_when=lambda _r: True)
    assert outcome.interrupted and outcome.global_step == 1
    stopped_at = outcome.global_step
    assert (output_b / "checkpoints" / f"checkpoint-{stopped_at}").is_dir() and not (output_b / "final").exists()

    with registry_b.session() as session:  # the worker would re-queue it; here it is re-claimed directly
        from tunelab.registry.models import Run

        session.get(Run, paused).status = "queued"
        session.commit()
    registry_b, outcome, output_b = _train(home_b, spec_b, paused)
    assert outcome.resumed_from == 6  # the final weights were picked up after the processes finished
    curve = lambda r, i: [(m["step"], m["loss"]) for m in run_detail(r, i).metrics if m.get("loss") is not None]  # noqa: E731
    assert curve(registry_b, paused) == curve(registry_a, straight)
    a, b = _weights(output_a / "final"), _weights(output_b / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_bad_data_in_the_processes_fails_the_run_with_its_message(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(CAPITALS.read_text().splitlines()[0] + "\n{not json\n", encoding="utf-8")
    home, spec_path, run_id = _submitted(tmp_path, tiny_model_dir, "ddp-bad", train=bad)
    with pytest.raises(RunFailed) as failed:  # RunFailed: the worker does not retry it
        _train(home, spec_path, run_id)
    assert str(failed.value).startswith(f"DataError: {bad}:2:")
    assert json.loads((home / "runs" / str(run_id) / ERROR_FILE).read_text())["retryable"] is False


@pytest.mark.slow
def test_the_processes_ignore_a_users_modules_in_the_working_directory(tmp_path, tiny_model_dir, monkeypatch):
    """torchrun's processes start in the worker's working directory; a user's runner.py (or even tunelab.py)
    there must not be what `-m tunelab.runner.training.distributed_train` runs."""
    home, spec_path, run_id = _submitted(tmp_path / "submit", tiny_model_dir, "ddp-user-modules")
    monkeypatch.chdir(plant_user_modules(tmp_path / "work", tunelab=True))
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    registry, outcome, output_dir = _train(home, spec_path, run_id)
    assert not outcome.interrupted and outcome.global_step == 6
    assert [c["step"] for c in run_detail(registry, run_id).checkpoints] == [2, 4, 6]
    assert not (output_dir / ERROR_FILE).exists()


def test_a_cpu_worker_leaves_gpu_runs_for_others_and_says_so(tmp_path, tiny_model_dir):
    home, _, run_id = _submitted(tmp_path, tiny_model_dir, "needs-gpus", gpus=2)
    result = invoke(home, "worker", "--until-empty", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 queued run(s) need more GPUs than the 0 this worker has; left for other workers"
    assert invoke_json(home, "show", str(run_id))["summary"]["status"] == "queued"


def test_tunelab_run_of_a_gpu_spec_on_a_cpu_machine_fails_in_one_line(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "gpu.toml", name="one-gpu", model_dir=tiny_model_dir, tasks=(), baseline=False,
                      extra="[resources]\ngpus = 1\n")
    result = invoke(home, "run", str(spec), "--quiet")
    assert result.exit_code == 1
    assert ("DeviceUnavailable: [resources] gpus = 1: this worker sees 0 GPU(s); start a worker with 1 "
            "(tunelab worker --gpus 0)") in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--gpus", "0"], "Error: --gpus 0: 1 GPU(s) asked for, 0 visible to torch"),
    (["--device", "cuda"], "Error: --device cuda: 1 GPU(s) asked for, 0 visible to torch"),
    (["--gpus", "0,x"], "Invalid value for --gpus: '0,x' is not a list of GPU indices such as 0 or 0,1"),
    (["--gpus", "1,1"], "Invalid value for --gpus: '1,1' names a GPU twice"),
    (["--device", "cpu", "--gpus", "0"], "Invalid value for --gpus: --gpus and --device cpu contradict"),
])
def test_worker_device_options_fail_clearly_without_gpus(tmp_path, args, message):
    result = invoke(tmp_path / "home", "worker", "--until-empty", "--quiet", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_chosen_gpus_are_the_visible_ones_while_the_worker_runs(monkeypatch):
    from tunelab.runner.devices import VISIBLE, DeviceUnavailable, make_choice, visible_devices

    monkeypatch.setenv(VISIBLE, "0,1,2,3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with visible_devices(make_choice(gpus="2,3"), count=lambda: len(os.environ[VISIBLE].split(","))) as seen:
        assert os.environ[VISIBLE] == "2,3" and seen == 2
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # the indices nvidia-smi shows
    assert os.environ[VISIBLE] == "0,1,2,3" and "CUDA_DEVICE_ORDER" not in os.environ  # restored
    with visible_devices(make_choice("cpu")) as seen:
        assert os.environ[VISIBLE] == "" and seen == 0
    with pytest.raises(DeviceUnavailable), visible_devices(make_choice(gpus="0,1,2"), count=lambda: 2):
        pass
    assert os.environ[VISIBLE] == "0,1,2,3"


def test_device_cpu_also_keeps_evaluation_off_apple_gpus(monkeypatch):
    import torch
    from tunelab.runner.devices import CHOSEN_DEVICE, make_choice, visible_devices
    from tunelab.runner.evaluation.harness import evaluation_device

    monkeypatch.delenv(CHOSEN_DEVICE, raising=False)
    monkeypatch.setattr("tunelab.runner.evaluation.harness.no_gpu_possible", lambda: False)  # as on a Mac
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert evaluation_device() == "mps"
    with visible_devices(make_choice("cpu")):
        assert evaluation_device() == "cpu"
    assert evaluation_device() == "mps" and CHOSEN_DEVICE not in os.environ


def test_a_linux_machine_without_gpu_device_nodes_needs_no_torch_to_say_cpu(tmp_path, monkeypatch):
    from tunelab.runner.devices import VISIBLE, no_gpu_possible

    monkeypatch.delenv(VISIBLE, raising=False)
    assert no_gpu_possible("linux", tmp_path)
    (tmp_path / "nvidia0").touch()
    assert not no_gpu_possible("linux", tmp_path)
    monkeypatch.setenv(VISIBLE, "")  # every CUDA device hidden
    assert no_gpu_possible("linux", tmp_path)
    assert not no_gpu_possible("darwin", tmp_path)  # mps: only torch can tell
    monkeypatch.delenv(VISIBLE)
    (tmp_path / "nvidia0").unlink()
    (tmp_path / "dxg").touch()  # CUDA under WSL2
    assert not no_gpu_possible("linux", tmp_path)


def test_a_single_process_run_uses_one_gpu_whatever_the_worker_has():
    from types import SimpleNamespace

    from tunelab.runner.training.trainer import one_gpu_per_process

    assert one_gpu_per_process(SimpleNamespace(n_gpu=4, _n_gpu=4), world_size=1)._n_gpu == 1  # no DataParallel
    assert one_gpu_per_process(SimpleNamespace(n_gpu=1, _n_gpu=1), world_size=1)._n_gpu == 1
    assert one_gpu_per_process(SimpleNamespace(n_gpu=0, _n_gpu=0), world_size=1)._n_gpu == 0  # the CPU


def test_qlora_under_torchrun_loads_on_each_process_own_gpu(monkeypatch):
    from tunelab.runner.training.models import _local_gpu

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert _local_gpu() == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert _local_gpu() == 3
