"""Which devices a worker trains on: `tunelab worker --device cpu|cuda|auto` and `--gpus 0,1`.

The choice is made once, before torch touches CUDA, through CUDA_VISIBLE_DEVICES: everything
downstream (the Trainer, torchrun's processes, lm-eval) then sees exactly the chosen GPUs, or
none for `--device cpu`, without each part taking a device argument of its own.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunelab.runner.errors import RunFailed

VISIBLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"
# Set to "cpu" by `--device cpu`: hides what CUDA_VISIBLE_DEVICES cannot (Apple's mps, which evaluation uses).
CHOSEN_DEVICE = "TUNELAB_DEVICE"
DEVICE_KINDS = ("auto", "cpu", "cuda")


class DeviceUnavailable(RunFailed):
    """The devices asked for are not on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    kind: str = "auto"  # auto | cpu | cuda
    gpus: tuple[int, ...] | None = None  # indices as nvidia-smi numbers them; None = all


def parse_gpus(text: str) -> tuple[int, ...]:
    """'0,1' -> (0, 1); a clear ValueError for anything else."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(part.isdigit() for part in parts):
        raise ValueError(f"{text!r} is not a list of GPU indices such as 0 or 0,1")
    if len(set(parts)) != len(parts):
        raise ValueError(f"{text!r} names a GPU twice")
    return tuple(int(part) for part in parts)


def make_choice(device: str = "auto", gpus: str | None = None) -> DeviceChoice:
    if device not in DEVICE_KINDS:
        raise ValueError(f"device {device!r} is not one of {', '.join(DEVICE_KINDS)}")
    if gpus is not None and device == "cpu":
        raise ValueError("--gpus and --device cpu contradict each other")
    return DeviceChoice("cuda" if gpus is not None and device == "auto" else device,
                        parse_gpus(gpus) if gpus is not None else None)


def no_gpu_possible(platform: str = sys.platform, dev: Path = Path("/dev")) -> bool:
    """True where torch could not find a GPU anyway: Linux with no NVIDIA (nvidia*) or AMD ROCm (kfd)
    device nodes, or every CUDA device hidden. Elsewhere (macOS's mps, Windows) only torch can tell."""
    if platform != "linux":
        return False
    if os.environ.get(VISIBLE) == "":
        return True
    # NVIDIA (nvidia0...), AMD ROCm (kfd), and CUDA under WSL2 (dxg).
    return not (any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists())


def cuda_device_count() -> int:
    if no_gpu_possible():  # no torch import (seconds) just to learn there is nothing: a worker's start stays quick
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _no_gpu_hint() -> str:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"torch {torch.__version__} is {build}"


@contextlib.contextmanager
def visible_devices(choice: DeviceChoice, *, count=cuda_device_count) -> Iterator[int]:
    """Make only the chosen devices visible while the block runs; yields how many GPUs are visible.

    Raises DeviceUnavailable when a GPU was asked for and is not there. `count` is read after the
    environment is set (injectable for tests).
    """
    saved = {name: os.environ.get(name) for name in (VISIBLE, CHOSEN_DEVICE, ORDER)}
    if choice.kind == "cpu":
        os.environ[VISIBLE] = ""
        os.environ[CHOSEN_DEVICE] = "cpu"
    elif choice.gpus is not None:
        # nvidia-smi numbers GPUs by PCI bus; CUDA's default order (fastest first) may differ.
        os.environ[ORDER] = "PCI_BUS_ID"
        os.environ[VISIBLE] = ",".join(map(str, choice.gpus))
    try:
        visible = 0 if choice.kind == "cpu" else count()
        wanted = len(choice.gpus) if choice.gpus is not None else (1 if choice.kind == "cuda" else 0)
        if visible < wanted:
            asked = f"--gpus {','.join(map(str, choice.gpus))}" if choice.gpus is not None else "--device cuda"
            raise DeviceUnavailable(f"{asked}: {wanted} GPU(s) asked for, {visible} visible to torch "
                                    f"({_no_gpu_hint()}); use --device cpu or run the worker on a GPU machine")
        yield visible
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_run_gpus(wanted: int, visible: int) -> None:
    """A run's [resources] gpus against what this worker has; one clear line when short."""
    if wanted > visible:
        indices = ",".join(str(index) for index in range(wanted))
        raise DeviceUnavailable(f"[resources] gpus = {wanted}: this worker sees {visible} GPU(s); start a "
                                f"worker with {wanted} (tunelab worker --gpus {indices})")
