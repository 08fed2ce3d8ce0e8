"""Fine-tuning methods: how a loaded model is wrapped or frozen for each `[method] kind`, and what it trains.

full trains every weight; freeze only the top decoder blocks and the LM head; lora and qlora (over a 4-bit
NF4 base, loaded by runner/training/models.py) train a LoRA adapter; prompt_tuning trains virtual tokens.
dpo, reward, rloo, grpo and kto train a LoRA adapter or every weight (their recipes: runner/training/preference.py,
reward_model.py, online_rl.py, kto.py). Options that need CUDA are refused here, in one line, before anything is
loaded.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tunelab.experiments.errors import missing_extra
from tunelab.experiments.schema import MethodSection, Spec
from tunelab.runner.errors import RunFailed

# Kinds whose final weights are a peft adapter over the base model (plus those trained with LoRA by choice:
# dpo_weights = "lora", weights = "lora").
ADAPTER_KINDS = ("lora", "qlora", "prompt_tuning")


def trains_adapter(method: MethodSection) -> bool:
    """Whether training saves a peft adapter (not a whole model) as the run's final weights."""
    # trains_lora: lora, qlora, and the preference and RL kinds that train a LoRA adapter (dpo_weights, weights).
    return method.kind in ADAPTER_KINDS or method.trains_lora


def check_device(spec: Spec, device: str) -> None:
    """Refuse, in one line, options that need a GPU when there is none, or bitsandbytes when it is missing."""
    if spec.method.paged_optimizer and device != "cuda":
        raise RunFailed("method.paged_optimizer = true needs a CUDA GPU; none is available "
                        "(leave it unset: qlora then pages only where a GPU is present)")
    if spec.method.kind == "qlora":
        require_bitsandbytes('method.kind = "qlora"')
    elif uses_paged_optimizer(spec.method, device):
        require_bitsandbytes("method.paged_optimizer")


def uses_paged_optimizer(method: MethodSection, device: str) -> bool:
    if method.paged_optimizer is None:
        return method.kind == "qlora" and device == "cuda"
    return method.paged_optimizer


def optimizer_arguments(method: MethodSection, device: str) -> dict[str, Any]:
    """TrainingArguments for the optimizer: the Trainer's default unless the optimizer state is paged."""
    if not uses_paged_optimizer(method, device):
        return {}
    return {"optim": f"paged_adamw_{method.paged_optimizer_bits}bit"}


def require_bitsandbytes(needed_for: str) -> None:
    """Refuse, in one line naming the extra, what needs bitsandbytes where it is not installed."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RunFailed(missing_extra("bitsandbytes", "qlora", needed_for))


def bnb_compute_dtype(method: MethodSection, device: str) -> str:
    return method.bnb_compute_dtype or ("bfloat16" if device == "cuda" else "float32")


def lora_config(method: MethodSection):
    from peft import LoraConfig

    targets = method.target_modules if isinstance(method.target_modules, str) else list(method.target_modules)
    return LoraConfig(r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout, target_modules=targets,
                      use_dora=method.use_dora, use_rslora=method.use_rslora,
                      modules_to_save=list(method.modules_to_save) or None, task_type="CAUSAL_LM")


def loraplus_optimizer(model, method: MethodSection, arguments):
    """peft's LoRA+ optimizer ([method] loraplus_lr_ratio) over the Trainer's optimizer class and settings
    ([train] optimizer): the B matrices learn loraplus_lr_ratio times faster than the A matrices."""
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(arguments, model)
    kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
    return create_loraplus_optimizer(model, optimizer_cls, lr=arguments.learning_rate,
                                     loraplus_lr_ratio=method.loraplus_lr_ratio,
                                     loraplus_weight_decay=arguments.weight_decay, **kwargs)


def apply_method(model, spec: Spec, *, model_path: str | None = None):
    """Wrap or freeze the loaded model for the method; full fine-tuning (and dpo, whose trainer wraps
    the model itself) trains it as is."""
    kind = spec.method.kind
    if kind in ("full", "dpo"):
        return model
    if kind == "freeze":
        freeze_all_but_top(model, spec.method.trainable_layers)
        return model
    from peft import get_peft_model

    if kind == "prompt_tuning":
        model = get_peft_model(model, _prompt_tuning_config(spec.method, model_path))
        return trim_virtual_token_logits(model)
    if kind == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        return get_peft_model(model, lora_config(spec.method))
    except ValueError as exc:
        raise RunFailed(f"method.target_modules: {exc}") from None


def decoder_blocks(model) -> list:
    """The model's stack of decoder blocks: the ModuleList as long as config.num_hidden_layers."""
    import torch

    count = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    raise RunFailed(f"cannot find the {count} decoder blocks of {type(model).__name__} for kind = \"freeze\"")


def freeze_all_but_top(model, trainable_layers: int) -> None:
    """Train only the top `trainable_layers` decoder blocks and the LM head."""
    blocks = decoder_blocks(model)
    if trainable_layers > len(blocks):
        raise RunFailed(f"method.trainable_layers = {trainable_layers}, but the model has only "
                        f"{len(blocks)} decoder blocks")
    model.requires_grad_(False)
    for block in blocks[len(blocks) - trainable_layers:]:
        block.requires_grad_(True)
    model.get_output_embeddings().requires_grad_(True)


def _prompt_tuning_config(method: MethodSection, model_path: str | None):
    from peft import PromptTuningConfig, PromptTuningInit

    if method.prompt_init_text is None:
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=method.num_virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit.RANDOM)
    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=method.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=method.prompt_init_text,
                              tokenizer_name_or_path=model_path)


def trim_virtual_token_logits(model):
    """Make a prompt-tuned model's logits line up with its input again.

    peft prepends the virtual tokens' positions to the logits; evaluation (lm-eval) reads logits by input
    position, so they are cut off after each forward. The loss, computed inside, is unaffected.
    """
    virtual = model.active_peft_config.num_virtual_tokens

    def trim(module, args, kwargs, output):
        tokens = kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        logits = getattr(output, "logits", None)
        if tokens is not None and logits is not None and logits.shape[1] == tokens.shape[1] + virtual:
            output.logits = logits[:, virtual:]
        return output

    model.register_forward_hook(trim, with_kwargs=True)
    return model
