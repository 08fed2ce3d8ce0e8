"""`tunelab compare` in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tunelab.output import fmt_float
from tunelab.reports.compare import Comparison, ManyComparison
from tunelab.terminal import printable


def print_comparison(c: Comparison) -> None:
    console = Console()
    console.print(Text(printable(f"A = #{c.a_id} {c.a_name}    B = #{c.b_id} {c.b_name}"), style="bold"))
    if c.spec_differences:
        table = Table(title="spec keys that differ", title_justify="left")
        for column in ("key", "A", "B"):
            table.add_column(column)
        for d in c.spec_differences:
            table.add_row(Text(printable(d.key)), Text(printable(d.a)), Text(printable(d.b)))
        console.print(table)
    else:
        console.print("resolved specs identical (apart from the name)")
    table = Table(title="scores (delta = B - A; p = McNemar exact)", title_justify="left")
    for column in ("task", "metric", "A", "B", "delta", "p", "flips"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for s in c.scores:
        table.add_row(Text(printable(s.task)), Text(printable(s.metric)), fmt_float(s.a), fmt_float(s.b),
                      s.delta_text or "-",
                      "-" if s.p_value is None else f"{s.p_value:.3g}", str(len(s.flips)))
    console.print(table)


def print_many_comparison(c: ManyComparison) -> None:
    console = Console()
    console.print(Text(printable("    ".join(c.labels)), style="bold"))
    if c.spec_differences:
        table = Table(title="spec keys that differ", title_justify="left")
        for column in ("key", *c.labels):
            table.add_column(Text(printable(column)))
        for d in c.spec_differences:
            table.add_row(Text(printable(d.key)), *(Text(printable(value)) for value in d.values))
        console.print(table)
    else:
        console.print("resolved specs identical (apart from the names)")
    table = Table(title="scores (each against the first: delta, p = McNemar exact)", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    for label in c.labels:
        table.add_column(Text(printable(label)), justify="right")
    for s in c.scores:
        cells = [fmt_float(s.values[0])]
        for value, versus in zip(s.values[1:], s.versus_first, strict=True):
            cell = fmt_float(value)
            if versus is not None:
                cell += f" {versus.delta_text}"
                cell += "" if versus.p_value is None else f" p={versus.p_value:.3g}"
            cells.append(cell)
        table.add_row(Text(printable(s.task)), Text(printable(s.metric)), *cells)
    console.print(table)
