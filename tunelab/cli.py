"""The tunelab command line: parse arguments, call one function of a room, print.

Heavy libraries (torch, transformers, lm-eval) are imported only inside the commands
that train or evaluate, so `tunelab --help` and `tunelab ls` start instantly.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.experiments.errors import TunelabError
from tunelab.output import print_json
from tunelab.registry.query_help import FIELDS_HELP


class TunelabGroup(click.Group):
    """Turns the rooms' typed errors into one clear line and exit status 1 (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TunelabError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=TunelabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="TUNELAB_HOME",
              default=Path(".tunelab"), show_default=True,
              help="Directory holding registry.db and runs/ (env TUNELAB_HOME).")
@click.option("--db", "db_url", envvar="TUNELAB_DB", default=None,
              help="Registry URL, e.g. postgresql+psycopg://user@host/db (env TUNELAB_DB). Default: SQLite in HOME.")
@click.version_option(package_name="tunelab")
@click.pass_context
def cli(ctx: click.Context, home: Path, db_url: str | None) -> None:
    """tunelab: declare fine-tuning experiments in TOML, queue and run them, evaluate and compare.

    \b
    Typical session:
      tunelab submit examples/specs/tiny-lora.toml   # validate, store, queue
      tunelab worker --until-empty                   # train, checkpoint, evaluate
      tunelab ls                                     # what ran, how it did
      tunelab report -o leaderboard.html             # static HTML leaderboard
    """
    ctx.obj = AppContext(home=home, db_url=db_url)


def _load_all(specs: tuple[Path, ...]):
    from tunelab.experiments.loader import load_specs

    # Validate every spec (every sweep point) before writing anything: one bad file, nothing stored.
    return [loaded for path in specs for loaded in load_specs(path)]


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate, show what would be queued; write nothing.")
@click.option("--force", is_flag=True, help="Queue a new run even when an identical spec was submitted before.")
@click.option("--priority", type=int, default=None,
              help="Queue priority (higher first); overrides [resources] priority.")
@click.option("--json", "as_json", is_flag=True, help="Print [{experiment_id, run_id}] as JSON.")
@click.pass_obj
def submit(app: AppContext, specs: tuple[Path, ...], dry_run: bool, force: bool, priority: int | None,
           as_json: bool) -> None:
    """Validate SPEC files, store each experiment and queue a run of it.

    A spec with a [sweep] table becomes one experiment per point of the sweep. A spec whose
    resolved content was submitted before is not stored twice: tunelab points at the earlier
    experiment (use --force to queue a new run of it).
    """
    from tunelab.registry.submissions import from_loaded
    from tunelab.registry.submissions import submit as submit_runs

    loaded = _load_all(specs)
    if dry_run:
        from tunelab.experiments.canonical import spec_hash

        rows = [{"spec": str(item.path), "name": item.spec.experiment.name, "method": item.spec.method.kind,
                 "sweep_point": item.sweep_point, "spec_hash": spec_hash(item.spec), "valid": True} for item in loaded]
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                click.echo(f"ok  {row['spec']}  {row['name']}  ({row['method']}, {row['spec_hash'][:12]})")
            click.echo(f"{len(rows)} experiment(s) would be queued")
        return
    workdir = os.getcwd()
    done = submit_runs(app.registry(), [from_loaded(item, workdir=workdir, priority=priority) for item in loaded],
                       force=force)
    if as_json:
        print_json([{"experiment_id": s.experiment_id, "run_id": s.run_id, "duplicate_of": s.duplicate_of,
                     "sweep_id": s.sweep_id} for s in done])
        return
    for item, s in zip(loaded, done, strict=True):
        name = item.spec.experiment.name
        if s.duplicate_of is not None and s.run_id is None:
            click.echo(f"exists  experiment {s.duplicate_of}  {name}: identical spec already submitted "
                       "(see `tunelab ls`; --force queues a new run)")
        elif s.duplicate_of is not None:
            click.echo(f"queued run {s.run_id}  experiment {s.experiment_id}  {name} (again, --force)")
        else:
            click.echo(f"queued run {s.run_id}  experiment {s.experiment_id}  {name}")


@cli.command()
@click.argument("run_id", type=int)
@click.pass_obj
def cancel(app: AppContext, run_id: int) -> None:
    """Cancel a queued run, or stop a running one at its next training step."""
    from tunelab.registry.run_control import cancel as cancel_run

    cancel_run(app.registry(), run_id)
    click.echo(f"run {run_id}: cancelled")


@cli.command()
@click.argument("run_id", type=int)
@click.pass_obj
def retry(app: AppContext, run_id: int) -> None:
    """Queue a failed or cancelled run again (it resumes from its last complete checkpoint)."""
    from tunelab.registry.run_control import retry as retry_run

    retry_run(app.registry(), run_id)
    click.echo(f"run {run_id}: queued")


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the spec language (for editor completion and checks)."""
    import json

    from tunelab.experiments.json_schema import spec_json_schema

    text = json.dumps(spec_json_schema(), indent=2)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")


def warm_report_cache(registry, result) -> None:
    """Draw a finished run's charts and page now, while the worker has the run in hand, so the next
    `tunelab report` reads them (reports/render_cache.py). A failure here costs only that head start."""
    if result.status != "succeeded":
        return
    import logging

    from tunelab.reports.render_cache import warm

    try:
        warm(registry, result.run_id)
    except Exception:  # the run itself succeeded; never let the report's cache fail the worker
        logging.getLogger(__name__).warning("run %s: report cache not warmed", result.run_id, exc_info=True)


@cli.command()
@click.option("--once", is_flag=True, help="Execute at most one run, then exit.")
@click.option("--until-empty", is_flag=True, help="Exit when the queue is empty instead of waiting for work.")
@click.option("--poll", type=float, default=5.0, show_default=True, help="Seconds between looks at an empty queue.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--heartbeat", type=float, default=15.0, show_default=True,
              help="Seconds between heartbeats (and looks for a cancel request) while a run executes.")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Before each claim, re-queue running runs with no heartbeat for this many seconds "
                   "(their worker died); must exceed every worker's --heartbeat.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Train on the CPU, on CUDA GPUs, or on GPUs when there are any.")
@click.option("--gpus", metavar="0,1", default=None,
              help="Only these GPUs (CUDA indices); a run with [resources] gpus = N > 1 trains on N of them "
                   "through torchrun. Runs needing more GPUs than the worker has are left for other workers.")
@click.pass_obj
def worker(app: AppContext, once: bool, until_empty: bool, poll: float, quiet: bool, heartbeat: float,
           stale_after: float, device: str, gpus: str | None) -> None:
    """Claim queued runs and execute them: train, checkpoint, evaluate.

    SIGTERM or Ctrl-C stops cleanly: the current run saves a checkpoint at its next step and
    goes back to the queue; exit status 0 after SIGTERM, 130 after Ctrl-C. A second signal
    stops at once (the run is then recovered by --stale-after).
    """
    from tunelab.runner.devices import make_choice
    from tunelab.runner.worker import WorkerOptions, serve

    if stale_after <= heartbeat:
        raise click.BadParameter(f"{stale_after:g}s would take live runs for dead ones: it must exceed "
                                 f"--heartbeat ({heartbeat:g}s)", param_hint="--stale-after")
    try:
        devices = make_choice(device, gpus)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpus") from None
    registry = app.registry()
    options = WorkerOptions(once=once, until_empty=until_empty, poll_seconds=poll, show_progress=not quiet,
                            heartbeat_seconds=heartbeat, stale_after=stale_after, devices=devices)
    summary = serve(registry, home=app.home, options=options, say=click.echo,
                    on_result=lambda result: warm_report_cache(registry, result))
    if summary.exit_status:
        raise SystemExit(summary.exit_status)


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON.")
@click.pass_obj
def run(app: AppContext, spec: Path, quiet: bool, as_json: bool) -> None:
    """Submit SPEC and execute it here in the foreground."""
    from tunelab.registry.queue import claim_run
    from tunelab.registry.submissions import from_loaded
    from tunelab.registry.submissions import submit as submit_runs
    from tunelab.runner.execute import execute_run
    from tunelab.runner.worker import worker_name

    loaded = _load_all((spec,))
    if len(loaded) != 1:
        raise click.ClickException(f"{spec} defines a sweep of {len(loaded)} experiments: use submit + worker")
    registry = app.registry()
    # `run` means "run this now": an identical earlier spec still gets a fresh run.
    (submitted,) = submit_runs(registry, [from_loaded(loaded[0], workdir=os.getcwd())], force=True)
    if not claim_run(registry, submitted.run_id, worker_name()):
        raise click.ClickException(f"run {submitted.run_id} was claimed by another worker")
    result = execute_run(registry, submitted.run_id, home=app.home, show_progress=not quiet)
    warm_report_cache(registry, result)
    if as_json:
        print_json(asdict(result))
    else:
        click.echo(f"run {result.run_id}: {result.status}" + (f" ({result.error})" if result.error else ""))
    if result.status != "succeeded":
        raise SystemExit(1)


@cli.command(name="ls", epilog=FIELDS_HELP)
@click.option("--where", "where", metavar="EXPR", help='Filter, e.g. \'method.kind = "lora" and arc_challenge > 0.3\'.')
@click.option("--sort", metavar="FIELD", help="Order by a field (a score, a spec key, id, name...); best first.")
@click.option("--asc", is_flag=True, help="Sort ascending instead.")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", type=int, default=None, help="Show at most this many runs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def ls_command(app: AppContext, where: str | None, sort: str | None, asc: bool, status: str | None,
               limit: int | None, fmt: str, as_json: bool) -> None:
    """List runs (newest first) with their headline scores; filter and sort with a small query language."""
    from tunelab.listing import print_runs
    from tunelab.registry.queries import run_scores
    from tunelab.registry.run_query import query_runs

    registry = app.registry()
    runs = query_runs(registry, where=where, sort=sort, descending=not asc, limit=limit, status=status)
    scores = run_scores(registry, [r.run_id for r in runs], headline_only=True)
    print_runs(runs, scores, fmt="json" if as_json else fmt, title=f"runs in {app.url}")


@cli.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def show(app: AppContext, run_id: int, as_json: bool) -> None:
    """Show one run: spec, status, checkpoints, metrics and eval results."""
    from tunelab.registry.queries import run_detail
    from tunelab.show import print_detail

    detail = run_detail(app.registry(), run_id)
    if as_json:
        print_json(detail.to_json())
    else:
        print_detail(detail)
        if detail.lineage and detail.lineage["runs"]:
            from tunelab.runner.lineage import Lineage

            click.echo("  lineage: " + Lineage.from_json(detail.lineage).describe(run_id))


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("leaderboard.html"),
              show_default=True, help="HTML file to write.")
@click.option("--title", default="tunelab leaderboard", show_default=True)
@click.option("--run-pages/--no-run-pages", default=True, show_default=True,
              help="Also write one page per run (spec, curves, per-subject scores, fingerprint).")
@click.pass_obj
def report(app: AppContext, output: Path, title: str, run_pages: bool) -> None:
    """Render a static HTML leaderboard of every evaluated model, with a page per run.

    The run pages go to a folder beside the file (leaderboard_runs/ for leaderboard.html),
    linked with relative paths: the report opens from disk, with no server and no network.
    """
    from tunelab.reports.render import runs_dir_for, write_report

    board = write_report(app.registry(), output, title=title, run_pages=run_pages)
    pages = f" and run pages in {runs_dir_for(output)}/" if run_pages else ""
    click.echo(f"wrote {output} ({len(board.rows)} models){pages}")


@cli.command()
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML comparison page to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def compare(app: AppContext, run_a: int, run_b: int, output: Path | None, as_json: bool) -> None:
    """Compare two runs: differing spec keys, score deltas with significance, flipped items."""
    from tunelab.compare_text import print_comparison
    from tunelab.reports.compare import build_comparison

    comparison = build_comparison(app.registry(), run_a, run_b)
    if as_json:
        data = asdict(comparison)
        data.pop("loss_svg")
        print_json(data)
    else:
        print_comparison(comparison)
    if output is not None:
        from tunelab.reports.render import render_comparison, write_atomically

        write_atomically(output, render_comparison(comparison))
        click.echo(f"wrote {output}")


@cli.command()
@click.argument("run_id", type=int)
@click.option("--verify", is_flag=True, help="After the re-run, compare it with the original; exit 1 if it differs.")
@click.option("--allow-data-change", is_flag=True, help="Re-run even if the training data changed since.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and verdict as JSON.")
@click.pass_obj
def reproduce(app: AppContext, run_id: int, verify: bool, allow_data_change: bool, quiet: bool,
              as_json: bool) -> None:
    """Re-run RUN_ID from its registry record alone (spec, seed, data) and say whether it reproduced."""
    from tunelab.reproduce_text import print_differences, print_verdict
    from tunelab.runner.reproduce import reproduce_run

    done = reproduce_run(app.registry(), run_id, home=app.home, allow_data_change=allow_data_change, verify=verify,
                         show_progress=not quiet and not as_json, on_plan=None if as_json else print_differences)
    if as_json:
        print_json(done.to_json())
    else:
        click.echo(f"run {done.new_run_id}: {done.result.status} (reproduces run {run_id})")
        if done.verdict is not None:
            print_verdict(done.verdict)
    if not done.ok:
        raise SystemExit(1)


@cli.group()
def db() -> None:
    """Registry schema: show or apply Alembic migrations."""


@db.command("current")
@click.pass_obj
def db_current(app: AppContext) -> None:
    """Print the registry's schema revision and the newest one."""
    from tunelab.registry.db import current_revision, head_revision, make_engine

    engine = make_engine(app.url)
    click.echo(f"current: {current_revision(engine) or '(empty)'}  head: {head_revision(engine)}")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(app: AppContext, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from tunelab.registry.db import current_revision, make_engine, upgrade

    app.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(app.url)
    upgrade(engine, revision)
    click.echo(f"registry at revision {current_revision(engine)}")


def main() -> None:
    cli(prog_name="tunelab")


from tunelab.eval_commands import register  # noqa: E402  (eval, doctor: their own module)

register(cli)


@cli.command()
@click.argument("run_id", type=int)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write (must not exist, or be empty).")
@click.option("--merge", is_flag=True, help="Merge an adapter into its base model: a plain transformers model.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_obj
def export(app: AppContext, run_id: int, output: Path, merge: bool, as_json: bool) -> None:
    """Export RUN_ID's final model to a directory, with its tokenizer and a model card (README.md).

    Full-weight runs are whole models; adapter runs export the adapter (loads with peft over its base),
    or with --merge the base with the adapter merged in.
    """
    from tunelab.runner.export import export_run

    result = export_run(app.registry(), run_id, output, merge=merge)
    if as_json:
        print_json(asdict(result) | {"output": str(result.output)})
        return
    over = f" over {result.base}" if result.form == "adapter" else ""
    click.echo(f"run {run_id}: wrote {result.form} model ({result.method}{over}) to {result.output}")
