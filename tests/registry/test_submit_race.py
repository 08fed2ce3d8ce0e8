"""Identical specs submitted at the same moment become one experiment, on SQLite and on PostgreSQL: the unique
index on the spec hash lets one submit store it, and the others start over and report it as existing."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

from sqlmodel import func, select
from tunelab.registry.db import open_registry
from tunelab.registry.models import Experiment, Run
from tunelab.registry.submissions import NewExperiment, submit

from tests.helpers import write_spec

PROCESSES = 6
TRIALS = 4


def _spec(name: str) -> NewExperiment:
    return NewExperiment(name=name, description="", tags=[], spec_path="s.toml", spec_text="", resolved_json="{}",
                         spec_hash=f"hash-{name}", workdir="/tmp")


def _submit_at_once(url: str, names: list[str], start, out) -> None:
    registry = open_registry(url)
    start.wait(timeout=120)  # every process is connected before any submits, so the submits really overlap
    done = submit(registry, [_spec(name) for name in names])
    registry.engine.dispose()
    out.put([(s.experiment_id, s.run_id, s.duplicate_of) for s in done])


def test_identical_specs_submitted_at_once_are_one_experiment(registry):
    context = multiprocessing.get_context("spawn")
    for trial in range(TRIALS):
        # Each submits the same two experiments, in one call (all or nothing), in a different order.
        names = [f"t{trial}-a", f"t{trial}-b"]
        start, out = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_submit_at_once, args=(registry.url, names[::1 - 2 * (i % 2)], start, out))
                     for i in range(PROCESSES)]
        for process in processes:
            process.start()
        results = [out.get(timeout=180) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        with registry.session() as session:
            stored = session.exec(select(Experiment.name, func.count()).where(Experiment.name.in_(names))
                                  .group_by(Experiment.name)).all()
            runs = session.exec(select(func.count()).select_from(Run).join(Experiment)
                                .where(Experiment.name.in_(names))).one()
        assert sorted(stored) == [(name, 1) for name in names], f"trial {trial}: duplicates stored"
        assert runs == 2, f"trial {trial}: one queued run per experiment"
        queued = [entry for result in results for entry in result if entry[1] is not None]
        existing = [entry for result in results for entry in result if entry[1] is None]
        assert len(queued) == 2 and len(existing) == 2 * PROCESSES - 2
        assert {entry[2] for entry in existing} <= {entry[0] for entry in queued}


def test_parallel_submit_commands_report_the_one_experiment(registry, tmp_path):
    spec = write_spec(tmp_path / "s.toml", name="raced", model_dir=tmp_path)
    command = [sys.executable, "-m", "tunelab", "--home", str(tmp_path / "home"), "--db", registry.url, "submit",
               str(spec)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
                 for _ in range(PROCESSES)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * PROCESSES, outputs
    with registry.session() as session:
        (experiment_id,) = session.exec(select(Experiment.id).where(Experiment.name == "raced")).all()
    lines = [stdout.strip() for stdout, _ in outputs]
    assert sum(line.startswith("queued run ") for line in lines) == 1
    assert sum(line.startswith("exists  raced: identical spec already submitted as "
                               f"experiment {experiment_id} (run ") for line in lines) == PROCESSES - 1
    assert Path(spec).is_file()
