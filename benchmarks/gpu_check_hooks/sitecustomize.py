"""Loaded at start-up by the processes benchmarks/gpu_check.py launches (this directory is on their PYTHONPATH).

It measures and sets, from outside, what tunelab has no option for, so the check drives tunelab through its
command line alone:

- GPU_CHECK_PEAK_MEMORY=FILE: at exit, the process's peak torch.cuda memory (allocated and reserved; none
  when it never used CUDA) and its peak resident memory go to FILE as JSON.
- GPU_CHECK_DETERMINISTIC=1: torch.use_deterministic_algorithms(True, warn_only=True) before anything runs;
  with CUBLAS_WORKSPACE_CONFIG=:4096:8 (set by the caller) this is PyTorch's recipe for repeatable GPU runs.
  warn_only: an operation without a deterministic kernel warns (the check collects the warnings) instead of
  failing the run.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys


def _write_peak_memory(path: str) -> None:
    facts = {"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # Linux counts kilobytes
    torch = sys.modules.get("torch")
    try:
        on_gpu = torch is not None and torch.cuda.is_initialized()
        facts["peak_allocated_bytes"] = torch.cuda.max_memory_allocated() if on_gpu else None
        facts["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() if on_gpu else None
    except Exception as err:  # at exit, nothing else would report it: the figure says why it is missing
        facts["error"] = f"{type(err).__name__}: {err}"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(facts, handle)


if os.environ.get("GPU_CHECK_DETERMINISTIC") == "1":
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)

if os.environ.get("GPU_CHECK_PEAK_MEMORY"):
    atexit.register(_write_peak_memory, os.environ["GPU_CHECK_PEAK_MEMORY"])
