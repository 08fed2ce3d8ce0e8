"""Upgrading a registry that holds data: build it at the first revision, fill it, upgrade, nothing lost."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from tunelab.registry.db import Registry, current_revision, head_revision, make_engine, upgrade
from tunelab.registry.queries import list_runs, run_detail

from tests.helpers import fill_first_revision

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_upgrade_from_first_revision_keeps_every_row(empty_registry_url):
    engine = make_engine(empty_registry_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    fill_first_revision(engine)

    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    registry = Registry(engine=engine, url=empty_registry_url)
    (summary,) = list_runs(registry)
    assert (summary.name, summary.status, summary.final_loss, summary.tags) == ("old", "succeeded", 0.25, ["x"])
    detail = run_detail(registry, 1)
    assert [c["step"] for c in detail.checkpoints] == [10]
    assert [m["loss"] for m in detail.metrics] == [2.0, 1.5]
    assert [(s.task, s.value) for s in detail.scores] == [("arc_challenge", 0.31)]
    with engine.connect() as c:
        assert c.execute(text("SELECT sweep_id FROM experiment WHERE id = 1")).scalar() is None


def test_upgrade_copies_each_runs_gpus_from_its_spec(empty_registry_url):
    engine = make_engine(empty_registry_url)
    upgrade(engine, "0010")
    with engine.begin() as c:
        for experiment_id, resources in ((1, '{"priority": 0}'), (2, '{"gpus": 2, "priority": 0}')):
            c.execute(text(
                "INSERT INTO experiment (id, name, description, tags_json, spec_path, spec_text, resolved_json, "
                "spec_hash, workdir, created_at) VALUES (:id, 'e', '', '[]', 's.toml', 't', :spec, :h, '/w', :now)"),
                {"id": experiment_id, "spec": f'{{"resources": {resources}}}', "h": f"h{experiment_id}", "now": NOW})
            c.execute(text("INSERT INTO run (id, experiment_id, status, priority, created_at) "
                           "VALUES (:id, :id, 'queued', 0, :now)"), {"id": experiment_id, "now": NOW})
    upgrade(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT id, gpus FROM run ORDER BY id")).fetchall() == [(1, 0), (2, 2)]
