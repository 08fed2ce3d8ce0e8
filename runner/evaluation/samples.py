"""[eval.samples]: what a model writes for the run's prompts, generated after training and cached by content.

A model's outputs for a list of prompts are stored in the registry under the sha256 of what decides them: the
model's content hash (weights, config, tokenizer: runner/evaluation/cache.py model_digest), the prompts' token ids,
the generation settings (the seed only where it matters: when sampling), the dtype, the device and the versions of
transformers and torch. So a base model answers the same prompts at the same settings once, whichever run asks
first; the fine-tuned weights of a reproduced run too. Generation is greedy unless the spec samples, seeded either
way, a batch of left-padded prompts at a time; a cancelled run stops at the next token.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tunelab.experiments.paths import spec_path
from tunelab.experiments.schema import SamplesSection, Spec
from tunelab.registry.db import Registry
from tunelab.registry.queries import cached_generation
from tunelab.registry.recording import record_cached_generation
from tunelab.registry.samples import GeneratedText
from tunelab.runner.data.prepare import prepare_data
from tunelab.runner.data.sample_prompts import SamplePrompt, prompts_from_file, prompts_from_validation
from tunelab.runner.data.templates import Renderer
from tunelab.runner.evaluation.harness import evaluation_device, place_model

# Bump when the key's recipe changes: older entries then simply stop matching.
CACHE_VERSION = 1
# The settings that decide what a model writes (the prompts are keyed by their tokens).
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "seed")


class GenerationStopped(Exception):
    """Generation was stopped from outside (the run cancelled or lost) before it finished."""


@dataclass(frozen=True)
class Generated:
    outputs: list[str]
    cached: bool  # answered from the registry's generation cache


def sample_prompts(spec: Spec, tokenizer: Any, workdir: Path) -> list[SamplePrompt]:
    """The run's [eval.samples] prompts: from its prompts file, or drawn from its validation examples."""
    samples = spec.eval.samples
    assert samples is not None
    if samples.prompts is not None:
        prompts = prompts_from_file(spec_path(samples.prompts, workdir), Renderer(spec.data.template, tokenizer),
                                    tokenizer)
    else:
        # The validation examples exactly as training held them out (the same files, cleaning and seed).
        validation = prepare_data(spec, tokenizer, workdir).validation
        prompts = prompts_from_validation(validation, tokenizer, samples.validation, seed_of(spec))
    return prompts[:samples.limit] if samples.limit else prompts


def seed_of(spec: Spec) -> int:
    samples = spec.eval.samples
    return samples.seed if samples is not None and samples.seed is not None else spec.experiment.seed


def recorded_settings(spec: Spec) -> dict[str, Any]:
    """The generation settings as a run records them with its samples (the seed resolved)."""
    samples = spec.eval.samples
    assert samples is not None
    return samples.model_dump(mode="json", exclude_none=True) | {"seed": seed_of(spec)}


def generation_key(prompts: Sequence[SamplePrompt], samples: SamplesSection, *, model: str, seed: int, dtype: str,
                   device: str) -> str:
    """The cache key of one model's outputs for `prompts` at the settings of `samples`."""
    settings = samples.model_dump(mode="json", include={"max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
                                                        "repetition_penalty", "batch_size"})
    if samples.do_sample:
        settings["seed"] = seed
    else:  # greedy decoding: the rest of the sampling settings decide nothing
        settings = {k: v for k, v in settings.items() if k not in _SAMPLING_ONLY}
    payload = {"cache": CACHE_VERSION, "model": model, "prompts": [list(p.input_ids) for p in prompts],
               "settings": settings, "dtype": dtype, "device": device,
               "transformers": version("transformers"), "torch": version("torch")}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def generate_cached(registry: Registry, load_model: Callable[[], tuple[Any, Any]], digest: str | None,
                    prompts: Sequence[SamplePrompt], samples: SamplesSection, *, seed: int, dtype: str,
                    should_stop: Callable[[], bool] = lambda: False,
                    progress: Callable[[str], None] | None = None, label: str = "model") -> Generated:
    """`generate`, answered from the registry's cache when the same model wrote for the same prompts at the same
    settings before. `load_model` is called only when generating; `digest` None generates without the cache."""
    say = progress or (lambda message: None)
    device = evaluation_device()
    key = generation_key(prompts, samples, model=digest, seed=seed, dtype=dtype, device=device) if digest else None
    if key is not None and (outputs := cached_generation(registry, key)) is not None:
        say(f"samples of the {label}: cached ({len(outputs)} prompts)")
        return Generated(outputs, cached=True)
    model, tokenizer = load_model()
    say(f"samples of the {label}: generating for {len(prompts)} prompts ...")
    outputs = generate(model, tokenizer, prompts, samples, seed=seed, device=device, should_stop=should_stop)
    if key is not None:
        record_cached_generation(registry, key=key, model_digest=digest, outputs=outputs)
    return Generated(outputs, cached=False)


def generate(model: Any, tokenizer: Any, prompts: Sequence[SamplePrompt], samples: SamplesSection, *, seed: int,
             device: str | None = None, should_stop: Callable[[], bool] = lambda: False) -> list[str]:
    """What `model` writes for each prompt (the new text only, special tokens left out), in order.

    Every setting is passed explicitly, so a model's own generation_config.json decides nothing. GenerationStopped
    when `should_stop` says so (checked at every token).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options: dict[str, Any] = {"max_new_tokens": samples.max_new_tokens, "do_sample": samples.do_sample,
                               "num_beams": 1, "repetition_penalty": samples.repetition_penalty,
                               "pad_token_id": pad, "eos_token_id": tokenizer.eos_token_id,
                               "stopping_criteria": StoppingCriteriaList([_Stop()])}
    if samples.do_sample:
        options |= {"temperature": samples.temperature, "top_p": samples.top_p, "top_k": samples.top_k}
    else:  # greedy: unset what a model's generation config may set for sampling (it would only warn)
        options |= {"temperature": None, "top_p": None, "top_k": None}
    was_training = getattr(model, "training", False)
    device = place_model(model, device)
    model.eval()
    outputs: list[str] = []
    try:
        # Seeded, without disturbing the caller's random state.
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == "cuda" else []), \
                torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(prompts), samples.batch_size):
                batch = prompts[start:start + samples.batch_size]
                if should_stop():
                    raise GenerationStopped(f"stopped after {len(outputs)} of {len(prompts)} prompts")
                outputs += _generate_batch(model, tokenizer, batch, pad, device, options)
                if should_stop():
                    raise GenerationStopped(f"stopped after {len(outputs)} of {len(prompts)} prompts")
    finally:
        model.train(was_training)
    return outputs


def _generate_batch(model: Any, tokenizer: Any, batch: Sequence[SamplePrompt], pad: int, device: str,
                    options: dict[str, Any]) -> list[str]:
    import torch

    width = max(len(p.input_ids) for p in batch)
    # Left padding: every prompt ends where generation begins.
    ids = [[pad] * (width - len(p.input_ids)) + list(p.input_ids) for p in batch]
    mask = [[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in batch]
    input_ids = torch.tensor(ids, dtype=torch.long, device=device)
    attention_mask = torch.tensor(mask, dtype=torch.long, device=device)
    generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in generated]


def as_texts(prompts: Sequence[SamplePrompt], outputs: Sequence[str]) -> list[GeneratedText]:
    """Prompts and one model's outputs as the registry records them."""
    return [GeneratedText(position, prompt.text, prompt.reference, output)
            for position, (prompt, output) in enumerate(zip(prompts, outputs, strict=True))]
