"""The worker loop: take back runs of dead workers, claim queued runs atomically, execute them; with nothing
queued, draw the next trial of a search that wants one (runner/search.py), so N workers run N trials at once.

`serve` is `tunelab worker` (options in, one line out per run and at the end); `work` is the loop itself.

SIGTERM or SIGINT asks for a clean stop: the running run saves a checkpoint at its next
training step (or, outside training, is interrupted at once) and goes back to the queue,
and the loop claims nothing more. A second signal gets the default behaviour (the process
dies; its run is then recovered by another worker's stale-run check). SIGUSR1 does the same: it is
the warning Slurm sends ahead of a job's time limit (`tunelab launch slurm`, runner/slurm/launch.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tunelab.experiments.schema import NotifySection
from tunelab.registry.db import Registry
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import claim_next, queued_needing_more_gpus, requeue_stale
from tunelab.runner.devices import DeviceChoice, visible_devices
from tunelab.runner.execute import HEARTBEAT_SECONDS, RunInterrupted, RunResult, StopRequest, execute_run
from tunelab.runner.search import ask_trial
from tunelab.runner.training.preload import prepare_process

log = logging.getLogger(__name__)
STALE_AFTER_SECONDS = 120.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """Turn the first SIGTERM/SIGINT into `stop.request`; restore the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handle(signum, _frame) -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)  # a second signal is not polite any more
        stop.request(signal.Signals(signum).name, signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _recover(registry: Registry, stale_after: float | None) -> None:
    if stale_after is None:
        return
    for recovered in requeue_stale(registry, stale_after):
        log.warning("run %s: %s (%s)", recovered.run_id, recovered.status, recovered.error)


def _prepare_while_idle(stop: StopRequest) -> None:
    """Import the training stack while there is nothing to run (runner/training/preload.py): the next run starts
    training seconds sooner. A stop request interrupts it at once, as it would a run."""
    try:
        with stop.run():
            prepare_process()
    except RunInterrupted:
        pass  # the loop reads the request and ends


def work(
    registry: Registry,
    *,
    roots: Roots,
    once: bool = False,
    until_empty: bool = False,
    poll_seconds: float = 5.0,
    show_progress: bool = True,
    on_result: Callable[[RunResult], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    stale_after: float | None = STALE_AFTER_SECONDS,
    stop: StopRequest | None = None,
    devices: DeviceChoice | None = None,
    on_skipped: Callable[[int, int], None] | None = None,
    notify_also: NotifySection | None = None,
    max_nodes: int = 1,
    on_waiting: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Execute queued runs. `once`: at most one run; `until_empty`: stop when nothing is queued.

    Before each claim, runs whose heartbeat is older than `stale_after` seconds are re-queued
    (None: leave them). `stop` (made here when not given) records a SIGTERM/SIGINT. `devices`:
    what to train on (default: every GPU there is, else the CPU); runs whose [resources] gpus
    exceed it are left for other workers, and `on_skipped` hears how many (and how many GPUs this
    worker has) when the queue looks empty. `notify_also`: who else hears of each run's end and each search's.
    `max_nodes`: the most [resources] nodes of a run this worker takes (its Slurm allocation's tasks). Runs write
    under `roots` (registry/roots.py).
    `on_waiting` hears (with the worker's GPU count) each time the worker finds nothing to do and starts to wait.
    Raises runner.devices.DeviceUnavailable when the devices asked for are not there.
    """
    name = worker_name()
    stop = stop or StopRequest()
    sleep = sleep or stop.event.wait  # an idle worker wakes at once on SIGTERM/SIGINT
    results: list[RunResult] = []
    prepared = False
    waiting = False
    with visible_devices(devices or DeviceChoice()) as gpus, stop_on_signals(stop):
        while not stop.requested:
            _recover(registry, stale_after)
            run_id = claim_next(registry, name, max_gpus=gpus, max_nodes=max_nodes)
            if run_id is None:
                run_id = ask_trial(registry, name, max_gpus=gpus, notify_also=notify_also)
            if run_id is None:
                if once or until_empty:
                    left = queued_needing_more_gpus(registry, gpus, max_nodes)
                    if left and on_skipped:
                        on_skipped(left, gpus)
                    return results
                if on_waiting is not None and not waiting:  # said first: preparing takes seconds
                    on_waiting(gpus)
                waiting = True
                if not prepared:  # look at the queue again right after: that took seconds
                    _prepare_while_idle(stop)
                    prepared = True
                    continue
                sleep(poll_seconds)
                continue
            waiting = False
            result = execute_run(registry, run_id, roots=roots, show_progress=show_progress,
                                 heartbeat_seconds=heartbeat_seconds, stop=stop, notify_also=notify_also)
            results.append(result)
            if on_result:
                on_result(result)
            if once:
                return results
    return results


@dataclass(frozen=True)
class WorkerOptions:
    """How `tunelab worker` runs (its command-line options)."""

    once: bool = False
    until_empty: bool = False
    poll_seconds: float = 5.0
    show_progress: bool = True
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    stale_after: float | None = STALE_AFTER_SECONDS
    devices: DeviceChoice = field(default_factory=DeviceChoice)
    notify: NotifySection | None = None  # --notify-webhook / --notify-command
    max_nodes: int = 1  # the tasks of the worker's Slurm allocation (runner/slurm/job.py)


@dataclass
class WorkerSummary:
    """How a worker session ended: the runs it executed, and the signal that stopped it, if one did."""

    results: list[RunResult]
    stopped_by: str | None = None
    signum: int | None = None

    @property
    def exit_status(self) -> int:
        """130 after Ctrl-C (SIGINT), as shells expect of an interrupted command; else 0."""
        return 130 if self.signum == signal.SIGINT else 0


def serve(registry: Registry, *, roots: Roots, options: WorkerOptions, say: Callable[[str], None],
          on_result: Callable[[RunResult], None] | None = None) -> WorkerSummary:
    """Execute queued runs as `options` say, telling `say` one line per finished run, about runs left for
    workers with more GPUs, and why the worker stopped; `on_result` also hears each run's result."""
    stop = StopRequest()
    left_for_others: list[int] = []

    def report(result: RunResult) -> None:
        say(f"run {result.run_id}: {result.status}" + (f" ({result.error})" if result.error else ""))
        if on_result is not None:
            on_result(result)

    def waiting(gpus: int) -> None:
        devices = "the CPU" if not gpus else f"{gpus} GPU(s)"
        say(f"waiting for queued runs in {registry.engine.url.render_as_string()} (training on {devices}; "
            f"looking every {options.poll_seconds:g}s)")

    def skipped(count: int, gpus: int) -> None:
        left_for_others.append(count)
        say(f"{count} queued run(s) need more GPUs than the {gpus} this worker has; left for other workers")

    results = work(registry, roots=roots, once=options.once, until_empty=options.until_empty,
                   poll_seconds=options.poll_seconds, show_progress=options.show_progress, on_result=report,
                   heartbeat_seconds=options.heartbeat_seconds, stale_after=options.stale_after, stop=stop,
                   devices=options.devices, on_skipped=skipped, notify_also=options.notify,
                   max_nodes=options.max_nodes, on_waiting=waiting)
    if stop.requested:
        say(f"worker stopped ({stop.reason})")
    elif not results and not left_for_others and (options.once or options.until_empty):
        say("queue is empty")
    return WorkerSummary(results, stop.reason, stop.signum)
