"""Sequential fine-tuning: model.base = "run:ID" starts from that run's final weights, and the lineage is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke, invoke_json, write_spec

pytestmark = pytest.mark.slow


def _on_run(spec: Path, model_dir: Path, run_id: int) -> Path:
    spec.write_text(spec.read_text().replace(f'base = "{model_dir}"', f'base = "run:{run_id}"'))
    return spec


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir):
    """Run A (full) on the tiny model, then run B (freeze: only its top block and head train) on run:A."""
    root = tmp_path_factory.mktemp("sequential")
    home = root / "home"
    spec_a = write_spec(root / "a.toml", name="a", model_dir=tiny_model_dir, kind="full", tasks=(),
                        baseline=False)
    a = invoke_json(home, "run", "--quiet", str(spec_a))
    spec_b = write_spec(root / "b.toml", name="b", model_dir=tiny_model_dir, kind="full", tasks=(),
                        baseline=False)
    spec_b.write_text(spec_b.read_text().replace('kind = "full"', 'kind = "freeze"\ntrainable_layers = 1'))
    b = invoke_json(home, "run", "--quiet", str(_on_run(spec_b, tiny_model_dir, a["run_id"])))
    return root, home, a, b


def test_b_starts_from_the_final_weights_of_a(chain, tiny_model_dir):
    import torch

    _, home, a, b = chain
    assert (a["status"], b["status"]) == ("succeeded", "succeeded"), (a, b)
    final_a = Path(invoke_json(home, "show", str(a["run_id"]))["output_dir"]) / "final"
    final_b = Path(invoke_json(home, "show", str(b["run_id"]))["output_dir"]) / "final"
    original, after_a, after_b = _weights(tiny_model_dir), _weights(final_a), _weights(final_b)
    frozen = [name for name in original if name.startswith(("model.layers.0.", "model.norm."))]
    assert frozen
    for name in frozen:
        # B never trained these: they are A's final values, which A's training moved off the original ones.
        assert torch.equal(after_b[name], after_a[name]), name
        assert not torch.equal(after_a[name], original[name]), name
    assert not torch.equal(after_b["model.layers.1.self_attn.q_proj.weight"],
                           after_a["model.layers.1.self_attn.q_proj.weight"])


def test_lineage_is_recorded_and_shown(chain, tiny_model_dir):
    _, home, a, b = chain
    detail = invoke_json(home, "show", str(b["run_id"]))
    assert detail["spec"]["model"]["base"] == f"run:{a['run_id']}"  # the stored spec keeps what was written
    assert detail["lineage"] == {"origin": str(tiny_model_dir.resolve()),
                                 "runs": [{"run_id": a["run_id"], "name": "a", "method": "full"}]}
    assert invoke_json(home, "show", str(a["run_id"]))["lineage"] == {"origin": str(tiny_model_dir.resolve()),
                                                                      "runs": []}
    text = invoke(home, "show", str(b["run_id"])).output
    assert f"lineage: run {b['run_id']} <- run {a['run_id']} (full) <- {tiny_model_dir.resolve()}" in text
    assert "lineage:" not in invoke(home, "show", str(a["run_id"])).output


def test_a_lora_run_is_merged_into_its_base_before_the_next_run_starts(chain, tiny_model_dir):
    """A LoRA run on run:A; a run on that one starts from base (A's weights) + adapter, merged."""
    import torch
    from peft import PeftModel
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.roots import Roots
    from tunelab.runner.lineage import starting_weights
    from tunelab.runner.training.models import load_model, load_tokenizer

    root, home, a, _ = chain
    spec = _on_run(write_spec(root / "l.toml", name="l", model_dir=tiny_model_dir, kind="lora", tasks=(),
                              baseline=False), tiny_model_dir, a["run_id"])
    lora = invoke_json(home, "run", "--quiet", str(spec))
    assert lora["status"] == "succeeded", lora
    final_a = Path(invoke_json(home, "show", str(a["run_id"]))["output_dir"]) / "final"
    adapter = Path(invoke_json(home, "show", str(lora["run_id"]))["output_dir"]) / "final"

    registry = open_registry(default_url(home))
    try:
        merged = starting_weights(registry, lora["run_id"], Roots(home), scratch=root / "scratch")
    finally:
        registry.engine.dispose()
    assert merged == root / "scratch" / f"run-{lora['run_id']}" and not (merged / "adapter_config.json").exists()
    tokenizer = load_tokenizer(str(merged))
    tokens = tokenizer(["Name the capital city of Kanora."], return_tensors="pt")
    with torch.no_grad():
        expected = PeftModel.from_pretrained(load_model(str(final_a), "float32"), str(adapter)).eval()(**tokens).logits
        got = load_model(str(merged), "float32").eval()(**tokens).logits
        plain_a = load_model(str(final_a), "float32").eval()(**tokens).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain_a, atol=1e-4)  # the adapter changed something


def test_a_run_base_that_is_not_usable_fails_the_run_in_one_line(chain, tiny_model_dir):
    root, home, a, _ = chain
    missing = _on_run(write_spec(root / "m.toml", name="m", model_dir=tiny_model_dir, kind="full", tasks=(),
                                 baseline=False), tiny_model_dir, 999)
    result = invoke(home, "run", "--quiet", str(missing))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.endswith('(RunFailed: model.base = "run:999": there is no run 999)')

    (root / "nothing.jsonl").write_text('{"instruction": "i", "output": "o"}\n', encoding="utf-8")
    failed = invoke_json(home, "submit", str(write_spec(root / "f.toml", name="f", model_dir=tiny_model_dir,
                                                        train=root / "nothing.jsonl", kind="full")))[0]
    invoke(home, "cancel", str(failed["run_id"]))
    on_cancelled = _on_run(write_spec(root / "c.toml", name="c", model_dir=tiny_model_dir, kind="full", tasks=(),
                                      baseline=False), tiny_model_dir, failed["run_id"])
    result = invoke(home, "run", "--quiet", str(on_cancelled))
    assert result.exit_code == 1
    assert (f'model.base = "run:{failed["run_id"]}": run {failed["run_id"]} is cancelled; only a succeeded run '
            "has final weights") in result.output


def _capitals(detail: dict, kind: str) -> float:
    (value,) = [s["value"] for s in detail["scores"] if s["task"] == "capitals" and s["model_kind"] == kind]
    return value


def test_an_adapter_trained_on_a_run_evaluates_on_demand_as_the_worker_did(chain, tiny_model_dir):
    # LoRA on run:A: `tunelab eval run:C` must put the adapter on A's weights, not on the original base.
    root, home, a, _ = chain
    spec_c = write_spec(root / "c.toml", name="c", model_dir=tiny_model_dir, kind="lora", tasks=(), baseline=False)
    c = invoke_json(home, "run", "--quiet", str(_on_run(spec_c, tiny_model_dir, a["run_id"])))
    assert c["status"] == "succeeded", c
    by_worker = _capitals(invoke_json(home, "show", str(c["run_id"])), "finetuned")
    on_demand = invoke_json(home, "eval", f"run:{c['run_id']}", "--quiet", "--refresh")
    (score,) = [s for s in on_demand["scores"] if s["task"] == "capitals"]
    assert score["value"] == by_worker


def test_a_sequential_run_reproduces_bit_identically(chain):
    import json

    _, home, _, b = chain
    result = invoke(home, "reproduce", "--quiet", "--verify", "--json", str(b["run_id"]))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"]["reproduced"] and report["verdict"]["bit_identical"]
