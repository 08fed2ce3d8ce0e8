"""`tunelab export`: adapters, merged adapters and whole models load offline with transformers/peft, and come with
a model card naming the spec, the data fingerprint and the eval results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow
PROMPT = "Name the capital city of Kanora."


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("export")
    home = root / "home"
    lora = invoke_json(home, "run", "--quiet", str(write_spec(root / "lora.toml", name="exported-lora",
                                                             model_dir=tiny_model_dir, kind="lora", tasks=(),
                                                             baseline=False)))
    full = invoke_json(home, "run", "--quiet", str(write_spec(root / "full.toml", name="exported-full",
                                                             model_dir=tiny_model_dir, kind="full", tasks=(),
                                                             baseline=False)))
    assert (lora["status"], full["status"]) == ("succeeded", "succeeded"), (lora, full)
    return root, home, lora["run_id"], full["run_id"]


def _logits(model, tokenizer):
    import torch

    with torch.no_grad():
        return model.eval()(**tokenizer([PROMPT], return_tensors="pt")).logits


def _generate(model, tokenizer, new_tokens: int = 4):
    tokens = tokenizer([PROMPT], return_tensors="pt")
    out = model.generate(**tokens, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, tokens["input_ids"].shape[1]:]


def _data_fingerprint(home: Path, run_id: int) -> str:
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.models import Run

    registry = open_registry(default_url(home))
    try:
        with registry.session() as session:
            return session.get(Run, run_id).data_fingerprint
    finally:
        registry.engine.dispose()


def test_adapter_export_loads_with_peft_and_has_a_model_card(runs, tiny_model_dir):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoTokenizer

    root, home, lora_id, _ = runs
    out = root / "adapter"
    result = invoke_json(home, "export", str(lora_id), "-o", str(out))
    assert (result["form"], result["method"], result["base"]) == ("adapter", "lora", str(tiny_model_dir.resolve()))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(result["files"])
    assert "tunelab-train.json" not in result["files"]

    model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    assert isinstance(model, PeftModel)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert len(_generate(model, tokenizer)) == 4

    card = (out / "README.md").read_text()
    detail = invoke_json(home, "show", str(lora_id))
    assert "# exported-lora" in card and f"tunelab run {lora_id}" in card
    assert f"`{_data_fingerprint(home, lora_id)}`" in card
    (score,) = detail["scores"]
    assert f"| capitals | acc | {score['value']:.4f} |" in card
    assert detail["spec_text"].strip() in card  # the spec as submitted (TOML)
    assert json.dumps(detail["spec"], indent=2, sort_keys=True) in card  # and resolved
    assert "library_name: peft" in card


def test_merged_export_is_a_plain_model_with_the_adapters_logits(runs, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, home, lora_id, _ = runs
    out = root / "merged"
    result = invoke_json(home, "export", str(lora_id), "--merge", "-o", str(out))
    assert result["form"] == "merged" and "adapter_config.json" not in result["files"]
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    final = Path(invoke_json(home, "show", str(lora_id))["output_dir"]) / "final"
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(final))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    got, expected = _logits(merged, tokenizer), _logits(adapted, tokenizer)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert not torch.allclose(got, _logits(base, tokenizer), atol=1e-4)
    assert len(_generate(merged, tokenizer)) == 4
    assert "library_name: transformers" in (out / "README.md").read_text()


def test_a_full_run_exports_as_it_is(runs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, home, _, full_id = runs
    out = root / "full"
    result = invoke(home, "export", str(full_id), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"run {full_id}: wrote full model (full) to {out}"
    final = Path(invoke_json(home, "show", str(full_id))["output_dir"]) / "final"
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    exported = AutoModelForCausalLM.from_pretrained(str(out))
    assert torch.equal(_logits(exported, tokenizer), _logits(AutoModelForCausalLM.from_pretrained(str(final)),
                                                             tokenizer))
    assert len(_generate(exported, tokenizer)) == 4
    assert not (out / "tunelab-train.json").exists()


def test_export_refuses_in_one_line(runs, tiny_model_dir):
    root, home, lora_id, _ = runs
    taken = root / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = invoke(home, "export", str(lora_id), "-o", str(taken))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {taken} already exists and is not an empty directory"
    assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]

    queued = invoke_json(home, "submit", "--force", str(write_spec(root / "q.toml", name="queued",
                                                                  model_dir=tiny_model_dir, kind="full")))[0]
    result = invoke(home, "export", str(queued["run_id"]), "-o", str(root / "never"))
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: export of run {queued['run_id']}: run {queued['run_id']} is queued; "
                                     "only a succeeded run has final weights")
    assert not (root / "never").exists()
