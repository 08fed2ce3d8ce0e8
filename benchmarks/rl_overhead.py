"""Online RL throughput of `tunelab run` against a plain script on trl's own RLOOTrainer (or GRPOTrainer).

Both train the same model on the same prompts with the same settings (completions per prompt, completion length,
temperature, KL coefficient, LoRA or full weights, learning rate, seed) against the same reward function, each in
a fresh process: tunelab through `tunelab run` (its recipe with the registry callback, staged checkpoints, the RL
figures and the kept sample completions), the plain script with trl's trainer and nothing else. Optimizer steps per
second are the steps over the seconds `trainer.train()` took; runs alternate and the median of each side is
reported, with the ratio tunelab / trl (target: at least 0.95).

Wall-clock seconds swing with whatever else a shared machine runs, so each repeat also trains each side for a third
of the steps, and the CPU seconds of a step are the difference of the two processes' CPU time (every thread, user
and system) over the difference of their steps: loading, evaluation and start-up cancel out, the per-step cost of
the registry writes, callbacks and kept samples stays in. Their ratio is the second figure.

    python benchmarks/rl_overhead.py                          # the bundled demo model, RLOO, LoRA, 3 repeats
    python benchmarks/rl_overhead.py --kind grpo --weights full --steps 16 --max-new-tokens 32 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SEED = 11
LEARNING_RATE = 1e-4
BETA = 0.04
COUNTRIES = ("France", "Italy", "Spain", "Germany", "Austria", "Norway", "Sweden", "Finland", "Denmark", "Poland",
             "Portugal", "Greece", "Ireland", "Belgium", "Hungary", "Czechia")
PROMPTS = [f"What is the capital of {country}?" for country in COUNTRIES]
# The verifiable reward both sides train against: the share of completion tokens from the lower half of the tiny
# model's vocabulary.
REWARD_MODULE = '''
def low_ids(prompts, completions, completion_ids, **kwargs):
    return [sum(1 for t in ids if t < 512) / max(1, len(ids)) for ids in completion_ids]
'''
# The prompt as tunelab's default template ("alpaca") renders an instruction without input.
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


# ---- the plain side: trl's trainer, as its documentation has one write it ------------------------------------


def plain_train(model_dir: Path, args: argparse.Namespace, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    sys.path.insert(0, os.getcwd())  # the reward module is written into the scratch directory, run from there
    low_ids = importlib.import_module("bench_rewards").low_ids

    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config_class, trainer_class = (RLOOConfig, RLOOTrainer) if args.kind == "rloo" else (GRPOConfig, GRPOTrainer)
    config = config_class(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=LEARNING_RATE, seed=SEED, data_seed=SEED, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, beta=BETA, num_generations=args.num_generations,
        max_completion_length=args.max_new_tokens, temperature=1.0, steps_per_generation=1,
    )
    peft = (LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                       task_type="CAUSAL_LM") if args.weights == "lora" else None)
    dataset = Dataset.from_dict({"prompt": [ALPACA_PROMPT.format(instruction=p) for p in PROMPTS]})
    trainer = trainer_class(model=model, reward_funcs=low_ids, args=config, train_dataset=dataset,
                            processing_class=tokenizer, peft_config=peft)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    lengths = [log["completions/mean_length"] for log in trainer.state.log_history if "completions/mean_length" in log]
    return {"train_seconds": seconds, "steps": trainer.state.global_step,
            "completion_length": statistics.mean(lengths)}


# ---- the tunelab side ------------------------------------------------------------------------------------------


def write_spec(path: Path, model_dir: Path, args: argparse.Namespace) -> Path:
    prompts = path.parent / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    lora = "r = 8\nalpha = 16\ndropout = 0.05\n" if args.weights == "lora" else ""
    path.write_text(f"""[experiment]
name = "rl-overhead"
seed = {SEED}

[model]
base = "{model_dir}"

[data]
train = "{prompts}"
format = "prompt"

[method]
kind = "{args.kind}"
weights = "{args.weights}"
{lora}reward_function = "bench_rewards:low_ids"
beta = {BETA}
num_generations = {args.num_generations}
max_new_tokens = {args.max_new_tokens}
temperature = 1.0

[train]
max_steps = {args.steps}
batch_size = {args.batch_size}
learning_rate = {LEARNING_RATE}
save_every = {args.steps + 1}

[eval]
tasks = []
limit = 1
baseline = false

[[eval.custom]]
name = "capitals"
path = "{REPO_ROOT / 'examples' / 'data' / 'capitals_mc.jsonl'}"
""", encoding="utf-8")
    return path


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tunelab_train(spec: Path, home: Path, env: dict[str, str]) -> dict:
    command = [sys.executable, "-m", "tunelab", "--home", str(home)]
    cpu = children_cpu_seconds()
    done = subprocess.run([*command, "run", "--quiet", "--json", str(spec)], capture_output=True, text=True, env=env,
                          cwd=spec.parent)
    cpu = children_cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(f"tunelab run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    run_id = json.loads(done.stdout)["run_id"]
    shown = subprocess.run([*command, "show", "--json", str(run_id)], capture_output=True, text=True, env=env,
                           check=True)
    detail = json.loads(shown.stdout)
    lengths = [m["completion_length"] for m in detail["metrics"] if m.get("completion_length") is not None]
    return {"train_seconds": detail["train_seconds"], "steps": max(m["step"] for m in detail["metrics"]),
            "completion_length": statistics.mean(lengths), "cpu_seconds": cpu}


def trl_train(args: argparse.Namespace, model_dir: Path, steps: int, out: Path, scratch: Path,
              env: dict[str, str]) -> dict:
    cpu = children_cpu_seconds()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--model", str(model_dir), "--kind", args.kind,
         "--weights", args.weights, "--steps", str(steps), "--batch-size", str(args.batch_size),
         "--num-generations", str(args.num_generations), "--max-new-tokens", str(args.max_new_tokens),
         "--plain-worker", str(out)],
        capture_output=True, text=True, env=env, cwd=scratch)
    cpu = children_cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(f"trl script failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_seconds": cpu}


def prompts_agree(spec_path: Path) -> bool:
    """Whether tunelab renders the prompts as the plain script writes them (else the two generate from others)."""
    from tunelab.experiments.loader import load_specs
    from tunelab.runner.data.prompts import read_prompts
    from tunelab.runner.training.models import load_tokenizer

    spec = load_specs(spec_path)[0].spec
    rows = read_prompts(spec_path.parent / "prompts.jsonl", load_tokenizer(spec.model.base), spec.data.template)
    return [row.prompt for row in rows] == [ALPACA_PROMPT.format(instruction=p) for p in PROMPTS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "examples" / "models" / "tiny-llama")
    parser.add_argument("--kind", choices=["rloo", "grpo"], default="rloo")
    parser.add_argument("--weights", choices=["lora", "full"], default="lora")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each side (OMP_NUM_THREADS); 1 keeps other work on a shared machine "
                        "from skewing one side more than the other")
    parser.add_argument("--plain-worker", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = args.model.resolve()
    if args.plain_worker:
        print(json.dumps(plain_train(model_dir, args, args.plain_worker)))
        return

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix="tunelab-rl-overhead-") as scratch:
        scratch = Path(scratch)
        (scratch / "bench_rewards.py").write_text(REWARD_MODULE, encoding="utf-8")
        spec = write_spec(scratch / "spec.toml", model_dir, args)
        short_args = argparse.Namespace(**{**vars(args), "steps": max(1, args.steps // 3)})
        (scratch / "short").mkdir()
        short_spec = write_spec(scratch / "short" / "spec.toml", model_dir, short_args)
        (scratch / "short" / "bench_rewards.py").write_text(REWARD_MODULE, encoding="utf-8")
        same_prompts = prompts_agree(spec)
        plain, ours, plain_cpu, our_cpu = [], [], [], []
        for repeat in range(args.repeats):
            result = trl_train(args, model_dir, args.steps, scratch / f"plain-{repeat}", scratch, env)
            plain.append(result["steps"] / result["train_seconds"])
            tuned = tunelab_train(spec, scratch / f"home-{repeat}", env)
            ours.append(tuned["steps"] / tuned["train_seconds"])
            short_result = trl_train(short_args, model_dir, short_args.steps, scratch / f"plain-short-{repeat}",
                                     scratch, env)
            short_tuned = tunelab_train(short_spec, scratch / f"home-short-{repeat}", env)
            extra_steps = args.steps - short_args.steps
            plain_cpu.append((result["cpu_seconds"] - short_result["cpu_seconds"]) / extra_steps)
            our_cpu.append((tuned["cpu_seconds"] - short_tuned["cpu_seconds"]) / extra_steps)
            print(f"repeat {repeat + 1}: trl {plain[-1]:.3f} steps/s, tunelab {ours[-1]:.3f} steps/s, "
                  f"ratio {ours[-1] / plain[-1]:.3f}; CPU s/step trl {plain_cpu[-1]:.3f}, tunelab {our_cpu[-1]:.3f}, "
                  f"ratio {plain_cpu[-1] / our_cpu[-1]:.3f}; mean completion length trl "
                  f"{result['completion_length']:.2f}, tunelab {tuned['completion_length']:.2f} tokens", flush=True)
    print(f"\nmodel {model_dir.name}, {args.kind}, {args.weights} weights, {args.steps} steps of {args.batch_size} "
          f"completions ({args.num_generations} per prompt, up to {args.max_new_tokens} tokens), {args.repeats} "
          f"repeats, torch threads {args.threads}"
          + ("" if same_prompts else "  (the prompts differ: the two sides generate from other text)"))
    median_plain, median_ours = statistics.median(plain), statistics.median(ours)
    print(f"trl's {args.kind} trainer script: {median_plain:.3f} steps/s (median)")
    print(f"tunelab run:              {median_ours:.3f} steps/s (median)")
    print(f"ratio tunelab / trl: {median_ours / median_plain:.3f} (target >= 0.95); median of the paired ratios "
          f"{statistics.median(o / p for o, p in zip(ours, plain, strict=True)):.3f}")
    cpu_plain, cpu_ours = statistics.median(plain_cpu), statistics.median(our_cpu)
    print(f"CPU seconds per step (marginal, {short_args.steps} against {args.steps} steps): trl {cpu_plain:.3f}, "
          f"tunelab {cpu_ours:.3f}; throughput ratio tunelab / trl {cpu_plain / cpu_ours:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
