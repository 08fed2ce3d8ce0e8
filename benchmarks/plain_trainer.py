"""The baseline tunelab's training is measured against: a plain transformers Trainer script, as written by hand.

transformers, peft and bitsandbytes and nothing else: tokenise the rows, load the model for the method (full
weights, a LoRA adapter, or LoRA over a 4-bit NF4 base), train with `Trainer`, report. It mirrors what tunelab
does with the same settings (same tokens, loss mask, collator, optimizer, precision), so the two can be compared
number for number. The benchmarks run it in a fresh process, as `tunelab run` is:

    python benchmarks/plain_trainer.py CONFIG.json     # prints one JSON line: PlainResult

CONFIG.json holds the fields of PlainConfig.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


@dataclass(frozen=True)
class PlainConfig:
    model: str  # a model directory
    data: str  # JSONL rows
    output_dir: str
    steps: int
    batch_size: int
    max_seq_len: int
    data_format: str = "text"  # "text" (a `text` field, loss on every token) or "instruction" (Alpaca prompt)
    method: str = "full"  # "full", "lora" or "qlora" (LoRA over a 4-bit NF4 base, double quantisation)
    dtype: str = "float32"  # weights, and mixed precision on a GPU: "float32" or "bfloat16"
    device: str = "cpu"  # "cpu" or "cuda"
    optim: str | None = None  # a TrainingArguments optimizer name (paged_adamw_8bit); None = the default
    learning_rate: float = 2e-4
    seed: int = 11
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class PlainResult:
    train_seconds: float  # trainer.train(), as tunelab's train_seconds
    tokens_trained: int  # non-padding tokens handed to the model
    examples: int
    tokens_per_epoch: int
    final_loss: float | None  # the last logged training loss
    peak_allocated_bytes: int | None  # torch.cuda.max_memory_allocated(); None on the CPU
    peak_reserved_bytes: int | None
    max_rss_bytes: int  # the process's peak resident memory


# ---- data: the same tokens and loss mask as tunelab's pipeline ------------------------------------------------


def text_features(tokenizer: Any, path: Path, max_seq_len: int) -> list[dict[str, list[int]]]:
    """BOS + text + EOS, cut to max_seq_len; the loss covers every token but BOS."""
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    features = []
    for tokens in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids = ([tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id])[:max_seq_len]
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX, *ids[1:]]})
    return features


def instruction_features(tokenizer: Any, path: Path, max_seq_len: int) -> list[dict[str, list[int]]]:
    """BOS + Alpaca prompt + output + EOS, cut to max_seq_len; the loss covers the output and EOS."""
    features = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        prompt = tokenizer(ALPACA_PROMPT.format(instruction=row["instruction"]), add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["output"], add_special_tokens=False)["input_ids"]
        ids = ([tokenizer.bos_token_id] + prompt + answer + [tokenizer.eos_token_id])[:max_seq_len]
        labels = [IGNORE_INDEX] * min(len(prompt) + 1, len(ids)) + ids[len(prompt) + 1:]
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return features


FEATURES = {"text": text_features, "instruction": instruction_features}


# ---- model ------------------------------------------------------------------------------------------------------


def load_model(config: PlainConfig) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, config.dtype)
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantisation = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(config.model, quantization_config=quantisation, dtype=dtype,
                                                     device_map={"": 0} if config.device == "cuda" else "cpu")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout,
                                                 target_modules=list(config.lora_targets), task_type="CAUSAL_LM"))
    return model


# ---- training ---------------------------------------------------------------------------------------------------


class CountingCollator:
    """Pads like tunelab's collator and counts the non-padding tokens it hands to the model."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorForSeq2Seq

        self.collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
        self.tokens = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> Any:
        self.tokens += sum(len(feature["input_ids"]) for feature in features)
        return self.collate(features)


def train(config: PlainConfig) -> PlainResult:
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    features = FEATURES[config.data_format](tokenizer, Path(config.data), config.max_seq_len)
    model = load_model(config)
    on_gpu = config.device == "cuda"
    args = TrainingArguments(
        output_dir=config.output_dir, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, max_steps=config.steps, logging_steps=1, save_strategy="no",
        seed=config.seed, data_seed=config.seed, report_to=[], use_cpu=not on_gpu, disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=False,
        bf16=on_gpu and config.dtype == "bfloat16", **({"optim": config.optim} if config.optim else {}))
    collator = CountingCollator(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return PlainResult(
        train_seconds=seconds, tokens_trained=collator.tokens, examples=len(features),
        tokens_per_epoch=sum(len(f["input_ids"]) for f in features), final_loss=losses[-1] if losses else None,
        peak_allocated_bytes=torch.cuda.max_memory_allocated() if on_gpu else None,
        peak_reserved_bytes=torch.cuda.max_memory_reserved() if on_gpu else None,
        # Linux reports kilobytes.
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
    config = PlainConfig(**json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    print(json.dumps(asdict(train(config))))


if __name__ == "__main__":
    main()
