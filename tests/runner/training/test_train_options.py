"""[train] and LoRA options reach the Trainer and peft as they are, are part of the spec's hash only when set, and are
refused in one line where this installation or this device cannot honour them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tunelab.experiments.canonical import resolved_dict, spec_hash
from tunelab.experiments.schema import Spec
from tunelab.runner.training.methods import lora_config

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_spec

CAPITALS = REPO_ROOT / "examples" / "data" / "capitals_train.jsonl"


def _spec(model_dir: Path | str = "tiny", *, train: dict | None = None, method: dict | None = None,
          data: dict | None = None) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "options-test", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"train": str(CAPITALS), "max_seq_len": 96, **(data or {})},
        "method": method or {"kind": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 4, "save_every": 2, "batch_size": 4, "learning_rate": 1e-3, **(train or {})},
    })


def _arguments(spec: Spec, tmp_path: Path):
    from tunelab.runner.training.trainer import training_arguments

    return training_arguments(spec, tmp_path / "checkpoints", "cpu")


# ---- reaching the Trainer and peft ----------------------------------------------------------------------------


def test_train_options_reach_the_training_arguments(tmp_path):
    spec = _spec(train={"gradient_checkpointing": True, "optimizer": "adafactor", "lr_scheduler": "cosine",
                        "warmup_ratio": 0.25, "max_grad_norm": 0.5, "weight_decay": 0.01, "eval_every": 2,
                        "logging_steps": 2, "load_best": True, "early_stopping_patience": 2},
                 data={"validation": 0.2})
    args = _arguments(spec, tmp_path)
    assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.optim == "adafactor" and args.lr_scheduler_type == "cosine"
    assert args.warmup_steps == 0.25 and args.get_warmup_steps(40) == 10  # a share of the steps
    assert args.max_grad_norm == 0.5 and args.weight_decay == 0.01
    assert args.eval_strategy == "steps" and args.eval_steps == 2 and args.logging_steps == 2
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.restore_callback_states_from_checkpoint  # early stopping's counter survives a resume


def test_defaults_leave_the_training_arguments_as_before(tmp_path):
    args = _arguments(_spec(), tmp_path)
    assert not args.gradient_checkpointing and args.optim == "adamw_torch_fused" and args.max_grad_norm == 1.0
    assert args.warmup_steps == 0 and not args.load_best_model_at_end and args.metric_for_best_model is None


def test_early_stopping_is_transformers_callback():
    from transformers import EarlyStoppingCallback
    from tunelab.runner.training.options import steering_callbacks

    spec = _spec(train={"eval_every": 2, "early_stopping_patience": 3, "early_stopping_threshold": 0.01},
                 data={"validation": 0.2})
    (callback,) = steering_callbacks(spec)
    assert isinstance(callback, EarlyStoppingCallback)
    assert callback.early_stopping_patience == 3 and callback.early_stopping_threshold == 0.01
    assert steering_callbacks(_spec()) == []


def test_lora_options_reach_the_lora_config():
    config = lora_config(_spec(method={"kind": "qlora", "use_dora": True, "use_rslora": True,
                                       "target_modules": "all-linear", "modules_to_save": ["lm_head"]}).method)
    assert config.use_dora and config.use_rslora and config.target_modules == "all-linear"
    assert config.modules_to_save == ["lm_head"]
    plain = lora_config(_spec().method)
    assert not plain.use_dora and not plain.use_rslora and plain.modules_to_save is None
    assert set(plain.target_modules) == {"q_proj", "v_proj"}


def test_loraplus_gives_the_b_matrices_the_ratio(tiny_model_dir, tmp_path):
    from tunelab.runner.training.methods import apply_method, loraplus_optimizer
    from tunelab.runner.training.models import load_base

    spec = _spec(tiny_model_dir, method={"kind": "lora", "r": 4, "alpha": 8, "loraplus_lr_ratio": 16.0})
    model = apply_method(load_base(str(tiny_model_dir), spec, "cpu"), spec)
    optimizer = loraplus_optimizer(model, spec.method, _arguments(spec, tmp_path))
    rates = {group["lr"] for group in optimizer.param_groups if group["params"]}
    assert rates == {1e-3, 16e-3}


def test_attention_implementation_reaches_the_model(tiny_model_dir):
    from tunelab.runner.training.models import load_base

    spec = _spec(tiny_model_dir, train={"attn_implementation": "eager"})
    assert load_base(str(tiny_model_dir), spec, "cpu").config._attn_implementation == "eager"


# ---- the spec: hash, validation -------------------------------------------------------------------------------


def test_options_change_the_hash_only_when_set():
    plain = resolved_dict(_spec())
    assert not {"gradient_checkpointing", "optimizer", "load_best", "max_grad_norm"} & set(plain["train"])
    assert not {"use_dora", "use_rslora", "modules_to_save", "loraplus_lr_ratio"} & set(plain["method"])
    assert spec_hash(_spec(train={"max_grad_norm": 1.0})) == spec_hash(_spec())
    changed = [_spec(train={"gradient_checkpointing": True}), _spec(train={"optimizer": "adafactor"}),
               _spec(train={"warmup_ratio": 0.1}), _spec(train={"max_grad_norm": 0.3}),
               _spec(train={"attn_implementation": "eager"}), _spec(method={"kind": "lora", "use_dora": True}),
               _spec(method={"kind": "lora", "use_rslora": True}),
               _spec(method={"kind": "lora", "target_modules": "all-linear"}),
               _spec(method={"kind": "lora", "modules_to_save": ["lm_head"]}),
               _spec(method={"kind": "lora", "loraplus_lr_ratio": 8.0}),
               _spec(train={"eval_every": 2, "load_best": True}, data={"validation": 0.2})]
    hashes = {spec_hash(spec) for spec in changed}
    assert len(hashes) == len(changed) and spec_hash(_spec()) not in hashes
    for spec in changed:  # what the registry stores validates again to the same spec
        assert Spec.model_validate(resolved_dict(spec)) == spec


@pytest.mark.parametrize(("train", "message"), [
    ({"warmup_ratio": 0.1, "warmup_steps": 3}, "set warmup_steps or warmup_ratio, not both"),
    ({"load_best": True}, "load_best needs eval_every > 0"),
    ({"eval_every": 3, "early_stopping_patience": 2}, "save_every (2) must be a multiple of eval_every (3)"),
    ({"eval_every": 2, "early_stopping_threshold": 0.1}, "early_stopping_threshold set while"),
])
def test_inconsistent_steering_is_refused(train, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(train=train, data={"validation": 0.2})


def test_lora_options_belong_to_lora_kinds():
    with pytest.raises(ValueError, match="LoRA option"):
        _spec(method={"kind": "full", "use_dora": True})


def _spec_file(tmp_path: Path, model_dir: Path, train_lines: str, *, kind: str = "lora") -> Path:
    spec = write_spec(tmp_path / "s.toml", name="s", model_dir=model_dir, kind=kind, tasks=(),
                      baseline=False)  # the default custom task: a spec must name something to evaluate
    spec.write_text(spec.read_text().replace("learning_rate = 1e-3\n", f"learning_rate = 1e-3\n{train_lines}"))
    return spec


def _line_of(spec: Path, text: str) -> int:
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1) if line.startswith(text))


@pytest.mark.parametrize(("lines", "field", "message"), [
    ('optimizer = "adamw_torchh"\n', "optimizer",
     "unknown optimizer 'adamw_torchh': not one of the installed transformers' OptimizerNames "
     '(did you mean "adamw_torch"?)'),
    ("eval_every = 2\nload_best = true\n", "load_best", "needs [data] validation (the loss it steers by)"),
])
def test_submit_refuses_what_this_installation_cannot_do(tmp_path, tiny_model_dir, lines, field, message):
    spec = _spec_file(tmp_path, tiny_model_dir, lines)
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == f"Error: {spec}:{_line_of(spec, field)}: train.{field}: {message}"


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_gpu(), reason="checks the refusal on a machine without a GPU")
def test_cuda_only_optimizer_fails_in_one_line_on_the_cpu(tmp_path, tiny_model_dir):
    spec = _spec_file(tmp_path, tiny_model_dir, 'optimizer = "paged_adamw_8bit"\n')
    result = invoke(tmp_path / "home", "run", "--quiet", str(spec))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert 'train.optimizer = "paged_adamw_8bit" needs a CUDA GPU (bitsandbytes); none is available' in line
    assert invoke_json(tmp_path / "home", "show", "1")["metrics"] == []


def test_flash_attention_is_refused_without_a_gpu_or_the_package(tmp_path, tiny_model_dir):
    import importlib.util

    from tunelab.runner.errors import RunFailed
    from tunelab.runner.training.options import check_cuda_options

    spec = _spec_file(tmp_path, tiny_model_dir, 'attn_implementation = "flash_attention_2"\n')
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    if importlib.util.find_spec("flash_attn") is None:
        assert result.exit_code == 1
        assert result.output.strip().endswith('train.attn_implementation: "flash_attention_2" needs the flash-attn '
                                              'package, which is not installed (use "sdpa")')
    with pytest.raises(RunFailed, match="needs a CUDA GPU"):
        check_cuda_options(_spec(train={"attn_implementation": "flash_attention_2"}), "cpu")


# ---- end to end -----------------------------------------------------------------------------------------------


def _train(spec: Spec, output_dir: Path):
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.trainer import TrainHooks

    metrics: list[dict] = []
    outcome = train(spec, workdir=REPO_ROOT, output_dir=output_dir,
                    hooks=TrainHooks(on_metrics=metrics.append, on_checkpoint=lambda *args: None))
    return outcome, metrics


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_losses(tiny_model_dir, tmp_path):
    spec = _spec(tiny_model_dir, method={"kind": "full"}, train={"save_every": 100})
    _, plain = _train(spec, tmp_path / "plain")
    checkpointed = spec.model_copy(update={"train": spec.train.model_copy(update={"gradient_checkpointing": True})})
    _, recomputed = _train(checkpointed, tmp_path / "checkpointed")
    losses = [m["loss"] for m in plain if "loss" in m]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert [m["loss"] for m in recomputed if "loss" in m] == pytest.approx(losses, rel=1e-4)


@pytest.mark.slow
def test_dora_trains_a_magnitude_vector(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    spec = _spec(tiny_model_dir, method={"kind": "lora", "r": 4, "alpha": 8, "use_dora": True,
                                         "target_modules": "all-linear"}, train={"save_every": 100})
    outcome, metrics = _train(spec, tmp_path / "run")
    assert all(math.isfinite(m["loss"]) for m in metrics if "loss" in m)
    saved = load_file(str(outcome.final_dir / "adapter_model.safetensors"))
    assert any("lora_magnitude_vector" in name for name in saved)
    assert any("mlp" in name for name in saved)  # all-linear reached beyond q_proj and v_proj
