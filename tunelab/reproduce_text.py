"""`tunelab reproduce` in the terminal: the environment differences before, the verdict after."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tunelab.terminal import printable


def print_differences(plan) -> None:
    console = Console()
    if not plan.differences:
        console.print(f"environment: same as run {plan.run_id}")
        return
    table = Table(title=f"environment differences from run {plan.run_id}", title_justify="left")
    for column in ("what", "then", "now"):
        table.add_column(column)
    for d in plan.differences:
        table.add_row(Text(printable(d.what)), Text(printable(d.original)), Text(printable(d.now)))
    console.print(table)


def print_verdict(verdict) -> None:
    console = Console()
    table = Table(title=f"run {verdict.new_run_id} vs run {verdict.original_run_id}", title_justify="left")
    for column in ("check", "original", "reproduction", "difference", "ok"):
        table.add_column(column)
    for c in verdict.checks:
        table.add_row(Text(printable(c.what)), Text(printable(c.original)), Text(printable(c.reproduced)),
                      Text(printable(c.difference)),
                      Text("yes", style="green") if c.ok else Text("NO", style="red"))
    console.print(table)
    if verdict.bit_identical:
        console.print("[green]reproduced: bit-identical weights and loss curve[/green]")
    elif verdict.reproduced:
        console.print("[green]reproduced within the stated tolerances[/green]")
    else:
        console.print("[red]NOT reproduced[/red]")
