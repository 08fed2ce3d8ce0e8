"""The experiment spec as pydantic models: the one source of defaults and constraints.

Field names are a public contract (users' TOML files use them): add, never rename.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OPENLLM_V1_TASKS = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never be silently ignored.
    model_config = ConfigDict(extra="forbid")


class ExperimentSection(_Section):
    name: str = Field(min_length=1, description="Name of the experiment, shown in listings and reports.")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = Field(1234, description="Seed for data order, initialisation and evaluation sampling.")
    extends: str | list[str] | None = Field(
        None, description="Spec file(s) this one builds on, relative to this file; deep-merged, this file wins."
    )


class ModelSection(_Section):
    base: str = Field(description="Base model: a local directory, a hub id, or run:ID (a later feature).")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    revision: str | None = Field(None, description="Hub revision (commit, tag or branch) of the base model.")


class DataSection(_Section):
    train: str = Field(description="Training data file (JSONL), relative to the directory submit ran in.")
    format: Literal["instruction"] = Field(
        "instruction", description="instruction: JSONL rows with instruction, optional input, and output."
    )
    template: Literal["alpaca"] = "alpaca"
    max_seq_len: int = Field(256, gt=0, le=32768)
    train_on_prompt: bool = Field(False, description="Also compute the loss on prompt tokens, not only the response.")


class MethodSection(_Section):
    kind: Literal["full", "lora"] = "lora"
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)

    @model_validator(mode="after")
    def _lora_keys_only_for_lora(self) -> MethodSection:
        if self.kind == "full":
            stray = [k for k in LORA_KEYS if k in self.model_fields_set]
            if stray:
                raise ValueError(f"LoRA option(s) {', '.join(stray)} set on a full fine-tune (kind = \"full\")")
        return self


class TrainSection(_Section):
    epochs: float = Field(1, gt=0)
    max_steps: int = Field(0, ge=0, description="Optimizer steps; 0 = run for `epochs`.")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    save_every: int = Field(20, gt=0, description="Optimizer steps between checkpoints.")
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    logging_steps: int = Field(1, gt=0)
    keep_checkpoints: int = Field(
        0, ge=0, description="Complete checkpoints to keep on disk, newest first (0 = keep all)."
    )


class CustomTask(_Section):
    """A multiple-choice task from the user's own JSONL: rows of question, choices, answer (index)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    path: str
    num_fewshot: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=0, description="Items of this task to score (0 = all); unset = [eval] limit.")


class EvalSection(_Section):
    tasks: list[str] = Field(default_factory=lambda: list(OPENLLM_V1_TASKS))
    limit: int = Field(0, ge=0, description="Cap on items per task (0 = all); for quick runs.")
    benchmarks_dir: str = Field("", description="Local benchmark data directory; empty = the official hub datasets.")
    batch_size: int = Field(8, gt=0)
    baseline: bool = Field(True, description="Also evaluate the base model, so every score has a delta.")
    custom: list[CustomTask] = Field(default_factory=list)


class ResourcesSection(_Section):
    priority: int = Field(0, description="Queue priority: higher runs first; FIFO within a priority.")
    max_retries: int = Field(
        2, ge=0, description="Times a run is re-queued after its worker died or an unexpected error, "
        "before it is marked failed. Errors in the spec or the data are never retried.",
    )


class Spec(_Section):
    experiment: ExperimentSection
    model: ModelSection
    data: DataSection
    method: MethodSection = Field(default_factory=MethodSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
