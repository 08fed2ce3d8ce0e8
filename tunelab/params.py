"""Command-line values with the bounds the registry has: ids fit its INTEGER columns, counts 64 signed bits."""

from __future__ import annotations

import click

from tunelab.registry.errors import MAX_COUNT, MAX_ID

# A run id: anything outside is refused by click in one line, never handed to a database driver.
RUN_ID = click.IntRange(min=1, max=MAX_ID)
# A count of runs (ls --limit).
COUNT = click.IntRange(min=0, max=MAX_COUNT)
