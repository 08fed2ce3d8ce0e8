"""Store experiments and queue their runs, all in one transaction per submit call."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel import select

from registry.db import Registry
from registry.models import Experiment, Run, RunStatus


@dataclass(frozen=True)
class NewExperiment:
    """What the spec language hands the registry: a validated, resolved spec and its provenance."""

    name: str
    description: str
    tags: list[str]
    spec_path: str
    spec_text: str
    resolved_json: str
    spec_hash: str
    workdir: str
    priority: int = 0


@dataclass(frozen=True)
class Submitted:
    experiment_id: int
    run_id: int
    duplicate_of: int | None = None


def submit(registry: Registry, experiments: list[NewExperiment]) -> list[Submitted]:
    """Insert every experiment with one queued run; all or nothing."""
    submitted: list[Submitted] = []
    with registry.session() as session:
        for new in experiments:
            earlier = session.exec(
                select(Experiment.id).where(Experiment.spec_hash == new.spec_hash).order_by(Experiment.id)
            ).first()
            experiment = Experiment(
                name=new.name,
                description=new.description,
                tags_json=json.dumps(new.tags),
                spec_path=new.spec_path,
                spec_text=new.spec_text,
                resolved_json=new.resolved_json,
                spec_hash=new.spec_hash,
                workdir=new.workdir,
            )
            session.add(experiment)
            session.flush()
            run = Run(experiment_id=experiment.id, status=RunStatus.queued.value, priority=new.priority)
            session.add(run)
            session.flush()
            submitted.append(Submitted(experiment.id, run.id, duplicate_of=earlier))
        session.commit()
    return submitted


def from_loaded(loaded, *, workdir: str, priority: int = 0) -> NewExperiment:
    """Turn a validated `experiments.loader.LoadedSpec` into what `submit` stores."""
    from experiments.canonical import canonical_json, resolved_dict, spec_hash

    spec = loaded.spec
    return NewExperiment(
        name=spec.experiment.name,
        description=spec.experiment.description,
        tags=list(spec.experiment.tags),
        spec_path=str(loaded.path),
        spec_text=loaded.text,
        resolved_json=canonical_json(resolved_dict(spec)),
        spec_hash=spec_hash(spec),
        workdir=workdir,
        priority=priority,
    )
