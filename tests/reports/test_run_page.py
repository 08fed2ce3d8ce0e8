"""The run page from a known registry: loss curves, the per-subject forgetting table, p-values (parsed HTML)."""

from __future__ import annotations

import json
from dataclasses import replace

from tunelab.registry.queue import update_run
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.reports.render import render_run_page, write_report
from tunelab.reports.run_page import build_run_page

from tests.helpers import finished_run, scores, subject_scores
from tests.reports.parsing import parse, path_points, table_rows


def page_of(registry, run_id):
    return parse(render_run_page(build_run_page(registry, run_id), back_href="../lb.html", version="v"))


def loss_lines(document) -> dict[str, int]:
    """The loss chart's lines, by their SVG id, with their number of points."""
    chart = document.find("div", id_="loss-chart")
    return {group.attrs["id"]: path_points(group.find("path")) for group in chart.iter("g")
            if group.attrs.get("id") in ("training-loss", "validation-loss")}


def test_loss_chart_shows_validation_loss_when_there_is_some(registry):
    run = finished_run(registry, "with-validation")
    record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 21)])
    # The runner logs validation loss on rows of their own, every few steps.
    record_metrics(registry, run, [MetricPoint(step=s, eval_loss=3.5 / s) for s in (5, 10, 15, 20)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))

    document = page_of(registry, run)
    assert loss_lines(document) == {"training-loss": 20, "validation-loss": 4}
    legend = [text.text.strip() for text in document.find("div", id_="loss-chart").iter("text")]
    assert "training loss" in legend and "validation loss" in legend
    assert "Training and validation loss" in legend


def test_loss_chart_has_one_line_without_validation_loss(registry):
    run = finished_run(registry, "train-only")
    record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 11)])
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))

    document = page_of(registry, run)
    assert loss_lines(document) == {"training-loss": 10}
    legend = [text.text.strip() for text in document.find("div", id_="loss-chart").iter("text")]
    assert "validation loss" not in legend


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


def test_no_forgetting_table_without_base_subjects(registry):
    run = finished_run(registry, "no-base")
    record_scores(registry, run, subject_scores("finetuned", f"run:{run}", {"anatomy": 0.5}))
    assert page_of(registry, run).find("table", id_="forgetting") is None


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
    assert rows[0][0] == "arc_challenge" and rows[0][5] == "0.0215†"


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
