"""Loading models and tokenizers: the base a run starts from (4-bit for qlora), and a run's trained weights.

Every recipe, the evaluation of a run's weights and `tunelab export` load through here, so a model is
found, typed and quantised in one way everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The reading of a model name belongs to the spec language; the runner's rooms import it from here too.
from tunelab.experiments.paths import ModelLocation as ModelLocation
from tunelab.experiments.paths import locate_model
from tunelab.experiments.schema import Spec
from tunelab.runner.errors import RunFailed
from tunelab.runner.offline import hub_offline, hub_unreachable, unreachable_hub_remedy
from tunelab.runner.training.methods import (
    bnb_compute_dtype,
    require_bitsandbytes,
    trains_adapter,
    trim_virtual_token_logits,
)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_model_path(base: str, workdir: Path) -> str:
    """A spec's model.base as `from_pretrained` takes it: a local directory, or a hub id."""
    location = locate_model(base, workdir)
    if location.kind == "run":
        # Only the registry knows where a run's weights are: runner/lineage.py resolves these before training.
        raise RunFailed(f'model.base = "{base}" names a run; it is resolved through the registry (runner/lineage.py)')
    if location.kind == "missing":
        raise RunFailed(f"base model directory not found: {location.path}")
    return str(location.path) if location.kind == "directory" else base


def require_hub(model_path: str, revision: str | None = None) -> None:
    """Fail at once, in one line, when `model_path` is a hub id missing from the hub cache and the hub cannot be
    reached (transformers would retry each file for about a minute, then fail in several lines)."""
    if Path(model_path).is_dir() or hub_offline(os.environ) or _in_hub_cache(model_path, revision):
        return
    reason = hub_unreachable(os.environ)
    if reason is not None:
        raise RunFailed(f"the hub cannot be reached ({reason}): {unreachable_hub_remedy(f'model {model_path!r}')}")


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    except HFValidationError:  # not a hub id: from_pretrained says what is wrong with it
        return True


def load_tokenizer(model_path: str, revision: str | None = None):
    require_hub(model_path, revision)  # before transformers' import (seconds)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, revision=revision)
    except OSError as exc:
        raise RunFailed(f"cannot load tokenizer of {model_path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, dtype: str, revision: str | None = None, attn_implementation: str | None = None):
    """A causal LM in `dtype`; `attn_implementation` ([train] attn_implementation): unset = transformers' choice."""
    require_hub(model_path, revision)
    from transformers import AutoModelForCausalLM

    if dtype != "float32" and pick_device() == "cpu":
        raise RunFailed(f'model.dtype = "{dtype}" needs a GPU; none is available (use "float32" on the CPU)')
    try:
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype(dtype), revision=revision,
                                                    **_attention(attn_implementation))
    except OSError as exc:
        raise RunFailed(f"cannot load model {model_path!r}: {exc}") from None


def load_base(model_path: str, spec: Spec, device: str):
    """The base model as the method needs it: 4-bit NF4 (double quantisation) for qlora, else as is."""
    if spec.method.kind != "qlora":
        return load_model(model_path, spec.model.dtype, spec.model.revision, spec.train.attn_implementation)
    return _load_quantised(model_path, spec, device)


def _load_quantised(model_path: str, spec: Spec, device: str):
    require_bitsandbytes('method.kind = "qlora"')
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if spec.model.dtype != "float32" and device == "cpu":
        raise RunFailed(f'model.dtype = "{spec.model.dtype}" needs a GPU; none is available (use "float32" on the CPU)')
    require_hub(model_path, spec.model.revision)
    quantisation = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(bnb_compute_dtype(spec.method, device)),
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_path, quantization_config=quantisation, dtype=torch_dtype(spec.model.dtype),
            revision=spec.model.revision, device_map="cpu" if device == "cpu" else {"": _local_gpu()},
            **_attention(spec.train.attn_implementation),
        )
    except OSError as exc:
        raise RunFailed(f"cannot load model {model_path!r}: {exc}") from None
    except ImportError as exc:  # bitsandbytes missing or without a backend for this device
        raise RunFailed(f"qlora needs bitsandbytes: {exc}") from None
    _keep_cpu_layout_for_small_layers(model)
    return model


def _attention(attn_implementation: str | None) -> dict[str, str]:
    # Passed only when set, so that a spec without it loads exactly as before.
    return {"attn_implementation": attn_implementation} if attn_implementation else {}


def _local_gpu() -> int:
    """This process's GPU: under torchrun each process has its own (LOCAL_RANK), else the first visible one."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def _keep_cpu_layout_for_small_layers(model) -> None:
    # bitsandbytes repacks 4-bit weights for a faster CPU kernel the first time it runs a layer in
    # inference mode; the repacking assumes whole quantisation blocks (64) along the input and groups of
    # 32 outputs, and fails on other shapes, so those layers keep the plain layout (same numbers, the
    # generic kernel).
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            block = module.weight.quant_state.blocksize
            if module.in_features % block or module.in_features < block or module.out_features % 32:
                module.support_avx512bf16_for_cpu = False


def load_trained(spec: Spec, model_path: str, final_dir: Path, device: str):
    """A run's final weights as training left them: the whole model, or the base with the adapter."""
    if not trains_adapter(spec.method):
        return load_model(str(final_dir), spec.model.dtype)
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base(model_path, spec, device), str(final_dir))
    return trim_virtual_token_logits(model) if spec.method.kind == "prompt_tuning" else model


def merged_model(base_dir: str, adapter_dir: Path, dtype: str):
    """The base with a LoRA adapter merged into its weights: a plain transformers model.

    A qlora adapter is merged into the base at full precision (the usual way to ship one): the result
    differs from the 4-bit model it trained against by the quantisation error.
    """
    from peft import PeftModel

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise RunFailed(f"{adapter_dir}: a {config.get('peft_type', 'non-LoRA').lower()} adapter adds virtual tokens "
                        "and has no weights to merge into the model")
    return PeftModel.from_pretrained(load_model(base_dir, dtype), str(adapter_dir)).merge_and_unload()
