"""One prepared check of tunelab's GPU path, run start to finish with nobody watching.

On one CUDA GPU (sized for about six minutes on an H200) it:
1. builds a random Llama of about 356M parameters (2,048-token context, the bundled tokenizer) offline;
2. trains it through `tunelab run` and through a plain transformers Trainer script (benchmarks/plain_trainer.py)
   on the same generated text with the same settings: full fine-tuning in bf16, LoRA in bf16, and QLoRA (4-bit
   NF4, double quantisation, bf16 compute) with paged_adamw_8bit. Tokens per second and their ratio (target:
   tunelab / plain >= 0.97), peak GPU memory of both (torch's own figures and nvidia-smi's), final losses;
3. SIGKILLs a `tunelab worker` mid-training (full fine-tuning), resumes it with another worker, and compares the
   final weights with those of an uninterrupted run, under PyTorch's settings for repeatable GPU runs;
4. evaluates one trained model with `tunelab eval` at the leaderboard's shots on the bundled benchmark sample at
   batch sizes 1 and "auto": wall time, whether the scores differ, and what the fingerprint and the leaderboard
   (`tunelab report`) say about it;
5. records what `tunelab doctor` says about the runs this check queues.

With `--device cpu --tiny` the same runs on a CPU in a few minutes with the bundled model's size: full fine-tuning
and LoRA in float32; the CUDA-only cases (bf16, QLoRA with a paged optimizer) are listed as skipped, with why.

tunelab is driven through its command line alone (run, submit, worker, show --json, eval, export, report,
doctor). What it has no option for is set from outside: gpu_check_hooks/sitecustomize.py records each process's
peak memory and switches on deterministic algorithms. Figures go to OUT/gpu_check.json (rewritten after each
part, so a run cut short keeps what it measured) and OUT/gpu_check.txt; each command's output to OUT/logs/.

    python benchmarks/gpu_check.py --out gpu-check                     # one CUDA GPU
    python benchmarks/gpu_check.py --device cpu --tiny --out gpu-check  # CPU, the bundled model's size
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.gpu_check_table import render_table  # noqa: E402
from benchmarks.gpu_memory import MemoryPoller, gpu_facts  # noqa: E402
from benchmarks.plain_trainer import PlainConfig  # noqa: E402

HOOKS = Path(__file__).resolve().parent / "gpu_check_hooks"
PLAIN_SCRIPT = Path(__file__).resolve().parent / "plain_trainer.py"
BENCHMARKS_DIR = REPO / "examples" / "benchmarks"
CUSTOM_TASK = REPO / "examples" / "data" / "capitals_mc.jsonl"
LEADERBOARD_TASKS = ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")
SEED = 11
# PyTorch's recipe for repeatable CUDA runs (see "Reproducibility" in its documentation); the hook applies the
# second in every process that gets it.
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "GPU_CHECK_DETERMINISTIC": "1"}
# A killed worker's run goes back to the queue once its heartbeat is this old (tunelab worker --stale-after).
HEARTBEAT_SECONDS, STALE_AFTER_SECONDS = 1.0, 2.0
# How long the worker trains on after its first checkpoint before the SIGKILL: a few steps on either device.
KILL_DELAY_SECONDS = 0.2
PARTS = ("doctor", "training", "resume", "eval")
RATIO_TARGET = 0.97  # tunelab's tokens per second over the plain script's


class CheckFailed(Exception):
    """A part of the check could not finish; its message goes into the JSON."""


# ---- what is run: sizes and cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    num_layers: int
    num_heads: int
    initializer_range: float
    vocab_size: int = 4096  # the bundled tokenizer's
    context: int = 2048

    def parameters(self) -> int:
        """Parameters of the builder's Llama: MLP 4 x hidden, key/value heads = heads, tied embeddings."""
        h = self.hidden_size
        per_layer = 4 * h * h + 3 * 4 * h * h + 2 * h  # attention, MLP, two RMSNorms
        return self.num_layers * per_layer + self.vocab_size * h + h  # + embeddings (tied) and the final norm


# About 356M parameters; Llama's usual initializer_range (the builder's default, 0.2, suits only the tiny model).
GPU_MODEL = ModelSize(hidden_size=1024, num_layers=21, num_heads=16, initializer_range=0.02)
TINY_MODEL = ModelSize(hidden_size=64, num_layers=2, num_heads=4, initializer_range=0.2)  # the bundled model's


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # tunelab's [method] kind: full, lora, qlora
    dtype: str  # [model] dtype; qlora's 4-bit layers compute in it too
    paged: bool = False  # paged_adamw_8bit

    def cuda_only(self) -> str | None:
        """Why this case cannot run on a CPU; None when it can."""
        if self.paged:
            return ("paged_adamw_8bit pages optimizer state through CUDA unified memory (bitsandbytes), and bf16 "
                    "compute needs a GPU: tunelab refuses both without one")
        if self.dtype != "float32":
            return f"{self.dtype} training is CUDA-only in tunelab (model.dtype = {self.dtype} is refused on a CPU)"
        return None


GPU_CASES = (Case("full-bf16", "full", "bfloat16"), Case("lora-bf16", "lora", "bfloat16"),
             Case("qlora-nf4-paged8", "qlora", "bfloat16", paged=True))
CPU_CASES = (Case("full-fp32", "full", "float32"), Case("lora-fp32", "lora", "float32"))


@dataclass(frozen=True)
class Settings:
    device: str  # "cuda" or "cpu"
    tiny: bool
    model: ModelSize
    max_seq_len: int
    batch_size: int
    steps: int  # of each throughput run: one epoch of the generated rows
    resume_steps: int
    save_every: int  # of the resumed run
    eval_tasks: tuple[str, ...]
    eval_limit: int
    timeout: float  # seconds any one command may take
    threads: int | None  # torch threads of every process (OMP_NUM_THREADS); None = torch's default
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def cases(self) -> tuple[Case, ...]:
        return GPU_CASES if self.device == "cuda" else CPU_CASES + GPU_CASES

    @property
    def resume_case(self) -> Case:
        return self.cases[0]  # full fine-tuning: the whole model and optimizer go through the checkpoint


def settings_for(device: str, tiny: bool, threads: int | None = None) -> Settings:
    """The sizes of each mode: a GPU loaded realistically, or a CPU run that finishes in a few minutes."""
    if tiny:
        # Checkpoints every 8 of 32 steps: the kill lands after the first while training goes on. lm-eval's
        # batch size "auto" probes with 64 rows of the longest context, minutes on a CPU for ARC's 25 shots or
        # MMLU's 57 subjects: the CPU run evaluates TruthfulQA (0-shot) alone.
        return Settings(device=device, tiny=True, model=TINY_MODEL, max_seq_len=128, batch_size=4, steps=16,
                        resume_steps=32, save_every=8, eval_tasks=("truthfulqa_mc2",),
                        eval_limit=2, timeout=300,
                        # One thread each: steadier figures on a shared CPU, where threads would fight over cores.
                        threads=1 if threads is None and device == "cpu" else threads)
    # 30 steps of 8 x 2,048 tokens, about 5 s each on an H200; the resumed run writes a full bf16 checkpoint (weights
    # and optimizer state, about 2 GB) at steps 12 and 24.
    return Settings(device=device, tiny=False, model=GPU_MODEL, max_seq_len=2048, batch_size=8, steps=30,
                    resume_steps=30, save_every=12, eval_tasks=LEADERBOARD_TASKS, eval_limit=3, timeout=300,
                    threads=threads)


# ---- the check's context: scratch space, environment, commands, results -----------------------------------------


@dataclass
class Check:
    settings: Settings
    out: Path
    work: Path
    results: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    no_memory_polling: str | None = None  # why nvidia-smi is not sampled (not there, or it gave nothing)

    @property
    def home(self) -> Path:
        return self.work / "home"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TUNELAB_DB", "TUNELAB_HOME")}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=os.pathsep.join([str(HOOKS), *filter(None, [env.get("PYTHONPATH")])]))
        if self.settings.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # `tunelab run` and `tunelab eval` take a GPU whenever they see one
        if self.settings.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.settings.threads)
        return env | extra

    def log_path(self, label: str) -> Path:
        path = self.out / "logs" / f"{label}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, label: str, args: list[str], *, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a command to the end (at most settings.timeout seconds), its output kept in OUT/logs/LABEL.log."""
        started = time.perf_counter()
        try:
            done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env or self.env(),
                                  timeout=self.settings.timeout)
        except subprocess.TimeoutExpired as expired:
            self._log(label, args, None, time.perf_counter() - started, expired.stdout, expired.stderr)
            raise CheckFailed(f"{label}: no answer within {self.settings.timeout:.0f} s") from None
        self._log(label, args, done.returncode, time.perf_counter() - started, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise CheckFailed(f"{label} exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
        return done

    def tunelab(self, label: str, *args: str, home: Path | None = None, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        return self.run(label, [sys.executable, "-m", "tunelab", "--home", str(home or self.home), *args], env=env,
                        check=check)

    def tunelab_json(self, label: str, *args: str, home: Path | None = None, env: dict[str, str] | None = None) -> Any:
        done = self.tunelab(label, *args, home=home, env=env)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as err:
            raise CheckFailed(f"{label}: stdout is not JSON ({err}): {_tail(done.stdout)}") from None

    def _log(self, label: str, args: list[str], returncode: int | None, seconds: float, stdout: Any,
             stderr: Any) -> None:
        text = (f"$ {' '.join(args)}\n# exit {returncode}, {seconds:.1f} s\n--- stdout\n{_text(stdout)}\n"
                f"--- stderr\n{_text(stderr)}\n")
        with self.log_path(label).open("a", encoding="utf-8") as handle:
            handle.write(text)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[dict[str, Any]]:
        """A part's result dict; a failure is recorded in it (with the traceback in OUT/logs) and the check goes on."""
        result: dict[str, Any] = {"status": "running"}
        self.results.setdefault("parts", {})[name] = result
        started = time.perf_counter()
        try:
            yield result
            result["status"] = "ok"
        except Exception as err:  # every part is independent: one failure must not cost the others' figures
            result["status"] = "failed"
            result["error"] = f"{type(err).__name__}: {err}"
            self.log_path(f"{name}-failure").write_text(traceback.format_exc(), encoding="utf-8")
            print(f"  {name} failed: {result['error']}", file=sys.stderr)
        finally:
            result["seconds"] = round(time.perf_counter() - started, 2)
            self.write()

    def write(self) -> str:
        """The figures so far, as JSON and as the table (both replaced whole); the table."""
        self.results["wall_seconds"] = round(time.perf_counter() - self.started, 2)
        try:
            table = render_table(self.results)
        except Exception as err:  # a figure of an unforeseen shape must not cost the JSON that holds it
            table = f"(no table: {type(err).__name__}: {err}; the figures are in gpu_check.json)"
        files = {"gpu_check.json": json.dumps(self.results, indent=2) + "\n", "gpu_check.txt": table + "\n"}
        for name, text in files.items():
            staged = self.out / f"{name}.tmp"
            staged.write_text(text, encoding="utf-8")
            os.replace(staged, self.out / name)
        return table


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---- 1. the model and the data -----------------------------------------------------------------------------------


def tiny_model_module() -> ModuleType:
    """runner/tiny_model.py (the offline model builder), wherever the runner's sub-packages put it."""
    try:
        return importlib.import_module("tunelab.runner.tiny_model")
    except ModuleNotFoundError:
        import pkgutil

        import tunelab.runner

        for module in pkgutil.walk_packages(tunelab.runner.__path__, "tunelab.runner."):
            if module.name.rsplit(".", 1)[-1] == "tiny_model":
                return importlib.import_module(module.name)
        raise


def build_model(size: ModelSize, out_dir: Path) -> dict[str, Any]:
    """A random Llama of `size` with the tokenizer the bundled model has (same corpus, same builder)."""
    builder = tiny_model_module()
    started = time.perf_counter()
    builder.build_tiny_model(out_dir, builder.default_corpus(REPO), vocab_size=size.vocab_size,
                             hidden_size=size.hidden_size, num_layers=size.num_layers, num_heads=size.num_heads,
                             max_position_embeddings=size.context, initializer_range=size.initializer_range, seed=0)
    seconds = time.perf_counter() - started
    bundled = REPO / "examples" / "models" / "tiny-llama" / "tokenizer.json"
    return {"path": str(out_dir), "build_seconds": round(seconds, 2), "parameters": stored_parameters(out_dir),
            "expected_parameters": size.parameters(), "size": asdict(size),
            "tokenizer_is_bundled": (out_dir / "tokenizer.json").read_bytes() == bundled.read_bytes()}


def stored_parameters(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as tensors:
            total += sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())
    return total


def write_text_rows(path: Path, model_dir: Path, *, rows: int, max_seq_len: int, seed: int) -> dict[str, Any]:
    """`rows` distinct rows of benchmark-sample text, each longer than max_seq_len tokens: every training row is
    then exactly max_seq_len tokens (tunelab and the plain script both cut it), so no batch holds padding."""
    from transformers import AutoTokenizer

    corpus = tiny_model_module().default_corpus(REPO)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(ids) for ids in tokenizer(corpus, add_special_tokens=False)["input_ids"]]
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < rows:
        picked, tokens = [], 0
        while tokens < max_seq_len + 16:  # a margin: tokens merge a little differently across the joins
            index = rng.randrange(len(corpus))
            picked.append(corpus[index])
            tokens += lengths[index] + 1
        text = "\n\n".join(picked)
        if text not in texts:
            texts.append(text)
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    shortest = min(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return {"path": str(path), "rows": rows, "shortest_row_tokens": shortest, "max_seq_len": max_seq_len}


# ---- specs --------------------------------------------------------------------------------------------------------


def spec_text(name: str, settings: Settings, case: Case, model_dir: Path, data: Path, *, steps: int,
              save_every: int) -> str:
    """A tunelab spec (TOML) for `case`; its eval is one item of the demo's custom task (training is measured)."""
    method = [f'kind = "{case.kind}"']
    if case.kind in ("lora", "qlora"):
        method += [f"r = {settings.lora_r}", f"alpha = {settings.lora_alpha}", f"dropout = {settings.lora_dropout}",
                   f"target_modules = {json.dumps(list(settings.lora_targets))}"]
    if case.kind == "qlora":
        method.append(f'bnb_compute_dtype = "{case.dtype}"')
    if case.paged:
        method += ["paged_optimizer = true", "paged_optimizer_bits = 8"]
    return "\n".join([
        "[experiment]", f"name = {json.dumps(name)}", f"seed = {SEED}", "",
        "[model]", f"base = {json.dumps(str(model_dir))}", f'dtype = "{case.dtype}"', "",
        "[data]", f"train = {json.dumps(str(data))}", 'format = "text"', f"max_seq_len = {settings.max_seq_len}", "",
        "[method]", *method, "",
        "[train]", f"max_steps = {steps}", f"batch_size = {settings.batch_size}",
        f"learning_rate = {settings.learning_rate}", f"save_every = {save_every}", "logging_steps = 1", "",
        "[eval]", "tasks = []", "limit = 1", "baseline = false", "",
        "[[eval.custom]]", 'name = "capitals"', f"path = {json.dumps(str(CUSTOM_TASK))}", "",
    ])


def throughput_spec(check: Check, case: Case) -> Path:
    settings = check.settings
    path = check.work / "specs" / f"{case.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    # No checkpoint inside the measured stretch: save_every lies past the last step.
    path.write_text(spec_text(f"gpu-check-{case.name}", settings, case, check.work / "model", check.work / "data.jsonl",
                              steps=settings.steps, save_every=settings.steps + 1), encoding="utf-8")
    return path


def resume_spec(check: Check) -> Path:
    settings = check.settings
    path = check.work / "specs" / "resume.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(f"gpu-check-resume-{settings.resume_case.name}", settings, settings.resume_case,
                              check.work / "model", check.work / "data.jsonl", steps=settings.resume_steps,
                              save_every=settings.save_every), encoding="utf-8")
    return path


def plain_config(check: Check, case: Case) -> PlainConfig:
    settings = check.settings
    return PlainConfig(
        model=str(check.work / "model"), data=str(check.work / "data.jsonl"),
        output_dir=str(check.work / "plain" / case.name), steps=settings.steps, batch_size=settings.batch_size,
        max_seq_len=settings.max_seq_len, data_format="text", method=case.kind, dtype=case.dtype,
        device=settings.device, optim="paged_adamw_8bit" if case.paged else None,
        learning_rate=settings.learning_rate, seed=SEED, lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout, lora_targets=list(settings.lora_targets))


# ---- 2. training throughput, memory and loss: tunelab against the plain script ----------------------------------


@contextlib.contextmanager
def gpu_memory(check: Check) -> Iterator[MemoryPoller | None]:
    """nvidia-smi's view of the GPU while the block runs; None on the CPU, or where nvidia-smi gives nothing."""
    if check.settings.device == "cuda" and check.no_memory_polling is None and shutil.which("nvidia-smi") is None:
        check.no_memory_polling = "nvidia-smi is not on PATH"
    if check.settings.device != "cuda" or check.no_memory_polling is not None:
        yield None
        return
    with MemoryPoller(first_sample_timeout=5) as poller:
        if not poller.peak.samples:  # not waited for again by every later run
            check.no_memory_polling = "nvidia-smi gave no memory.used samples within 5 s"
            check.results["machine"]["nvidia_smi_polling"] = check.no_memory_polling
        yield poller


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def train_tunelab(check: Check, case: Case) -> dict[str, Any]:
    peak_file = check.work / "peaks" / f"tunelab-{case.name}.json"
    peak_file.parent.mkdir(parents=True, exist_ok=True)
    env = check.env(GPU_CHECK_PEAK_MEMORY=str(peak_file))
    with gpu_memory(check) as poller:
        ran = check.tunelab_json(f"train-tunelab-{case.name}", "run", "--quiet", "--json",
                                 str(throughput_spec(check, case)), env=env)
    if ran.get("status") != "succeeded":
        raise CheckFailed(f"tunelab run of {case.name}: {ran.get('status')} ({ran.get('error')})")
    shown = check.tunelab_json(f"show-{case.name}", "show", "--json", str(ran["run_id"]))
    stats = shown["data_stats"]
    # One epoch exactly (rows = steps x batch): the tokens trained are the tokens of the data.
    tokens = stats["train_tokens"] * check.settings.steps * check.settings.batch_size // stats["train_examples"]
    peaks = json.loads(peak_file.read_text(encoding="utf-8")) if peak_file.is_file() else {}
    return {
        "run_id": ran["run_id"], "train_seconds": shown["train_seconds"], "tokens_trained": tokens,
        "tokens_per_second": tokens / shown["train_seconds"],
        "progress_tokens_per_second": (shown.get("progress") or {}).get("tokens_per_second"),
        "final_loss": shown["summary"]["final_loss"], "rows_truncated": stats["sources"][0]["overlength_truncated"],
        "peak_allocated_mib": _mib(peaks.get("peak_allocated_bytes")),
        "peak_reserved_mib": _mib(peaks.get("peak_reserved_bytes")),
        "nvidia_smi_peak_mib": poller.peak.above_baseline_mib() if poller else None,
        "max_rss_mib": _mib(peaks.get("max_rss_bytes")), "peak_memory_error": peaks.get("error"),
    }


def train_plain(check: Check, case: Case) -> dict[str, Any]:
    config_path = check.work / "plain" / f"{case.name}.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(asdict(plain_config(check, case))), encoding="utf-8")
    with gpu_memory(check) as poller:
        done = check.run(f"train-plain-{case.name}", [sys.executable, str(PLAIN_SCRIPT), str(config_path)])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "train_seconds": result["train_seconds"], "tokens_trained": result["tokens_trained"],
        "tokens_per_second": result["tokens_trained"] / result["train_seconds"], "final_loss": result["final_loss"],
        "peak_allocated_mib": _mib(result["peak_allocated_bytes"]),
        "peak_reserved_mib": _mib(result["peak_reserved_bytes"]),
        "nvidia_smi_peak_mib": poller.peak.above_baseline_mib() if poller else None,
        "max_rss_mib": _mib(result["max_rss_bytes"]),
    }


def part_training(check: Check, result: dict[str, Any]) -> None:
    settings = check.settings
    result.update(steps=settings.steps, batch_size=settings.batch_size, max_seq_len=settings.max_seq_len,
                  tokens_per_run=settings.steps * settings.batch_size * settings.max_seq_len, cases=[], skipped=[])
    for case in settings.cases:
        reason = case.cuda_only() if settings.device == "cpu" else None
        if reason:
            result["skipped"].append({"case": case.name, "reason": reason})
            continue
        entry: dict[str, Any] = {"case": case.name, "method": case.kind, "dtype": case.dtype,
                                 "optimizer": "paged_adamw_8bit" if case.paged else "adamw_torch"}
        result["cases"].append(entry)
        try:
            # Plain first, then tunelab, as benchmarks/train_overhead.py alternates them.
            entry["plain"] = train_plain(check, case)
            entry["tunelab"] = train_tunelab(check, case)
        except Exception as err:  # one case failing must not cost the others their figures
            entry.update(status="failed", error=f"{type(err).__name__}: {err}")
            check.log_path(f"training-{case.name}-failure").write_text(traceback.format_exc(), encoding="utf-8")
            check.write()
            continue
        ours, plain = entry["tunelab"], entry["plain"]
        ratio = ours["tokens_per_second"] / plain["tokens_per_second"]
        entry.update(status="ok", ratio=ratio, meets_target=ratio >= RATIO_TARGET,
                     same_tokens=ours["tokens_trained"] == plain["tokens_trained"] == result["tokens_per_run"],
                     loss_difference=abs(ours["final_loss"] - plain["final_loss"]))
        check.write()
    ok = [c for c in result["cases"] if c.get("status") == "ok"]
    if len(ok) != len(result["cases"]):
        raise CheckFailed(f"{len(result['cases']) - len(ok)} of {len(result['cases'])} training case(s) failed")


# ---- 3. kill a worker mid-training, resume, compare with an uninterrupted run ------------------------------------


def part_resume(check: Check, result: dict[str, Any]) -> None:
    settings, case = check.settings, check.settings.resume_case
    deterministic = settings.device == "cuda"
    env = check.env(**(DETERMINISTIC_ENV if deterministic else {}))
    result.update(case=case.name, steps=settings.resume_steps, save_every=settings.save_every,
                  settings={"CUBLAS_WORKSPACE_CONFIG": DETERMINISTIC_ENV["CUBLAS_WORKSPACE_CONFIG"],
                            "torch.use_deterministic_algorithms": "True (warn_only)"} if deterministic
                  else "none (CPU kernels are deterministic)")
    spec = resume_spec(check)
    (submitted,) = check.tunelab_json("resume-submit", "submit", "--json", str(spec))
    run_id = str(submitted["run_id"])
    result["run_id"] = submitted["run_id"]

    killed = kill_mid_training(check, run_id, env)
    result.update(killed)
    time.sleep(STALE_AFTER_SECONDS + HEARTBEAT_SECONDS / 2)  # the dead worker's heartbeat is now stale
    started = time.perf_counter()
    resumed = check.tunelab("resume-worker-2", "worker", "--once", "--heartbeat", str(HEARTBEAT_SECONDS),
                            "--stale-after", str(STALE_AFTER_SECONDS), "--device", settings.device, env=env)
    result["resumed_worker_seconds"] = round(time.perf_counter() - started, 2)
    said = re.search(r"resuming from the checkpoint at step (\d+)(?:, (\d+) logged step)?", resumed.stderr)
    result["worker_said"] = said.group(0) if said else None
    after = check.tunelab_json("resume-show-resumed", "show", "--json", run_id)
    if after["summary"]["status"] != "succeeded":
        raise CheckFailed(f"the resumed run ended {after['summary']['status']}: {after['summary']['error']}")

    (reference,) = check.tunelab_json("resume-submit-reference", "submit", "--force", "--json", str(spec))
    check.tunelab("resume-worker-reference", "worker", "--once", "--device", settings.device, env=env)
    uninterrupted = check.tunelab_json("resume-show-reference", "show", "--json", str(reference["run_id"]))
    if uninterrupted["summary"]["status"] != "succeeded":
        raise CheckFailed(f"the uninterrupted run ended {uninterrupted['summary']['status']}")
    result["reference_run_id"] = reference["run_id"]

    steps = [m["step"] for m in after["metrics"] if m.get("loss") is not None]
    result["each_step_logged_once"] = sorted(steps) == list(range(1, settings.resume_steps + 1))
    result.update(compare_curves(after["metrics"], uninterrupted["metrics"]))
    exported = [check.work / "exports" / name for name in ("resumed", "uninterrupted")]
    for run, directory in zip((run_id, str(reference["run_id"])), exported, strict=True):
        check.tunelab(f"resume-export-{directory.name}", "export", run, "-o", str(directory))
    result["weights"] = compare_weights(*exported)
    result["nondeterminism_warnings"] = nondeterminism_warnings(check)


def kill_mid_training(check: Check, run_id: str, env: dict[str, str]) -> dict[str, Any]:
    """Start a worker on the run, SIGKILL it just after its first checkpoint; where training stood then."""
    settings = check.settings
    log = check.log_path("resume-worker-1").open("w", encoding="utf-8")
    worker = subprocess.Popen([sys.executable, "-m", "tunelab", "--home", str(check.home), "worker", "--once",
                               "--heartbeat", str(HEARTBEAT_SECONDS), "--device", settings.device],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        checkpoints = wait_for_output_dir(check, run_id, worker) / "checkpoints"
        # Checkpoints are renamed into place whole, so the name is enough. `tunelab show` takes a good part of a
        # second (longer on a busy machine): the directory is watched instead, the kill stays well before the end.
        deadline = time.perf_counter() + settings.timeout
        while not any(checkpoints.glob("checkpoint-*")):
            if worker.poll() is not None:
                raise CheckFailed(f"the worker exited ({worker.returncode}) before its first checkpoint; "
                                  "see logs/resume-worker-1.log")
            if time.perf_counter() > deadline:
                raise CheckFailed(f"no checkpoint under {checkpoints} within {settings.timeout:.0f} s")
            time.sleep(0.02)
        time.sleep(KILL_DELAY_SECONDS)  # a few steps past it: they are trained again after the restart
        if worker.poll() is not None:
            raise CheckFailed("the worker finished before it could be killed: raise resume_steps")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
    at_kill = check.tunelab_json("resume-show-killed", "show", "--json", run_id)
    last = max((m["step"] for m in at_kill["metrics"] if m.get("loss") is not None), default=0)
    # From the disk, which the restart resumes from: the registry may not have recorded the newest one yet.
    checkpoint = max((int(p.name.removeprefix("checkpoint-")) for p in checkpoints.glob("checkpoint-*")), default=0)
    return {"worker_exit": worker.returncode, "status_after_kill": at_kill["summary"]["status"],
            "last_step_before_kill": last, "checkpoint_at_kill": checkpoint, "steps_redone": last - checkpoint,
            "checkpoints_recorded": [c["step"] for c in at_kill["checkpoints"]]}


def wait_for_output_dir(check: Check, run_id: str, worker: subprocess.Popen) -> Path:
    """The run's output directory, which `tunelab show` names once a worker has claimed the run."""
    deadline = time.perf_counter() + check.settings.timeout
    while time.perf_counter() < deadline:
        shown = check.tunelab_json("resume-poll", "show", "--json", run_id)
        if shown.get("output_dir"):
            return Path(shown["output_dir"])
        if worker.poll() is not None:
            raise CheckFailed(f"the worker exited ({worker.returncode}) without claiming the run")
        time.sleep(0.2)
    raise CheckFailed("the worker did not claim the run in time")


def compare_curves(resumed: list[dict], uninterrupted: list[dict]) -> dict[str, Any]:
    ours = {m["step"]: m["loss"] for m in resumed if m.get("loss") is not None}
    theirs = {m["step"]: m["loss"] for m in uninterrupted if m.get("loss") is not None}
    common = sorted(set(ours) & set(theirs))
    return {"loss_curve_identical": ours == theirs,
            "loss_curve_max_difference": max((abs(ours[s] - theirs[s]) for s in common), default=None)}


def compare_weights(a: Path, b: Path) -> dict[str, Any]:
    """Tensor by tensor over every *.safetensors file: identical bits, or how far apart."""
    import torch
    from safetensors.torch import load_file

    names = sorted(p.name for p in a.glob("*.safetensors"))
    if not names or names != sorted(p.name for p in b.glob("*.safetensors")):
        raise CheckFailed(f"the exported weights differ in their files: {names} against "
                          f"{sorted(p.name for p in b.glob('*.safetensors'))}")
    tensors = differing = 0
    max_abs = max_rel = 0.0
    for name in names:
        ours, theirs = load_file(a / name), load_file(b / name)
        if ours.keys() != theirs.keys():
            raise CheckFailed(f"{name}: the two runs saved different tensors")
        for key, tensor in ours.items():
            tensors += 1
            if torch.equal(tensor, theirs[key]):
                continue
            differing += 1
            diff = (tensor.float() - theirs[key].float()).abs()
            max_abs = max(max_abs, diff.max().item())
            max_rel = max(max_rel, (diff / theirs[key].float().abs().clamp_min(1e-12)).max().item())
    return {"files": names, "tensors": tensors, "tensors_differing": differing, "bit_identical": differing == 0,
            "max_abs_difference": max_abs, "max_rel_difference": max_rel}


def nondeterminism_warnings(check: Check) -> list[str]:
    """What PyTorch said about determinism in the resume check's workers: operations without a deterministic
    kernel, or kernels (attention) that stay non-deterministic under warn_only."""
    found: set[str] = set()
    for path in sorted((check.out / "logs").glob("resume-worker*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "deterministic" in line.lower():
                found.add(line.strip()[:300])
    return sorted(found)


# ---- 4. evaluation at batch sizes 1 and auto ---------------------------------------------------------------------


def part_eval(check: Check, result: dict[str, Any]) -> None:
    settings = check.settings
    target = eval_target(check)
    result.update(run_id=target, tasks=list(settings.eval_tasks), limit=settings.eval_limit, batch_sizes={})
    for batch_size in ("1", "auto"):
        started = time.perf_counter()
        done = check.tunelab_json(f"eval-batch-{batch_size}", "eval", f"run:{target}", "--tasks",
                                  ",".join(settings.eval_tasks), "--limit", str(settings.eval_limit),
                                  "--benchmarks-dir", str(BENCHMARKS_DIR), "--batch-size", batch_size, "--json")
        log = check.log_path(f"eval-batch-{batch_size}").read_text(encoding="utf-8", errors="replace")
        result["batch_sizes"][batch_size] = {
            "wall_seconds": round(time.perf_counter() - started, 2), "eval_key": done["eval_key"],
            "cached": done["cached"], "detected_batch_sizes": sorted({int(n) for n in re.findall(
                r"Determined largest batch size: (\d+)", log)}),
            "scores": {s["task"]: s["value"] for s in done["scores"]},
            "comparable": {s["task"]: s["comparable"] for s in done["scores"] if s["task_group"] is None}}
    one, auto = (result["batch_sizes"][b]["scores"] for b in ("1", "auto"))
    differences = {task: abs(one[task] - auto[task]) for task in one if task in auto}
    result["scores_identical"] = one == auto
    result["max_score_difference"] = max(differences.values(), default=None)
    result["tasks_differing"] = sorted(task for task, d in differences.items() if d > 0)
    shown = check.tunelab_json("eval-show", "show", "--json", str(target))
    result["fingerprint_batch_sizes"] = sorted({str(s["fingerprint"].get("batch_size")) for s in shown["scores"]
                                                if s["model_kind"] == "eval"})
    result["report"] = report_marks(check)


def eval_target(check: Check) -> int:
    """The full fine-tune trained by `tunelab run`, else the resume check's uninterrupted run."""
    parts = check.results.get("parts", {})
    for case in parts.get("training", {}).get("cases", []):
        if case.get("status") == "ok":
            return case["tunelab"]["run_id"]
    if parts.get("resume", {}).get("reference_run_id"):
        return parts["resume"]["reference_run_id"]
    raise CheckFailed("no trained run to evaluate (the training and resume parts both failed)")


class _LeaderboardCells(HTMLParser):
    """The leaderboard's rows of `tunelab eval` results: per row, each task cell's value and not-comparable note."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr":
            self.rows.append({"kind": found.get("data-kind"), "cells": {}})
        elif tag == "td" and self.rows and found.get("data-key") and found.get("data-key") != "average":
            self._cell = found["data-key"]
            self.rows[-1]["cells"][self._cell] = {"value": found.get("data-value"), "note": None}
        elif tag == "span" and self._cell and found.get("class") == "nc":
            self.rows[-1]["cells"][self._cell]["note"] = found.get("title")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def report_marks(check: Check) -> dict[str, Any]:
    """What the leaderboard says about the two evaluations' benchmark cells: which it stars, and why."""
    page = check.work / "report" / "leaderboard.html"
    check.tunelab("eval-report", "report", "-o", str(page), "--no-run-pages")
    parser = _LeaderboardCells()
    parser.feed(page.read_text(encoding="utf-8"))
    rows = [row for row in parser.rows if row["kind"] == "eval"]
    # Only the benchmark columns: the runs' own custom task was scored at other limits, which is starred anyway.
    notes = sorted({cell["note"] for row in rows for task, cell in row["cells"].items()
                    if cell["note"] and task in check.settings.eval_tasks})
    return {"eval_rows": len(rows), "notes": notes,
            "marks_mixed_settings": any("fingerprint differs" in note for note in notes)}


# ---- 5. tunelab doctor -------------------------------------------------------------------------------------------


def part_doctor(check: Check, result: dict[str, Any]) -> None:
    """Queue every spec of this check (CUDA-only ones too) in a registry of its own and ask the doctor."""
    home = check.work / "doctor-home"
    specs = [throughput_spec(check, case) for case in check.settings.cases] + [resume_spec(check)]
    submitted = check.tunelab_json("doctor-submit", "submit", "--json", *map(str, specs), home=home)
    done = check.tunelab("doctor", "doctor", "--offline", "--json", home=home, check=False)
    try:
        checks = json.loads(done.stdout)
    except json.JSONDecodeError as err:
        raise CheckFailed(f"tunelab doctor --json printed no JSON (exit {done.returncode}): {err}") from None
    cuda_only = {f"gpu-check-{case.name}" for case in check.settings.cases if case.cuda_only()}
    result.update(exit_code=done.returncode, queued=len(submitted),
                  runs=[{"run_id": c["run_id"], "name": c["name"], "ok": c["ok"], "problems": c["problems"],
                         "notes": c["notes"]} for c in checks])
    if check.settings.device == "cpu":
        # CUDA-only specs queued on a machine without a GPU: does the doctor see that they cannot run here?
        result["cuda_only_specs_flagged"] = any(not c["ok"] or c["notes"] for c in checks if c["name"] in cuda_only)


# ---- the whole check -------------------------------------------------------------------------------------------


def machine_facts(settings: Settings) -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpus": gpu_facts(),
            "device": settings.device}


def run_check(settings: Settings, out: Path, work: Path, parts: tuple[str, ...]) -> Check:
    check = Check(settings, out, work)
    check.results.update(check="tunelab GPU path", started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                         settings=asdict(settings) | {"cases": [c.name for c in settings.cases]},
                         machine=machine_facts(settings))
    print(f"gpu check: {settings.device}, {'tiny' if settings.tiny else 'GPU-size'} model; work in {work}",
          file=sys.stderr)
    with check.part("model") as result:
        result.update(build_model(settings.model, work / "model"))
        rows = settings.steps * settings.batch_size  # one epoch per throughput run
        result["data"] = write_text_rows(work / "data.jsonl", work / "model", rows=rows,
                                         max_seq_len=settings.max_seq_len, seed=SEED)
    if check.results["parts"]["model"]["status"] != "ok":
        return check  # nothing else can run without the model
    steps = {"doctor": part_doctor, "training": part_training, "resume": part_resume, "eval": part_eval}
    for name in parts:
        print(f"gpu check: {name} ...", file=sys.stderr)
        with check.part(name) as result:
            steps[name](check, result)
    check.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    check.write()
    return check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Figures: OUT/gpu_check.json and OUT/gpu_check.txt; logs: OUT/logs/.")
    parser.add_argument("--out", type=Path, required=True, help="Directory for the figures and logs.")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="The bundled model's size instead of ~356M parameters.")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"Comma-separated subset of {','.join(PARTS)} (the model is always built).")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: 1 with --device cpu --tiny, else torch's own).")
    parser.add_argument("--work", type=Path, default=None,
                        help="Scratch directory (model, registry, checkpoints); default: a temporary one, removed.")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.parts = tuple(p for p in PARTS if p in parts)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def cuda_problem() -> str | None:
    """Why `--device cuda` cannot run here; None when a GPU is there."""
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return f"--device cuda: no CUDA GPU visible to torch {torch.__version__} ({build}); use --device cpu --tiny"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and (problem := cuda_problem()):
        print(f"gpu_check.py: {problem}", file=sys.stderr)
        return 2
    settings = settings_for(args.device, args.tiny, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "logs", ignore_errors=True)
    scratch = args.work or Path(tempfile.mkdtemp(prefix="tunelab-gpu-check-"))
    try:
        check = run_check(settings, args.out.resolve(), scratch.resolve(), args.parts)
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(check.write())
    failed = [name for name, part in check.results["parts"].items() if part["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
