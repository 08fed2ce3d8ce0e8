"""The tunelab command line: the root group, its global options, and where each command lives.

Commands live in tunelab/commands/, one module per concern, each importing the rooms it calls at its top.
The group imports a command's module only when that command runs (tunelab/lazy_group.py), so `tunelab --help`
imports no room and `tunelab ls` only the read path.
"""

from __future__ import annotations

from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.experiments.errors import TunelabError
from tunelab.lazy_group import LazyCommand, LazyGroup
from tunelab.registry.errors import database_failure
from tunelab.terminal import printable

# name -> where the command is, and the first sentence of its help (tests/cli/test_lazy_group.py keeps them equal).
COMMANDS = {
    "submit": LazyCommand("tunelab.commands.queue:submit",
                          "Validate SPEC files, store each experiment and queue a run of it."),
    "cancel": LazyCommand("tunelab.commands.queue:cancel",
                          "Cancel a queued run, or stop a running one at its next training step."),
    "retry": LazyCommand("tunelab.commands.queue:retry",
                         "Queue a failed or cancelled run again (it resumes from its last complete checkpoint)."),
    "worker": LazyCommand("tunelab.commands.work:worker",
                          "Claim queued runs and execute them: train, checkpoint, evaluate."),
    "run": LazyCommand("tunelab.commands.work:run", "Submit SPEC and execute it here in the foreground."),
    "ls": LazyCommand("tunelab.commands.ls:ls_command",
                      "List runs (newest first) with their headline scores; filter and sort with a small query "
                      "language."),
    "show": LazyCommand("tunelab.commands.show:show",
                        "Show one run: spec, status, checkpoints, metrics and eval results."),
    "report": LazyCommand("tunelab.commands.reports:report",
                          "Render a static HTML leaderboard of every evaluated model, with a page per run."),
    "compare": LazyCommand("tunelab.commands.reports:compare",
                           "Compare runs: differing spec keys, scores against the first run with significance, curves, "
                           "samples."),
    "reproduce": LazyCommand("tunelab.commands.reproduce:reproduce",
                             "Re-run RUN_ID from its registry record alone (spec, seed, data) and say whether it "
                             "reproduced."),
    "eval": LazyCommand("tunelab.commands.evaluate:eval_command",
                        "Evaluate TARGET and record its scores: run:ID (or ID) for a run's final weights, a local "
                        "model or adapter directory, or a hub model id."),
    "doctor": LazyCommand("tunelab.commands.evaluate:doctor",
                          "Check every queued run's files (base model, tokenizer, data, benchmark data, custom tasks) "
                          "before any worker starts; exit 1 if something is missing."),
    "export": LazyCommand("tunelab.commands.export:export",
                          "Export RUN_ID's final model to a directory, with its tokenizer and a model card "
                          "(README.md)."),
    "schema": LazyCommand("tunelab.commands.schema:schema",
                          "Print the JSON Schema of the spec language (for editor completion and checks)."),
    "db": LazyCommand("tunelab.commands.db:db", "Registry schema: show or apply Alembic migrations."),
    "search": LazyCommand("tunelab.commands.search:search",
                          "Hyperparameter searches ([search] in a spec): their progress, best trial and trials."),
    "launch": LazyCommand("tunelab.commands.launch:launch",
                          "Start workers through a cluster's scheduler: tunelab launch slurm submits them as Slurm "
                          "jobs."),
}


class TunelabGroup(LazyGroup):
    """Turns the rooms' typed errors, and failures of the registry's database itself (damaged, read-only, full),
    into one clear line and exit status 1 (no traceback); every message is printed with its control characters
    escaped (tunelab/terminal.py), since it may quote a name, a path or a value the user typed."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:  # the root's own options: `tunelab --hmoe DIR`
            exc.message = printable(exc.message, keep_newlines=True)
            raise

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TunelabError as exc:
            raise click.ClickException(printable(exc, keep_newlines=True)) from None
        except click.ClickException as exc:
            exc.message = printable(exc.message, keep_newlines=True)
            raise
        except Exception as exc:
            line = database_failure(exc, getattr(ctx.obj, "url", "") or "")
            if line is None:
                raise
            raise click.ClickException(printable(line)) from None


@click.group(cls=TunelabGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="TUNELAB_HOME",
              default=Path(".tunelab"), show_default=True,
              help="Directory holding registry.db and runs/ (env TUNELAB_HOME).")
@click.option("--db", "db_url", envvar="TUNELAB_DB", default=None,
              help="Registry URL, e.g. postgresql+psycopg://user@host/db (env TUNELAB_DB). Default: SQLite in HOME.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), envvar="TUNELAB_ARTIFACTS",
              default=None, help="Where runs' files (checkpoints, weights, logs) are on this machine; the registry "
              "stores their paths relative to it (env TUNELAB_ARTIFACTS). Default: HOME.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), envvar="TUNELAB_PROJECT",
              default=None, help="Where this machine sees the project specs are submitted from: their relative "
              "paths resolve against it on every machine (env TUNELAB_PROJECT). Default: none (absolute paths).")
@click.version_option(package_name="tunelab")
@click.pass_context
def cli(ctx: click.Context, home: Path, db_url: str | None, artifacts: Path | None, project: Path | None) -> None:
    """tunelab: declare fine-tuning experiments in TOML, queue and run them, evaluate and compare.

    \b
    Typical session:
      tunelab submit examples/specs/tiny-lora.toml   # validate, store, queue
      tunelab worker --until-empty                   # train, checkpoint, evaluate
      tunelab ls                                     # what ran, how it did
      tunelab report -o leaderboard.html             # static HTML leaderboard
    """
    ctx.obj = AppContext(home=home, db_url=db_url, artifacts=artifacts, project=project)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    cli(prog_name="tunelab")
