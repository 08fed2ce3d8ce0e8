"""[eval.samples]: prompts read and rendered, generation seeded and greedy by default, answered from the registry's
cache by content, stopped when the run is; the spec's keys validated with the line of the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.experiments.loader import load_spec
from tunelab.experiments.schema import SamplesSection
from tunelab.registry.queries import cached_generation
from tunelab.runner.data.sample_prompts import prompts_from_file, prompts_from_validation
from tunelab.runner.data.templates import Renderer
from tunelab.runner.errors import DataError
from tunelab.runner.evaluation.samples import GenerationStopped, generate, generate_cached, generation_key
from tunelab.runner.training.models import load_model, load_tokenizer

from tests.helpers import EVIL, write_jsonl, write_spec


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), "float32").eval(), load_tokenizer(str(tiny_model_dir))


@pytest.fixture
def prompts(tmp_path, tiny):
    _, tokenizer = tiny
    path = write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "The capital of France is", "reference": "Paris"},
        {"instruction": "Name the capital city of Kanora.", "output": "Branpastead"},
        {"messages": [{"role": "user", "content": EVIL}, {"role": "assistant", "content": "ok"}]},
    ])
    return prompts_from_file(path, Renderer("chatml", tokenizer), tokenizer)


def test_prompt_rows_are_rendered_like_training_and_keep_their_reference(prompts, tiny):
    _, tokenizer = tiny
    assert [p.reference for p in prompts] == ["Paris", "Branpastead", "ok"]
    assert prompts[0].text == "The capital of France is"  # a prompt row is used as written
    assert "Name the capital city of Kanora." in prompts[1].text and "Branpastead" not in prompts[1].text
    assert EVIL in prompts[2].text and "ok" not in prompts[2].text.split(EVIL)[1]
    assert all(p.input_ids[0] == tokenizer.bos_token_id for p in prompts if tokenizer.bos_token_id is not None)


def test_a_prompt_row_without_a_prompt_names_its_line(tmp_path, tiny):
    _, tokenizer = tiny
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine"}, {"question": "no"}])
    with pytest.raises(DataError) as error:
        prompts_from_file(path, Renderer("alpaca", tokenizer), tokenizer)
    assert "bad.jsonl" in str(error.value) and "2" in str(error.value)


def test_greedy_generation_is_deterministic_and_new_text_only(prompts, tiny):
    model, tokenizer = tiny
    settings = SamplesSection(prompts="p.jsonl", max_new_tokens=6)
    first = generate(model, tokenizer, prompts, settings, seed=1)
    again = generate(model, tokenizer, prompts, settings, seed=2)  # greedy: the seed decides nothing
    assert first == again and len(first) == 3
    one_by_one = SamplesSection(prompts="p.jsonl", max_new_tokens=6, batch_size=1)
    assert generate(model, tokenizer, prompts, one_by_one, seed=1) == first  # left padding changes nothing
    assert all(text and not text.startswith(p.text[:10]) for text, p in zip(first, prompts, strict=True))


def test_sampling_is_seeded(prompts, tiny):
    model, tokenizer = tiny
    settings = SamplesSection(prompts="p.jsonl", max_new_tokens=8, do_sample=True, temperature=1.5)
    assert generate(model, tokenizer, prompts, settings, seed=3) == generate(model, tokenizer, prompts, settings,
                                                                            seed=3)


def test_the_same_model_prompts_and_settings_are_answered_from_the_cache(registry, prompts, tiny):
    loads = []

    def load():
        loads.append(1)
        return tiny

    settings = SamplesSection(prompts="p.jsonl", max_new_tokens=5)
    first = generate_cached(registry, load, "digest-base", prompts, settings, seed=7, dtype="float32")
    second = generate_cached(registry, load, "digest-base", prompts, settings, seed=8, dtype="float32")
    assert (first.cached, second.cached) == (False, True)
    assert second.outputs == first.outputs and len(loads) == 1  # the model was not even loaded the second time
    longer = SamplesSection(prompts="p.jsonl", max_new_tokens=6)
    assert not generate_cached(registry, load, "digest-base", prompts, longer, seed=7, dtype="float32").cached
    assert not generate_cached(registry, load, "digest-tuned", prompts, settings, seed=7, dtype="float32").cached
    assert len(loads) == 3


def test_the_cache_key_sees_what_decides_the_outputs(prompts):
    greedy = SamplesSection(prompts="p.jsonl")
    key = generation_key(prompts, greedy, model="m", seed=1, dtype="float32", device="cpu")
    assert key == generation_key(prompts, greedy, model="m", seed=2, dtype="float32", device="cpu")
    assert key != generation_key(prompts[:2], greedy, model="m", seed=1, dtype="float32", device="cpu")
    assert key != generation_key(prompts, greedy, model="m", seed=1, dtype="bfloat16", device="cpu")
    sampled = SamplesSection(prompts="p.jsonl", do_sample=True)
    assert (generation_key(prompts, sampled, model="m", seed=1, dtype="float32", device="cpu")
            != generation_key(prompts, sampled, model="m", seed=2, dtype="float32", device="cpu"))


def test_generation_stops_when_the_run_is_stopped(registry, prompts, tiny):
    model, tokenizer = tiny
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(GenerationStopped):
        generate(model, tokenizer, prompts, SamplesSection(prompts="p.jsonl", max_new_tokens=50, batch_size=1),
                 seed=1, should_stop=should_stop)
    settings = SamplesSection(prompts="p.jsonl", max_new_tokens=50)
    with pytest.raises(GenerationStopped):
        generate_cached(registry, lambda: tiny, "stopped", prompts, settings, seed=1, dtype="float32",
                        should_stop=lambda: True)
    # Nothing half-done is cached.
    assert cached_generation(registry, generation_key(prompts, settings, model="stopped", seed=1, dtype="float32",
                                                      device="cpu")) is None


@pytest.mark.parametrize(("samples", "message"), [
    ('prompts = "p.jsonl"\nvalidation = 0.5', "set one of prompts"),
    ("max_new_tokens = 8", "set one of prompts"),
    ('prompts = "p.jsonl"\ntemperature = 0.7', "temperature applies only with do_sample = true"),
    ("validation = 0.5", "needs a validation set"),
])
def test_bad_samples_settings_are_refused_naming_the_key(tmp_path, tiny_model_dir, samples, message):
    path = write_spec(tmp_path / "spec.toml", name="s", model_dir=tiny_model_dir,
                      extra=f"[eval.samples]\n{samples}\n")
    with pytest.raises(Exception) as error:
        load_spec(path)
    assert message in str(error.value)
    assert "eval.samples" in str(error.value)


def test_samples_settings_leave_other_specs_hash_alone(tmp_path, tiny_model_dir):
    plain = load_spec(write_spec(tmp_path / "a.toml", name="s", model_dir=tiny_model_dir))
    sampled = load_spec(write_spec(tmp_path / "b.toml", name="s", model_dir=tiny_model_dir,
                                   extra='[eval.samples]\nprompts = "p.jsonl"\n'))
    assert "samples" not in plain.spec.model_dump(mode="json")["eval"]
    assert sampled.spec.eval.samples == SamplesSection(prompts="p.jsonl")
    assert Path(sampled.spec.eval.samples.prompts).name == "p.jsonl"


def test_a_validation_example_is_prompted_with_what_precedes_its_last_response(tiny):
    _, tokenizer = tiny
    ids = tokenizer("Question: capital of Kanora? Answer: Branpastead", add_special_tokens=False)["input_ids"]
    cut = len(tokenizer("Question: capital of Kanora? Answer:", add_special_tokens=False)["input_ids"])
    labels = [-100] * cut + ids[cut:]
    untrained = {"input_ids": ids, "labels": [-100] * len(ids)}
    prompts = prompts_from_validation([{"input_ids": ids, "labels": labels}, untrained], tokenizer, 1.0, seed=0)
    assert len(prompts) == 1  # an example with nothing trained has no response to prompt for
    assert prompts[0].input_ids == tuple(ids[:cut])
    assert prompts[0].reference == "Branpastead" and "Branpastead" not in prompts[0].text
