"""The comparison of two runs: spec differences, deltas with McNemar p-values (MMLU's items pooled), flipped items
(parsed HTML)."""

from __future__ import annotations

import json
from dataclasses import replace
from html.parser import HTMLParser

from click.testing import CliRunner
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.reports.compare import build_comparison, spec_differences
from tunelab.reports.render import render_comparison, write_report

from tests.helpers import EVIL, finished_run, scores
from tests.reports.parsing import chart_data, parse, table_rows
from tunelab.cli import cli


def samples(correct: list[bool]) -> list[dict]:
    return [{"doc_id": i, "target": 0, "pick": 0 if ok else 1, "correct": ok,
             "question": f"question {i} {EVIL}", "choices": ["yes", "no"]} for i, ok in enumerate(correct)]


class Cells(HTMLParser):
    """Rows of every table, by table id or class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.tags: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self._table = attrs.get("id") or f"{attrs.get('class')}:{attrs.get('data-task')}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def two_runs(registry):
    a = finished_run(registry, "a", resolved=json.dumps({"method": {"kind": "lora", "r": 8},
                                                         "train": {"learning_rate": 0.001}}))
    b = finished_run(registry, EVIL, resolved=json.dumps({"method": {"kind": "lora", "r": 16},
                                                          "train": {"learning_rate": 0.001}}))
    # 10 items: A right on 0-2, B right on 0-2 and 3-11 -> b=0 lost, c=9 gained... on 12 items.
    a_correct = [True] * 3 + [False] * 9
    b_correct = [True] * 3 + [True] * 9
    b_correct[0] = False  # one item lost: b=1, c=9 -> p = 2 * (1 + 10) / 2**10
    record_scores(registry, a, [replace(s, samples=samples(a_correct)) for s in
                                scores("finetuned", "run:a", {"capitals": 3 / 12})])
    record_scores(registry, b, [replace(s, samples=samples(b_correct)) for s in
                                scores("finetuned", "run:b", {"capitals": 11 / 12})])
    for run in (a, b):
        record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 6)])
    return a, b


def test_spec_differences_only_lists_changed_keys():
    diff = spec_differences({"method": {"r": 8, "kind": "lora"}, "x": 1}, {"method": {"r": 16, "kind": "lora"}})
    assert [(d.key, d.a, d.b) for d in diff] == [("method.r", "8", "16"), ("x", "1", "(not set)")]


def test_comparison_page(registry, tmp_path):
    a, b = two_runs(registry)
    comparison = build_comparison(registry, a, b)
    (capitals,) = comparison.scores
    assert abs(capitals.delta - 8 / 12) < 1e-12
    assert capitals.p_value == 2 * (1 + 10) / 2**10
    assert sorted(f["direction"] for f in capitals.flips) == ["right_to_wrong"] + ["wrong_to_right"] * 9

    parsed = Cells()
    parsed.feed(render_comparison(comparison))
    assert parsed.tables["spec-diff"][1:] == [["method.r", "8", "16"]]
    (row,) = parsed.tables["score-diff"][1:]
    assert row[0] == "capitals" and row[4] == "+0.6667" and row[5] == "0.0215†" and row[6] == "10"
    flips = parsed.tables["flips:capitals"][1:]
    assert len(flips) == 10
    lost = next(r for r in flips if r[6] == "right → wrong")
    assert lost[0] == "0" and lost[4] == "0" and lost[5] == "1"
    assert EVIL in lost[1]  # the item's text, escaped
    assert "img" not in parsed.tags
    (loss,) = chart_data(parse(render_comparison(comparison))).values()  # overlaid loss curves
    assert [line["label"] for line in loss["series"]] == [f"#{a} a", f"#{b} {EVIL}"]
    assert loss["x"] == [1, 2, 3, 4, 5] and loss["series"][1]["y"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_compare_cli_text_and_file(registry, tmp_path):
    a, b = two_runs(registry)
    # The CLI opens the registry by URL: point it at the fixture's database.
    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", str(a), str(b), "-o", str(tmp_path / "c.html")])
    assert out.exit_code == 0, out.output
    assert "method.r" in out.output and "+0.6667" in out.output
    assert (tmp_path / "c.html").is_file()


def test_compare_cli_json_has_the_numbers_and_no_chart(registry):
    a, b = two_runs(registry)
    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", str(a), str(b), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    (capitals,) = data["scores"]
    assert capitals["p_value"] == 2 * (1 + 10) / 2**10 and "charts" not in data


def test_comparison_lists_mmlu_subjects_worst_change_first(registry):
    from tests.helpers import subject_scores

    a = finished_run(registry, "a")
    b = finished_run(registry, "b")
    record_scores(registry, a, scores("finetuned", "run:a", {"mmlu": 0.5}))
    record_scores(registry, a, subject_scores("finetuned", "run:a", {"anatomy": 0.5, "virology": 0.5, "law": 0.4}))
    record_scores(registry, b, scores("finetuned", "run:b", {"mmlu": 0.5}))
    record_scores(registry, b, subject_scores("finetuned", "run:b", {"anatomy": 0.7, "virology": 0.2}))
    comparison = build_comparison(registry, a, b)
    rows = table_rows(parse(render_comparison(comparison)).find("table", id_="subjects"))
    assert rows == [["virology", "0.5000", "0.2000", "-0.3000"], ["anatomy", "0.5000", "0.7000", "+0.2000"],
                    ["law", "0.4000", "", ""]]


def test_a_metric_without_per_item_right_or_wrong_has_flips_but_no_p_value(registry):
    # TruthfulQA's MC2 (a probability mass per item): the picks still flip; McNemar's test is not about mc2.
    a = finished_run(registry, "a")
    b = finished_run(registry, "b")

    def mc2_log(right: list[bool]) -> list[dict]:
        return [dict(item, correct=None, pick_right=item["correct"], score=0.5) for item in samples(right)]

    record_scores(registry, a, [replace(s, samples=mc2_log([True] * 3 + [False] * 9))
                                for s in scores("finetuned", "run:a", {"truthfulqa_mc2": 0.3})])
    record_scores(registry, b, [replace(s, samples=mc2_log([False] + [True] * 11))
                                for s in scores("finetuned", "run:b", {"truthfulqa_mc2": 0.6})])
    comparison = build_comparison(registry, a, b)
    (mc2,) = comparison.scores
    assert mc2.p_value is None
    assert sorted(f["direction"] for f in mc2.flips) == ["right_to_wrong"] + ["wrong_to_right"] * 9
    parsed = Cells()
    parsed.feed(render_comparison(comparison))
    (row,) = parsed.tables["score-diff"][1:]
    assert row[0] == "truthfulqa_mc2" and row[5] == "" and row[6] == "10"


def test_mmlu_gets_flips_and_a_p_value_by_pooling_its_subjects_items(registry, tmp_path):
    from tests.helpers import B1_C9, subject_scores

    a, b = finished_run(registry, "a"), finished_run(registry, "b")
    # anatomy: B loses item 0 and gains 3-5 (b=1, c=3); virology: B gains all six (c=6). Pooled: b=1, c=9.
    logs = {a: {"anatomy": [True] * 3 + [False] * 3, "virology": [False] * 6},
            b: {"anatomy": [False] + [True] * 5, "virology": [True] * 6}}
    for run in (a, b):
        values = {subject: sum(right) / 6 for subject, right in logs[run].items()}
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"mmlu": sum(values.values()) / 2}))
        record_scores(registry, run, [replace(s, samples=samples(logs[run][s.task.removeprefix("mmlu_")]))
                                      for s in subject_scores("finetuned", f"run:{run}", values)])
    (mmlu,) = build_comparison(registry, a, b).scores
    assert mmlu.p_value == B1_C9  # as the leaderboard pools MMLU's items against the base
    assert len(mmlu.flips) == 10
    assert {(f["subject"], f["doc_id"]) for f in mmlu.flips if f["direction"] == "right_to_wrong"} == {("anatomy", 0)}

    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", str(a), str(b), "-o", str(tmp_path / "c.html")])
    assert out.exit_code == 0, out.output
    (row,) = [line for line in out.output.splitlines() if line.startswith("│ mmlu")]
    assert [cell.strip() for cell in row.strip("│").split("│")][-2:] == ["0.0215", "10"]
    flips = parse((tmp_path / "c.html").read_text(encoding="utf-8")).find("table", data_task="mmlu")
    assert sorted(row[0] for row in table_rows(flips))[:2] == ["anatomy 0", "anatomy 3"]  # subject and item


def test_an_mmlu_subject_logged_for_one_run_only_gives_no_p_value(registry):
    from tests.helpers import subject_scores

    a, b = finished_run(registry, "a"), finished_run(registry, "b")
    for run, subjects in ((a, ("anatomy", "virology")), (b, ("anatomy",))):
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"mmlu": 0.5}))
        record_scores(registry, run, [replace(s, samples=samples([True, False])) for s in
                                      subject_scores("finetuned", f"run:{run}", dict.fromkeys(subjects, 0.5))])
    (mmlu,) = build_comparison(registry, a, b).scores
    assert mmlu.p_value is None  # a test of some subjects is no test of MMLU


def test_flipped_items_list_each_choice_on_a_line_of_its_own(registry):
    a, b = two_runs(registry)
    document = parse(render_comparison(build_comparison(registry, a, b)))
    flips = document.find("table", data_task="capitals")
    row = flips.find("tbody").find("tr")
    choices = row.find("ol", **{"class": "choices"})
    assert [item.text for item in choices.iter("li")] == ["yes", "no"]  # not joined into one long line
    assert choices.attrs["start"] == "0"  # numbered as the picks and the correct answer are


def test_a_change_that_rounds_to_zero_is_neither_red_nor_negative(registry):
    a, b = finished_run(registry, "a"), finished_run(registry, "b")
    record_scores(registry, a, scores("finetuned", "run:a", {"capitals": 0.50001}))
    record_scores(registry, b, scores("finetuned", "run:b", {"capitals": 0.5}))
    (capitals,) = build_comparison(registry, a, b).scores
    assert (capitals.delta_text, capitals.delta_class) == ("+0.0000", "flat")
    delta = parse(render_comparison(build_comparison(registry, a, b))).find("table", id_="score-diff").find("span")
    assert (delta.text, delta.attrs["class"]) == ("+0.0000", "delta flat")


def test_names_with_dollar_signs_are_text_in_the_comparison_and_the_report(registry, tmp_path):
    # Once drawn by matplotlib, whose mathtext parsed "$...$" in a label and failed on this one.
    name = r"$\alpha$ run $x^{2$ \frac"
    a, b = finished_run(registry, name), finished_run(registry, "$plain$")
    for run in (a, b):
        record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 6)])
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    out = CliRunner().invoke(cli, ["--db", registry.url, "compare", str(a), str(b), "-o", str(tmp_path / "c.html")])
    assert out.exit_code == 0, out.output
    document = parse((tmp_path / "c.html").read_text(encoding="utf-8"))
    assert name in document.find("h1", id_="compare-title").text
    assert [line["label"] for line in chart_data(document)["loss"]["series"]] == [f"#{a} {name}", f"#{b} $plain$"]
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    run_page = parse((tmp_path / "lb_runs" / f"run-{a}.html").read_text(encoding="utf-8"))
    assert name in run_page.find("h1", id_="run-title").text
