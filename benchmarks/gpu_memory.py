"""GPU memory as nvidia-smi sees it, sampled while a benchmarked process runs.

nvidia-smi's `memory.used` covers everything a process holds on the GPU (CUDA context, the caching allocator's
reserve, cuBLAS workspaces, bitsandbytes' paged buffers), whatever the process reports about itself, so every
benchmarked process is measured alike.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

MEMORY_QUERY = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
GPU_FACTS_QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"]


def parse_memory_used(text: str) -> dict[int, int]:
    """Lines of "index, memory.used" (MiB) -> {index: MiB}; a later line for a GPU replaces an earlier one.

    Lines nvidia-smi could not fill ("[N/A]", "[Not Supported]") and anything else unparsable are skipped.
    """
    used: dict[int, int] = {}
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            used[int(parts[0])] = int(parts[1])
    return used


def gpu_facts(command: list[str] | None = None) -> list[dict[str, str]]:
    """Each GPU's index, name, total memory and driver version; [] without a working nvidia-smi."""
    command = command or GPU_FACTS_QUERY
    if shutil.which(command[0]) is None:
        return []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:  # a broken driver must not stop what measures it
        return [{"index": "?", "name": f"nvidia-smi failed: {err}", "memory_total": "?", "driver_version": "?"}]
    facts = []
    for line in done.stdout.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 4:
            facts.append(dict(zip(("index", "name", "memory_total", "driver_version"), parts, strict=True)))
    return facts


@dataclass
class MemoryPeak:
    baseline_mib: dict[int, int] = field(default_factory=dict)  # the first sample, before the process started
    peak_mib: dict[int, int] = field(default_factory=dict)
    samples: int = 0

    def above_baseline_mib(self) -> int | None:
        """The largest rise over the baseline on any GPU; None without samples."""
        if not self.peak_mib:
            return None
        return max(peak - self.baseline_mib.get(index, 0) for index, peak in self.peak_mib.items())


class MemoryPoller:
    """Samples `memory.used` every `interval_ms` in a background nvidia-smi loop while the block runs.

    The first sample is the baseline: entering waits for it (up to `first_sample_timeout` seconds), so a
    process started inside the block is measured from its start. `command` replaces nvidia-smi (tests).
    """

    def __init__(self, interval_ms: int = 100, command: list[str] | None = None,
                 first_sample_timeout: float = 10.0) -> None:
        self.command = command or [*MEMORY_QUERY, "-lms", str(interval_ms)]
        self.first_sample_timeout = first_sample_timeout
        self.peak = MemoryPeak()
        self._first = threading.Event()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> MemoryPoller:
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._first.wait(self.first_sample_timeout)
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            used = parse_memory_used(line)
            if not used:
                continue
            if not self._first.is_set():
                self.peak.baseline_mib = dict(used)
                self._first.set()
            for index, mib in used.items():
                self.peak.peak_mib[index] = max(mib, self.peak.peak_mib.get(index, 0))
            self.peak.samples += 1

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._reader is not None
        time.sleep(0.2)  # one more sample or two of the process's last moments
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
