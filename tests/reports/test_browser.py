"""The report in a real browser (headless Chromium): sorting, filtering, charts drawn from the page's data (points
on the canvas, hover values, series toggles), and no script injection through names, in tables or chart data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.reports.compare import build_comparison
from tunelab.reports.render import render_comparison, write_report

from tests.helpers import EVIL, finished_run, scores, subject_scores

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
