"""`tunelab ls` output: a rich table for people, JSON or CSV for scripts."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict

from tunelab.output import fmt_float, fmt_time, print_json
from tunelab.registry.queries import RunSummary, ScoreRow
from tunelab.reports.scores import BENCHMARKS, headline_scores


def print_runs(runs: list[RunSummary], scores: dict[int, list[ScoreRow]], *, fmt: str, title: str) -> None:
    headline = {r.run_id: headline_scores(scores.get(r.run_id, []), "finetuned") for r in runs}
    if fmt == "json":
        print_json([dict(asdict(r), scores=headline[r.run_id]) for r in runs])
    elif fmt == "csv":
        tasks = sorted({task for values in headline.values() for task in values} - {"average"},
                       key=lambda t: (t not in BENCHMARKS, t))
        writer = csv.writer(sys.stdout)
        writer.writerow(["run_id", "name", "status", "method", "base_model", "created_at", "final_loss",
                         *tasks, "average"])
        for r in runs:
            values = headline[r.run_id]
            writer.writerow([r.run_id, r.name, r.status, r.method, r.base_model, r.created_at.isoformat(),
                             r.final_loss, *(values.get(t) for t in tasks), values.get("average")])
    else:
        _table(runs, headline, title)


def _table(runs: list[RunSummary], headline: dict[int, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for column in ("run", "experiment", "status", "method", "created", "loss", "average"):
        table.add_column(column, justify="right" if column in ("run", "loss", "average") else "left")
    for r in runs:
        table.add_row(str(r.run_id), Text(r.name), r.status, r.method, fmt_time(r.created_at),
                      fmt_float(r.final_loss), fmt_float(headline[r.run_id].get("average")))
    Console().print(table)
