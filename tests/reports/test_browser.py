"""The report in a real browser (headless Chromium): sorting, filtering, charts drawn from the page's data (points
on the canvas, hover values, series toggles), and no script injection through names, in tables or chart data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tunelab.registry.recording import MetricPoint, record_metrics, record_samples, record_scores
from tunelab.registry.samples import GeneratedText
from tunelab.reports.compare import build_comparison, build_many_comparison
from tunelab.reports.render import render_comparison, render_many_comparison, render_run_page, write_report
from tunelab.reports.run_page import build_run_page

from tests.helpers import EVIL, finished_run, scores, subject_scores, sweep_runs

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# A name that would end the chart data's <script> element, open a comment in it, and end a line of JavaScript.
SCRIPT_BREAKER = "</script><script>alert(1)</script><!--<script>\u2028x\u2029"
TRAINING_LOSS_RGB = (0x1F, 0x77, 0xB4)  # the first series' colour in charts.js
BAR_RGB = (0x1F, 0x77, 0xB4)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Chromium is needed for the browser tests: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page that records alert dialogs and script errors (both must stay empty)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.dialogs, page.errors = [], []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    assert page.dialogs == [] and page.errors == []
    page.close()


@pytest.fixture
def report(registry, tmp_path) -> Path:
    values = [("alpha", 0.30), ("beta", 0.50), (EVIL, 0.40)]
    for name, arc in values:
        run = finished_run(registry, name)
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": arc, "hellaswag": 0.3}))
        record_scores(registry, run, scores("base", "tiny", {"arc_challenge": 0.25, "hellaswag": 0.3}))
        record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 11)])
        record_metrics(registry, run, [MetricPoint(step=s, eval_loss=3.5 / s) for s in (5, 10)])
        record_scores(registry, run, subject_scores("finetuned", f"run:{run}",
                                                    {"anatomy": 0.5, "virology": 0.25, "world_religions": 0.75}))
        record_scores(registry, run, subject_scores("base", "tiny", {"anatomy": 0.4, "virology": 0.3}))
    out = tmp_path / "leaderboard.html"
    write_report(registry, out, title="browser test")
    return out


def column_texts(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr",
        f"rows => rows.filter(r => r.style.display !== 'none').map(r => r.cells[{index}].innerText)",
    )


def colored_pixels(page, chart: str, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels of the chart's canvas within `tolerance` of a colour: what the browser drew of a series."""
    return page.evaluate("""([chart, rgb, tolerance]) => {
        const canvas = document.querySelector(`#${chart}-chart canvas`);
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let i = 0; i < pixels.length; i += 4) {
            if (pixels[i + 3] > 200 && Math.abs(pixels[i] - rgb[0]) <= tolerance &&
                Math.abs(pixels[i + 1] - rgb[1]) <= tolerance && Math.abs(pixels[i + 2] - rgb[2]) <= tolerance) {
                count++;
            }
        }
        return count;
    }""", [chart, list(rgb), tolerance])


def legend(page, chart: str) -> dict[str, str]:
    """The chart's legend: each series' label and the value it shows."""
    rows = page.eval_on_selector_all(
        f"#{chart}-chart .u-legend .u-series",
        "rows => rows.map(r => [r.querySelector('.u-label').textContent, r.querySelector('.u-value').textContent])")
    return dict(rows)


def hover(page, chart: str, x: float, y: float) -> None:
    """Move the mouse to a point of the chart's plot area, in fractions of its width and height."""
    plot = page.locator(f"#{chart}-chart .u-over")
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])


def test_sort_filter_and_no_script_runs(page, report):
    page.goto(report.as_uri())

    names = [text.split(" #")[0] for text in column_texts(page, 0)]
    assert names[0] == "beta"  # sorted by average, best first
    assert EVIL in names  # the would-be tag shows as text
    assert page.locator("#leaderboard img").count() == 0

    page.click("th[data-key='arc_challenge']")
    arc = [float(t.split("+")[0].split("-")[0].rstrip("*")) for t in column_texts(page, 3)]
    assert arc == sorted(arc, reverse=True)
    page.click("th[data-key='arc_challenge']")
    arc = [float(t.split("+")[0].split("-")[0].rstrip("*")) for t in column_texts(page, 3)]
    assert arc == sorted(arc)

    page.fill("#filter", "alp")
    assert [t.split(" #")[0] for t in column_texts(page, 0)] == ["alpha"]
    page.fill("#filter", "")
    assert len(column_texts(page, 0)) == 4  # three runs and their shared base

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)


def test_run_page_draws_its_charts_and_escapes_the_name(page, report):
    page.goto(report.as_uri())
    page.click(f"text={EVIL}")
    assert "_runs/run-" in page.url
    assert EVIL in page.inner_text("#run-title")
    assert page.locator("img").count() == 0
    drawn = page.evaluate("() => Object.fromEntries(Object.entries(window.tunelabCharts).map("
                          "([name, plot]) => [name, plot.data.slice(1).map(s => s.filter(v => v != null).length)]))")
    assert drawn == {"loss": [10, 2], "lr": [10], "mmlu": [3, 2]}  # the points of every series
    assert colored_pixels(page, "loss", TRAINING_LOSS_RGB) > 100  # the training loss line is on the canvas
    assert colored_pixels(page, "mmlu", BAR_RGB) > 500  # and the MMLU bars
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)


def test_hovering_a_chart_shows_the_values_under_the_cursor(page, report):
    page.goto(report.as_uri())
    page.click("text=alpha")
    assert legend(page, "loss") == {"step": "--", "training loss": "--", "validation loss": "--"}
    hover(page, "loss", 0.45, 0.5)  # near step 5: where validation loss has a point too
    shown = legend(page, "loss")
    step = int(shown["step"])
    assert 1 <= step <= 10
    assert float(shown["training loss"]) == pytest.approx(3.0 / step, rel=1e-3)
    assert shown["validation loss"] == ("--" if step not in (5, 10) else f"{3.5 / step:.4g}")

    hover(page, "mmlu", 0.5, 0.1)  # the top bar: the first subject
    assert legend(page, "mmlu") == {"subject": "anatomy", "fine-tuned": "0.5", "base": "0.4"}
    hover(page, "mmlu", 0.5, 0.9)  # the bottom bar: a subject the base model was not evaluated on
    assert legend(page, "mmlu") == {"subject": "world religions", "fine-tuned": "0.75", "base": "--"}


def test_a_series_is_toggled_from_the_legend(page, report):
    page.goto(report.as_uri())
    page.click("text=beta")
    before = colored_pixels(page, "loss", TRAINING_LOSS_RGB)
    assert before > 100
    toggle = page.locator("#loss-chart .u-legend .u-series").filter(has_text="training loss")
    toggle.locator(".u-label").click()
    assert "u-off" in toggle.get_attribute("class")
    assert page.evaluate("() => window.tunelabCharts.loss.series[1].show") is False
    assert colored_pixels(page, "loss", TRAINING_LOSS_RGB) < before / 20  # the line is gone from the canvas
    toggle.locator(".u-label").click()
    assert colored_pixels(page, "loss", TRAINING_LOSS_RGB) == pytest.approx(before, rel=0.05)


def test_a_name_that_would_end_the_chart_script_is_data_on_the_compare_page(page, registry, tmp_path):
    a, b = finished_run(registry, "plain"), finished_run(registry, SCRIPT_BREAKER)
    for run in (a, b):
        record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 6)])
    html = render_comparison(build_comparison(registry, a, b))
    assert html.count("</script>") == 3  # the chart data, uPlot and charts.js: the name ends none of them
    out = tmp_path / "compare.html"
    out.write_text(html, encoding="utf-8")

    page.goto(out.as_uri())
    assert SCRIPT_BREAKER in page.inner_text("#compare-title")
    labels = list(legend(page, "loss"))
    assert labels == ["step", f"#{a} plain", f"#{b} {SCRIPT_BREAKER}"]  # shown as text, exactly
    assert page.evaluate("() => window.tunelabCharts.loss.data[2].length") == 5
    assert page.locator("script").count() == 3


VALIDATION_LOSS_RGB = (0xFF, 0x7F, 0x0E)  # the second series' colour in charts.js


def test_a_single_validation_point_at_the_end_of_training_is_drawn(page, registry, tmp_path):
    run = finished_run(registry, "one-validation")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 51)])
    record_metrics(registry, run, [MetricPoint(step=50, eval_loss=0.5)])  # no neighbour to draw a line to
    write_report(registry, tmp_path / "lb.html", title="t", jobs=1)
    page.goto((tmp_path / "lb_runs" / f"run-{run}.html").as_uri())
    assert colored_pixels(page, "loss", VALIDATION_LOSS_RGB, tolerance=30) > 10  # the point is on the canvas


def test_the_leaderboard_fits_a_1400_pixel_window_with_every_column_visible(browser, registry, tmp_path):
    from dataclasses import replace

    base = "/home/someone/models/TinyLlama-1.1B-intermediate-step-1431k-3T"
    spec = json.dumps({"method": {"kind": "lora", "r": 16}, "model": {"base": base},
                       "train": {"learning_rate": 0.0003, "max_steps": 200, "batch_size": 8, "grad_accum": 4}})
    values = {"arc_challenge": 0.31, "hellaswag": 0.45, "mmlu": 0.26, "truthfulqa_mc2": 0.41, "capitals": 0.6,
              "capitals_of_the_world_long_task_name": 0.5}
    for i, lr in enumerate(["0.0001", "0.0002", "0.0003"]):
        run = finished_run(registry, f"si-lora-alpaca-cleaned/train.learning_rate={lr},method.r=16", resolved=spec)
        record_scores(registry, run, scores("finetuned", f"run:{run}", {k: v + i / 50 for k, v in values.items()}))
        # The first run's base was evaluated at another batch size: a second base row, and marked cells.
        record_scores(registry, run, [replace(s, fingerprint={"eval_key": f"k{min(i, 1)}", "batch_size": 8 >> (i == 0)})
                                      for s in scores("base", base, values)])
        record_metrics(registry, run, [MetricPoint(step=200, eval_loss=1.2345)])
    out = tmp_path / "leaderboard.html"
    write_report(registry, out, title="t", jobs=1)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(out.as_uri())
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1400  # nothing hidden to the side
    edges = page.eval_on_selector_all("#leaderboard th, #leaderboard td",
                                      "cells => cells.map(c => { const r = c.getBoundingClientRect();"
                                      " return [r.left, r.right, r.width]; })")
    assert all(left >= 0 and right <= 1400 and width > 0 for left, right, width in edges)
    headers = page.eval_on_selector_all("#leaderboard th", "cells => cells.map(c => c.textContent.trim())")
    assert headers[-4:] == ["Train s", "Examples", "Cost / pt", "Key settings"] and "Val loss" in headers
    page.screenshot(path=str(ARTIFACTS / "leaderboard-1400.png"), full_page=True) if ARTIFACTS.is_dir() else None
    page.close()


def test_a_long_legend_stays_under_the_plot_and_inside_the_chart(page, registry, tmp_path):
    # Sweep points of a long experiment name, one with "$...$" (once a matplotlib mathtext crash): text, exactly.
    names = ["si-lora-alpaca-cleaned-with-a-long-name/train.learning_rate=0.0001,method.r=16,train.warmup_steps=10",
             r"$\alpha$-sweep/train.learning_rate=0.0003,method.r=16,train.warmup_steps=10,train.weight_decay=0.01"]
    a, b = (finished_run(registry, name) for name in names)
    for run, k in ((a, 1.0), (b, 1.2)):
        record_metrics(registry, run, [MetricPoint(step=s, loss=k * 2 / s ** 0.5) for s in range(1, 301)])
    out = tmp_path / "compare.html"
    out.write_text(render_comparison(build_comparison(registry, a, b)), encoding="utf-8")
    page.set_viewport_size({"width": 900, "height": 900})
    page.goto(out.as_uri())
    assert list(legend(page, "loss")) == ["step", f"#{a} {names[0]}", f"#{b} {names[1]}"]
    plot = page.locator("#loss-chart .u-over").bounding_box()
    chart = page.locator("#loss-chart .uplot").bounding_box()
    shown = page.locator("#loss-chart .u-legend").bounding_box()
    assert shown["y"] >= plot["y"] + plot["height"]  # under the curves, never over them
    assert shown["x"] >= chart["x"] - 1 and shown["x"] + shown["width"] <= chart["x"] + chart["width"] + 1
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 900


@pytest.mark.parametrize("name", ["report-2024-05-01T12:00.html", "javascript:alert(document.domain)%2F%2F.html"])
def test_a_report_link_opens_the_run_page_whatever_the_report_is_called(page, registry, tmp_path, name):
    run = finished_run(registry, "linked")
    record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": 0.3}))
    out = tmp_path / name
    write_report(registry, out, title="t", jobs=1)
    page.goto(out.as_uri())
    page.click("text=linked")  # a link read as a scheme would go nowhere, or run script (the fixture checks none ran)
    page.wait_for_load_state()
    assert page.url.endswith(f"_runs/run-{run}.html")
    assert "linked" in page.inner_text("#run-title")
    page.click("text=leaderboard")  # and back
    page.wait_for_load_state()
    assert page.locator("#leaderboard").count() == 1


def test_samples_that_hold_tags_and_script_ends_show_as_text_on_run_and_compare_pages(page, registry, tmp_path):
    runs = []
    for name in ("a", "b"):
        run = finished_run(registry, name)
        record_metrics(registry, run, [MetricPoint(step=s, loss=1.0 / s) for s in range(1, 6)])
        for kind in ("finetuned", "base"):
            record_samples(registry, run, kind, [GeneratedText(0, f"{EVIL} {SCRIPT_BREAKER}", EVIL,
                                                               f"{kind} {name} {SCRIPT_BREAKER} {EVIL}")],
                           settings={"max_new_tokens": 8})
        runs.append(run)
    pages = {"run": render_run_page(build_run_page(registry, runs[0])),
             "compare": render_comparison(build_comparison(registry, *runs))}
    for kind, html in pages.items():
        out = tmp_path / f"{kind}.html"
        out.write_text(html, encoding="utf-8")
        page.goto(out.as_uri())
        cells = page.eval_on_selector_all("#samples tbody td", "cells => cells.map(c => c.innerText)")
        assert f"{EVIL} {SCRIPT_BREAKER}" in cells and f"finetuned a {SCRIPT_BREAKER} {EVIL}" in cells
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 3  # the chart data, uPlot and charts.js: nothing injected
        assert page.evaluate("() => Object.keys(window.tunelabCharts)") == ["loss"]
    # The page fixture fails the test on any dialog or script error.


def test_the_comparison_of_three_runs_draws_their_loss_curves_overlaid(page, registry, tmp_path):
    runs = []
    for index, name in enumerate(("one", "two", EVIL)):
        run = finished_run(registry, name)
        record_metrics(registry, run, [MetricPoint(step=s, loss=(index + 1) / s) for s in range(1, 8)])
        runs.append(run)
    out = tmp_path / "compare.html"
    out.write_text(render_many_comparison(build_many_comparison(registry, runs)), encoding="utf-8")
    page.goto(out.as_uri())
    assert EVIL in page.inner_text("#compare-title")
    assert list(legend(page, "loss")) == ["step", *(f"#{run} {name}" for run, name in zip(runs, ("one", "two", EVIL),
                                                                                           strict=True))]
    assert page.evaluate("() => window.tunelabCharts.loss.data.slice(1).map(s => s.length)") == [7, 7, 7]
    assert colored_pixels(page, "loss", TRAINING_LOSS_RGB) > 100


def visible_rows(page) -> list[str]:
    """The leaderboard body's shown rows: a group's head by its group, any other row by its model cell."""
    return page.eval_on_selector_all(
        "#leaderboard tbody tr",
        "rows => rows.filter(r => r.style.display !== 'none').map(r => r.classList.contains('group-head') ?"
        " 'group:' + r.dataset.group : r.cells[0].innerText.split(' #')[0])")


def test_a_sweep_collapses_under_its_best_point_and_columns_can_be_hidden(browser, registry, tmp_path):
    plain = finished_run(registry, "plain")
    record_scores(registry, plain, scores("finetuned", f"run:{plain}", {"arc_challenge": 0.45}))
    sweep = sweep_runs(registry, "lr", {1e-4: 0.30, 1e-3: 0.50, 1e-2: 0.40})
    out = tmp_path / "leaderboard.html"
    write_report(registry, out, title="t", jobs=1)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(out.as_uri())
    group = page.get_attribute("tr.group-head", "data-group")
    assert visible_rows(page) == [f"group:{group}", "plain", "tiny"]  # collapsed: the best point stands for it
    assert "best: lr/lr=0.001" in page.inner_text("tr.group-head")

    page.click("tr.group-head button.toggle")
    assert visible_rows(page) == [f"group:{group}", "lr/lr=0.001", "lr/lr=0.01", "lr/lr=0.0001", "plain", "tiny"]
    page.click("th[data-key='arc_challenge']")  # ascending now: units move whole, points sorted within
    page.click("th[data-key='arc_challenge']")
    assert visible_rows(page) == ["tiny", "plain", f"group:{group}", "lr/lr=0.0001", "lr/lr=0.01", "lr/lr=0.001"]
    page.fill("#filter", "lr=0.01")
    assert visible_rows(page) == [f"group:{group}", "lr/lr=0.01"]
    page.fill("#filter", "")
    page.click("tr.group-head button.toggle")
    assert visible_rows(page) == ["tiny", "plain", f"group:{group}"]
    assert len(sweep) == 3 and page.evaluate("() => document.documentElement.scrollWidth") <= 1400

    page.click("#column-picker summary")
    page.uncheck("#column-choices input[data-col='final_loss']")
    assert not page.is_visible("th[data-col='final_loss']")
    page.reload()  # remembered in this browser
    assert not page.is_visible("th[data-col='final_loss']") and page.is_visible("th[data-col='val_loss']")
    widths = page.eval_on_selector_all("#leaderboard tbody tr.group-head td",
                                       "cells => cells.filter(c => c.style.display !== 'none').length")
    assert widths == len(page.eval_on_selector_all("#leaderboard th", "t => t.filter(c => c.style.display !== 'none')"))
    page.click("#column-picker summary")
    page.check("#column-choices input[data-col='final_loss']")
    page.reload()
    assert page.is_visible("th[data-col='final_loss']")
    page.close()


def test_the_sweep_page_draws_a_scatter_per_parameter_and_every_points_loss(page, registry, tmp_path):
    runs = sweep_runs(registry, "lr", {1e-4: 0.30, 1e-3: 0.50, 1e-2: 0.40})
    out = tmp_path / "lb.html"
    write_report(registry, out, title="t", jobs=1)
    page.goto(out.as_uri())
    page.click("tr.group-head .group-label a")
    page.wait_for_url("**/lb_runs/sweep-*.html")
    page.wait_for_function("() => window.tunelabCharts && window.tunelabCharts.loss")
    drawn = page.evaluate("() => Object.fromEntries(Object.entries(window.tunelabCharts).map("
                          "([name, plot]) => [name, plot.data.slice(1).map(s => s.filter(v => v != null).length)]))")
    assert drawn == {"param-0": [3], "loss": [8, 8, 8]}
    assert colored_pixels(page, "param-0", TRAINING_LOSS_RGB) > 30  # the three points are on the canvas
    assert colored_pixels(page, "loss", VALIDATION_LOSS_RGB) > 50  # and the second point's curve
    hover(page, "param-0", 0.5, 0.5)  # the cursor on the middle point names its run
    assert "lr/lr=0.001" in legend(page, "param-0")["train.learning_rate"]
    page.click(f"a[href='run-{runs[1]}.html']")
    page.wait_for_url(f"**/run-{runs[1]}.html")
