"""Store experiments and queue their runs, all in one transaction per submit call.

An experiment is stored once per spec hash (experiments/canonical.py experiment_hash), which a unique index
guarantees: of identical specs submitted at the same moment one is stored, and the others find it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select
from tunelab.experiments.canonical import canonical_json, experiment_hash, resolved_dict
from tunelab.experiments.plan import PlannedExperiment
from tunelab.registry.db import Registry
from tunelab.registry.models import Experiment, Run, RunStatus, Sweep
from tunelab.registry.reader import Rows

# Times a submit starts over after losing a race for a spec hash to a concurrent submit: each retry sees the
# winner's experiment, so one is always enough unless other experiments of the same call race too.
_HASH_RACE_RETRIES = 10
# PostgreSQL: submits take this transaction-level advisory lock, so they run one after the other (as SQLite's
# single writer makes them): two submits of the same specs in different orders would otherwise wait on each
# other's uncommitted experiments, a deadlock the server ends by failing one of them.
PG_SUBMIT_LOCK_KEY = 727275
# SQLSTATEs of a transaction PostgreSQL aborted to end a deadlock or a serialisation conflict: safe to start over.
_RETRYABLE_STATES = frozenset({"40P01", "40001"})
# Hashes looked up per query (SQLite allows some thousands of bound parameters per statement).
_LOOKUP_CHUNK = 500


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
class Existing:
    """An experiment already in the registry, and its latest run (None if it has none)."""

    experiment_id: int
    run_id: int | None = None
    status: str | None = None

    def describe(self) -> str:
        """"experiment 3 (run 5 failed: `tunelab retry 5` queues it again)", and the like for other states."""
        if self.run_id is None:
            return f"experiment {self.experiment_id}"
        if self.status in (RunStatus.failed.value, RunStatus.cancelled.value):
            advice = f"`tunelab retry {self.run_id}` queues it again, resuming from its last checkpoint"
        else:
            advice = f"`tunelab show {self.run_id}`"
        return f"experiment {self.experiment_id} (run {self.run_id} {self.status}: {advice})"


@dataclass(frozen=True)
class Submitted:
    experiment_id: int
    run_id: int | None  # None: a duplicate that was not queued
    duplicate_of: int | None = None
    sweep_id: int | None = None
    name: str = ""  # the experiment's
    existing: Existing | None = None  # for a duplicate: the earlier experiment and its latest run

    def to_json(self) -> dict[str, int | None]:
        return {"experiment_id": self.experiment_id, "run_id": self.run_id, "duplicate_of": self.duplicate_of,
                "sweep_id": self.sweep_id}

    def describe(self) -> str:
        """One line on what became of the experiment: queued, queued again (force), or already there."""
        if self.duplicate_of is not None and self.run_id is None:
            earlier = self.existing or Existing(self.duplicate_of)
            return (f"exists  {self.name}: identical spec already submitted as {earlier.describe()}; "
                    "--force queues a new run")
        again = " (again, --force)" if self.duplicate_of is not None else ""
        return f"queued run {self.run_id}  experiment {self.experiment_id}  {self.name}{again}"


def submit(registry: Registry, experiments: list[NewExperiment], *, force: bool = False) -> list[Submitted]:
    """Insert every experiment with one queued run; all or nothing.

    A spec whose hash is already in the registry is not stored again: it reports the earlier
    experiment, and with `force` queues a new run of that experiment. A concurrent submit that stores the same
    hash first makes this one start over, and then find it.
    """
    for attempt in range(_HASH_RACE_RETRIES + 1):
        try:
            return _submit_once(registry, experiments, force=force)
        except DBAPIError as exc:
            lost_race = isinstance(exc, IntegrityError) and "spec_hash" in str(exc.orig)
            if not (lost_race or getattr(exc.orig, "sqlstate", None) in _RETRYABLE_STATES) \
                    or attempt == _HASH_RACE_RETRIES:
                raise
    raise AssertionError("unreachable")


def _submit_once(registry: Registry, experiments: list[NewExperiment], *, force: bool) -> list[Submitted]:
    submitted: list[Submitted] = []
    sweeps: dict[NewSweep, int] = {}
    with registry.session() as session:
        if registry.dialect == "postgresql":
            session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=PG_SUBMIT_LOCK_KEY))
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
                latest = session.exec(select(Run.id, Run.status).where(Run.experiment_id == earlier)
                                      .order_by(Run.id.desc())).first()
                existing = Existing(earlier, *latest) if latest is not None else Existing(earlier)
                submitted.append(Submitted(earlier, run_id, duplicate_of=earlier, name=new.name, existing=existing))
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


def existing_experiments(source: Rows, hashes: list[str]) -> dict[str, Existing]:
    """The experiments already stored under any of `hashes`, by hash, each with its latest run."""
    found: dict[str, Existing] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start:start + _LOOKUP_CHUNK]
        names = ", ".join(f":h{i}" for i in range(len(chunk)))
        rows = source.rows(
            "SELECT experiment.spec_hash, experiment.id, run.id, run.status FROM experiment LEFT JOIN run ON run.id = "
            "(SELECT max(latest.id) FROM run AS latest WHERE latest.experiment_id = experiment.id) "
            f"WHERE experiment.spec_hash IN ({names})", {f"h{i}": h for i, h in enumerate(chunk)})
        found |= {row[0]: Existing(*row[1:]) for row in rows}
    return found


def with_existing(planned: list[PlannedExperiment], source: Rows | None) -> list[PlannedExperiment]:
    """`submit --dry-run`'s plan, each experiment marked with the one already stored under its hash, if any."""
    if source is None:
        return planned
    found = existing_experiments(source, [p.spec_hash for p in planned])
    return [replace(p, existing=found[p.spec_hash].describe(), existing_id=found[p.spec_hash].experiment_id)
            if p.spec_hash in found else p for p in planned]


def from_loaded(loaded, *, workdir: str, priority: int | None = None) -> NewExperiment:
    """Turn a validated `experiments.loader.LoadedSpec` into what `submit` stores."""
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
        spec_hash=experiment_hash(spec, Path(workdir)),
        workdir=workdir,
        # The command line's --priority overrides the spec's [resources] priority.
        priority=spec.resources.priority if priority is None else priority,
        gpus=spec.resources.gpus,
        nodes=spec.resources.nodes,
        sweep=sweep,
        sweep_point_json=canonical_json(loaded.sweep_point) if loaded.sweep_point is not None else None,
    )
