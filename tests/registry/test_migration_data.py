"""Upgrading a registry that holds data: build it at the first revision, fill it, upgrade, nothing lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
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


# ---------------------------------------------------------------- 0012: p-values of scores recorded before them

B1_C9 = 0.021484375  # McNemar's exact p for 1 item lost and 9 gained: 2 * (C(10,0) + C(10,1)) / 2**10


def item_log(outcomes: list[bool], *, target: int = 0) -> list[dict]:
    return [{"doc_id": i, "target": target, "pick": target if right else target + 1, "correct": right}
            for i, right in enumerate(outcomes)]


BEFORE = item_log([True] * 3 + [False] * 9)  # the base: right on items 0-2
AFTER = item_log([False] + [True] * 11)  # the fine-tuned model: loses item 0, gains items 3-11


def add_legacy_run(c, run_id: int) -> None:
    c.execute(text("INSERT INTO experiment (id, name, description, tags_json, spec_path, spec_text, resolved_json, "
                   "spec_hash, workdir, created_at) VALUES (:id, 'old', '', '[]', 's.toml', '', '{}', :h, '/', :now)"),
              {"id": run_id, "h": f"h{run_id}", "now": NOW})
    c.execute(text("INSERT INTO run (id, experiment_id, status, priority, created_at, attempts) "
                   "VALUES (:id, :id, 'succeeded', 0, :now, 0)"), {"id": run_id, "now": NOW})


def add_legacy_score(c, run_id: int, kind: str, task: str, samples: list[dict] | None, *, group: str | None = None,
                     metric: str = "acc", eval_key: str = "k1") -> None:
    """A score as recorded before p-values were stored: vs_base_p NULL."""
    c.execute(text(
        "INSERT INTO evalresult (run_id, model_kind, model_name, task, metric, value, num_fewshot, \"limit\", "
        "task_group, comparable, lm_eval_version, fingerprint_json, samples_json, created_at) VALUES "
        "(:run, :kind, :name, :task, :metric, 0.5, 0, 0, :group, :t, '0.4.13', :fingerprint, :samples, :now)"),
        {"run": run_id, "kind": kind, "name": "tiny" if kind == "base" else f"run:{run_id}", "task": task,
         "metric": metric, "group": group, "t": True, "fingerprint": f'{{"eval_key": "{eval_key}"}}',
         "samples": json.dumps(samples) if samples is not None else None, "now": NOW})


def stored_p_values(engine) -> dict[tuple[int, str], float | None]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT run_id, task, vs_base_p FROM evalresult "
                              "WHERE model_kind = 'finetuned' AND task_group IS NULL"))
        return {(run_id, task): p for run_id, task, p in rows}


def test_upgrade_gives_older_scores_their_p_values_against_the_base(empty_registry_url):
    engine = make_engine(empty_registry_url)
    upgrade(engine, "0011")
    with engine.begin() as c:
        add_legacy_run(c, 1)  # a headline task with its own logs
        add_legacy_score(c, 1, "finetuned", "arc_challenge", AFTER)
        add_legacy_score(c, 1, "base", "arc_challenge", BEFORE)
        add_legacy_run(c, 2)  # MMLU: the test pools its subjects' items; the base's logs are its own
        add_legacy_score(c, 2, "finetuned", "mmlu", None)
        add_legacy_score(c, 2, "finetuned", "mmlu_anatomy", AFTER[:5], group="mmlu")
        add_legacy_score(c, 2, "finetuned", "mmlu_virology", AFTER[5:], group="mmlu")
        add_legacy_score(c, 2, "base", "mmlu", None)
        add_legacy_score(c, 2, "base", "mmlu_anatomy", BEFORE[:5], group="mmlu")
        add_legacy_score(c, 2, "base", "mmlu_virology", BEFORE[5:], group="mmlu")
        add_legacy_run(c, 3)  # a base copied from run 1's identical evaluation, without logs of its own
        add_legacy_score(c, 3, "finetuned", "arc_challenge", AFTER)
        add_legacy_score(c, 3, "base", "arc_challenge", None)
        add_legacy_run(c, 4)  # the same, from an evaluation with other settings: nothing to pair with
        add_legacy_score(c, 4, "finetuned", "arc_challenge", AFTER)
        add_legacy_score(c, 4, "base", "arc_challenge", None, eval_key="k2")
        add_legacy_run(c, 5)  # no test: different items, and MC2
        add_legacy_score(c, 5, "finetuned", "hellaswag", item_log([True, True], target=3))
        add_legacy_score(c, 5, "base", "hellaswag", item_log([True, False]))
        add_legacy_score(c, 5, "finetuned", "truthfulqa_mc2", AFTER, metric="mc2")
        add_legacy_score(c, 5, "base", "truthfulqa_mc2", BEFORE, metric="mc2")
        add_legacy_run(c, 6)  # no base score: nothing to test against; left unchecked
        add_legacy_score(c, 6, "finetuned", "arc_challenge", AFTER)

    upgrade(engine)
    assert stored_p_values(engine) == {
        (1, "arc_challenge"): B1_C9, (2, "mmlu"): B1_C9, (3, "arc_challenge"): B1_C9, (4, "arc_challenge"): -1.0,
        (5, "hellaswag"): -1.0, (5, "truthfulqa_mc2"): -1.0, (6, "arc_challenge"): None}
    registry = Registry(engine=engine, url=empty_registry_url)
    assert {s.task: s.vs_base_p for s in run_detail(registry, 2).scores if s.model_kind == "finetuned"
            and s.task_group is None} == {"mmlu": B1_C9}
    engine.dispose()


def test_upgrade_leaves_p_values_already_stored_as_they_are(empty_registry_url):
    engine = make_engine(empty_registry_url)
    upgrade(engine, "0011")
    with engine.begin() as c:
        add_legacy_run(c, 1)
        add_legacy_score(c, 1, "finetuned", "arc_challenge", AFTER)
        add_legacy_score(c, 1, "base", "arc_challenge", BEFORE)
        c.execute(text("UPDATE evalresult SET vs_base_p = 0.5 WHERE model_kind = 'finetuned'"))
    upgrade(engine)
    assert stored_p_values(engine) == {(1, "arc_challenge"): 0.5}  # checked before: not read again
    engine.dispose()


def test_upgrade_drops_the_render_cache_and_downgrade_brings_it_back(empty_registry_url):
    from sqlalchemy import inspect
    from tunelab.registry.db import _alembic_config

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0012")
    assert "rendercache" in inspect(engine).get_table_names()
    upgrade(engine)
    assert "rendercache" not in inspect(engine).get_table_names()

    from alembic import command

    command.downgrade(_alembic_config(engine), "0012")
    assert "rendercache" in inspect(engine).get_table_names()
    engine.dispose()


# ---------------------------------------------------------------- 0014: the evaluation cache's scores as Scores

OLD_SCORE = {"task": "mmlu_anatomy", "metric": "acc", "value": 0.5, "stderr": None, "num_fewshot": 5,
             "n_samples": 10, "group": "mmlu", "comparable": True, "limit": 0}


def _cached_payloads(engine) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT payload_json FROM evalcache ORDER BY id")).scalars()
        return [json.loads(row) for row in rows]


def _cache(engine, key: str, payload: dict) -> None:
    with engine.begin() as c:
        c.execute(text("INSERT INTO evalcache (key, task, model_digest, lm_eval_version, payload_json, created_at) "
                       "VALUES (:key, 'mmlu', 'd', '0.4.13', :body, :now)"),
                  {"key": key, "body": json.dumps(payload), "now": NOW})


def test_cached_scores_are_read_back_as_scores_after_the_upgrade(empty_registry_url):
    from dataclasses import asdict

    from alembic import command
    from tunelab.registry.db import _alembic_config
    from tunelab.registry.scores import Score

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0013")
    payload = {"scores": [dict(OLD_SCORE, task="mmlu", group=None), OLD_SCORE],
               "samples": {"mmlu_anatomy": [{"doc_id": 0, "question": 'a "group" in the text'}]}, "fingerprint": {}}
    _cache(engine, "k1", payload)
    _cache(engine, "k2", {"scores": [], "samples": {}, "fingerprint": {}})

    upgrade(engine)
    upgraded, untouched = _cached_payloads(engine)
    scores = [Score(**score) for score in upgraded["scores"]]  # as runner/evaluation/cache.py restores them
    assert [(s.task, s.task_group, s.value) for s in scores] == [("mmlu", None, 0.5), ("mmlu_anatomy", "mmlu", 0.5)]
    assert upgraded["samples"] == payload["samples"]
    assert untouched == {"scores": [], "samples": {}, "fingerprint": {}}

    # Downgrading gives the older tunelab the shape it reads: entries from before, and those written since.
    _cache(engine, "k3", {"scores": [asdict(scores[1])], "samples": {}, "fingerprint": {}})
    command.downgrade(_alembic_config(engine), "0013")
    restored, _, written_since = _cached_payloads(engine)
    assert restored == payload
    assert written_since["scores"] == [OLD_SCORE]
    engine.dispose()


# ---------------------------------------------------------------- 0017: one experiment per spec hash


def _experiment(connection, experiment_id: int, spec_hash: str) -> None:
    connection.execute(text(
        "INSERT INTO experiment (id, name, description, tags_json, spec_path, spec_text, resolved_json, spec_hash, "
        "workdir, created_at) VALUES (:id, :name, '', '[]', 's.toml', '', '{}', :h, :workdir, :now)"),
        {"id": experiment_id, "name": f"e{experiment_id}", "h": spec_hash, "workdir": f"/w{experiment_id}", "now": NOW})
    connection.execute(text("INSERT INTO run (id, experiment_id, status, priority, created_at) "
                            "VALUES (:id, :id, 'succeeded', 0, :now)"), {"id": experiment_id, "now": NOW})


def test_duplicates_stored_before_the_unique_hash_are_kept_and_told_apart(empty_registry_url):
    from alembic import command
    from sqlalchemy.exc import IntegrityError
    from tunelab.registry.db import _alembic_config

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0014")
    with engine.begin() as c:  # three submits that raced each other, and one on its own
        for experiment_id, spec_hash in ((1, "same"), (2, "other"), (3, "same"), (4, "same")):
            _experiment(c, experiment_id, spec_hash)
    upgrade(engine)
    with engine.connect() as c:
        rows = c.execute(text("SELECT e.id, e.spec_hash, e.workdir, r.status FROM experiment e "
                              "JOIN run r ON r.experiment_id = e.id ORDER BY e.id")).all()
    assert [tuple(row) for row in rows] == [(1, "same", "/w1", "succeeded"), (2, "other", "/w2", "succeeded"),
                                            (3, "same-dup3", "/w3", "succeeded"), (4, "same-dup4", "/w4", "succeeded")]
    with pytest.raises(IntegrityError), engine.begin() as c:
        _experiment(c, 5, "other")

    command.downgrade(_alembic_config(engine), "0014")
    with engine.begin() as c:
        assert c.execute(text("SELECT spec_hash FROM experiment ORDER BY id")).scalars().all() == [
            "same", "other", "same", "same"]
        _experiment(c, 5, "other")  # the index is a plain one again


# ---------------------------------------------------------------- 0021: run files relative to the artifact root


def _runs_with_files(engine) -> None:
    """Runs as earlier revisions stored them: absolute output directories and checkpoint paths."""
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO experiment (id, name, description, tags_json, spec_path, spec_text, resolved_json, "
            "spec_hash, workdir, created_at) VALUES (1, 'e', '', '[]', 's.toml', 't', '{}', 'h', '/w', :now)"),
            {"now": NOW})
        for run_id, output_dir in ((1, "/data/home/runs/1"), (2, "/custom/place"), (3, "/data/home/runs/99"),
                                   (4, None)):
            c.execute(text("INSERT INTO run (id, experiment_id, status, priority, created_at, output_dir) "
                           "VALUES (:id, 1, 'succeeded', 0, :now, :out)"),
                      {"id": run_id, "now": NOW, "out": output_dir})
            if output_dir:
                c.execute(text("INSERT INTO checkpoint (run_id, step, loss, path, created_at) "
                               "VALUES (:id, 2, 0.5, :path, :now)"),
                          {"id": run_id, "path": f"{output_dir}/checkpoints/checkpoint-2", "now": NOW})


def _stored_paths(engine) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(row) for row in c.execute(text(
            "SELECT run.id, run.output_dir, checkpoint.path FROM run "
            "LEFT JOIN checkpoint ON checkpoint.run_id = run.id ORDER BY run.id"))]


def test_upgrade_stores_run_files_relative_to_the_home_they_were_written_under(empty_registry_url, tmp_path):
    from alembic import command
    from tunelab.registry.db import _alembic_config
    from tunelab.registry.roots import Roots

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0020")
    _runs_with_files(engine)
    upgrade(engine)
    assert _stored_paths(engine) == [
        (1, "runs/1", "runs/1/checkpoints/checkpoint-2"),
        # Not HOME/runs/ID of its own id: left as it was, and still read as an absolute path.
        (2, "/custom/place", "/custom/place/checkpoints/checkpoint-2"),
        (3, "/data/home/runs/99", "/data/home/runs/99/checkpoints/checkpoint-2"),
        (4, None, None)]
    registry = Registry(engine=engine, url=empty_registry_url)
    seen = run_detail(registry, 1).seen_from(Roots.at(tmp_path / "home"))
    assert (seen.output_dir, seen.checkpoints[0]["path"]) == (
        str(tmp_path / "home" / "runs" / "1"), str(tmp_path / "home" / "runs" / "1" / "checkpoints" / "checkpoint-2"))
    assert run_detail(registry, 2).seen_from(Roots.at(tmp_path / "home")).output_dir == "/custom/place"

    command.downgrade(_alembic_config(engine), "0020")
    downgraded = dict((run_id, (output_dir, path)) for run_id, output_dir, path in _stored_paths(engine))
    if engine.dialect.name == "sqlite":  # made absolute again under the directory of the registry's file, its home
        home = str(tmp_path)
        assert downgraded[1] == (f"{home}/runs/1", f"{home}/runs/1/checkpoints/checkpoint-2")
    else:
        assert downgraded[1] == ("runs/1", "runs/1/checkpoints/checkpoint-2")
    assert downgraded[2] == ("/custom/place", "/custom/place/checkpoints/checkpoint-2")
    engine.dispose()
