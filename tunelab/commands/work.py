"""`tunelab worker` and `tunelab run`: execute queued runs, or one spec here and now."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.experiments.loader import load_for_submit
from tunelab.experiments.schema import NotifySection
from tunelab.output import print_json
from tunelab.registry.reward_checks import check_reward_runs
from tunelab.registry.run_state import claim_run
from tunelab.registry.submissions import from_loaded
from tunelab.registry.submissions import submit as submit_runs
from tunelab.runner.devices import make_choice
from tunelab.runner.execute import execute_run
from tunelab.runner.slurm.job import current_job
from tunelab.runner.training.options import check_options
from tunelab.runner.worker import WorkerOptions, serve, worker_name
from tunelab.terminal import say

# Seconds: a positive number (0 would look at the queue, or beat, in a busy loop).
POSITIVE_SECONDS = click.FloatRange(min=0, min_open=True)


@click.command()
@click.option("--once", is_flag=True, help="Execute at most one run, then exit.")
@click.option("--until-empty", is_flag=True, help="Exit when the queue is empty instead of waiting for work.")
@click.option("--poll", type=POSITIVE_SECONDS, default=5.0, show_default=True,
              help="Seconds between looks at an empty queue.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--heartbeat", type=POSITIVE_SECONDS, default=15.0, show_default=True,
              help="Seconds between heartbeats (and looks for a cancel request) while a run executes.")
@click.option("--stale-after", type=POSITIVE_SECONDS, default=120.0, show_default=True,
              help="Before each claim, re-queue running runs with no heartbeat for this many seconds "
                   "(their worker died); must exceed every worker's --heartbeat.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Train on the CPU, on CUDA GPUs, or on GPUs when there are any.")
@click.option("--gpus", metavar="0,1", default=None,
              help="Only these GPUs (CUDA indices); a run with [resources] gpus = N > 1 trains on N of them "
                   "through torchrun. Runs needing more GPUs than the worker has are left for other workers.")
@click.option("--notify-webhook", metavar="URL", default=None,
              help="POST a JSON notice here when a run succeeds or fails and when a search finishes.")
@click.option("--notify-command", metavar="CMD", default=None,
              help="Run CMD (the notice as JSON on its standard input) when a run succeeds or fails and when a "
                   "search finishes.")
@click.pass_obj
def worker(app: AppContext, once: bool, until_empty: bool, poll: float, quiet: bool, heartbeat: float,
           stale_after: float, device: str, gpus: str | None, notify_webhook: str | None,
           notify_command: str | None) -> None:
    """Claim queued runs and execute them: train, checkpoint, evaluate.

    SIGTERM, SIGUSR1 (Slurm's warning before a time limit) or Ctrl-C stops cleanly: the current run
    saves a checkpoint at its next step and goes back to the queue; exit status 0 after SIGTERM or
    SIGUSR1, 130 after Ctrl-C. A second signal stops at once (the run is then recovered by --stale-after).
    """
    if stale_after <= heartbeat:
        raise click.BadParameter(f"{stale_after:g}s would take live runs for dead ones: it must exceed "
                                 f"--heartbeat ({heartbeat:g}s)", param_hint="--stale-after")
    try:
        devices = make_choice(device, gpus)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpus") from None
    try:
        notify = NotifySection(webhook=notify_webhook, command=notify_command) if notify_webhook or notify_command \
            else None
    except ValueError as exc:
        raise click.BadParameter(str(exc).splitlines()[-1], param_hint="--notify-webhook") from None
    job = current_job()  # a worker in a Slurm allocation of N tasks takes runs of up to N nodes
    options = WorkerOptions(once=once, until_empty=until_empty, poll_seconds=poll, show_progress=not quiet,
                            heartbeat_seconds=heartbeat, stale_after=stale_after, devices=devices, notify=notify,
                            max_nodes=job.max_nodes if job else 1)
    summary = serve(app.registry(), roots=app.roots, options=options, say=say)
    if summary.exit_status:
        raise SystemExit(summary.exit_status)


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON.")
@click.pass_obj
def run(app: AppContext, spec: Path, quiet: bool, as_json: bool) -> None:
    """Submit SPEC and execute it here in the foreground."""
    workdir = Path.cwd()
    loaded = load_for_submit((spec,), workdir)
    check_options(loaded)
    if len(loaded) != 1:
        raise click.ClickException(f"{spec} defines a sweep of {len(loaded)} experiments: use submit + worker")
    if loaded[0].search is not None:
        raise click.ClickException(f"{spec} defines a search: use submit + worker")
    registry = app.registry()
    check_reward_runs(registry, loaded)
    # `run` means "run this now": an identical earlier spec still gets a fresh run.
    (submitted,) = submit_runs(registry, [from_loaded(loaded[0], workdir=app.roots.stored_workdir(workdir))],
                               force=True)
    if not claim_run(registry, submitted.run_id, worker_name()):
        raise click.ClickException(f"run {submitted.run_id} was claimed by another worker")
    result = execute_run(registry, submitted.run_id, roots=app.roots, show_progress=not quiet)
    if as_json:
        print_json(asdict(result))
    else:
        say(f"run {result.run_id}: {result.status}" + (f" ({result.error})" if result.error else ""))
    if result.status != "succeeded":
        raise SystemExit(1)
