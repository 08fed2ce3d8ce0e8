"""[eval.samples] on the run page, the compare page and in `show --json`: prompt, reference, base and fine-tuned
output side by side, shown as text whatever they hold (parsed HTML)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tunelab.registry.recording import forget_samples, record_samples
from tunelab.registry.samples import GeneratedText
from tunelab.reports.compare import build_comparison
from tunelab.reports.render import render_comparison, render_run_page
from tunelab.reports.run_page import build_run_page

from tests.helpers import EVIL, finished_run
from tests.reports.parsing import parse, table_rows
from tunelab.cli import cli

SCRIPT_END = "</script><script>alert(2)</script>"
SETTINGS = {"max_new_tokens": 16, "do_sample": False, "seed": 7}


def with_samples(registry, name: str, finetuned: list[str], *, base: list[str] | None = None) -> int:
    run = finished_run(registry, name)
    prompts = [("What is the capital of France?", "Paris"), (f"Say {EVIL}", None)]
    for kind, outputs in (("finetuned", finetuned), ("base", base)):
        if outputs is not None:
            texts = [GeneratedText(i, p, r, out) for i, ((p, r), out) in enumerate(zip(prompts, outputs, strict=True))]
            record_samples(registry, run, kind, texts, settings=SETTINGS, model_digest=f"d-{kind}")
    return run


def test_run_page_shows_prompt_reference_base_and_finetuned_side_by_side_as_text(registry):
    run = with_samples(registry, "sampled", ["Paris.", SCRIPT_END], base=["Lyon", EVIL])
    html = render_run_page(build_run_page(registry, run))
    document = parse(html)
    rows = table_rows(document.find("table", id_="samples"))
    assert rows == [["0", "What is the capital of France?", "Paris", "Lyon", "Paris."],
                    ["1", f"Say {EVIL}", "", EVIL, SCRIPT_END]]
    assert not list(document.iter("img"))  # the would-be tag is text, not an element
    assert "alert(2)" not in "".join(s.text for s in document.iter("script"))
    assert "max_new_tokens = 16" in html


def test_a_run_without_samples_has_no_samples_table(registry):
    run = with_samples(registry, "forgotten", ["x", "y"])
    forget_samples(registry, run)
    assert parse(render_run_page(build_run_page(registry, run))).find("table", id_="samples") is None


def test_compare_page_matches_the_runs_samples_by_prompt(registry):
    a = with_samples(registry, "a", ["Paris", "ok"], base=["Lyon", "no"])
    b = with_samples(registry, "b", ["Paris, France", EVIL])
    comparison = build_comparison(registry, a, b)
    assert [row.outputs for row in comparison.samples] == [["Paris", "Paris, France"], ["ok", EVIL]]
    document = parse(render_comparison(comparison))
    rows = table_rows(document.find("table", id_="samples"))
    assert rows == [["What is the capital of France?", "Paris", "Lyon", "Paris", "Paris, France"],
                    [f"Say {EVIL}", "", "no", "ok", EVIL]]
    assert not list(document.iter("img"))


def test_show_json_has_the_samples(registry):
    run = with_samples(registry, "shown", ["Paris", "fine"], base=["Lyon", "meh"])
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run), "--json"])
    assert out.exit_code == 0, out.output
    detail = json.loads(out.stdout)
    assert detail["samples"] == [
        {"position": 0, "prompt": "What is the capital of France?", "reference": "Paris", "base": "Lyon",
         "finetuned": "Paris", "settings": SETTINGS},
        {"position": 1, "prompt": f"Say {EVIL}", "reference": None, "base": "meh", "finetuned": "fine",
         "settings": SETTINGS},
    ]


def test_show_says_how_many_prompts_were_answered(registry):
    run = with_samples(registry, "counted", ["Paris", "fine"], base=["Lyon", "meh"])
    out = CliRunner().invoke(cli, ["--db", registry.url, "show", str(run)])
    assert out.exit_code == 0, out.output
    assert "samples: 2 prompts answered by the base and the fine-tuned model" in out.output
    assert EVIL not in out.output  # the text itself is for --json and the page
