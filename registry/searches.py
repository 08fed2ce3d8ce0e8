"""Write side of searches: store a [search], add a trial (its experiment and run, claimed by the worker that asked
for it), keep the pruner's notes and the parameter importance, finish a search exactly once.

Which parameters a trial gets is the runner's (runner/search.py, Optuna); what its run did is the run's own
(registry/run_state.py, registry/recording.py). Reads are registry/search_records.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import update
from tunelab.experiments.canonical import canonical_json
from tunelab.registry.db import Registry
from tunelab.registry.models import Experiment, Search, SearchTrial, utcnow
from tunelab.registry.run_state import claimed_run
from tunelab.registry.run_status import SearchStatus
from tunelab.registry.submissions import NewExperiment


@dataclass(frozen=True)
class NewSearch:
    """What the spec language hands the registry for a [search]: the spec trials start from, and the search."""

    name: str
    spec_path: str
    spec_text: str
    workdir: str
    base_json: str
    definition_json: str
    priority: int = 0
    gpus: int = 0


def create_search(registry: Registry, new: NewSearch) -> int:
    """Store a search; workers draw its trials as they ask for work. Its id."""
    search = Search(name=new.name, spec_path=new.spec_path, spec_text=new.spec_text, workdir=new.workdir,
                    base_json=new.base_json, definition_json=new.definition_json, priority=new.priority,
                    gpus=new.gpus)
    with registry.session() as session:
        session.add(search)
        session.commit()
        return search.id


def base_spec(registry: Registry, search_id: int) -> tuple[dict, str]:
    """The raw spec every trial of the search starts from, and the text of the file that declared the search."""
    with registry.session() as session:
        search = session.get(Search, search_id)
        return json.loads(search.base_json), search.spec_text


def open_search_ids(registry: Registry) -> list[int]:
    """Searches that may still want trials, highest priority first, then oldest."""
    with registry.session() as session:
        rows = session.exec(Search.__table__.select().with_only_columns(Search.id)
                            .where(Search.status == SearchStatus.running.value)
                            .order_by(Search.priority.desc(), Search.id)).all()
    return [row[0] for row in rows]


def add_trial(registry: Registry, search_id: int, *, number: int, params: dict, experiment: NewExperiment,
              worker: str) -> int | None:
    """Add trial `number` (the search's `asked` count when the caller read it) with its experiment and a run that
    is `worker`'s from the start; the run's id, or None when another worker added trial `number` first or the
    search finished meanwhile (read again and retry).

    The count is raised by a conditional UPDATE in the same transaction as the inserts: a trial number is
    taken by exactly one trial, and a crash leaves either the whole trial or nothing.
    """
    with registry.session() as session:
        taken = session.exec(update(Search)
                             .where(Search.id == search_id, Search.asked == number,
                                    Search.status == SearchStatus.running.value)
                             .values(asked=number + 1))
        if taken.rowcount != 1:
            session.rollback()
            return None
        row = Experiment(name=experiment.name, description=experiment.description,
                         tags_json=json.dumps(experiment.tags), spec_path=experiment.spec_path,
                         spec_text=experiment.spec_text, resolved_json=experiment.resolved_json,
                         spec_hash=experiment.spec_hash, workdir=experiment.workdir,
                         sweep_point_json=json.dumps(params, sort_keys=True))
        session.add(row)
        session.flush()
        session.add(SearchTrial(search_id=search_id, number=number, experiment_id=row.id,
                                params_json=json.dumps(params, sort_keys=True)))
        run = claimed_run(row.id, worker, gpus=experiment.gpus, nodes=experiment.nodes, priority=experiment.priority)
        session.add(run)
        session.commit()
        return run.id


def record_pruner_state(registry: Registry, search_id: int, number: int, state: dict) -> None:
    """What the pruner noted of a trial (successive halving's rungs); written by the trial's worker only."""
    with registry.session() as session:
        session.exec(update(SearchTrial).where(SearchTrial.search_id == search_id, SearchTrial.number == number)
                     .values(pruner_json=json.dumps(state, sort_keys=True)))
        session.commit()


def record_importance(registry: Registry, search_id: int, importance: dict[str, float] | None) -> None:
    with registry.session() as session:
        session.exec(update(Search).where(Search.id == search_id)
                     .values(importance_json=None if importance is None else json.dumps(importance)))
        session.commit()


def finish_search(registry: Registry, search_id: int, reason: str) -> bool:
    """Mark a running search finished (no new trial); True for the one caller that did it (it notifies)."""
    with registry.session() as session:
        result = session.exec(update(Search)
                              .where(Search.id == search_id, Search.status == SearchStatus.running.value)
                              .values(status=SearchStatus.finished.value, finished_at=utcnow(), stop_reason=reason))
        session.commit()
    return result.rowcount == 1


def search_from_loaded(loaded, *, workdir: str, priority: int | None = None) -> NewSearch:
    """Turn a validated `experiments.loader.LoadedSpec` with a [search] into what `create_search` stores."""
    spec = loaded.spec
    return NewSearch(name=spec.experiment.name, spec_path=str(loaded.path), spec_text=loaded.text, workdir=workdir,
                     base_json=canonical_json(loaded.raw),
                     # Not canonical: the parameters keep their declaration order, which the samplers draw in.
                     definition_json=json.dumps(loaded.search.model_dump(mode="json")),
                     priority=spec.resources.priority if priority is None else priority, gpus=spec.resources.gpus)
