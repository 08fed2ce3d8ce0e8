"""`tunelab launch slurm`: workers submitted as Slurm batch jobs (runner/slurm/launch.py)."""

from __future__ import annotations

import click

from tunelab.context import AppContext
from tunelab.output import print_json
from tunelab.runner.slurm.launch import WARNING_SECONDS, LaunchOptions, WorkerSetting, plan_launch, submit


@click.group()
def launch() -> None:
    """Start workers through a cluster's scheduler: tunelab launch slurm submits them as Slurm jobs."""


@launch.command(name="slurm")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker jobs to submit.")
@click.option("--jobs", "separate", is_flag=True, help="Submit the workers as separate jobs, not one job array.")
@click.option("--partition", default=None, help="Slurm partition (sbatch --partition).")
@click.option("--account", default=None, help="Slurm account (sbatch --account).")
@click.option("--gpus", type=click.IntRange(min=0), default=None,
              help="GPUs per node of each job (--gres=gpu:N). Default: the most [resources] gpus of a queued run.")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Nodes per job, one task each: its worker takes runs of up to [resources] nodes = N.")
@click.option("--cpus", type=click.IntRange(min=1), default=None, help="CPUs per task (sbatch --cpus-per-task).")
@click.option("--mem", "memory", default=None, metavar="SIZE", help="Memory per node, e.g. 64G (sbatch --mem).")
@click.option("--time", default=None, metavar="TIME", help="Time limit, e.g. 4:00:00 (sbatch --time).")
@click.option("--warning", "warning_seconds", type=click.IntRange(min=0), default=WARNING_SECONDS,
              show_default=True, help="Seconds before the time limit at which Slurm signals the worker to checkpoint "
              "and release its run (--signal=B:USR1@N); 0: no warning.")
@click.option("--sbatch", "sbatch_lines", multiple=True, metavar="OPTION",
              help="Another #SBATCH line, e.g. --sbatch=--qos=high. Repeatable.")
@click.option("--job-name", default="tunelab-worker", show_default=True)
@click.option("--allow-sqlite", is_flag=True, help="Allow an SQLite registry: every job runs on this machine.")
@click.option("--dry-run", is_flag=True, help="Print the batch script; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the submitted job ids as JSON.")
@click.argument("worker_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- WORKER_OPTIONS]")
@click.pass_obj
def slurm(app: AppContext, workers: int, separate: bool, partition: str | None, account: str | None,
          gpus: int | None, nodes: int, cpus: int | None, memory: str | None, time: str | None, warning_seconds: int,
          sbatch_lines: tuple[str, ...], job_name: str, allow_sqlite: bool, dry_run: bool, as_json: bool,
          worker_args: tuple[str, ...]) -> None:
    """Submit worker jobs to Slurm that drain the queue and exit when it is empty.

    Each job runs `tunelab worker --until-empty` (options after -- go to it) with this machine's home, artifact and
    project roots; the registry URL is passed on through the environment. Use a PostgreSQL registry.
    """
    options = LaunchOptions(workers=workers, array=not separate, partition=partition, account=account, gpus=gpus,
                            nodes=nodes, cpus=cpus, memory=memory, time=time, warning_seconds=warning_seconds,
                            job_name=job_name, sbatch_lines=sbatch_lines, worker_args=worker_args,
                            allow_sqlite=allow_sqlite)
    registry = app.registry()
    plan = plan_launch(registry, options, WorkerSetting(home=app.home.absolute(), roots=app.roots))
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        click.echo(plan.script, nl=False)
        return
    job_ids = submit(plan, registry.url)
    if as_json:
        print_json({"job_ids": job_ids, "workers": workers, "gpus": plan.gpus, "logs": str(plan.log_dir)})
        return
    jobs = f"job array {job_ids[0]} ({workers} tasks)" if plan.array and workers > 1 else "job(s) " + ", ".join(job_ids)
    click.echo(f"submitted {workers} worker(s) as {jobs}; logs in {plan.log_dir}")
