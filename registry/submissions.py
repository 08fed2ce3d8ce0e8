"""Store experiments and queue their runs, all in one transaction per submit call."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel import select
from tunelab.registry.db import Registry
from tunelab.registry.models import Experiment, Run, RunStatus, Sweep


@dataclass(frozen=True)
class NewSweep:
    name: str
    spec_path: str
    definition_json: str


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
    gpus: int = 0  # [resources] gpus: only a worker with this many claims the run
    nodes: int = 1  # [resources] nodes: only a worker whose allocation spans this many claims the run
    sweep: NewSweep | None = None
    sweep_point_json: str | None = None


@dataclass(frozen=True)
class Submitted:
    experiment_id: int
    run_id: int | None  # None: a duplicate that was not queued
    duplicate_of: int | None = None
    sweep_id: int | None = None
    name: str = ""  # the experiment's

    def to_json(self) -> dict[str, int | None]:
        return {"experiment_id": self.experiment_id, "run_id": self.run_id, "duplicate_of": self.duplicate_of,
                "sweep_id": self.sweep_id}

    def describe(self) -> str:
        """One line on what became of the experiment: queued, queued again (force), or already there."""
        if self.duplicate_of is not None and self.run_id is None:
            return (f"exists  experiment {self.duplicate_of}  {self.name}: identical spec already submitted "
                    "(see `tunelab ls`; --force queues a new run)")
        again = " (again, --force)" if self.duplicate_of is not None else ""
        return f"queued run {self.run_id}  experiment {self.experiment_id}  {self.name}{again}"


def submit(registry: Registry, experiments: list[NewExperiment], *, force: bool = False) -> list[Submitted]:
    """Insert every experiment with one queued run; all or nothing.

    A spec whose hash is already in the registry is not stored again: it reports the earlier
    experiment, and with `force` queues a new run of that experiment.
    """
    submitted: list[Submitted] = []
    sweeps: dict[NewSweep, int] = {}
    with registry.session() as session:
        for new in experiments:
            earlier = session.exec(
                select(Experiment.id).where(Experiment.spec_hash == new.spec_hash).order_by(Experiment.id)
            ).first()
            if earlier is not None:
                run_id = None
                if force:
                    run = Run(experiment_id=earlier, status=RunStatus.queued.value, priority=new.priority,
                              gpus=new.gpus, nodes=new.nodes)
                    session.add(run)
                    session.flush()
                    run_id = run.id
                submitted.append(Submitted(earlier, run_id, duplicate_of=earlier, name=new.name))
                continue
            sweep_id = None
            if new.sweep is not None:
                if new.sweep not in sweeps:
                    sweep = Sweep(name=new.sweep.name, spec_path=new.sweep.spec_path,
                                  definition_json=new.sweep.definition_json)
                    session.add(sweep)
                    session.flush()
                    sweeps[new.sweep] = sweep.id
                sweep_id = sweeps[new.sweep]
            experiment = Experiment(
                name=new.name,
                description=new.description,
                tags_json=json.dumps(new.tags),
                spec_path=new.spec_path,
                spec_text=new.spec_text,
                resolved_json=new.resolved_json,
                spec_hash=new.spec_hash,
                workdir=new.workdir,
                sweep_id=sweep_id,
                sweep_point_json=new.sweep_point_json,
            )
            session.add(experiment)
            session.flush()
            run = Run(experiment_id=experiment.id, status=RunStatus.queued.value, priority=new.priority,
                      gpus=new.gpus, nodes=new.nodes)
            session.add(run)
            session.flush()
            submitted.append(Submitted(experiment.id, run.id, sweep_id=sweep_id, name=new.name))
        session.commit()
    return submitted


def from_loaded(loaded, *, workdir: str, priority: int | None = None) -> NewExperiment:
    """Turn a validated `experiments.loader.LoadedSpec` into what `submit` stores."""
    from tunelab.experiments.canonical import canonical_json, resolved_dict, spec_hash

    spec = loaded.spec
    sweep = None
    if loaded.sweep is not None:
        base_name = spec.experiment.name.split("/", 1)[0]
        sweep = NewSweep(name=base_name, spec_path=str(loaded.path), definition_json=canonical_json(loaded.sweep))
    return NewExperiment(
        name=spec.experiment.name,
        description=spec.experiment.description,
        tags=list(spec.experiment.tags),
        spec_path=str(loaded.path),
        spec_text=loaded.text,
        resolved_json=canonical_json(resolved_dict(spec)),
        spec_hash=spec_hash(spec),
        workdir=workdir,
        # The command line's --priority overrides the spec's [resources] priority.
        priority=spec.resources.priority if priority is None else priority,
        gpus=spec.resources.gpus,
        nodes=spec.resources.nodes,
        sweep=sweep,
        sweep_point_json=canonical_json(loaded.sweep_point) if loaded.sweep_point is not None else None,
    )
