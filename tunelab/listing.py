"""`tunelab ls` output: an aligned table for people, JSON or CSV for scripts.

The table is plain aligned text rather than a rich Table: rich measures and renders every cell as an object,
about a millisecond a row, which is ten seconds for a registry of 10,000 runs; these columns are short text.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
from dataclasses import asdict

import click

from tunelab.experiments.benchmarks import display_order, leaderboard_average, with_average
from tunelab.output import fmt_float, fmt_time, print_json
from tunelab.registry.run_records import RunSummary
from tunelab.terminal import printable

# Column, and whether its values are numbers (right-aligned).
COLUMNS = (("run", True), ("experiment", False), ("status", False), ("method", False), ("created", False),
           ("loss", True), ("average", True))
# Shown when a listed run was taken by a worker running as a Slurm job: "JOB on NODE".
SLURM_COLUMN = ("slurm job", False)
NAME_COLUMN = 1
MIN_NAME_WIDTH = 12
# Rows of a table unless --limit or --all says otherwise: a page a person reads, however large the registry.
TABLE_ROWS = 50


def print_runs(runs: list[RunSummary], values: dict[int, dict[str, float]], *, fmt: str, title: str,
               more: bool = False) -> None:
    """`values`: each run's headline value per task (registry.run_records.headline_values); `more`: the table
    shows a page of a longer listing."""
    if fmt == "table":
        rows = [(str(r.run_id), printable(r.name), printable(r.status), printable(r.method), fmt_time(r.created_at),
                 fmt_float(r.final_loss), fmt_float(leaderboard_average(values.get(r.run_id, {})))) for r in runs]
        columns = COLUMNS
        if any(r.slurm_job for r in runs):
            columns = (*COLUMNS, SLURM_COLUMN)
            rows = [(*row, printable(r.placement or "-")) for row, r in zip(rows, runs, strict=True)]
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        footer = [f"(the first {len(runs)} runs; --limit N or --all for more)"] if more else []
        # Every cell is printable already: the table is echoed as it is (a listing may have tens of thousands).
        click.echo("\n".join([printable(title), *table_lines(rows, width=width, columns=columns), *footer]))
        return
    headline = {r.run_id: with_average(values.get(r.run_id, {})) for r in runs}
    if fmt == "json":
        print_json([dict(asdict(r), scores=headline[r.run_id]) for r in runs])
        return
    tasks = display_order({task for scores in headline.values() for task in scores} - {"average"})
    writer = csv.writer(sys.stdout)
    writer.writerow(["run_id", "name", "status", "method", "base_model", "created_at", "final_loss", "slurm_job",
                     "slurm_node", *map(printable, tasks), "average"])
    for r in runs:
        scores = headline[r.run_id]
        # Printable like the table: a CSV is read in a terminal too (a name's control characters come escaped).
        writer.writerow([r.run_id, printable(r.name), r.status, printable(r.method), printable(r.base_model),
                         r.created_at.isoformat(), r.final_loss, r.slurm_job, r.slurm_node,
                         *(scores.get(t) for t in tasks), scores.get("average")])


def table_lines(rows: list[tuple[str, ...]], *, width: int | None = None,
                columns: tuple[tuple[str, bool], ...] = COLUMNS) -> list[str]:
    """Header, rule and rows with aligned columns; with `width`, long experiment names are cut to fit it."""
    widths = [max(len(name), max((len(row[i]) for row in rows), default=0)) for i, (name, _) in enumerate(columns)]
    if width is not None:
        over = sum(widths) + 2 * (len(widths) - 1) - width
        cut = widths[NAME_COLUMN] = max(MIN_NAME_WIDTH, widths[NAME_COLUMN] - max(over, 0))
        rows = [row if len(row[NAME_COLUMN]) <= cut else
                (*row[:NAME_COLUMN], fit_name(row[NAME_COLUMN], cut), *row[NAME_COLUMN + 1:]) for row in rows]
    # One format string for every row: a listing may have tens of thousands.
    template = "  ".join(f"{{:{'>' if numeric else '<'}{w}}}" for w, (_, numeric) in zip(widths, columns, strict=True))
    header = template.format(*(name for name, _ in columns))
    return [header, "  ".join("-" * w for w in widths), *(template.format(*row) for row in rows)]


# Where a sweep point's name ("tiny-lora/method.r=8,train.learning_rate=0.0001", experiments/sweep.py) has its
# point: after the "/" that a dotted key and "=" follow; and each key of the point.
_POINT_START = re.compile(r"/(?=[A-Za-z_][\w-]*(?:\.[\w-]+)*=)")
_POINT_KEY = re.compile(r"(?:^|,)([A-Za-z_][\w-]*(?:\.[\w-]+)*)=")
# Characters of the experiment's name kept, where there is room, before shortening the point's keys.
_BASE_KEPT = 6


def _point_forms(point: str) -> list[str]:
    """A sweep point as written, with each key cut to its last part ("r=8,learning_rate=0.0001"), and as its
    values alone ("8,0.0001"): shorter and shorter, the values always whole."""
    keys = list(_POINT_KEY.finditer(point))
    pairs = [(key.group(1), point[key.end():following.start() if following else len(point)])
             for key, following in zip(keys, [*keys[1:], None], strict=True)]
    return [point, ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in pairs),
            ",".join(value for _, value in pairs)]


def fit_name(name: str, width: int) -> str:
    """`name` in at most `width` characters. A sweep point's name keeps what tells the points apart, its swept
    values: the experiment's name is cut first, then the point's keys; any other name loses its end."""
    if len(name) <= width:
        return name
    start = _POINT_START.search(name)
    if start is not None:
        base = name[:start.start()]
        # A recognisable start of the experiment's name beside the point as written, else shorter points.
        for least in (min(len(base), _BASE_KEPT), 1):
            for point in _point_forms(name[start.end():]):
                room = width - len(point) - 1  # for the base and the "/"
                if room >= len(base):
                    return f"{base}/{point}"
                if room >= least:
                    return f"{base[:room - 1]}…/{point}"
    return name[:width - 1] + "…"
