"""`tunelab eval` and `tunelab doctor`: evaluate any model into the registry; check queued runs' files."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import click

from tunelab.context import AppContext
from tunelab.experiments.schema import EvalSection, ExperimentSection
from tunelab.output import fmt_float, print_json
from tunelab.registry.scores import to_json as score_json
from tunelab.runner.doctor import check_queued_runs
from tunelab.runner.evaluate import evaluate_target, resolve_target, run_eval_settings
from tunelab.runner.evaluation.targets import settings_from_options
from tunelab.terminal import say


def _custom_option(values: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected NAME=PATH", param_hint="--custom")
        pairs.append((name, path))
    return pairs


def _batch_size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter(f"{value!r}: expected a positive integer or auto")


@click.command(name="eval")
@click.argument("target")
@click.option("--tasks", default=None, help="Comma-separated: arc_challenge, hellaswag, mmlu, truthfulqa_mc2 or "
              "mmlu_<subject>. Default: a run's own [eval] tasks, else the four leaderboard benchmarks.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Items per task (0 = all).")
@click.option("--benchmarks-dir", type=click.Path(file_okay=False), default=None,
              help="Local benchmark data (the layout of examples/benchmarks); default: the hub datasets.")
@click.option("--custom", "custom", multiple=True, metavar="NAME=PATH",
              help="A custom multiple-choice task (JSONL rows of question, choices, answer). Repeatable.")
@click.option("--batch-size", callback=_batch_size_option, default=None, metavar="N|auto",
              help='A positive integer, or "auto" (lm-eval takes the largest that fits). Default: the run\'s, else 8.')
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Default: a run's own dtype, else float32.")
@click.option("--seed", type=int, default=None, help="Default: a run's own seed, else the spec default.")
@click.option("--refresh", is_flag=True, help="Evaluate again even where the cache has the answer.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@click.pass_obj
def eval_command(app: AppContext, target: str, tasks: str | None, limit: int | None, benchmarks_dir: str | None,
                 custom: tuple[str, ...], batch_size: int | str | None, dtype: str | None, seed: int | None,
                 refresh: bool, quiet: bool, as_json: bool) -> None:
    """Evaluate TARGET and record its scores: run:ID (or ID) for a run's final weights, a local model or
    adapter directory, or a hub model id. Benchmarks evaluated before on the same weights come from the cache."""
    registry, cwd = app.registry(), Path.cwd()
    source = resolve_target(registry, target, roots=app.roots, cwd=cwd, dtype=dtype)
    defaults, run_seed = run_eval_settings(registry, source.run_id) if source.run_id else (None, None)
    settings = _settings(defaults, cwd, tasks, limit, benchmarks_dir, custom, batch_size)
    progress = None if quiet or as_json else (lambda message: say(message, err=True))
    done = evaluate_target(registry, source, settings, roots=app.roots, base_dir=source.base_dir or cwd,
                           seed=_seed(seed, run_seed), refresh=refresh, progress=progress)
    if as_json:
        print_json({"model_name": source.label, "run_id": source.run_id, "model_digest": done.digest,
                    "eval_key": done.eval_key, "dtype": source.dtype, "cached": list(done.outcome.cached),
                    "recorded": done.recorded, "scores": [score_json(s) for s in done.scores]})
        return
    _print_scores(done)


def _settings(defaults, cwd: Path, tasks, limit, benchmarks_dir, custom, batch_size):
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    return settings_from_options(defaults or EvalSection(), cwd=cwd, tasks=task_list, limit=limit,
                                 benchmarks_dir=benchmarks_dir, custom=_custom_option(custom), batch_size=batch_size)


def _seed(given: int | None, run_seed: int | None) -> int:
    """--seed, else the run's own seed, else the spec's default seed."""
    for seed in (given, run_seed):
        if seed is not None:
            return seed
    return ExperimentSection.model_fields["seed"].default


def _print_scores(done) -> None:
    cached = set(done.outcome.cached)
    for score in done.outcome.scores:
        if score.task_group is not None:
            continue  # MMLU subjects: in --json and `tunelab show`
        source = "cached" if score.task in cached else "evaluated"
        comparable = "" if score.comparable else "  (not leaderboard-comparable)"
        say(f"{score.task:<16} {score.metric:<8} {fmt_float(score.value)}  n={score.n_samples:<6} "
                   f"{source}{comparable}")
    state = "recorded" if done.recorded else "already recorded"
    say(f"{done.source.label}: {state} (weights {done.digest[:12]}, settings {done.eval_key})")


@click.command()
@click.option("--offline", is_flag=True, help="Nothing may be downloaded: hub models and datasets must be cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(app: AppContext, offline: bool, as_json: bool) -> None:
    """Check every queued run's files (base model, tokenizer, data, benchmark data, custom tasks) before any
    worker starts; exit 1 if something is missing."""
    checks = check_queued_runs(app.registry(), app.roots, offline=offline, environ=os.environ)
    if as_json:
        print_json([dict(asdict(c), ok=c.ok) for c in checks])
    else:
        for check in checks:
            say(f"run {check.run_id} {check.name}: " + ("ok" if check.ok else f"{len(check.problems)} missing"))
            for problem in check.problems:
                say(f"  - {problem.what}: {problem.where} ({problem.detail})")
            for note in check.notes:
                say(f"  note: {note}")
            for path in check.python_files:
                say(f"  imports Python (runs as the worker's user): {path}")
        bad = sum(not c.ok for c in checks)
        say(f"{len(checks)} queued run(s) checked, {bad} with missing files" if checks else "no queued runs")
    if any(not c.ok for c in checks):
        raise SystemExit(1)
