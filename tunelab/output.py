"""Printing helpers for the CLI: JSON for scripts, numbers and times for people."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from tunelab.registry.run_records import to_jsonable


def print_json(data: Any) -> None:
    click.echo(json.dumps(to_jsonable(data), indent=2))


def fmt_float(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_time(value: datetime | None) -> str:
    """"2026-01-07 22:40" (isoformat: twice as fast as strftime, for listings of thousands of runs)."""
    return "-" if value is None else value.isoformat(" ", "minutes")[:16]
