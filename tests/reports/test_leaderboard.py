"""The leaderboard from a known registry: rows, ordering, averages, deltas, escaping (parsed HTML)."""

from __future__ import annotations

from html.parser import HTMLParser

from tunelab.registry.recording import record_scores
from tunelab.reports.leaderboard import build_leaderboard
from tunelab.reports.render import write_leaderboard

from tests.helpers import EVIL, finished_run, scores
from tests.reports.parsing import parse


class Table(HTMLParser):
    """Collects body rows as (kind, [cell data-value...], [cell text...]) and every start tag."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str], list[str]]] = []
        self.tags: list[str] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append((attrs.get("data-kind", ""), [], []))
        elif tag == "td" and self._in_body:
            self.rows[-1][1].append(attrs.get("data-value", ""))
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1][2].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def render(registry, tmp_path) -> Table:
    out = tmp_path / "lb.html"
    write_leaderboard(build_leaderboard(registry), out)
    parser = Table()
    parser.feed(out.read_text(encoding="utf-8"))
    return parser


def test_rows_sorted_by_average_with_base_once_and_deltas(registry, tmp_path):
    base_values = {"arc_challenge": 0.20, "hellaswag": 0.25, "mmlu": 0.24, "truthfulqa_mc2": 0.45, "capitals": 0.2}
    good = finished_run(registry, "good")
    record_scores(registry, good, scores("finetuned", f"run:{good}",
                                         {"arc_challenge": 0.30, "hellaswag": 0.35, "mmlu": 0.30,
                                          "truthfulqa_mc2": 0.45, "capitals": 0.9}))
    record_scores(registry, good, scores("base", "tiny", base_values))
    weak = finished_run(registry, "weak")
    record_scores(registry, weak, scores("finetuned", f"run:{weak}",
                                         {"arc_challenge": 0.10, "hellaswag": 0.20, "mmlu": 0.20,
                                          "truthfulqa_mc2": 0.30, "capitals": 0.5}))
    record_scores(registry, weak, scores("base", "tiny", base_values))  # same base, same settings: one row

    table = render(registry, tmp_path)
    labels = [(kind, texts[0].split()[0]) for kind, _, texts in table.rows]
    assert labels == [("finetuned", "good"), ("base", "tiny"), ("finetuned", "weak")]

    kind, values, texts = table.rows[0]
    # columns: model, method, base, ARC, HellaSwag, MMLU, TruthfulQA, capitals, average, loss
    assert [float(v) for v in values[3:8]] == [0.30, 0.35, 0.30, 0.45, 0.9]
    assert abs(float(values[8]) - (0.30 + 0.35 + 0.30 + 0.45) / 4) < 1e-9  # custom task not in the average
    assert texts[3] == "30.0+10.0"  # score and its delta against the base
    assert "*" in texts[4]  # hellaswag marked not comparable
    assert texts[6] == "45.0+0.0"


def test_user_strings_are_escaped(registry, tmp_path):
    run = finished_run(registry, EVIL)
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    table = render(registry, tmp_path)
    assert table.rows[0][2][0].startswith(EVIL)  # shown as text
    assert "img" not in table.tags  # never parsed as an element
    assert "<img" not in (tmp_path / "lb.html").read_text()


def test_report_is_self_contained(registry, tmp_path):
    run = finished_run(registry, "r")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    render(registry, tmp_path)
    html = (tmp_path / "lb.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "src=" not in html


def test_cells_evaluated_differently_from_their_column_are_flagged(registry, tmp_path):
    from dataclasses import replace

    def with_config(records, config):
        return [replace(r, fingerprint={"eval_key": "k", "lm_eval_version": "0.4.13",
                                        "tasks": {r.task: {"config_sha256": config}}}) for r in records]

    same_a, same_b, odd = (finished_run(registry, n) for n in ("a", "b", "odd"))
    record_scores(registry, same_a, with_config(scores("finetuned", "run:a", {"mmlu": 0.30}), "c1"))
    record_scores(registry, same_b, with_config(scores("finetuned", "run:b", {"mmlu": 0.32}), "c1"))
    record_scores(registry, odd, with_config(scores("finetuned", "run:odd", {"mmlu": 0.90}), "c2"))
    board = build_leaderboard(registry)
    flags = {row.label: row.cells["mmlu"].comparable for row in board.rows}
    assert flags == {"a": True, "b": True, "odd": False}
    table = render(registry, tmp_path)
    texts = {texts[0].split(" #")[0]: texts[3] for _, _, texts in table.rows}
    assert "*" in texts["odd"] and "*" not in texts["a"]


def test_cells_evaluated_at_another_batch_size_are_flagged(registry, tmp_path):
    from dataclasses import replace

    def at_batch_size(records, batch_size):
        return [replace(r, fingerprint={"eval_key": f"k{batch_size}", "lm_eval_version": "0.4.13",
                                        "batch_size": batch_size, "tasks": {r.task: {"config_sha256": "c1"}}})
                for r in records]

    same_a, same_b, odd = (finished_run(registry, n) for n in ("a", "b", "odd"))
    record_scores(registry, same_a, at_batch_size(scores("finetuned", "run:a", {"mmlu": 0.30}), 8))
    record_scores(registry, same_b, at_batch_size(scores("finetuned", "run:b", {"mmlu": 0.32}), 8))
    record_scores(registry, odd, at_batch_size(scores("finetuned", "run:odd", {"mmlu": 0.31}), "auto"))
    cells = {row.label: row.cells["mmlu"] for row in build_leaderboard(registry).rows}
    assert {label: cell.comparable for label, cell in cells.items()} == {"a": True, "b": True, "odd": False}
    # The hover note names what differs, with both values.
    assert cells["odd"].note == ("evaluated at other settings than most of this column (fingerprint differs): "
                                 "batch size auto here, 8 in most of the column")
    render(registry, tmp_path)
    html = (tmp_path / "lb.html").read_text(encoding="utf-8")  # the note is the mark's hover text
    assert 'title="evaluated at other settings than most of this column (fingerprint differs): batch size auto' in html


def test_models_evaluated_with_tunelab_eval_get_rows(registry, tmp_path):
    run = finished_run(registry, "tuned")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    from dataclasses import replace

    record_scores(registry, None, [replace(s, model_kind="eval") for s in
                                   scores("eval", "some/hub-model", {"arc_challenge": 0.6, "mmlu": 0.5})])
    board = build_leaderboard(registry)
    by_label = {row.label: row for row in board.rows}
    assert by_label["some/hub-model"].kind == "eval"
    assert by_label["some/hub-model"].cells["mmlu"].value == 0.5
    assert [c.key for c in board.columns] == ["arc_challenge", "mmlu"]
    table = render(registry, tmp_path)
    assert ("eval", ) == tuple({kind for kind, _, texts in table.rows if texts[0].startswith("some/hub-model")})


def test_deltas_show_their_significance_against_the_base(registry, tmp_path):
    from dataclasses import replace

    from tests.helpers import B1_C9, item_log, logs_b1_c9

    before, after = logs_b1_c9()
    run = finished_run(registry, "sig")
    finetuned = scores("finetuned", f"run:{run}", {"arc_challenge": 0.9, "mmlu": 0.5})
    base = scores("base", "tiny", {"arc_challenge": 0.25, "mmlu": 0.5})
    record_scores(registry, run, [replace(s, samples=after if s.task == "arc_challenge"
                                          else item_log([True, False] * 3)) for s in finetuned])
    record_scores(registry, run, [replace(s, samples=before if s.task == "arc_challenge"
                                          else item_log([False, True] * 3)) for s in base])
    write_leaderboard(build_leaderboard(registry), tmp_path / "lb.html")
    document = parse((tmp_path / "lb.html").read_text(encoding="utf-8"))
    row = document.find("tr", data_kind="finetuned")
    arc, mmlu = row.find("td", data_key="arc_challenge"), row.find("td", data_key="mmlu")

    arc_delta = arc.find("span", **{"class": "delta up"})
    assert float(arc_delta.attrs["data-p"]) == B1_C9
    # Two tested deltas in the report: Holm doubles the smaller p-value (0.043), still below 0.05.
    assert arc_delta.attrs["title"].startswith("p = 0.0215, Holm-adjusted 0.043 (significant")
    assert arc_delta.find("span", **{"class": "sig"}).text == "†"  # the visible marker
    # Six items each flipped the other way: b = c = 3, p = 1; shown on hover, no marker.
    mmlu_delta = mmlu.find("span", **{"class": "delta flat"})
    assert float(mmlu_delta.attrs["data-p"]) == 1.0 and "not significant" in mmlu_delta.attrs["title"]
    assert mmlu_delta.find("span", **{"class": "sig"}) is None
    assert document.find("tr", data_kind="base").find("span", **{"class": "sig"}) is None


def test_the_last_validation_loss_has_a_column(registry, tmp_path):
    from tunelab.registry.recording import MetricPoint, record_metrics

    run = finished_run(registry, "validated")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    record_metrics(registry, run, [MetricPoint(step=5, eval_loss=0.9), MetricPoint(step=10, eval_loss=0.7)])
    (row,) = build_leaderboard(registry).rows
    assert row.val_loss == 0.7
    write_leaderboard(build_leaderboard(registry), tmp_path / "lb.html")
    document = parse((tmp_path / "lb.html").read_text(encoding="utf-8"))
    cell = document.find("tr", data_kind="finetuned").find("td", data_key="val_loss")
    assert (cell.attrs["data-value"], cell.text) == ("0.7", "0.7000")
    assert "Val loss" in [th.text for th in document.find("thead").iter("th")]


def test_a_reproduction_is_marked_with_a_link_to_its_original(registry, tmp_path):
    from sqlalchemy import text

    original, copy = finished_run(registry, "original"), finished_run(registry, "copy")
    for run in (original, copy):
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    with registry.engine.begin() as connection:
        connection.execute(text("UPDATE run SET reproduces_run_id = :o WHERE id = :c"), {"o": original, "c": copy})
    write_leaderboard(build_leaderboard(registry, run_href=lambda run: f"./runs/run-{run}.html"), tmp_path / "lb.html")
    document = parse((tmp_path / "lb.html").read_text(encoding="utf-8"))
    marks = [span for span in document.iter("span") if span.attrs.get("class") == "repro"]
    assert [(mark.text, mark.attrs["data-reproduces"]) for mark in marks] == [
        (f"reproduces #{original}", str(original))]
    assert marks[0].find("a").attrs["href"] == f"./runs/run-{original}.html"


def test_rows_of_one_base_model_at_different_settings_say_what_differs(registry, tmp_path):
    from dataclasses import replace

    def evaluated(records, seed, limit):
        return [replace(r, limit=limit, fingerprint={"eval_key": f"k{seed}-{limit}", "seed": seed, "limit": limit,
                                                     "batch_size": 8}) for r in records]

    first, second = finished_run(registry, "first"), finished_run(registry, "second")
    for run, seed, limit in ((first, 7, 0), (second, 1234, 4)):
        record_scores(registry, run, evaluated(scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}), seed, limit))
        record_scores(registry, run, evaluated(scores("base", "tiny", {"arc_challenge": 0.25}), seed, limit))
    bases = [row for row in build_leaderboard(registry).rows if row.kind == "base"]
    assert sorted(row.settings for row in bases) == ["evaluated with limit 0, seed 7",
                                                     "evaluated with limit 4, seed 1234"]
    table = render(registry, tmp_path)
    assert sorted(texts[-1] for kind, _, texts in table.rows if kind == "base") == [
        "evaluated with limit 0, seed 7", "evaluated with limit 4, seed 1234"]


def test_an_average_that_is_not_the_leaderboards_is_marked(registry, tmp_path):
    run = finished_run(registry, "partial")
    # Two of the four benchmarks, one of them not comparable (scores() marks hellaswag so).
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3, "hellaswag": 0.5}))
    (row,) = build_leaderboard(registry).rows
    assert not row.average.comparable
    assert row.average.note == ("not the leaderboard's average: without MMLU, TruthfulQA; includes scores not "
                                "leaderboard-comparable (HellaSwag)")
    write_leaderboard(build_leaderboard(registry), tmp_path / "lb.html")
    average = parse((tmp_path / "lb.html").read_text(encoding="utf-8")).find("td", data_key="average")
    assert average.find("span", **{"class": "nc"}).attrs["title"] == row.average.note
