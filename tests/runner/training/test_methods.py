"""Fine-tuning methods: freeze, qlora, prompt tuning and DPO train what they should; method keys belong to their
kind; options that need a GPU fail in one line without one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tunelab.experiments.schema import Spec

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_jsonl, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"
PAIRS = [
    {"prompt": "Name the capital city of Tobaerovia.", "chosen": "Thasport", "rejected": "Korton"},
    {"prompt": "Name the capital city of Kanora.", "chosen": "Branpastead", "rejected": "Zouwick"},
    {"prompt": "What is the capital of Vashusara?", "chosen": "Korton", "rejected": "Thasport"},
    {"prompt": "What is the capital of Dorara?", "chosen": "Zouwick", "rejected": "Doushaewick"},
    {"prompt": [{"role": "user", "content": "Name the capital city of Mirand."}], "chosen": "Doushaewick",
     "rejected": "Branpastead"},
    {"prompt": "Name the capital city of Soundousand.", "chosen": "Kroupesvale", "rejected": "Korton"},
]


def _spec(model_dir: Path, method: dict, *, train: Path = CAPITALS, data: dict | None = None, steps: int = 2,
          batch_size: int = 4, learning_rate: float = 1e-3) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "method-test", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"train": str(train), "max_seq_len": 96, **(data or {})},
        "method": method,
        "train": {"max_steps": steps, "save_every": 100, "batch_size": batch_size, "learning_rate": learning_rate},
    })


def _train(spec: Spec, output_dir: Path):
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    metrics: list[dict] = []
    outcome = train(spec, workdir=REPO_ROOT, output_dir=output_dir,
                    hooks=TrainHooks(on_metrics=metrics.append, on_checkpoint=lambda *args: None))
    return outcome, [m["loss"] for m in metrics]


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _spec_file(path: Path, model_dir: Path, method_block: str, *, data: str = "", train: Path | None = None) -> Path:
    """A write_spec spec with its [method] table (and optionally [data] keys) replaced."""
    spec = write_spec(path, name=path.stem, model_dir=model_dir, kind="full", train=train, tasks=(),
                      baseline=False)
    text = spec.read_text().replace('[method]\nkind = "full"\n', method_block)
    spec.write_text(text.replace("max_seq_len = 96\n", f"max_seq_len = 96\n{data}"))
    return spec


# ---- which keys a kind takes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "message"), [
    ('[method]\nkind = "freeze"\nr = 4\n', 'LoRA option(s) r set on a freeze fine-tune (kind = "freeze")'),
    ('[method]\nkind = "prompt_tuning"\nalpha = 8\n', 'LoRA option(s) alpha set on prompt tuning'),
    ('[method]\nkind = "dpo"\ndpo_weights = "full"\nr = 4\n', 'LoRA option(s) r set on DPO with dpo_weights = "full"'),
    ('[method]\nkind = "lora"\ntrainable_layers = 2\n',
     'option(s) trainable_layers (freeze) do not apply to kind = "lora"'),
    ('[method]\nkind = "full"\nbeta = 0.2\n', 'option(s) beta (dpo) do not apply to kind = "full"'),
])
def test_a_key_of_another_kind_is_refused_at_submit(tmp_path, tiny_model_dir, block, message):
    spec = _spec_file(tmp_path / "s.toml", tiny_model_dir, block)
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "home" / "registry.db").exists()


def test_stored_specs_keep_their_form_and_revalidate():
    from tunelab.experiments.canonical import resolved_dict

    base = {"experiment": {"name": "x"}, "model": {"base": "m"}, "data": {"train": "d.jsonl"}}
    full = Spec.model_validate({**base, "method": {"kind": "full"}})
    lora = Spec.model_validate({**base, "method": {"kind": "lora", "r": 4}})
    # Specs of the two original kinds serialise exactly as before the other kinds existed (same hash).
    assert resolved_dict(full)["method"] == {"kind": "full"}
    assert resolved_dict(lora)["method"] == {"kind": "lora", "r": 4, "alpha": 16.0, "dropout": 0.05,
                                             "target_modules": ["q_proj", "v_proj"]}
    for method in ({"kind": "freeze"}, {"kind": "qlora"}, {"kind": "prompt_tuning"}, {"kind": "dpo"},
                   {"kind": "dpo", "dpo_weights": "full"}, {"kind": "lora", "paged_optimizer": True}):
        spec = Spec.model_validate({**base, "method": method})
        stored = resolved_dict(spec)
        assert Spec.model_validate(stored) == spec, method  # what the registry holds is a valid spec again
    assert "trainable_layers" in resolved_dict(Spec.model_validate({**base, "method": {"kind": "freeze"}}))["method"]


def test_a_run_base_must_name_a_run_id(tmp_path, tiny_model_dir):
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=tiny_model_dir, kind="full")
    spec.write_text(spec.read_text().replace(f'base = "{tiny_model_dir}"', 'base = "run:latest"'))
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.endswith(':7: model.base: a run base is run:ID with a numeric run id, e.g. "run:3" '
                         "(got 'run:latest')")


# ---- options that need a GPU --------------------------------------------------------------------------------


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_gpu(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize(("block", "model_dtype", "message"), [
    ('[method]\nkind = "lora"\npaged_optimizer = true\n', None,
     "method.paged_optimizer = true needs a CUDA GPU; none is available"),
    ('[method]\nkind = "qlora"\n', "bfloat16", 'model.dtype = "bfloat16" needs a GPU; none is available'),
    ('[method]\nkind = "full"\n', "float16", 'model.dtype = "float16" needs a GPU; none is available'),
])
def test_gpu_only_options_fail_in_one_line_on_the_cpu(tmp_path, tiny_model_dir, block, model_dtype, message):
    spec = _spec_file(tmp_path / "s.toml", tiny_model_dir, block)
    if model_dtype:
        spec.write_text(spec.read_text().replace("[data]", f'dtype = "{model_dtype}"\n\n[data]'))
    result = invoke(tmp_path / "home", "run", "--quiet", str(spec))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("run 1: failed (RunFailed: ") and message in line
    detail = invoke_json(tmp_path / "home", "show", "1")
    assert detail["summary"]["status"] == "failed" and message in detail["summary"]["error"]
    assert detail["metrics"] == [] and detail["checkpoints"] == []


# ---- freeze ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_freeze_trains_only_the_top_blocks_and_the_head(tmp_path, tiny_model_dir):
    import torch

    outcome, losses = _train(_spec(tiny_model_dir, {"kind": "freeze", "trainable_layers": 1}), tmp_path / "run")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    before, after = _weights(tiny_model_dir), _weights(outcome.final_dir)
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    top = {name for name in before if name.startswith("model.layers.1.")}
    # The tiny model ties its LM head to the input embeddings: training the head trains that matrix.
    head = {name for name in before if name in ("lm_head.weight", "model.embed_tokens.weight")}
    assert top and head
    assert changed == top | head
    assert not any(name.startswith(("model.layers.0.", "model.norm.")) for name in changed)


def test_freeze_refuses_more_layers_than_the_model_has(tmp_path, tiny_model_dir):
    from tunelab.runner.errors import RunFailed

    with pytest.raises(RunFailed, match="trainable_layers = 3, but the model has only 2 decoder blocks"):
        _train(_spec(tiny_model_dir, {"kind": "freeze", "trainable_layers": 3}), tmp_path / "run")


# ---- qlora ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_qlora_trains_lora_over_nf4_layers_on_the_cpu(tmp_path, tiny_model_dir):
    import bitsandbytes as bnb
    import torch
    from safetensors.torch import load_file
    from tunelab.runner.training.methods import apply_method
    from tunelab.runner.training.models import load_base

    spec = _spec(tiny_model_dir, {"kind": "qlora", "r": 4, "alpha": 8})
    model = apply_method(load_base(str(tiny_model_dir), spec, "cpu"), spec, model_path=str(tiny_model_dir))
    projections = [m for name, m in model.named_modules() if name.endswith(("q_proj.base_layer", "k_proj", "o_proj",
                                                                             "gate_proj", "down_proj"))]
    assert len(projections) == 2 * 5
    for layer in projections:
        assert isinstance(layer, bnb.nn.Linear4bit)
        assert layer.weight.quant_type == "nf4" and layer.weight.quant_state.nested  # double quantisation
        assert layer.compute_dtype == torch.float32
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n}

    # Trained and evaluated (the 4-bit layers then run in inference mode) as a worker does it.
    spec_path = _spec_file(tmp_path / "qlora.toml", tiny_model_dir, '[method]\nkind = "qlora"\nr = 4\nalpha = 8\n')
    result = invoke_json(tmp_path / "home", "run", "--quiet", str(spec_path))
    assert result["status"] == "succeeded", result
    detail = invoke_json(tmp_path / "home", "show", str(result["run_id"]))
    losses = [m["loss"] for m in detail["metrics"]]
    assert len(losses) == 4 and all(math.isfinite(x) and x > 0 for x in losses)
    (score,) = detail["scores"]
    assert score["task"] == "capitals" and 0.0 <= score["value"] <= 1.0
    final = Path(detail["output_dir"]) / "final"
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4


# ---- prompt tuning --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prompt_tuning_learns_virtual_tokens_and_keeps_logits_aligned(tmp_path, tiny_model_dir):
    import torch

    method = {"kind": "prompt_tuning", "num_virtual_tokens": 4, "prompt_init_text": "capital city"}
    outcome, losses = _train(_spec(tiny_model_dir, method), tmp_path / "run")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    config = json.loads((outcome.final_dir / "adapter_config.json").read_text())
    assert (config["peft_type"], config["num_virtual_tokens"]) == ("PROMPT_TUNING", 4)
    model, tokenizer = outcome.model.eval(), outcome.tokenizer
    tokens = tokenizer(["The capital of Kanora is"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**tokens).logits
        learned = model.get_prompt(batch_size=1)[0]
    # One logit row per input token (the virtual tokens' rows are cut), as evaluation reads them.
    assert logits.shape[1] == tokens["input_ids"].shape[1]
    init_ids = tokenizer("capital city", add_special_tokens=False)["input_ids"]
    init = model.word_embeddings.weight[torch.tensor((init_ids * 4)[:4])]
    assert not torch.allclose(learned, init)

    # Loaded again for evaluation outside the worker (`tunelab eval`): the same aligned logits.
    from tunelab.runner.evaluation.targets import ModelSource, load_source

    again, _ = load_source(ModelSource("t", tiny_model_dir, outcome.final_dir, "float32"))
    with torch.no_grad():
        assert torch.allclose(again(**tokens).logits, logits, atol=1e-6)


# ---- DPO ------------------------------------------------------------------------------------------------------


def _margin(model, tokenizer, path: Path) -> float:
    """Sum over the pairs of log p(chosen | prompt) - log p(rejected | prompt)."""
    import torch
    from tunelab.runner.data.preference import read_pairs

    model.eval()
    total = 0.0
    with torch.no_grad():
        for pair in read_pairs(path, tokenizer, "alpaca"):
            start = len(tokenizer(pair.prompt, add_special_tokens=False)["input_ids"])
            scores = []
            for answer in (pair.chosen, pair.rejected):
                ids = tokenizer(pair.prompt + answer + tokenizer.eos_token, add_special_tokens=False,
                                return_tensors="pt")["input_ids"]
                logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
                scores.append(logp[start - 1:].sum().item())
            total += scores[0] - scores[1]
    return total


@pytest.mark.slow
def test_dpo_over_all_weights_prefers_the_chosen_answers(tmp_path, tiny_model_dir):
    from tunelab.runner.training.models import load_model, load_tokenizer

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    spec = _spec(tiny_model_dir, {"kind": "dpo", "dpo_weights": "full", "beta": 0.1}, train=data,
                 data={"format": "preference"}, steps=4, batch_size=6)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    before = _margin(load_model(str(tiny_model_dir), "float32"), tokenizer, data)
    outcome, losses = _train(spec, tmp_path / "run")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the first step
    assert losses[-1] < losses[0]
    assert _margin(outcome.model, tokenizer, data) > before + 5
    assert (outcome.final_dir / "model.safetensors").is_file()  # a whole model, not an adapter


@pytest.mark.slow
def test_dpo_with_lora_records_metrics_and_checkpoints_in_the_registry(tmp_path, tiny_model_dir):
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.models import Run
    from tunelab.runner.data.preference import data_path, fingerprint_pairs, read_pairs
    from tunelab.runner.training.models import load_model, load_tokenizer

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    spec_path = _spec_file(tmp_path / "dpo.toml", tiny_model_dir,
                           '[method]\nkind = "dpo"\nbeta = 0.1\nr = 8\nalpha = 16\n'
                           'target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]\n',
                           data='format = "preference"\n', train=data)
    spec_path.write_text(spec_path.read_text().replace("batch_size = 4\nlearning_rate = 1e-3",
                                                       "batch_size = 6\nlearning_rate = 1e-2"))
    home = tmp_path / "home"
    result = invoke_json(home, "run", "--quiet", str(spec_path))
    assert result["status"] == "succeeded", result
    detail = invoke_json(home, "show", str(result["run_id"]))
    assert [c["step"] for c in detail["checkpoints"]] == [2, 4]
    assert [m["step"] for m in detail["metrics"]] == [1, 2, 3, 4]
    losses = [m["loss"] for m in detail["metrics"]]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4) and losses[-1] < losses[0]
    assert {(s["model_kind"], s["task"]) for s in detail["scores"]} == {("finetuned", "capitals")}
    final = Path(detail["output_dir"]) / "final"
    assert json.loads((final / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert not (final / "ref").exists()  # the reference is the base with the adapter off, not a saved copy

    from peft import PeftModel

    tokenizer = load_tokenizer(str(tiny_model_dir))
    base_margin = _margin(load_model(str(tiny_model_dir), "float32"), tokenizer, data)
    tuned = PeftModel.from_pretrained(load_model(str(tiny_model_dir), "float32"), str(final))
    assert _margin(tuned, tokenizer, data) > base_margin + 5

    registry = open_registry(default_url(home))
    with registry.session() as session:
        run = session.get(Run, result["run_id"])
    spec = Spec.model_validate(detail["spec"])
    assert run.data_fingerprint == fingerprint_pairs(read_pairs(data_path(spec, REPO_ROOT), tokenizer, "alpaca"),
                                                     tokenizer)
    registry.engine.dispose()


def test_dpo_needs_preference_data(tmp_path, tiny_model_dir):
    from tunelab.runner.errors import RunFailed

    with pytest.raises(RunFailed, match='trains on preference rows: set \\[data\\] format = "preference"'):
        _train(_spec(tiny_model_dir, {"kind": "dpo"}), tmp_path / "run")
