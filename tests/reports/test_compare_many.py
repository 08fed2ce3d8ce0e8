"""`tunelab compare A B C`: the spec keys that differ among them, scores side by side with each run tested against
the first (McNemar), loss curves overlaid, samples side by side; in the terminal, as JSON and as a page."""

from __future__ import annotations

import json
from dataclasses import replace

from click.testing import CliRunner
from tunelab.registry.recording import MetricPoint, record_metrics, record_samples, record_scores
from tunelab.registry.samples import GeneratedText
from tunelab.reports.compare import build_many_comparison
from tunelab.reports.render import render_many_comparison

from tests.helpers import EVIL, finished_run, scores
from tests.reports.parsing import chart_data, parse, table_rows
from tunelab.cli import cli


def item_logs(correct: list[bool]) -> list[dict]:
    return [{"doc_id": i, "target": 0, "pick": 0 if ok else 1, "correct": ok} for i, ok in enumerate(correct)]


def three_runs(registry) -> list[int]:
    """A (3 of 12 right), B (11 of 12: b=1, c=9 against A), C (the same items as A); r and lr vary."""
    specs = [{"method": {"kind": "lora", "r": 8}, "train": {"learning_rate": 0.001}},
             {"method": {"kind": "lora", "r": 16}, "train": {"learning_rate": 0.001}},
             {"method": {"kind": "lora", "r": 8}, "train": {"learning_rate": 0.002}}]
    names = ["a", EVIL, "c"]
    b_correct = [False] + [True] * 11
    correct = [[True] * 3 + [False] * 9, b_correct, [True] * 3 + [False] * 9]
    runs = []
    for index, (spec, name, right) in enumerate(zip(specs, names, correct, strict=True)):
        run = finished_run(registry, name, resolved=json.dumps(spec))
        record_scores(registry, run, [replace(s, samples=item_logs(right))
                                      for s in scores("finetuned", f"run:{name}", {"capitals": sum(right) / 12})])
        record_metrics(registry, run, [MetricPoint(step=s, loss=(index + 1) / s) for s in range(1, 6)])
        record_samples(registry, run, "finetuned", [GeneratedText(0, "Capital of France?", "Paris", f"{name} says")],
                       settings={})
        runs.append(run)
    return runs


def test_three_runs_side_by_side_each_against_the_first(registry):
    a, b, c = three_runs(registry)
    comparison = build_many_comparison(registry, [a, b, c])
    assert [(d.key, d.values) for d in comparison.spec_differences] == [
        ("method.r", ["8", "16", "8"]), ("train.learning_rate", ["0.001", "0.001", "0.002"])]
    (capitals,) = comparison.scores
    assert capitals.values == [3 / 12, 11 / 12, 3 / 12]
    versus_b, versus_c = capitals.versus_first
    assert versus_b.p_value == 2 * (1 + 10) / 2**10 and len(versus_b.flips) == 10
    assert versus_c.delta == 0 and versus_c.flips == []
    assert [row.outputs for row in comparison.samples] == [["a says", f"{EVIL} says", "c says"]]


def test_the_page_has_every_run_in_each_table_and_their_curves_overlaid(registry):
    a, b, c = three_runs(registry)
    document = parse(render_many_comparison(build_many_comparison(registry, [a, b, c])))
    assert table_rows(document.find("table", id_="spec-diff")) == [
        ["method.r", "8", "16", "8"], ["train.learning_rate", "0.001", "0.001", "0.002"]]
    (row,) = table_rows(document.find("table", id_="score-diff"))
    assert row[:3] == ["capitals", "acc", "0.2500"]
    assert row[3].startswith("0.9167+0.6667") and "p 0.0215†" in row[3]
    assert row[4].startswith("0.2500+0.0000")
    loss = chart_data(document)["loss"]
    assert [line["label"] for line in loss["series"]] == [f"#{a} a", f"#{b} {EVIL}", f"#{c} c"]
    assert loss["series"][2]["y"] == [3.0, 1.5, 1.0, 0.75, 0.6]
    assert table_rows(document.find("table", id_="samples")) == [
        ["Capital of France?", "Paris", "", "a says", f"{EVIL} says", "c says"]]
    assert not list(document.iter("img"))


def test_compare_cli_takes_three_runs_in_the_terminal_as_json_and_as_a_page(registry, tmp_path):
    a, b, c = three_runs(registry)
    ids = [str(a), str(b), str(c)]
    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", *ids, "-o", str(tmp_path / "c.html")],
                             terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "method.r" in out.output and "train.learning_rate" in out.output
    assert "0.9167 +0.6667 p=0.0215" in out.output
    assert 'id="score-diff"' in (tmp_path / "c.html").read_text(encoding="utf-8")

    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", *ids, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["run_ids"] == [a, b, c] and "charts" not in data
    assert [pair["b_id"] for pair in data["pairs"]] == [b, c] and all("charts" not in p for p in data["pairs"])
    (capitals,) = data["scores"]
    assert capitals["versus_first"][0]["p_value"] == 2 * (1 + 10) / 2**10


def test_compare_needs_two_runs(registry):
    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", "1"])
    assert out.exit_code == 2 and "two runs or more" in out.output
