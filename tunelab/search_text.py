"""Human-readable `tunelab search ls` and `search show`: plain aligned text, as `tunelab ls` prints runs."""

from __future__ import annotations

import click

from tunelab.experiments.sweep import format_value
from tunelab.output import fmt_float, fmt_time
from tunelab.registry.search_records import SearchRecord


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header), "  ".join("-" * w for w in widths), *(line.format(*r) for r in rows)]


def progress(record: SearchRecord) -> str:
    """"7/20 done (5 succeeded, 2 pruned), 2 running, 1 failed"."""
    target = record.definition.get("trials") or "?"
    parts = [f"{record.done}/{target} done ({record.count('succeeded')} succeeded, {record.count('pruned')} pruned)"]
    for status in ("running", "queued", "failed", "cancelled"):
        if record.count(status):
            parts.append(f"{record.count(status)} {status}")
    return ", ".join(parts)


def _best(record: SearchRecord) -> str:
    best = record.best
    if best is None:
        return "-"
    return f"trial {best.number} (run {best.run_id}): {record.objective} {fmt_float(best.objective)}"


def print_searches(searches: list[SearchRecord]) -> None:
    rows = [(str(s.search_id), s.name, s.status, s.definition["sampler"], progress(s), _best(s)) for s in searches]
    click.echo("\n".join(_table(("search", "name", "status", "sampler", "progress", "best so far"), rows)))


def print_search(record: SearchRecord) -> None:
    d = record.definition
    direction = "maximize" if record.maximize else "minimize"
    click.echo(f"search {record.search_id}  {record.name}  status: {record.status}"
               + (f" ({record.stop_reason})" if record.stop_reason else ""))
    click.echo(f"  sampler {d['sampler']} (seed {d['seed']}), objective {record.objective} ({direction}), "
               f"pruner {d['pruner']}, created {fmt_time(record.created_at)}, spec {record.spec_path}")
    click.echo(f"  progress: {progress(record)}; {record.asked} trials drawn; "
               f"{record.gpu_hours:.2f} GPU-hours")
    click.echo(f"  best so far: {_best(record)}")
    best = record.best
    if best is not None:
        click.echo("  best settings: " + ", ".join(f"{k} = {format_value(v)}" for k, v in best.params.items()))
    if record.importance:
        click.echo("  parameter importance (fANOVA): "
                   + ", ".join(f"{k} {v:.2f}" for k, v in record.importance.items()))
    rows = [(str(t.number), str(t.run_id or "-"), t.status, fmt_float(t.objective),
             str(t.last_step) if t.last_step is not None else "-",
             ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items())) for t in record.trials]
    click.echo("\n".join(_table(("trial", "run", "status", record.objective, "last eval step", "params"), rows)))
