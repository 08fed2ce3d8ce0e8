"""Queue claims are atomic: concurrent workers never get the same run, on SQLite and on PostgreSQL; a worker
finishes only a run it still holds."""

from __future__ import annotations

import multiprocessing

from sqlmodel import select
from tunelab.registry.db import open_registry
from tunelab.registry.models import Run
from tunelab.registry.run_state import cancel, claim_next, requeue_stale, succeed
from tunelab.registry.submissions import NewExperiment, submit


def new_experiment(name: str = "e", priority: int = 0, spec_hash: str | None = None) -> NewExperiment:
    return NewExperiment(name=name, description="", tags=[], spec_path="x.toml", spec_text="", resolved_json="{}",
                         spec_hash=spec_hash or f"hash-{name}", workdir="/tmp", priority=priority)


def test_claims_follow_priority_then_fifo(registry):
    ids = [s.run_id for s in submit(registry, [new_experiment("a"), new_experiment("b", priority=5),
                                               new_experiment("c")])]
    assert claim_next(registry, "w") == ids[1]
    assert claim_next(registry, "w") == ids[0]
    assert claim_next(registry, "w") == ids[2]
    assert claim_next(registry, "w") is None


def test_claimed_run_is_running_and_finishes(registry):
    submit(registry, [new_experiment()])
    run_id = claim_next(registry, "worker-1")
    with registry.session() as session:
        run = session.get(Run, run_id)
        assert (run.status, run.worker) == ("running", "worker-1")
        assert run.started_at is not None
    assert succeed(registry, run_id, "worker-1") == "succeeded"
    with registry.session() as session:
        assert session.get(Run, run_id).status == "succeeded"


def test_success_never_overwrites_a_cancel_or_another_workers_claim(registry):
    cancelled, lost = (s.run_id for s in submit(registry, [new_experiment("a"), new_experiment("b")]))
    assert claim_next(registry, "w1") == cancelled
    cancel(registry, cancelled)  # asked while w1 was finishing
    assert succeed(registry, cancelled, "w1") == "cancelled"
    assert claim_next(registry, "w1") == lost
    assert [r.run_id for r in requeue_stale(registry, 0.0)] == [lost]  # w1 stalled: another worker takes it
    assert claim_next(registry, "w2") == lost
    assert succeed(registry, lost, "w1") == "lost"
    with registry.session() as session:
        assert [(r.status, r.worker) for r in session.exec(select(Run).order_by(Run.id))] == [
            ("cancelled", "w1"), ("running", "w2")]


def test_duplicate_spec_hash_is_reported(registry):
    first, second = submit(registry, [new_experiment("a", spec_hash="same"), new_experiment("b", spec_hash="same")])
    assert first.duplicate_of is None
    assert (second.experiment_id, second.run_id, second.duplicate_of) == (first.experiment_id, None,
                                                                          first.experiment_id)
    (forced,) = submit(registry, [new_experiment("c", spec_hash="same")], force=True)
    assert forced.experiment_id == first.experiment_id and forced.run_id not in (None, first.run_id)


def _drain(url: str, worker: str, start, out) -> None:
    registry = open_registry(url)
    start.wait(timeout=120)  # every worker is up before any claims, so the claims really overlap
    claimed = []
    while (run_id := claim_next(registry, worker)) is not None:
        claimed.append(run_id)
    registry.engine.dispose()
    out.put(claimed)


def test_concurrent_processes_never_claim_the_same_run(registry):
    submit(registry, [new_experiment(str(i)) for i in range(120)])
    context = multiprocessing.get_context("spawn")
    start, queue = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_drain, args=(registry.url, f"w{i}", start, queue)) for i in range(4)]
    for process in workers:
        process.start()
    claimed = [run_id for _ in workers for run_id in queue.get(timeout=120)]
    for process in workers:
        process.join(timeout=60)
    assert len(claimed) == 120
    assert len(set(claimed)) == 120, "a run was claimed twice"
    with registry.session() as session:
        runs = session.exec(select(Run)).all()
    assert {run.status for run in runs} == {"running"}
    assert len({run.worker for run in runs}) >= 2, "the claims were not actually concurrent"


def test_a_stored_spec_past_a_later_bound_still_has_its_retry_count():
    from tunelab.registry.run_state import max_retries

    assert max_retries('{"resources": {"priority": 100000000000000000000, "max_retries": 5}}') == 5
    assert max_retries('{"resources": {"gpus": 100000000000000000000}}') == 2
    assert max_retries('{"resources": {"max_retries": 3}}') == 3
