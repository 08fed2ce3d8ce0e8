"""Filtered, sorted run listings for `tunelab ls --where EXPR --sort FIELD`, in one SELECT."""

from __future__ import annotations

from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.models import Experiment, Run
from tunelab.registry.queries import RunSummary, _summary
from tunelab.registry.query_help import FIELDS_HELP  # noqa: E402,F401  (re-exported for callers)
from tunelab.registry.where import order_by, parse, parse_sort, where_clause


def query_runs(
    registry: Registry,
    *,
    where: str | None = None,
    sort: str | None = None,
    descending: bool = True,
    limit: int | None = None,
    status: str | None = None,
) -> list[RunSummary]:
    """Runs matching `where`, ordered by `sort` (default: newest first); raises QueryError on a bad expression."""
    query = select(Run, Experiment).join(Experiment, Experiment.id == Run.experiment_id)
    if where is not None:
        query = query.where(where_clause(parse(where)))
    if status:
        query = query.where(Run.status == status)
    if sort:
        query = query.order_by(*order_by(parse_sort(sort), descending=descending), Run.id.desc())
    else:
        query = query.order_by(Run.id.desc() if descending else Run.id.asc())
    if limit is not None:
        query = query.limit(limit)
    with registry.session() as session:
        return [_summary(run, experiment) for run, experiment in session.exec(query).all()]
