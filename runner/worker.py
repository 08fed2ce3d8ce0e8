"""The worker loop: claim queued runs atomically and execute them, one after another."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from registry.db import Registry
from registry.queue import claim_next
from runner.execute import HEARTBEAT_SECONDS, RunResult, execute_run


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def work(
    registry: Registry,
    *,
    home: Path,
    once: bool = False,
    until_empty: bool = False,
    poll_seconds: float = 5.0,
    show_progress: bool = True,
    on_result: Callable[[RunResult], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> list[RunResult]:
    """Execute queued runs. `once`: at most one run; `until_empty`: stop when nothing is queued."""
    name = worker_name()
    results: list[RunResult] = []
    while True:
        run_id = claim_next(registry, name)
        if run_id is None:
            if once or until_empty:
                return results
            sleep(poll_seconds)
            continue
        result = execute_run(registry, run_id, home=home, show_progress=show_progress,
                             heartbeat_seconds=heartbeat_seconds)
        results.append(result)
        if on_result:
            on_result(result)
        if once:
            return results
