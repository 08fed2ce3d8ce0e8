"""Charts and run pages cached by content: warmed once, read by reports, never stale, the same bytes either way."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from tunelab.registry.queries import cached_renders
from tunelab.registry.recording import record_scores
from tunelab.reports import charts, render
from tunelab.reports.charts import Series, bar_spec, line_spec
from tunelab.reports.render import page_format, write_report
from tunelab.reports.render_cache import warm
from tunelab.reports.run_page import page_charts

from tests.helpers import add_run, scores
from tests.reports.parsing import parse


def pages(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.html"))}


def refuse_drawing(monkeypatch) -> None:
    """Fail any attempt to draw a chart: what a report must not need once the cache is warm."""

    def refuse(self):
        raise AssertionError(f"drew a chart: {self.title}")

    monkeypatch.setattr(charts.LineChart, "draw", refuse)
    monkeypatch.setattr(charts.BarChart, "draw", refuse)


def refuse_rendering(monkeypatch) -> None:
    def refuse(registry, run_ids):
        if run_ids:
            raise AssertionError(f"rendered pages that were cached: runs {run_ids}")
        return iter(())

    monkeypatch.setattr("tunelab.reports.render.build_run_pages", refuse)


def test_chart_keys_follow_the_plotted_data_only():
    def loss(values):
        return line_spec([Series("training loss", [1, 2, 3], values)], title="Loss", xlabel="step", ylabel="loss")

    assert loss([3, 2, 1]).key == loss([3.0, 2.0, 1.0]).key  # the same chart
    assert loss([3, 2, 1]).key != loss([3, 2, 1.5]).key
    assert loss([3, 2, 1]).key != line_spec([Series("validation loss", [1, 2, 3], [3, 2, 1])], title="Loss",
                                            xlabel="step", ylabel="loss").key
    bars = bar_spec(["a", "b"], [0.5, 0.25], title="MMLU", xlabel="acc", reference=[0.4, float("nan")])
    assert bars.key == bar_spec(["a", "b"], [0.5, 0.25], title="MMLU", xlabel="acc",
                                reference=[0.4, float("nan")]).key
    assert bars.key != bar_spec(["a", "b"], [0.5, 0.25], title="MMLU", xlabel="acc").key


def test_drawing_is_deterministic_and_undated():
    chart = line_spec([Series("training loss", [1, 2, 3], [3.0, 2.0, 1.5])], title="Loss", xlabel="step",
                      ylabel="loss")
    first, second = chart.draw(), chart.draw()
    assert first == second and first.startswith("<svg")
    assert "dc:date" not in first


def test_warm_caches_charts_and_page_and_the_report_then_draws_nothing(registry, tmp_path, monkeypatch):
    from sqlalchemy import delete
    from tunelab.registry.models import RenderCacheEntry
    from tunelab.registry.queries import run_detail

    run = add_run(registry, "warmed")
    write_report(registry, tmp_path / "cold" / "lb.html", title="t", jobs=1)  # draws, renders, caches
    cold = pages(tmp_path / "cold" / "lb_runs")
    with registry.engine.begin() as connection:
        connection.execute(delete(RenderCacheEntry))

    warm(registry, run)  # what the worker does when the run finishes
    keys = [chart.key for chart in page_charts(run_detail(registry, run)).values()]
    assert len(set(keys)) == 3 and set(keys) <= set(cached_renders(registry, keys))

    refuse_drawing(monkeypatch)
    refuse_rendering(monkeypatch)
    write_report(registry, tmp_path / "warm" / "lb.html", title="t", jobs=1)
    assert pages(tmp_path / "warm" / "lb_runs") == cold  # byte for byte what rendering it gives


def test_a_changed_page_is_rendered_again_with_its_cached_charts(registry, tmp_path, monkeypatch):
    run = add_run(registry, "changing")
    warm(registry, run)
    # A new score changes the run's page (its version), not its charts: the page is rendered, nothing drawn.
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"truthfulqa_mc2": 0.6}))
    refuse_drawing(monkeypatch)
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    document = parse((tmp_path / "lb_runs" / f"run-{run}.html").read_text(encoding="utf-8"))
    assert document.find("tr", data_task="truthfulqa_mc2") is not None
    assert document.find("div", id_="loss-chart").find("svg") is not None


def test_a_page_is_written_again_when_its_run_changes(registry, tmp_path):
    run = add_run(registry, "growing")
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    page = tmp_path / "lb_runs" / f"run-{run}.html"
    assert parse(page.read_text(encoding="utf-8")).find("tr", data_task="truthfulqa_mc2") is None
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"truthfulqa_mc2": 0.6}))
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    assert parse(page.read_text(encoding="utf-8")).find("tr", data_task="truthfulqa_mc2") is not None


def test_cached_pages_link_back_to_the_report_they_are_written_beside(registry, tmp_path, monkeypatch):
    run = add_run(registry, "linked")
    warm(registry, run)
    refuse_rendering(monkeypatch)
    for name in ("leaderboard.html", "q&a.html"):
        write_report(registry, tmp_path / name, title="t", jobs=1)
        runs_dir = tmp_path / f"{Path(name).stem}_runs"
        document = parse((runs_dir / f"run-{run}.html").read_text(encoding="utf-8"))
        (back,) = [a for a in document.iter("a") if "leaderboard" in a.text]
        assert back.attrs["href"] == f"../{name}"


def test_pages_written_in_parallel_are_the_pages_written_alone(registry, tmp_path, monkeypatch):
    runs = [add_run(registry, f"run-{i}", steps=6 + i) for i in range(4)]
    monkeypatch.setattr("tunelab.reports.render._PARALLEL_FROM", 2)
    write_report(registry, tmp_path / "parallel" / "lb.html", title="t", jobs=2)  # forked writers, drawing
    parallel = pages(tmp_path / "parallel" / "lb_runs")
    assert sorted(parallel) == sorted(f"run-{run}.html" for run in runs)
    write_report(registry, tmp_path / "alone" / "lb.html", title="t", jobs=1)  # from the cache they filled
    assert pages(tmp_path / "alone" / "lb_runs") == parallel


@pytest.fixture
def fresh_page_format():
    """page_format() computed afresh in the test, and again after it (it is cached per process)."""
    page_format.cache_clear()
    yield
    page_format.cache_clear()


@pytest.mark.parametrize("module", ["tunelab.reports.render", "tunelab.registry.queries", "tunelab.reports.run_page"])
def test_a_change_to_the_code_that_makes_a_page_renders_cached_pages_again(registry, tmp_path, monkeypatch,
                                                                            fresh_page_format, module):
    # render.py gives the page its context; queries.py builds the RunDetail it shows.
    run = add_run(registry, "coded")
    warm(registry, run)
    before = page_format()
    edited = Path(importlib.import_module(module).__file__).resolve()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: real(self) + (b"\n# edited\n" if self.resolve() == edited else b""))
    page_format.cache_clear()
    assert page_format() != before
    rendered: list[int] = []
    real_build = render.build_run_pages

    def spy(registry, run_ids):
        rendered.extend(run_ids)
        return real_build(registry, run_ids)

    monkeypatch.setattr(render, "build_run_pages", spy)
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    assert rendered == [run]  # the page cached under the old code was not served
