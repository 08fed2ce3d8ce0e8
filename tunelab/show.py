"""Human-readable `tunelab show`: a run's record as rich panels and tables."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from tunelab.experiments.benchmarks import display_order
from tunelab.output import fmt_float, fmt_time
from tunelab.registry.lineage import Lineage
from tunelab.registry.run_records import RunDetail
from tunelab.registry.scores import headline_rows
from tunelab.reports.data_stats import data_source_lines, data_totals
from tunelab.reports.scores import headline_scores
from tunelab.terminal import markup


def print_detail(detail: RunDetail) -> None:
    console = Console()
    s = detail.summary
    console.print(f"[bold]run {s.run_id}[/bold]  experiment {s.experiment_id}  [bold]{markup(s.name)}[/bold]  "
                  f"status: {markup(s.status)}")
    console.print(markup(f"  method {s.method}  base {s.base_model}  spec {detail.spec_path}  "
                         f"hash {detail.spec_hash[:12]}"))
    console.print(f"  created {fmt_time(s.created_at)}  started {fmt_time(s.started_at)}  "
                  f"finished {fmt_time(s.finished_at)}  output {markup(detail.output_dir or '-')}")
    if s.error:
        console.print(f"  [red]error:[/red] {markup(s.error)}")
    if detail.train_seconds is not None:
        console.print(f"  trained {detail.num_train_examples} examples in {detail.train_seconds:.1f}s, "
                      f"final loss {fmt_float(s.final_loss)}")
    if detail.progress:
        console.print("  progress: " + progress_line(detail.progress, running=s.status == "running"))
    if detail.data_stats:
        print_data_stats(console, detail.data_stats)
    if detail.checkpoints:
        console.print("  checkpoints: " + ", ".join(f"step {c['step']}" for c in detail.checkpoints))
    if detail.scores:
        table = Table(title="evaluation", title_justify="left")
        for column in ("task", "metric", "fine-tuned", "base", "delta", "p", "shots"):
            table.add_column(column)
        tuned, base = headline_rows(detail.scores, "finetuned"), headline_rows(detail.scores, "base")
        for task in display_order([*tuned, *base]):
            t, b = tuned.get(task), base.get(task)
            delta = t.value - b.value if t and b else None
            row = t or b
            table.add_row(markup(task), markup(row.metric), fmt_float(t.value if t else None),
                          fmt_float(b.value if b else None),
                          "-" if delta is None else f"{delta:+.4f}",
                          "-" if t is None or b is None or t.vs_base_p is None else f"{t.vs_base_p:.3g}",
                          str(row.num_fewshot))
        console.print(table)
        average = headline_scores(detail.scores, "finetuned").get("average")
        if average is not None:
            console.print(f"  average (leaderboard benchmarks): {average:.4f}")
    spec_text = json.dumps(detail.spec, sort_keys=True)
    console.print("  spec: " + markup(spec_text if len(spec_text) <= 400 else spec_text[:400] + "…"))
    if detail.lineage and detail.lineage["runs"]:
        console.print("  lineage: " + markup(Lineage.from_json(detail.lineage).describe(s.run_id)), soft_wrap=True)


def progress_line(progress: dict[str, Any], *, running: bool) -> str:
    """"step 40/100, loss 1.2345, 1,234 tokens/s, ETA 0:01:10" (the ETA only while the run is running)."""
    parts = [f"step {progress.get('step')}/{progress.get('total')}"]
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.4f}")
    if progress.get("tokens_per_second") is not None:
        parts.append(f"{progress['tokens_per_second']:,.0f} tokens/s")
    eta = progress.get("eta_seconds")
    if running and eta is not None and progress.get("step") != progress.get("total"):
        minutes, seconds = divmod(int(round(eta)), 60)
        parts.append(f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}")
    return ", ".join(parts)


def print_data_stats(console: Console, stats: dict[str, Any]) -> None:
    """What became of the training data's rows, one line per file: read, empty, duplicates, over-length, held out."""
    console.print("  training data:")
    for line in data_source_lines(stats):
        console.print(markup(f"    {line.text}"), soft_wrap=True)
    if totals := data_totals(stats):
        console.print(markup(f"    {totals}"), soft_wrap=True)
