"""submit -> worker with [eval.samples]: both models' outputs recorded after training, the base's generated once
for two runs of the same base and settings, shown by `show --json` and on the run page."""

from __future__ import annotations

import pytest
import tunelab.runner.evaluation.samples as samples_module

from tests.helpers import EVIL, invoke, invoke_json, write_jsonl, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worked(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("samples")
    home = root / "home"
    write_jsonl(root / "prompts.jsonl", [{"prompt": "The capital of Kanora is", "reference": "Branpastead"},
                                        {"instruction": f"Repeat {EVIL}", "output": EVIL}])
    extra = f'[eval.samples]\nprompts = "{root / "prompts.jsonl"}"\nmax_new_tokens = 6\n'
    specs = [write_spec(root / f"{name}.toml", name=name, model_dir=tiny_model_dir, tasks=(), baseline=False,
                        max_steps=2, save_every=2, extra=extra)
             for name in ("first", "second")]
    # Different training (so different fine-tuned weights), the same base and samples settings.
    specs[1].write_text(specs[1].read_text().replace("learning_rate = 1e-3", "learning_rate = 5e-3"))
    generated: list[int] = []
    real = samples_module.generate
    monkeypatch = pytest.MonkeyPatch()

    def counting(model, tokenizer, prompts, settings, **kwargs):
        generated.append(len(prompts))
        return real(model, tokenizer, prompts, settings, **kwargs)

    monkeypatch.setattr(samples_module, "generate", counting)
    submitted = []
    try:
        for spec in specs:  # one after the other: the second finds the base's samples in the cache
            submitted += invoke_json(home, "submit", str(spec))
            result = invoke(home, "worker", "--until-empty", "--quiet")
            assert result.exit_code == 0, result.output
    finally:
        monkeypatch.undo()
    return home, [s["run_id"] for s in submitted], generated


def test_both_models_answer_every_prompt_and_show_json_has_them(worked):
    home, (first, _), _ = worked
    detail = invoke_json(home, "show", str(first))
    assert detail["summary"]["status"] == "succeeded", detail["summary"]["error"]
    samples = detail["samples"]
    assert [s["reference"] for s in samples] == ["Branpastead", EVIL]
    assert samples[0]["prompt"] == "The capital of Kanora is"
    assert all(isinstance(s["base"], str) and isinstance(s["finetuned"], str) for s in samples)
    assert samples[0]["settings"]["max_new_tokens"] == 6 and samples[0]["settings"]["do_sample"] is False


def test_the_base_writes_once_for_two_runs_of_the_same_base_and_settings(worked):
    home, (first, second), generated = worked
    # First run: fine-tuned and base; second run: its own fine-tuned model only.
    assert generated == [2, 2, 2]
    a, b = (invoke_json(home, "show", str(run))["samples"] for run in (first, second))
    assert [s["base"] for s in a] == [s["base"] for s in b]


def test_the_run_page_shows_the_samples(worked, tmp_path):
    home, (first, _), _ = worked
    out = tmp_path / "lb.html"
    result = invoke(home, "report", "-o", str(out))
    assert result.exit_code == 0, result.output
    page = next((tmp_path / "lb_runs").glob(f"run-{first}*.html")).read_text(encoding="utf-8")
    assert 'id="samples"' in page and "Branpastead" in page
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_bad_prompts_file_fails_the_run_before_training(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "fine"}, {"question": "no prompt here"}])
    spec = write_spec(tmp_path / "bad.toml", name="bad-prompts", model_dir=tiny_model_dir, tasks=(),
                      baseline=False, extra=f'[eval.samples]\nprompts = "{tmp_path / "prompts.jsonl"}"\n')
    (submitted,) = invoke_json(home, "submit", str(spec))
    invoke(home, "worker", "--until-empty", "--quiet")
    detail = invoke_json(home, "show", str(submitted["run_id"]))
    assert detail["summary"]["status"] == "failed"
    assert "prompts.jsonl:2: a prompt row needs" in detail["summary"]["error"]
    assert detail["metrics"] == [] and detail["checkpoints"] == []  # nothing trained


def test_a_fraction_of_the_validation_set_is_prompted_with_its_responses_as_references(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "val.toml", name="val-samples", model_dir=tiny_model_dir, tasks=(),
                      baseline=False, extra="[eval.samples]\nvalidation = 0.5\nmax_new_tokens = 4\n")
    spec.write_text(spec.read_text().replace("max_seq_len = 96", "max_seq_len = 96\nvalidation = 0.1"))
    (submitted,) = invoke_json(home, "submit", str(spec))
    invoke(home, "worker", "--until-empty", "--quiet")
    detail = invoke_json(home, "show", str(submitted["run_id"]))
    assert detail["summary"]["status"] == "succeeded", detail["summary"]["error"]
    samples = detail["samples"]
    assert samples and all(s["reference"] and s["base"] is not None and s["finetuned"] is not None for s in samples)
    assert all(s["reference"] not in s["prompt"] for s in samples)  # the response is the reference, not the prompt
    assert all(s["settings"]["validation"] == 0.5 and s["settings"]["seed"] == 7 for s in samples)
