"""Searches without training: trials drawn through the registry by any number of workers, each number once;
budgets; seeded sequences; pruning decisions; `tunelab search` output; ls on trials; notifications."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.registry.run_state import retry
from tunelab.registry.search_records import search_record
from tunelab.runner.notify import Event, notify
from tunelab.runner.search import ask_trial, definition_of, preview, should_prune

from tests.helpers import SEARCH_SPEC as SPEC
from tests.helpers import end_trial, invoke, invoke_json, new_search, run_search, scores


def test_a_search_draws_its_trials_until_enough_finished_and_then_ends(registry, tmp_path):
    search_id = new_search(registry, tmp_path)
    runs = run_search(registry, search_id, lambda n: {2: 2.0 - n / 10, 6: 1.0 - n / 10})
    record = search_record(registry, search_id)
    assert len(runs) == 4 and [t.run_id for t in record.trials] == runs
    assert (record.status, record.stop_reason, record.done) == ("finished", "all 4 trials finished", 4)
    assert [t.objective for t in record.trials] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert record.best.number == 3  # val_loss is minimised
    # Trials are ordinary experiments and runs, linked to the search, named after it.
    assert [t.name for t in record.trials] == [f"t/search-{search_id}/trial-{n}" for n in range(4)]


def test_failed_trials_are_replaced_until_max_trials(registry, tmp_path):
    search_id = new_search(registry, tmp_path, SPEC.replace("trials = 4", "trials = 2\nmax_trials = 3"))
    runs = run_search(registry, search_id, lambda n: {2: 1.0}, lambda n: "failed" if n < 2 else "succeeded")
    record = search_record(registry, search_id)
    assert len(runs) == 3
    assert [t.status for t in record.trials] == ["failed", "failed", "succeeded"]
    assert (record.status, record.stop_reason) == ("finished", "max_trials (3) reached")


def test_retrying_a_failed_trial_feeds_its_result_back(registry, tmp_path):
    search_id = new_search(registry, tmp_path, SPEC.replace("trials = 4", "trials = 2"))
    runs = run_search(registry, search_id, lambda n: {2: 1.0 + n}, lambda n: "failed" if n == 0 else "succeeded")
    assert search_record(registry, search_id).best.number == 1
    retry(registry, runs[0])
    from tunelab.registry.run_state import claim_next

    assert claim_next(registry, "w") == runs[0]
    end_trial(registry, runs[0], {2: 0.5})
    record = search_record(registry, search_id)
    assert record.best.number == 0 and record.best.objective == 0.5


def test_many_workers_asking_at_once_never_make_the_same_trial(registry, tmp_path):
    search_id = new_search(registry, tmp_path, SPEC.replace("trials = 4", "trials = 6"))
    claimed: list[int | None] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        claimed.append(ask_trial(registry, f"w{index}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = search_record(registry, search_id)
    runs = [run for run in claimed if run is not None]
    # Six trials wanted, none finished: six drawn and claimed by six workers, two left without work.
    assert len(runs) == len(set(runs)) == 6
    assert [t.number for t in record.trials] == list(range(6)) and record.asked == 6
    assert record.in_flight == 6


def test_the_same_seed_draws_the_same_trials_and_dry_run_shows_them(registry, tmp_path, tmp_path_factory):
    from tunelab.registry.db import open_registry

    first = new_search(registry, tmp_path)
    run_search(registry, first, lambda n: {2: 1.0})
    drawn = [t.params for t in search_record(registry, first).trials]
    other_dir = tmp_path_factory.mktemp("again")
    other = open_registry(f"sqlite:///{other_dir / 'r.db'}")
    second = new_search(other, other_dir)
    run_search(other, second, lambda n: {2: 1.0})
    assert [t.params for t in search_record(other, second).trials] == drawn
    assert preview(definition_of(search_record(registry, first)), 4) == drawn
    assert len({json.dumps(p, sort_keys=True) for p in drawn}) == 4
    changed = new_search(other, other_dir, SPEC.replace("seed = 11", "seed = 12"))
    run_search(other, changed, lambda n: {2: 1.0})
    assert [t.params for t in search_record(other, changed).trials] != drawn
    other.engine.dispose()


def test_tpe_uses_the_finished_trials(registry, tmp_path):
    spec = SPEC.replace('sampler = "random"', 'sampler = "tpe"\nstartup_trials = 2').replace("trials = 4",
                                                                                            "trials = 6")
    search_id = new_search(registry, tmp_path, spec)
    # The lower the learning rate the better, whatever the rank.
    run_search(registry, search_id, lambda p: {2: math.log10(p["train.learning_rate"]) + 6}, by_params=True)
    record = search_record(registry, search_id)
    assert [t.status for t in record.trials] == ["succeeded"] * 6
    assert record.importance["train.learning_rate"] > record.importance["method.r"]
    # The same seed with the opposite results: the same two random trials, then other draws.
    mirrored = new_search(registry, tmp_path, spec)
    run_search(registry, mirrored, lambda p: {2: -math.log10(p["train.learning_rate"])}, by_params=True)
    drawn = [t.params for t in record.trials]
    again = [t.params for t in search_record(registry, mirrored).trials]
    assert again[:2] == drawn[:2] and again[2:] != drawn[2:]


def test_median_pruner_stops_a_trial_worse_than_the_finished_ones(registry, tmp_path):
    search_id = new_search(registry, tmp_path)
    good = ask_trial(registry, "w")
    end_trial(registry, good, {2: 1.0, 4: 0.8, 6: 0.6})
    bad, fine = ask_trial(registry, "w"), ask_trial(registry, "w")
    record_metrics(registry, bad, [MetricPoint(step=2, eval_loss=3.0)])
    record_metrics(registry, fine, [MetricPoint(step=2, eval_loss=0.9)])
    assert should_prune(registry, search_id, 1, eval_every=2) is True
    assert should_prune(registry, search_id, 2, eval_every=2) is False


def test_successive_halving_keeps_its_rungs_in_the_registry(registry, tmp_path):
    search_id = new_search(registry, tmp_path, SPEC.replace('pruner = "median"', 'pruner = "halving"'))
    first = ask_trial(registry, "w")
    record_metrics(registry, first, [MetricPoint(step=2, eval_loss=1.0)])
    should_prune(registry, search_id, 0, eval_every=2)
    assert search_record(registry, search_id).trials[0].pruner_state == {"completed_rung_0": 1.0}


def test_search_show_and_ls_print_progress_best_and_trials(registry_url, tmp_path):
    from tunelab.registry.db import open_registry

    registry = open_registry(registry_url)
    search_id = new_search(registry, tmp_path)
    runs = run_search(registry, search_id, lambda n: {2: 1.0 + n, 4: 0.5 + n},
                      lambda n: "pruned" if n == 2 else "succeeded")
    record_scores(registry, runs[0], scores("finetuned", f"run:{runs[0]}", {"arc_challenge": 0.4}))
    registry.engine.dispose()
    home = tmp_path / "home"
    data = invoke_json(home, "--db", registry_url, "search", "show", str(search_id))
    assert (data["status"], data["done"], data["best_trial"], data["best_run"]) == ("finished", 4, 0, runs[0])
    assert [t["status"] for t in data["trials"]] == ["succeeded", "succeeded", "pruned", "succeeded"]
    assert data["trials"][2]["val_losses"] == {"2": 3.0, "4": 2.5}
    text = invoke(home, "--db", registry_url, "search", "show", str(search_id)).output
    assert "best so far: trial 0" in text and "4/4 done (3 succeeded, 1 pruned)" in text
    listed = invoke(home, "--db", registry_url, "search", "ls").output
    (row,) = [line.split() for line in listed.splitlines()[2:]]
    assert row[:4] == [str(search_id), "t", "finished", "random"] and "trial 0 (run" in listed
    # Trials are runs like any other: ls filters on their search and number, and sorts on val_loss.
    found = json.loads(invoke(home, "--db", registry_url, "ls", "--where", f"search = {search_id} and trial >= 2",
                              "--sort", "val_loss", "--asc", "--json").stdout)
    assert [r["run_id"] for r in found] == [runs[2], runs[3]]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_notifications_reach_a_webhook_and_a_command_and_failures_are_only_logged(webhook, tmp_path, caplog):
    from tunelab.experiments.schema import NotifySection

    url, received = webhook
    out = tmp_path / "told.json"
    command = f"sh -c 'cat > {out}'"
    event = Event("run", 7, "demo", "failed", {"name": "average", "value": 0.5}, {"error": "boom"})
    told = notify([NotifySection(webhook=url, command=command),
                   NotifySection(webhook="http://127.0.0.1:9/closed", command="false"),
                   NotifySection(webhook=url, events=["search"])], event)
    assert told == 2
    assert received == [{"event": "run", "id": 7, "name": "demo", "status": "failed",
                         "objective": {"name": "average", "value": 0.5}, "details": {"error": "boom"},
                         "show": "tunelab show 7"}]
    assert json.loads(out.read_text())["show"] == "tunelab show 7"
    assert "notification to http://127.0.0.1:9/closed failed" in caplog.text
    assert "exited 1" in caplog.text


def test_a_search_that_ends_is_told_to_its_notify_table(registry, tmp_path, webhook):
    url, received = webhook
    search_id = new_search(registry, tmp_path, SPEC.replace("trials = 4", "trials = 1")
                           + f'\n[notify]\nwebhook = "{url}"\nevents = ["search"]\n')
    run_search(registry, search_id, lambda n: {2: 0.75})
    (told,) = received
    assert (told["event"], told["id"], told["status"], told["show"]) == (
        "search", search_id, "finished", f"tunelab search show {search_id}")
    assert told["objective"]["value"] == 0.75 and told["objective"]["best_trial"] == 0
