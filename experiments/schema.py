"""The experiment spec as pydantic models: the one source of defaults and constraints.

Field names are a public contract (users' TOML files use them): add, never rename.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from tunelab.experiments.benchmarks import LEADERBOARD, LEADERBOARD_FEWSHOT_SEED, MMLU_MAX_SHOTS
from tunelab.experiments.paths import RUN_BASE
from tunelab.experiments.plain_text import control_character

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
# LoRA options added later, with their defaults: stored only when set, so older specs keep their hash.
LORA_OPTION_DEFAULTS: dict[str, Any] = {"use_dora": False, "use_rslora": False, "modules_to_save": [],
                                        "loraplus_lr_ratio": None}

# Upper bounds of the integer keys: far above any real use, and within what every consumer takes (a 64-bit
# registry column, numpy's 32-bit seed, a PostgreSQL INTEGER for the priority), so a typo such as 10**20 is
# refused at submit instead of failing a run. The JSON Schema shows each as its key's maximum.
MAX_SEED = 2**32 - 1  # numpy's RandomState (seeded by transformers' set_seed) takes no more
MAX_STEPS = 10**9  # steps, step intervals, examples and items
MAX_BATCH = 65_536  # batch sizes and gradient accumulation
MAX_RANK = 4_096  # LoRA rank, virtual tokens, trainable layers
MAX_SHOTS = 1_000
MAX_PRIORITY = 1_000_000  # either sign
MAX_RETRIES = 100
MAX_GPUS = 1_024
MAX_KEPT = 1_000_000  # checkpoints kept

def _plain_text(text: str, *, what: str, allowed: str = "") -> str:
    ch = control_character(text, allowed=allowed)
    if ch is not None:
        raise ValueError(f"{what} contains the control character U+{ord(ch):04X}: only printable text is allowed")
    return text


def _plain_name(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only spaces")
    return _plain_text(text, what="a name")


_Name = Annotated[str, AfterValidator(_plain_name)]


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never be silently ignored. Strict: TOML has types, so "4" is not 4 and
    # true is not 1 (an integer is still a float). inf and nan are no numbers a spec means.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ExperimentSection(_Section):
    name: _Name = Field(description="Name of the experiment, shown in listings and reports: printable text, "
                        "not only spaces.")
    description: str = ""
    tags: list[_Name] = Field(default_factory=list)
    seed: int = Field(1234, ge=0, le=MAX_SEED, description="Seed for data order, initialisation and evaluation "
                      "sampling; the few-shot examples have their own ([eval] fewshot_seed).")
    extends: str | list[str] | None = Field(
        None, description="Spec file(s) this one builds on, relative to this file; deep-merged, this file wins."
    )

    @field_validator("description")
    @classmethod
    def _description_is_printable(cls, value: str) -> str:
        return _plain_text(value, what="the description", allowed="\n\t")


class ModelSection(_Section):
    base: str = Field(description="Base model: a local directory, a hub id, or run:ID (the final weights of an "
                      "earlier succeeded run: sequential fine-tuning).")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    revision: str | None = Field(None, description="Hub revision (commit, tag or branch) of the base model.")

    @field_validator("base")
    @classmethod
    def _run_base_is_well_formed(cls, base: str) -> str:
        if base.startswith("run:") and not RUN_BASE.fullmatch(base):
            raise ValueError('a run base is run:ID with a numeric run id, e.g. "run:3"')
        return base

    @model_validator(mode="after")
    def _no_revision_for_a_run_base(self) -> ModelSection:
        if self.revision is not None and RUN_BASE.fullmatch(self.base):
            raise ValueError(f'revision applies to hub models, not to base = "{self.base}"')
        return self


DataFormat = Literal["instruction", "chat", "text", "preference", "prompt", "feedback"]
TEMPLATE_NAMES = ("alpaca", "chatml", "tokenizer")
_FORMATS_HELP = (
    "instruction: rows of instruction, optional input, output; chat: a `messages` list of {role, content} "
    "(system, user, assistant); text: a `text` field, loss on every token (continued pre-training); "
    "preference: prompt, chosen, rejected (for preference methods and reward models); prompt: a `prompt` alone (for "
    "online RL, which generates the answers; other fields go to a reward function); feedback: prompt, completion, "
    "label (true: a good answer, false: a bad one; for kto). JSONL, or CSV by the .csv extension "
    "with the same column names (a chat row's `messages` column holds the list as JSON)."
)


class DataSource(_Section):
    """One file of a training mixture ([[data.train]])."""

    path: str = Field(min_length=1, description="Data file, relative to the directory submit ran in.")
    format: DataFormat | None = Field(None, description="Format of this file; unset = [data] format.")
    weight: float = Field(1.0, gt=0, description="Relative share of the training examples drawn from this file.")


_SOURCES = TypeAdapter(list[DataSource])


class DataSection(_Section):
    train: str | list[DataSource] = Field(
        description="Training data file, relative to the directory submit ran in; or a mixture: a list of "
        "tables {path, format, weight} sampled by weight (deterministically, with the experiment seed).")
    format: DataFormat = Field("instruction", description=_FORMATS_HELP)
    template: str = Field(
        "alpaca", min_length=1,
        description='How rows become text: "alpaca", "chatml", "tokenizer" (the tokenizer\'s own chat template) '
        "or a Jinja template string (sandboxed). A Jinja template for instruction rows renders the prompt from "
        "`instruction` and `input`, verbatim (the output and EOS follow it); for chat rows it is a chat template "
        "over `messages` and `add_generation_prompt`, with transformers' whitespace handling (trim_blocks, "
        "lstrip_blocks). Both also get `bos_token`, `eos_token` and `raise_exception(message)`.")
    max_seq_len: int = Field(256, gt=0, le=32768)
    train_on_prompt: bool = Field(False, description="Also compute the loss on prompt tokens, not only the response.")
    overlength: Literal["drop", "truncate"] = Field(
        "truncate", description="Rows longer than max_seq_len tokens: cut to max_seq_len, or leave out.")
    dedupe: bool = Field(True, description="Leave out rows that exactly repeat an earlier row of the same file.")
    validation: str | float | None = Field(
        None, description="Validation data: a file (in [data] format), or a fraction 0 < f < 1 of the training "
        "rows held out with the experiment seed. Its loss is logged every [train] eval_every steps and at the end.")
    packing: bool = Field(False, description="Pack several examples into each max_seq_len sequence; they do not "
                          "attend to each other (block-diagonal attention, positions restart per example).")
    mixture_examples: int = Field(
        0, ge=0, le=MAX_STEPS,
        description="Training examples drawn from a mixture; 0 = as many as its files hold together.")

    @field_validator("train", mode="wrap")
    @classmethod
    def _train_file_or_mixture(cls, value: Any, handler) -> str | list[DataSource]:
        # Validating the list directly keeps error locations as data.train.0.weight (a plain union
        # would name its members and report both of them).
        if isinstance(value, list):
            if not value:
                raise ValueError("a mixture needs at least one {path, format, weight} table")
            return _SOURCES.validate_python(value)
        if not isinstance(value, str):
            raise ValueError("must be a file path or a list of {path, format, weight} tables")
        return handler(value)

    @field_validator("template")
    @classmethod
    def _template_name_or_jinja(cls, value: str) -> str:
        if value in TEMPLATE_NAMES:
            return value
        if "{{" not in value and "{%" not in value:
            raise ValueError(f"unknown template {value!r}: expected {', '.join(TEMPLATE_NAMES)} "
                             "or a Jinja template string")
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        try:
            ImmutableSandboxedEnvironment().parse(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"invalid Jinja template (line {exc.lineno} of the template): {exc.message}") from None
        return value

    @field_validator("validation")
    @classmethod
    def _validation_file_or_fraction(cls, value: str | float | None) -> str | float | None:
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError("a validation fraction must be between 0 and 1 (exclusive)")
        if isinstance(value, str) and not value:
            raise ValueError("a validation file path must not be empty")
        return value

    @model_validator(mode="after")
    def _mixture_keys_only_for_mixtures(self) -> DataSection:
        if self.mixture_examples and isinstance(self.train, str):
            raise ValueError("mixture_examples applies only when train is a list of files")
        return self


MethodKind = Literal["full", "lora", "qlora", "freeze", "prompt_tuning", "dpo", "reward", "rloo", "grpo", "kto"]
# Where the reward of online RL comes from: exactly one of a reward run, a judge model (with its template), or a
# Python function.
REWARD_SOURCE_KEYS = ("reward_model", "judge_model", "judge_template", "reward_function")
_GENERATION_KEYS = ("max_new_tokens", "temperature", "num_generations")
ONLINE_RL_KINDS = ("rloo", "grpo")
# Kinds that train a LoRA adapter or every weight, as `weights` says.
WEIGHTS_KINDS = ("reward", "rloo", "grpo", "kto")
# The keys each kind reads besides `kind`; a key another kind owns is an error, never silently ignored.
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "full": (),
    "lora": LORA_KEYS + tuple(LORA_OPTION_DEFAULTS),
    "qlora": LORA_KEYS + tuple(LORA_OPTION_DEFAULTS) + ("bnb_compute_dtype",),
    "freeze": ("trainable_layers",),
    "prompt_tuning": ("num_virtual_tokens", "prompt_init_text"),
    "dpo": ("beta", "dpo_weights"),
    "reward": ("weights",),
    "rloo": ("weights", "beta", *REWARD_SOURCE_KEYS, *_GENERATION_KEYS),
    "grpo": ("weights", "beta", *REWARD_SOURCE_KEYS, *_GENERATION_KEYS),
    "kto": ("weights", "beta", "desirable_weight", "undesirable_weight"),
}
# Any kind may page its optimizer state; these are stored only when set, so older specs keep their hash.
PAGING_KEYS = ("paged_optimizer", "paged_optimizer_bits")
_KIND_NAMES = {"full": "a full fine-tune", "freeze": "a freeze fine-tune", "prompt_tuning": "prompt tuning",
               "dpo": 'DPO with dpo_weights = "full"', "reward": 'a reward model with weights = "full"',
               "rloo": 'RLOO with weights = "full"', "grpo": 'GRPO with weights = "full"',
               "kto": 'KTO with weights = "full"'}
# The data format each of these kinds trains on (the other kinds read instruction, chat or text rows, and dpo
# checks its own when it runs).
KIND_FORMATS: dict[str, tuple[str, ...]] = {"reward": ("preference",), "rloo": ("prompt",), "grpo": ("prompt",),
                                            "kto": ("feedback", "preference")}
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
# Where a judge template puts the prompt and the completion it judges.
PROMPT_PLACEHOLDER, COMPLETION_PLACEHOLDER = "{prompt}", "{completion}"


class MethodSection(_Section):
    kind: MethodKind = Field(
        "lora", description="full: all weights; lora: a LoRA adapter; qlora: LoRA over a 4-bit NF4 base "
        "(bitsandbytes); freeze: only the top `trainable_layers` decoder blocks and the LM head; prompt_tuning: "
        "learned virtual tokens; dpo: preference optimisation (DPO) on prompt/chosen/rejected data; reward: a reward "
        "model (a scalar head on the base) trained on prompt/chosen/rejected data, scored by its held-out pairwise "
        "accuracy; rloo, grpo: online RL (trl's RLOO or GRPO) on prompt rows, the policy's own completions scored by "
        "reward_model, judge_model or reward_function; kto: KTO on unpaired good/bad feedback.")
    r: int = Field(8, gt=0, le=MAX_RANK, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Annotated[list[str], Field(min_length=1)] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        description='Module names the LoRA adapter wraps, or "all-linear": every linear layer but the output head.')
    use_dora: bool = Field(False, description="lora, qlora: DoRA (weight-decomposed LoRA: a learned magnitude per "
                           "output feature besides the low-rank direction).")
    use_rslora: bool = Field(False, description="lora, qlora: rank-stabilised LoRA (scaling = alpha / sqrt(r)).")
    modules_to_save: list[str] = Field(
        default_factory=list, description="lora, qlora: modules trained in full and saved with the adapter "
        '(e.g. ["lm_head"]).')
    loraplus_lr_ratio: float | None = Field(
        None, gt=0, le=1e6, description="lora, qlora: LoRA+ (peft's create_loraplus_optimizer): the B matrices "
        "learn this many times faster than the A matrices; unset = plain LoRA.")
    bnb_compute_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="qlora: dtype the 4-bit layers compute in; unset = float32 on the CPU, bfloat16 on a GPU.")
    trainable_layers: int = Field(
        1, gt=0, le=MAX_RANK, description="freeze: decoder blocks trained, counted from the top; the LM head "
        "trains too (and with it the input embeddings, where the model ties them).")
    num_virtual_tokens: int = Field(20, gt=0, le=MAX_RANK,
                                    description="prompt_tuning: virtual tokens prepended to every input.")
    prompt_init_text: str | None = Field(
        None, min_length=1, description="prompt_tuning: text whose token embeddings initialise the virtual "
        "tokens (repeated or cut to num_virtual_tokens); unset = random initialisation.")
    beta: float = Field(
        0.1, ge=0, description="dpo, kto: strength of the pull towards the reference model (above 0); rloo, grpo: the "
        "KL coefficient against the reference model (0: no KL term, and no reference model is held).")
    dpo_weights: Literal["lora", "full"] = Field(
        "lora", description='dpo: what is trained. "lora": a LoRA adapter (LoRA keys apply); the reference is '
        'the base with the adapter switched off, so no second copy is held. "full": every weight, against a '
        "frozen copy of the base.")
    weights: Literal["lora", "full"] = Field(
        "lora", description='reward, rloo, grpo, kto: what is trained. "lora": a LoRA adapter (LoRA keys apply; for '
        "a reward model the scalar head trains too), the reference being the base with the adapter switched off; "
        '"full": every weight, against a frozen copy of the base.')
    reward_model: str | None = Field(
        None, description='rloo, grpo: the reward is the score of a reward run of this registry, "run:ID" (a run of '
        'kind = "reward": RLHF).')
    judge_model: str | None = Field(
        None, min_length=1, description="rloo, grpo: the reward is the judgement of this causal language model (a "
        "directory, a hub id or run:ID) on each completion (RLAIF): the probability it gives \"Yes\" rather than "
        "\"No\" as the next word after judge_template.")
    judge_template: str | None = Field(
        None, description="rloo, grpo with judge_model: the question put to the judge, with {completion} where the "
        "completion goes (required) and {prompt} where the prompt goes (optional); the judge answers Yes or No.")
    reward_function: str | None = Field(
        None, description='rloo, grpo: the reward is a Python function "module:function", imported from the '
        "directory submit ran in, called as trl calls reward functions: function(prompts=..., completions=..., "
        "completion_ids=..., **other prompt-row fields) returning one float per completion (verifiable tasks).")
    max_new_tokens: int = Field(64, gt=0, le=MAX_STEPS,
                                description="rloo, grpo: the longest completion generated, in tokens.")
    temperature: float = Field(1.0, gt=0, description="rloo, grpo: sampling temperature of the completions.")
    num_generations: int = Field(
        4, ge=2, le=MAX_BATCH,
        description="rloo, grpo: completions generated per prompt (the group each is compared with); [train] "
        "batch_size x grad_accum must be a multiple of it.")
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of the loss on good (label true) rows.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of the loss on bad (label false) rows.")
    paged_optimizer: bool | None = Field(
        None, description="Page the optimizer state between GPU and CPU memory (bitsandbytes; CUDA only). "
        "Unset = on for qlora when a GPU is present, off otherwise; true without a GPU is an error.")
    paged_optimizer_bits: Literal[8, 32] = Field(
        8, description="State precision of the paged optimizer: paged_adamw_8bit or paged_adamw_32bit.")

    def keys_used(self) -> tuple[str, ...]:
        """The options this kind reads, besides `kind` and the paging keys."""
        keys = _KIND_KEYS[self.kind]
        lora = ((self.kind == "dpo" and self.dpo_weights == "lora")
                or (self.kind in WEIGHTS_KINDS and self.weights == "lora"))
        return keys + LORA_KEYS + tuple(LORA_OPTION_DEFAULTS) if lora else keys

    @field_validator("reward_model")
    @classmethod
    def _reward_model_is_a_run(cls, value: str | None) -> str | None:
        if value is not None and not RUN_BASE.fullmatch(value):
            raise ValueError('a reward model is a reward run of this registry: "run:ID", e.g. "run:3"')
        return value

    @field_validator("judge_template")
    @classmethod
    def _template_places_the_completion(cls, value: str | None) -> str | None:
        if value is not None and COMPLETION_PLACEHOLDER not in value:
            raise ValueError(f"the judge template must contain {COMPLETION_PLACEHOLDER}, where the completion to "
                             f"judge goes (and may contain {PROMPT_PLACEHOLDER})")
        return value

    @field_validator("reward_function")
    @classmethod
    def _function_is_module_colon_name(cls, value: str | None) -> str | None:
        if value is not None and not FUNCTION_NAME.fullmatch(value):
            raise ValueError('a reward function is named "module:function", e.g. "rewards:ends_with_period"')
        return value

    @property
    def trains_lora(self) -> bool:
        return "r" in self.keys_used()

    @model_validator(mode="after")
    def _keys_belong_to_the_kind(self) -> MethodSection:
        used = set(self.keys_used()) | set(PAGING_KEYS) | {"kind"}
        stray = [k for k in type(self).model_fields if k in self.model_fields_set and k not in used]
        if stray and set(stray) <= set(LORA_KEYS) | set(LORA_OPTION_DEFAULTS):
            raise ValueError(f"LoRA option(s) {', '.join(stray)} set on {_KIND_NAMES[self.kind]} "
                             f'(kind = "{self.kind}")')
        if stray:
            owners = {k: next(kind for kind, keys in _KIND_KEYS.items() if k in keys) for k in stray}
            listed = ", ".join(f"{k} ({owners[k]})" for k in stray)
            raise ValueError(f'option(s) {listed} do not apply to kind = "{self.kind}"')
        if "paged_optimizer_bits" in self.model_fields_set and self.paged_optimizer is False:
            raise ValueError("paged_optimizer_bits set while paged_optimizer = false")
        if self.kind in ("dpo", "kto") and self.beta <= 0:
            raise ValueError(f'beta must be greater than 0 for kind = "{self.kind}" (got {self.beta})')
        if self.kind in ONLINE_RL_KINDS:
            self._one_reward_source()
        return self

    def _one_reward_source(self) -> None:
        """Online RL needs exactly one reward: a reward run, a judge (model and template), or a function."""
        if (self.judge_model is None) != (self.judge_template is None):
            given, needed = ("judge_model", "judge_template") if self.judge_template is None else (
                "judge_template", "judge_model")
            raise ValueError(f"{given} needs {needed}: the judge is a model and the question put to it")
        sources = [k for k in ("reward_model", "judge_model", "reward_function") if getattr(self, k) is not None]
        if not sources:
            raise ValueError(f'kind = "{self.kind}" needs a reward: set reward_model = "run:ID" (a reward run), '
                             'judge_model and judge_template (a judge model), or reward_function = "module:function"')
        if len(sources) > 1:
            raise ValueError(f"one reward source, not {len(sources)}: set only one of {', '.join(sources)}")

    @model_serializer(mode="wrap")
    def _only_the_kinds_keys(self, handler) -> dict[str, Any]:
        # The stored spec holds what the kind reads (so it re-validates) and nothing else (so specs written
        # before a kind was added keep their canonical form and hash).
        data = handler(self)
        used = {"kind", *self.keys_used()}
        defaults = {"paged_optimizer": None, "paged_optimizer_bits": 8}
        # Of the reward sources, only the one in use.
        unset = {k for k in REWARD_SOURCE_KEYS if getattr(self, k) is None}
        return {k: v for k, v in data.items()
                if (k in used and k not in unset and (k not in LORA_OPTION_DEFAULTS or v != LORA_OPTION_DEFAULTS[k]))
                or (k in defaults and getattr(self, k) != defaults[k])}


class TrainSection(_Section):
    epochs: float = Field(1, gt=0, le=MAX_STEPS)
    max_steps: int = Field(0, ge=0, le=MAX_STEPS, description="Optimizer steps; 0 = run for `epochs`.")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    grad_accum: int = Field(1, gt=0, le=MAX_BATCH)
    save_every: int = Field(20, gt=0, le=MAX_STEPS, description="Optimizer steps between checkpoints.")
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
                          "polynomial", "inverse_sqrt"] = Field(
        "linear", description="Learning-rate schedule after warmup (the Trainer's lr_scheduler_type).")
    logging_steps: int = Field(1, gt=0, le=MAX_STEPS)
    keep_checkpoints: int = Field(
        0, ge=0, le=MAX_KEPT, description="Complete checkpoints to keep on disk, newest first (0 = keep all)."
    )
    eval_every: int = Field(
        0, ge=0, le=MAX_STEPS, description="Optimizer steps between validation-loss evaluations ([data] validation); "
        "0 = at the end only.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass instead of keeping them: less memory, "
        "about a third more compute, the same result.")
    optimizer: str | None = Field(
        None, min_length=1, description='The optimizer as the Trainer names it (its OptimizerNames: "adamw_torch", '
        '"adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd", ...); unset = the Trainer\'s default (or the paged '
        "optimizer of [method] paged_optimizer). Checked at submit against the installed transformers; names "
        "with 8bit or paged need bitsandbytes and a CUDA GPU.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the optimizer steps spent warming the "
                                "learning rate up; not together with warmup_steps.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradients are clipped to this global norm; 0 = no clipping.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        None, description="Attention kernel the model loads with; unset = transformers' choice. flash_attention_2 "
        "needs the flash-attn package and a CUDA GPU.")
    early_stopping_patience: int = Field(
        0, ge=0, le=MAX_STEPS, description="Stop after this many validation-loss evaluations (every eval_every "
        "steps) without an improvement of more than early_stopping_threshold; 0 = never stop early.")
    early_stopping_threshold: float = Field(
        0.0, ge=0, description="The least drop of the validation loss that counts as an improvement.")
    load_best: bool = Field(
        False, description="Final weights (and their evaluation) are the checkpoint with the lowest validation loss, "
        "not the last step's; the run records its step. Needs validation, eval_every, and save_every a multiple "
        "of eval_every.")

    @model_validator(mode="after")
    def _steering_is_consistent(self) -> TrainSection:
        if self.warmup_ratio and self.warmup_steps:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        if (self.early_stopping_patience or self.load_best) and not self.eval_every:
            needs = "early_stopping_patience" if self.early_stopping_patience else "load_best"
            raise ValueError(f"{needs} needs eval_every > 0 (the validation loss it steers by)")
        if self.early_stopping_threshold and not self.early_stopping_patience:
            raise ValueError("early_stopping_threshold set while early_stopping_patience = 0")
        if (self.early_stopping_patience or self.load_best) and self.save_every % self.eval_every:
            raise ValueError(f"save_every ({self.save_every}) must be a multiple of eval_every ({self.eval_every}) "
                             "when steering by validation: the best step must have a checkpoint")
        return self

    @model_serializer(mode="wrap")
    def _new_keys_only_when_set(self, handler) -> dict[str, Any]:
        # Specs that leave them at their defaults keep the canonical form (and hash) they had before these existed.
        data = handler(self)
        return {k: v for k, v in data.items() if k not in TRAIN_OPTION_DEFAULTS or v != TRAIN_OPTION_DEFAULTS[k]}


# [train] options added later, with their defaults (see TrainSection._new_keys_only_when_set).
TRAIN_OPTION_DEFAULTS: dict[str, Any] = {
    "gradient_checkpointing": False, "optimizer": None, "warmup_ratio": 0.0, "max_grad_norm": 1.0,
    "attn_implementation": None, "early_stopping_patience": 0, "early_stopping_threshold": 0.0, "load_best": False,
}

class CustomTask(_Section):
    """A multiple-choice task from the user's own JSONL: rows of question, choices, answer (index)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    path: str
    num_fewshot: int = Field(0, ge=0, le=MAX_SHOTS)
    limit: int | None = Field(None, ge=0, le=MAX_STEPS,
                              description="Items of this task to score (0 = all); unset = [eval] limit.")


def _shots_task_is_known(name: str, info: ValidationInfo) -> str:
    """A key of [eval.num_fewshot]: a leaderboard benchmark, or a task named in [eval] tasks."""
    tasks: list[str] = info.data.get("tasks", [])
    custom = [c.name for c in info.data.get("custom", [])]
    if name in custom:
        raise ValueError("a custom task: set num_fewshot in its [[eval.custom]] table")
    if name in LEADERBOARD or (name in tasks and not name.startswith("mmlu_")):
        return name
    if name.startswith("mmlu_") and name[5:]:
        raise ValueError("single MMLU subjects share MMLU's shots: set mmlu = N instead")
    known = list(dict.fromkeys([*LEADERBOARD, *(t for t in tasks if not t.startswith("mmlu_"))]))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(known)})"
    # The loader appends the key itself: "(got 'arc_chalenge')".
    raise ValueError(f"unknown eval task: neither a leaderboard benchmark nor one of [eval] tasks{hint}")


_ShotsTask = Annotated[str, AfterValidator(_shots_task_is_known)]
_Shots = Annotated[int, Field(ge=0, le=MAX_SHOTS)]


class SamplesSection(_Section):
    """[eval.samples]: prompts the fine-tuned model and its base both answer after training, kept side by side."""

    prompts: str | None = Field(
        None, min_length=1, description="JSONL of prompts, relative to the directory submit ran in: rows of "
        "`prompt` (text used as written) and an optional `reference`, or rows in the [data] format (instruction "
        "with optional input, or messages), rendered with [data] template as training renders them; their output "
        "(or last assistant message) is the reference.")
    validation: float | None = Field(
        None, gt=0, le=1, description="Instead of prompts: this fraction of the validation examples ([data] "
        "validation), drawn with the seed; the prompt is what precedes the response, the response the reference.")
    limit: int = Field(0, ge=0, description="At most this many prompts (the first ones); 0 = all.")
    max_new_tokens: int = Field(64, gt=0, le=8192, description="Tokens generated at most per prompt.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding (the default).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (do_sample = true only).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (do_sample = true only).")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens; 0 = all (do_sample = true only).")
    repetition_penalty: float = Field(1.0, gt=0, description="transformers' repetition penalty; 1.0 = none.")
    seed: int | None = Field(None, description="Seed of the draw from the validation set and of sampling; "
                             "unset = [experiment] seed.")
    batch_size: int = Field(8, gt=0, description="Prompts generated together (left-padded); part of the cache key.")

    @model_validator(mode="after")
    def _one_source_and_sampling_keys(self) -> SamplesSection:
        if (self.prompts is None) == (self.validation is None):
            raise ValueError("set one of prompts (a JSONL file) or validation (a fraction of the validation set)")
        # Non-default values, not keys set: the stored, resolved spec carries every default.
        sampling = [key for key in ("temperature", "top_p", "top_k")
                    if getattr(self, key) != type(self).model_fields[key].default]
        if sampling and not self.do_sample:
            verb = "applies" if len(sampling) == 1 else "apply"
            raise ValueError(f"{', '.join(sampling)} {verb} only with do_sample = true (greedy decoding otherwise)")
        return self


class EvalSection(_Section):
    tasks: list[str] = Field(
        default_factory=lambda: list(LEADERBOARD),
        description="arc_challenge, hellaswag, mmlu, truthfulqa_mc2 (the Open LLM Leaderboard v1 profile), "
        "mmlu_<subject>, the name of a task defined in include_path, or of an [[eval.custom]] task (which runs "
        "whether named here or not). An unknown name is refused at submit.")
    limit: int = Field(0, ge=0, le=MAX_STEPS, description="Cap on items per task (0 = all); for quick runs. MMLU "
                       "applies it to each of its 57 subjects: limit = 8 scores 456 MMLU items.")
    benchmarks_dir: str = Field("", description="Local benchmark data directory; empty = the official hub datasets.")
    batch_size: Annotated[int, Field(gt=0, le=MAX_BATCH)] | Literal["auto"] = Field(
        8, description='Evaluation batch size, or "auto": lm-eval finds the largest that fits (from 64 down). '
        "Scores can differ slightly between batch sizes (padding); the fingerprint records the setting.")
    baseline: bool = Field(True, description="Also evaluate the base model, so every score has a delta.")
    custom: list[CustomTask] = Field(default_factory=list)
    include_path: str = Field(
        "", description="Directory of lm-eval task YAMLs (searched recursively), relative to the directory "
        "submit ran in; their tasks can be named in tasks. Each reports the first metric of its metric_list.")
    num_fewshot: dict[_ShotsTask, _Shots] = Field(
        default_factory=dict,
        description="Few-shot count per task, e.g. {arc_challenge = 0}: a benchmark (its leaderboard count "
        "otherwise; a benchmark evaluated with another count is not leaderboard-comparable) or an include_path "
        "task (its YAML's count otherwise). Custom tasks set theirs in [[eval.custom]].")
    fewshot_seed: int = Field(
        LEADERBOARD_FEWSHOT_SEED, ge=0, le=MAX_SEED,
        description=f"Seed the few-shot examples are drawn with: the leaderboard's (and the lm_eval command's) "
        f"{LEADERBOARD_FEWSHOT_SEED} unless set, whatever the training seed. A result at another few-shot seed "
        "saw other prompts and is not leaderboard-comparable.")
    samples: SamplesSection | None = Field(
        None, description="Prompts generated from by the fine-tuned model and its base after training (greedy by "
        "default, seeded), kept with the run and shown side by side; cached by content like benchmark results.")

    @property
    def harness_tasks(self) -> list[str]:
        """`tasks` without the custom tasks' names: a custom task always runs, whether `tasks` names it or not. (A
        custom task named like a benchmark stays, so that the evaluation refuses the clash.)"""
        custom = {task.name for task in self.custom}
        return [task for task in self.tasks if task not in custom or task in LEADERBOARD]

    @field_validator("batch_size", mode="before")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        # One message instead of one per member of the union.
        if value == "auto" or (type(value) is int and 0 < value <= MAX_BATCH):
            return value
        if type(value) is int and value > MAX_BATCH:
            raise ValueError(f"must be at most {MAX_BATCH}")
        raise ValueError('must be a positive integer or "auto"')

    @field_validator("num_fewshot")
    @classmethod
    def _mmlu_has_five_shots(cls, shots: dict[str, int]) -> dict[str, int]:
        if shots.get("mmlu", 0) > MMLU_MAX_SHOTS:
            raise ValueError(f"mmlu takes at most {MMLU_MAX_SHOTS} shots (the dev split of each subject), "
                             f"got {shots['mmlu']}")
        return shots

    @model_serializer(mode="wrap")
    def _new_keys_only_when_set(self, handler) -> dict[str, Any]:
        # Specs that set neither keep the canonical form (and hash, and eval key) they had before these existed.
        data = handler(self)
        for key in ("include_path", "num_fewshot", "samples"):
            if not data.get(key):
                data.pop(key, None)
        if data.get("fewshot_seed") == LEADERBOARD_FEWSHOT_SEED:
            data.pop("fewshot_seed")
        return data


class ResourcesSection(_Section):
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY,
                          description="Queue priority: higher runs first; FIFO within a priority.")
    max_retries: int = Field(
        2, ge=0, le=MAX_RETRIES, description="Times a run is re-queued after its worker died or an unexpected error, "
        "before it is marked failed. Errors in the spec or the data are never retried.",
    )
    gpus: int = Field(
        0, ge=0, le=MAX_GPUS, description="GPUs the run needs: 0 = whatever the worker has (a GPU, or the CPU); "
        "N > 1 trains with one process per GPU through torchrun (data parallel). Only a worker with N GPUs claims "
        "the run.",
    )
    nodes: int = Field(
        1, ge=1, description="Machines the run trains on: N > 1 runs one torchrun per node under srun (gpus per node, "
        "rendezvous on the first node). Only a worker whose Slurm allocation spans N nodes (tunelab launch slurm "
        "--nodes N) claims the run.",
    )

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="How gpus = N > 1 processes share the model: ddp (a copy each, through torchrun); fsdp "
        "(PyTorch FSDP, full shard with transformer-block auto-wrap) or deepspeed (ZeRO, zero_stage), both through "
        "accelerate's launcher and config. deepspeed needs the deepspeed package.")
    zero_stage: Literal[2, 3] = Field(
        2, description="strategy = \"deepspeed\": ZeRO stage 2 (optimizer state and gradients sharded) or 3 (the "
        "weights too).")

    @model_validator(mode="after")
    def _strategy_needs_processes(self) -> ResourcesSection:
        if self.strategy != "ddp" and self.gpus < 2:
            raise ValueError(f'strategy = "{self.strategy}" shards over several processes: set gpus = N > 1')
        if self.strategy != "ddp" and self.nodes > 1:
            # Several nodes start through srun + torchrun (ddp); accelerate's launcher is started on one node here.
            raise ValueError(f'strategy = "{self.strategy}" runs on one node: nodes > 1 trains with strategy = "ddp"')
        if "zero_stage" in self.model_fields_set and self.strategy != "deepspeed":
            raise ValueError('zero_stage applies to strategy = "deepspeed"')
        return self

    @model_serializer(mode="wrap")
    def _new_keys_only_when_set(self, handler) -> dict[str, Any]:
        # Specs that leave them at their defaults keep the canonical form (and hash) they had before they existed.
        data = handler(self)
        if not data.get("gpus"):
            data.pop("gpus", None)
        if data.get("nodes") == 1:
            data.pop("nodes", None)
        if data.get("strategy") == "ddp":
            data.pop("strategy", None)
        if data.get("strategy") != "deepspeed":
            data.pop("zero_stage", None)
        return data


NotifyEvent = Literal["succeeded", "failed", "pruned", "search"]


class NotifySection(_Section):
    """Who hears when a run ends or a search finishes: a webhook, a local command, or both."""

    webhook: str | None = Field(
        None, pattern=r"^https?://", description="URL that gets a JSON POST: {event, id, name, status, objective, "
        "show} (show: the tunelab command that shows it).")
    command: str | None = Field(
        None, min_length=1, description="Command run with the same JSON on its standard input and "
        "TUNELAB_EVENT, TUNELAB_ID, TUNELAB_STATUS in its environment (split like a shell line, run without one).")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: ["succeeded", "failed", "search"],
        description="What is told: a run that succeeded, failed or was pruned, a search that finished.")


TrackerName = Literal["tensorboard", "mlflow", "wandb"]


class TrackSection(_Section):
    """Trackers the Trainer streams the run's figures to, through its own integrations."""

    report_to: list[TrackerName] = Field(
        default_factory=list, description='Trackers: "tensorboard" (event files under the run\'s output directory, '
        'tracking/), "mlflow" (MLFLOW_TRACKING_URI; the spec as parameters) and "wandb" (its own settings). The '
        "tracker run is named after the tunelab run, and a resumed run continues it. tensorboard and mlflow come "
        "with the extra tunelab[track].")

    @field_validator("report_to")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a tracker twice")
        return value


class Spec(_Section):
    experiment: ExperimentSection
    model: ModelSection
    data: DataSection
    method: MethodSection = Field(default_factory=MethodSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    notify: NotifySection | None = Field(
        None, description="Notifications when a run ends or a search finishes; not part of the spec's hash.")
    track: TrackSection | None = Field(
        None, description="Trackers the run reports to; not part of the spec's hash (they change no result).")

    @model_validator(mode="after")
    def _samples_have_prompts(self) -> Spec:
        samples = self.eval.samples
        if samples is None or samples.validation is None:
            return self
        problem = None
        if self.data.validation is None:
            problem = "needs a validation set: set [data] validation (a file or a fraction), or use prompts"
        elif self.data.format not in ("instruction", "chat") or self.data.train_on_prompt:
            problem = ("needs validation examples with a prompt and a response: [data] format instruction or chat, "
                       "train_on_prompt = false")
        if problem is None:
            return self
        # Located at the key itself, so the error names its line (a plain ValueError here would name the spec).
        raise ValidationError.from_exception_data("Spec", [{
            "type": "value_error", "loc": ("eval", "samples", "validation"), "input": samples.validation,
            "ctx": {"error": ValueError(problem)}}])

    @model_serializer(mode="wrap")
    def _notify_only_when_set(self, handler) -> dict[str, Any]:
        # Specs without it keep the canonical form (and hash) they had before it existed.
        data = handler(self)
        if data.get("notify") is None:
            data.pop("notify", None)
        if data.get("track") is None:
            data.pop("track", None)
        return data

    @model_validator(mode="after")
    def _data_and_training_fit_the_method(self) -> Spec:
        """What the reward-model, online RL and KTO kinds need of [data], [train] and [resources]."""
        kind = self.method.kind
        formats = KIND_FORMATS.get(kind)
        mixture = isinstance(self.data.train, list)
        used = {self.data.format} | ({s.format or self.data.format for s in self.data.train} if mixture else set())
        if formats is not None and mixture:
            _cross_section_error(("data", "train"), f'kind = "{kind}" reads one data file: [data] train must be a '
                                 "path, not a mixture")
        if formats is not None and not used <= set(formats):
            wanted = " or ".join(f'"{f}"' for f in formats)
            _cross_section_error(("data", "format"), f'kind = "{kind}" trains on {wanted} rows: set [data] format = '
                                 f'{wanted} (it is "{self.data.format}")')
        if formats is None and used & {"prompt", "feedback"}:
            kinds = " or ".join(f'"{k}"' for k, f in KIND_FORMATS.items() if used & set(f))
            _cross_section_error(("data", "format"), f'prompt and feedback rows are for kind = {kinds}; '
                                 f'kind = "{kind}" trains on instruction, chat or text rows')
        if kind != "reward":
            return self._online_rl_fits() if kind in ONLINE_RL_KINDS else self
        if self.data.validation is None:
            _cross_section_error(("data",), 'kind = "reward" is scored by its pairwise accuracy on held-out pairs: '
                                 "set [data] validation (a preference file, or a fraction such as 0.1)")
        return self

    def _online_rl_fits(self) -> Spec:
        batch = self.train.batch_size * self.train.grad_accum
        if batch % self.method.num_generations:
            _cross_section_error(("train", "batch_size"), f"online RL compares the {self.method.num_generations} "
                                 f"completions of a prompt (method.num_generations) within one batch: batch_size x "
                                 f"grad_accum ({batch}) must be a multiple of it")
        if self.resources.gpus > 1:
            _cross_section_error(("resources", "gpus"), f'kind = "{self.method.kind}" trains in one process: '
                                 "gpus must be 0 or 1")
        if self.data.validation is not None:
            _cross_section_error(("data", "validation"), f'kind = "{self.method.kind}" has no validation loss '
                                 "(its completions are generated): leave [data] validation unset")
        return self


def _cross_section_error(loc: tuple[str, ...], message: str) -> None:
    """A check across tables, reported at the field it names (the loader puts that field's line in the error)."""
    # The input is left empty ({}): the message says what the value is, where that helps.
    raise ValidationError.from_exception_data("Spec", [InitErrorDetails(
        type=PydanticCustomError("spec_mismatch", message), loc=loc, input={})])


def stored_spec(resolved_json: str) -> Spec:
    """A spec as the registry stores it (an experiment's resolved_json), validated again."""
    return Spec.model_validate(json.loads(resolved_json))
