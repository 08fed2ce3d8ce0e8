"""The report in a real browser (headless Chromium): sorting, filtering, charts, and no script injection."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tunelab.registry.recording import MetricPoint, record_metrics, record_scores
from tunelab.reports.render import write_report

from tests.helpers import EVIL, finished_run, scores

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


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
def report(registry, tmp_path) -> Path:
    values = [("alpha", 0.30), ("beta", 0.50), (EVIL, 0.40)]
    for name, arc in values:
        run = finished_run(registry, name)
        record_scores(registry, run, scores("finetuned", f"run:{run}", {"arc_challenge": arc, "hellaswag": 0.3}))
        record_scores(registry, run, scores("base", "tiny", {"arc_challenge": 0.25, "hellaswag": 0.3}))
        record_metrics(registry, run, [MetricPoint(step=s, loss=3.0 / s, learning_rate=1e-3) for s in range(1, 11)])
    out = tmp_path / "leaderboard.html"
    write_report(registry, out, title="browser test")
    return out


def column_texts(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr",
        f"rows => rows.filter(r => r.style.display !== 'none').map(r => r.cells[{index}].innerText)",
    )


def test_sort_filter_and_no_script_runs(browser, report):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
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
    assert dialogs == [] and errors == []


def test_run_page_has_charts_and_escapes(browser, report):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(report.as_uri())
    page.click(f"text={EVIL}")
    assert "_runs/run-" in page.url
    assert page.locator("#loss-chart svg").count() == 1
    assert page.locator("#loss-chart svg path").count() > 0
    assert EVIL in page.inner_text("#run-title")
    assert page.locator("img").count() == 0
    assert dialogs == []
