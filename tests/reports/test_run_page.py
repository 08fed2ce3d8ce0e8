"""The run page from a known registry: chart data, the per-subject forgetting table, p-values (parsed HTML)."""

from __future__ import annotations

import json
from dataclasses import replace

from tunelab.registry.recording import MetricPoint, record_metrics, record_scores, update_run
from tunelab.reports.render import render_run_page, write_report
from tunelab.reports.run_page import build_run_page

from tests.helpers import finished_run, scores, subject_scores
from tests.reports.parsing import chart_data, parse, table_rows


def page_of(registry, run_id):
    return parse(render_run_page(build_run_page(registry, run_id), back_href="../lb.html"))


def loss_lines(document) -> dict[str, int]:
    """The loss chart's lines, by label, with their number of points (a line has null where it has none)."""
    assert document.find("div", id_="loss-chart").attrs["data-chart"] == "loss"
    return {line["label"]: sum(y is not None for y in line["y"]) for line in chart_data(document)["loss"]["series"]}


def test_loss_chart_shows_validation_loss_when_there_is_some(registry):
    run = finished_run(registry, "with-validation")
    record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 21)])
    # The runner logs validation loss on rows of their own, every few steps.
    record_metrics(registry, run, [MetricPoint(step=s, eval_loss=3.5 / s) for s in (5, 10, 15, 20)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))

    document = page_of(registry, run)
    assert loss_lines(document) == {"training loss": 20, "validation loss": 4}
    loss = chart_data(document)["loss"]
    assert loss["title"] == "Training and validation loss" and loss["x"] == list(range(1, 21))
    validation = loss["series"][1]["y"]
    assert validation[4] == 3.5 / 5 and validation[5] is None  # on the steps it was measured at, gaps between


def test_loss_chart_has_one_line_without_validation_loss(registry):
    run = finished_run(registry, "train-only")
    record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 11)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))

    document = page_of(registry, run)
    assert loss_lines(document) == {"training loss": 10}
    assert chart_data(document)["loss"]["title"] == "Training loss"
    assert [line["label"] for line in chart_data(document)["lr"]["series"]] == ["learning rate"]


def test_forgetting_table_lists_subjects_worst_delta_first(registry):
    run = finished_run(registry, "forgetful")
    base = {"anatomy": 0.50, "astronomy": 0.40, "virology": 0.30, "world_religions": 0.60}
    tuned = {"anatomy": 0.55, "astronomy": 0.20, "virology": 0.30, "world_religions": 0.45}
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"mmlu": sum(tuned.values()) / 4}))
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", tuned))
    record_scores(registry, run, scores("base", "tiny", {"mmlu": sum(base.values()) / 4}))
    record_scores(registry, run, subject_scores("base", "tiny", base))

    rows = table_rows(page_of(registry, run).find("table", id_="forgetting"))
    assert rows == [
        ["astronomy", "0.4000", "0.2000", "-0.2000"],
        ["world religions", "0.6000", "0.4500", "-0.1500"],
        ["virology", "0.3000", "0.3000", "+0.0000"],
        ["anatomy", "0.5000", "0.5500", "+0.0500"],
    ]


def test_mmlu_chart_has_a_bar_per_subject_and_the_base_as_markers(registry):
    run = finished_run(registry, "subjects")
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}",
                                                {"anatomy": 0.55, "world_religions": 0.45, "virology": 0.3}))
    record_scores(registry, run, subject_scores("base", "tiny", {"anatomy": 0.5, "world_religions": 0.6}))

    document = page_of(registry, run)
    assert document.find("div", id_="mmlu-chart").attrs["data-chart"] == "mmlu"
    mmlu = chart_data(document)["mmlu"]
    assert mmlu["kind"] == "bars" and mmlu["labels"] == ["anatomy", "virology", "world religions"]
    tuned, base = mmlu["series"]
    assert (tuned["label"], tuned["values"]) == ("fine-tuned", [0.55, 0.3, 0.45])
    assert (base["label"], base["values"], base["marker"]) == ("base", [0.5, None, 0.6], True)  # no base virology


def test_no_forgetting_table_without_base_subjects(registry):
    run = finished_run(registry, "no-base")
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", {"anatomy": 0.5}))
    document = page_of(registry, run)
    assert document.find("table", id_="forgetting") is None
    assert [s["label"] for s in chart_data(document)["mmlu"]["series"]] == ["fine-tuned"]


def test_a_run_without_metrics_or_subjects_has_no_charts(registry):
    run = finished_run(registry, "bare")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    document = page_of(registry, run)
    assert document.find("div", id_="loss-chart") is None and document.find("div", id_="mmlu-chart") is None
    assert document.find("script", id_="tunelab-charts") is None  # nor the chart library


def test_scores_table_shows_the_p_value_against_the_base(registry):
    from tests.helpers import logs_b1_c9

    run = finished_run(registry, "significant")
    before, after = logs_b1_c9()
    record_scores(registry, run, [replace(s, samples=after) for s in
                                  scores("finetuned", f"run:{run}", {"arc_challenge": 11 / 12})])
    record_scores(registry, run, [replace(s, samples=before) for s in
                                  scores("base", "tiny", {"arc_challenge": 3 / 12})])

    rows = table_rows(page_of(registry, run).find("table", id_="scores"))
    # task, metric, fine-tuned, base, delta, p, stderr, shots
    assert rows[0][0] == "arc_challenge" and rows[0][4] == "+0.6667" and rows[0][5] == "0.0215†"


def test_the_significance_mark_follows_the_one_rule(registry, monkeypatch):
    # The page marks what the view model's rule says, not a threshold of its own.
    from tests.helpers import logs_b1_c9

    run = finished_run(registry, "strict")
    before, after = logs_b1_c9()
    record_scores(registry, run, [replace(s, samples=after) for s in
                                  scores("finetuned", f"run:{run}", {"arc_challenge": 11 / 12})])
    record_scores(registry, run, [replace(s, samples=before) for s in
                                  scores("base", "tiny", {"arc_challenge": 3 / 12})])
    monkeypatch.setattr("tunelab.reports.marks.SIGNIFICANCE_LEVEL", 0.01)
    document = page_of(registry, run)
    assert table_rows(document.find("table", id_="scores"))[0][5] == "0.0215"
    delta = document.find("table", id_="scores").find("span")
    assert delta.attrs["class"] == "delta up"


def test_data_statistics_on_the_run_page(registry, tmp_path):
    run = finished_run(registry, "cleaned")
    stats = {"sources": [{"path": "data/train.jsonl", "format": "instruction", "weight": None, "rows": 120,
                          "empty": 3, "duplicates": 7, "overlength_dropped": 2, "overlength_truncated": 1,
                          "kept": 108, "held_out": 11, "drawn": 97}],
             "validation_file": None, "train_examples": 97, "validation_examples": 11, "train_tokens": 5000,
             "trainable_tokens": 2000, "packed_sequences": None}
    update_run(registry, run, data_stats_json=json.dumps(stats))
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    document = parse((tmp_path / "lb_runs" / f"run-{run}.html").read_text(encoding="utf-8"))
    assert table_rows(document.find("table", id_="data-stats")) == [
        ["data/train.jsonl", "120", "3", "7", "2 dropped, 1 cut", "108", "11"]]


def test_a_sweep_points_page_shows_the_resolved_spec_first_and_the_file_as_written_second(registry):
    from sqlalchemy import text

    file = ('[experiment]\nname = "si-lora"\n\n[train]\nlearning_rate = 2e-4\n\n'
            '[sweep]\n"train.learning_rate" = [1e-4, 3e-4]\n')
    run = finished_run(registry, "si-lora/train.learning_rate=0.0003",
                       resolved=json.dumps({"experiment": {"name": "si-lora/train.learning_rate=0.0003"},
                                            "train": {"learning_rate": 3e-4}, "model": {"revision": None}}))
    with registry.engine.begin() as connection:
        connection.execute(text("UPDATE experiment SET spec_text = :t"), {"t": file})
    document = page_of(registry, run)
    resolved, written = document.find("pre", id_="spec-resolved"), document.find("details", id_="spec-file")
    assert "learning_rate = 0.0003" in resolved.text.splitlines()  # the value the run used
    assert "[sweep]" not in resolved.text and "revision" not in resolved.text  # TOML has no null: left out
    assert written.find("pre").text == file
    elements = list(document.iter())
    assert elements.index(resolved) < elements.index(written)


def test_the_last_validation_loss_and_a_reproduction_are_facts_of_the_page(registry):
    from sqlalchemy import text

    original, run = finished_run(registry, "original"), finished_run(registry, "copy")
    record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 5)])
    record_metrics(registry, run, [MetricPoint(step=2, eval_loss=0.8), MetricPoint(step=4, eval_loss=0.6)])
    with registry.engine.begin() as connection:
        connection.execute(text("UPDATE run SET reproduces_run_id = :o WHERE id = :r"), {"o": original, "r": run})
    facts = {row.find("th").text: row.find("td").text for row in page_of(registry, run).find("table", id_="facts")
             .iter("tr")}
    assert facts["validation loss"] == "0.6000 (the last validation point)"
    assert facts["reproduces"] == f"run {original} (made by tunelab reproduce)"


def test_the_page_says_why_rows_were_dropped_for_their_length_when_they_were_to_be_cut(registry):
    run = finished_run(registry, "cut", resolved=json.dumps({"data": {"overlength": "truncate", "max_seq_len": 64}}))
    stats = {"sources": [{"path": "train.jsonl", "rows": 30, "empty": 0, "duplicates": 0, "overlength_dropped": 1,
                          "overlength_truncated": 5, "kept": 29, "held_out": 0}], "validation_file": None}
    update_run(registry, run, data_stats_json=json.dumps(stats))
    note = page_of(registry, run).find("p", id_="data-note")
    assert note.text == ('1 over-length row was dropped although overlength = "truncate": cut to max_seq_len '
                         "(64 tokens), the prompt filled the row and left no response token to learn from.")


def test_a_score_not_comparable_says_why_on_hover(registry):
    run = finished_run(registry, "limited")
    record_scores(registry, run, [replace(s, comparable=False, limit=8, num_fewshot=25)
                                  for s in scores("finetuned", f"run:{run}", {"arc_challenge": 0.3})])
    mark = page_of(registry, run).find("table", id_="scores").find("span", **{"class": "nc"})
    assert mark.attrs["title"] == "not leaderboard-comparable: limit 8 items per task"
