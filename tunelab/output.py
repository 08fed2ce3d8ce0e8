"""Printing helpers for the CLI: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
from typing import Any

import click


def print_json(data: Any) -> None:
    from tunelab.registry.queries import to_jsonable

    click.echo(json.dumps(to_jsonable(data), indent=2))


def fmt_float(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_time(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")
