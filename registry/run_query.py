"""Filtered, sorted run listings for `tunelab ls --where EXPR --sort FIELD`, in one SELECT.

The expression compiles through SQLAlchemy (registry/where.py); the rows are the same summary columns as a plain
listing (registry/run_records.py), read into the same RunSummary.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import select, text
from tunelab.registry.models import Experiment, Run
from tunelab.registry.reader import Rows
from tunelab.registry.run_records import RunSummary, summary_columns, summary_of
from tunelab.registry.where import order_by, parse, parse_sort, where_clause


def query_runs(
    source: Rows,
    *,
    where: str | None = None,
    sort: str | None = None,
    descending: bool = True,
    limit: int | None = None,
    status: str | None = None,
) -> list[RunSummary]:
    """Runs matching `where`, ordered by `sort` (default: newest first); raises QueryError on a bad expression."""
    columns = text(summary_columns(source.dialect))
    query = select(columns).select_from(Run).join(Experiment, Experiment.id == Run.experiment_id)
    tasks = cache(lambda: scored_tasks(source))
    if where is not None:
        query = query.where(where_clause(parse(where, tasks)))
    if status:
        query = query.where(Run.status == status)
    if sort:
        query = query.order_by(*order_by(parse_sort(sort, tasks), descending=descending), Run.id.desc())
    else:
        query = query.order_by(Run.id.desc() if descending else Run.id.asc())
    if limit is not None:
        query = query.limit(limit)
    with source.engine.connect() as connection:
        return [summary_of(row) for row in connection.execute(query).all()]


def scored_tasks(source: Rows) -> set[str]:
    """The tasks with a headline score in the registry: what a bare --where or --sort field may name."""
    return {task for (task,) in source.rows("SELECT DISTINCT task FROM evalresult WHERE task_group IS NULL")}
