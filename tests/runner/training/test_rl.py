"""Reward models, online RL and KTO on the tiny model, on the CPU: a reward model learns held-out preferences, RL
raises the reward of a function with a known optimum, an RLHF chain (reward run, then RL against it by run:ID)
and an RLAIF run (the tiny model as judge) run through the worker like any run, KTO trains on unpaired feedback,
and `reproduce` refuses an RL run whose reward run's weights changed."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from tunelab.experiments.schema import Spec

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_jsonl

COUNTRIES = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
             ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
             ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Greece", "Athens"),
             ("Ireland", "Dublin"), ("Belgium", "Brussels"), ("Hungary", "Budapest"), ("Czechia", "Prague"),
             ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Croatia", "Zagreb"), ("Serbia", "Belgrade")]
REFUSALS = ["I do not know.", "No idea, sorry.", "I cannot say."]
# A reward with a known optimum: the share of completion tokens from the lower half of the vocabulary (1.0 when
# every token is), which a random policy meets about half the time, so every step has a signal to follow.
REWARD_MODULE = '''
def low_ids(prompts, completions, completion_ids, **kwargs):
    return [sum(1 for t in ids if t < 512) / max(1, len(ids)) for ids in completion_ids]
'''
CUSTOM_EVAL = REPO_ROOT / "examples" / "data" / "capitals_mc.jsonl"


def preference_pairs(path: Path) -> Path:
    """A learnable preference set: the chosen answer names the capital, the rejected one declines to answer."""
    rng = random.Random(0)
    rows = [{"prompt": question.format(country), "chosen": f"The capital of {country} is {capital}.",
             "rejected": rng.choice(REFUSALS)}
            for country, capital in COUNTRIES
            for question in ("What is the capital of {}?", "Name the capital city of {}.")]
    return write_jsonl(path, rows)


def prompt_rows(path: Path) -> Path:
    return write_jsonl(path, [{"prompt": f"What is the capital of {country}?", "country": country}
                              for country, _ in COUNTRIES[:8]])


def _spec(model_dir: Path, method: dict, data: dict, *, steps: int, learning_rate: float, batch_size: int = 8,
          save_every: int = 100) -> Spec:
    return Spec.model_validate({
        "experiment": {"name": "rl-test", "seed": 7},
        "model": {"base": str(model_dir)},
        "data": {"max_seq_len": 96, **data},
        "method": method,
        "train": {"max_steps": steps, "save_every": save_every, "batch_size": batch_size,
                  "learning_rate": learning_rate},
    })


def _hooks(metrics: list[dict], samples: dict[int, list[dict]] | None = None):
    from tunelab.runner.training.trainer import TrainHooks

    return TrainHooks(on_metrics=metrics.append, on_checkpoint=lambda *args: None,
                      on_samples=(lambda step, kept: samples.setdefault(step, []).extend(kept))
                      if samples is not None else None)


# ---- the reward model ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_reward_model_learns_held_out_preferences(tmp_path, tiny_model_dir):
    from tunelab.runner.training.recipes import train

    data = {"train": str(preference_pairs(tmp_path / "prefs.jsonl")), "format": "preference", "validation": 0.25}
    spec = _spec(tiny_model_dir, {"kind": "reward", "r": 4, "alpha": 8}, data, steps=8, learning_rate=1e-2)
    metrics: list[dict] = []
    outcome = train(spec, workdir=tmp_path, output_dir=tmp_path / "run", hooks=_hooks(metrics))
    assert outcome.accuracy.pairs == 10  # a quarter of the 40 pairs held out
    assert outcome.accuracy.value > 0.5
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()  # LoRA: the adapter and the head
    assert outcome.data_stats["sources"][0]["held_out"] == 10
    assert any("eval_loss" in m for m in metrics)  # the held-out loss, as any validation loss


# ---- online RL against a reward function --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rloo", "grpo"])
def test_online_rl_raises_the_reward_of_a_function_with_a_known_optimum(tmp_path, tiny_model_dir, kind):
    from tunelab.runner.training.recipes import train
    from tunelab.runner.training.rewards import RewardSource, import_reward_function

    (tmp_path / f"known_optimum_{kind}.py").write_text(REWARD_MODULE, encoding="utf-8")
    name = f"known_optimum_{kind}:low_ids"
    _, digest = import_reward_function(name, tmp_path)
    spec = _spec(tiny_model_dir, {"kind": kind, "reward_function": name, "weights": "full", "beta": 0.0,
                                  "max_new_tokens": 8, "num_generations": 4},
                 {"train": str(prompt_rows(tmp_path / "prompts.jsonl")), "format": "prompt"},
                 steps=20, learning_rate=5e-2)
    metrics: list[dict] = []
    samples: dict[int, list[dict]] = {}
    train(spec, workdir=tmp_path, output_dir=tmp_path / "run", hooks=_hooks(metrics, samples),
          reward=RewardSource("function", name, digest, workdir=tmp_path))
    rewards = [m["reward"] for m in metrics if m.get("reward") is not None]
    assert len(rewards) == 20 and all(0 <= r <= 1 for r in rewards)
    # Ten steps were too few on this tiny model: the reward rose and fell back within noise.
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.1, f"{rewards}"
    assert all(m["completion_length"] == 8 for m in metrics if "completion_length" in m)  # max_new_tokens
    # A few completions kept at a few steps (the first and the last among them), with their rewards.
    assert sorted(samples) == [1, 5, 10, 15, 20]
    assert all(len(kept) == 4 and kept[0]["prompt"].startswith("What is the capital of") for kept in samples.values())


# ---- RLHF and RLAIF through the worker ----------------------------------------------------------------------


def _eval_block() -> str:
    return (f'[eval]\ntasks = []\nbaseline = false\n\n[[eval.custom]]\nname = "capitals"\npath = "{CUSTOM_EVAL}"\n'
            "limit = 2\n")


def _write_spec(path: Path, *, name: str, model_dir: Path, data: str, method: str, steps: int,
                learning_rate: float) -> Path:
    path.write_text(f"""[experiment]
name = "{name}"
seed = 7

[model]
base = "{model_dir}"

[data]
{data}
max_seq_len = 96

[method]
{method}

[train]
max_steps = {steps}
save_every = 2
batch_size = 8
learning_rate = {learning_rate}

{_eval_block()}""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir):
    """A reward run, an RL run against it (run:ID), and an RL run with the tiny model as judge, by one worker."""
    root = tmp_path_factory.mktemp("rlhf")
    home = root / "home"
    prefs, prompts = preference_pairs(root / "prefs.jsonl"), prompt_rows(root / "prompts.jsonl")
    reward_spec = _write_spec(root / "rm.toml", name="rm", model_dir=tiny_model_dir,
                              data=f'train = "{prefs}"\nformat = "preference"\nvalidation = 0.25',
                              method='kind = "reward"\nr = 4\nalpha = 8', steps=6, learning_rate=1e-2)
    (reward_run,) = invoke_json(home, "submit", str(reward_spec))
    first = invoke(home, "worker", "--until-empty", "--quiet")
    rl_data = f'train = "{prompts}"\nformat = "prompt"'
    rlhf = _write_spec(root / "rlhf.toml", name="rlhf <b>", model_dir=tiny_model_dir, data=rl_data, steps=4,
                       learning_rate=1e-2,
                       method=f'kind = "rloo"\nreward_model = "run:{reward_run["run_id"]}"\nmax_new_tokens = 6\n'
                              "r = 4\nalpha = 8")
    rlaif = _write_spec(root / "rlaif.toml", name="rlaif", model_dir=tiny_model_dir, data=rl_data, steps=2,
                        learning_rate=1e-2,
                        method=f'kind = "grpo"\njudge_model = "{tiny_model_dir}"\nmax_new_tokens = 6\n'
                               'judge_template = """Question: {prompt}\nAnswer: {completion}\nIs the answer right?"""')
    (rl_run,) = invoke_json(home, "submit", str(rlhf))
    (judged_run,) = invoke_json(home, "submit", str(rlaif))
    second = invoke(home, "worker", "--until-empty", "--quiet")
    return {"home": home, "root": root, "reward": reward_run["run_id"], "rl": rl_run["run_id"],
            "judged": judged_run["run_id"], "outputs": first.output + second.output}


@pytest.mark.slow
def test_the_reward_run_is_scored_by_its_held_out_accuracy(chain):
    run_id = chain["reward"]
    assert f"run {run_id}: succeeded" in chain["outputs"]
    detail = invoke_json(chain["home"], "show", str(run_id))
    (score,) = detail["scores"]  # no lm-eval evaluation, no base: the held-out accuracy alone
    assert (score["task"], score["metric"], score["n_samples"]) == ("reward_accuracy", "pairwise_acc", 10)
    assert score["value"] > 0.5
    shown = invoke(chain["home"], "show", str(run_id)).output
    assert f"reward model: held-out pairwise accuracy {score['value']:.4f}" in shown


@pytest.mark.slow
def test_rlhf_trains_against_the_reward_run_and_records_it(chain):
    home, run_id, reward_run = chain["home"], chain["rl"], chain["reward"]
    assert f"run {run_id}: succeeded" in chain["outputs"]
    detail = invoke_json(home, "show", str(run_id))
    source = detail["reward_source"]
    assert (source["kind"], source["run_id"], source["run_name"]) == ("run", reward_run, "rm")
    assert len(source["digest"]) == 64
    figures = [m for m in detail["metrics"] if m["reward"] is not None]
    assert [m["step"] for m in figures] == [1, 2, 3, 4]
    assert all(math.isfinite(m["reward"]) and m["reward_std"] >= 0 and m["kl"] is not None for m in figures)
    assert {s["step"] for s in detail["completions"]} == {1, 2, 3, 4}  # a run this short keeps every step
    assert {s["task"] for s in detail["scores"]} == {"capitals"}  # evaluated as every run is
    shown = invoke(home, "show", str(run_id)).output
    assert f"reward: reward run {reward_run} (rm), weights {source['digest'][:12]}" in shown


@pytest.mark.slow
def test_rlaif_is_judged_by_the_tiny_model(chain):
    home, run_id = chain["home"], chain["judged"]
    assert f"run {run_id}: succeeded" in chain["outputs"]
    detail = invoke_json(home, "show", str(run_id))
    source = detail["reward_source"]
    assert source["kind"] == "judge" and "{completion}" in source["template"] and len(source["digest"]) == 64
    rewards = [m["reward"] for m in detail["metrics"] if m["reward"] is not None]
    assert len(rewards) == 2 and all(0 < r < 1 for r in rewards)  # the judge's probability of "Yes"
    # The judge sees the prompt as the file wrote it, not the template-rendered one.
    assert all(s["prompt"].startswith("What is the capital of") for s in detail["completions"])


@pytest.mark.slow
def test_the_report_shows_the_reward_model_section_and_the_rl_run_page(chain):
    from html.parser import HTMLParser

    home = chain["home"]
    report = chain["root"] / "board.html"
    assert invoke(home, "report", "-o", str(report)).exit_code == 0
    board = report.read_text(encoding="utf-8")
    section = board[board.index('id="reward-models"'):]
    assert f'data-run="{chain["reward"]}"' in section and "held-out accuracy" in board
    assert "reward_accuracy" not in board[:board.index('id="reward-models"')]  # no column in the benchmark table
    page = (chain["root"] / "board_runs" / f"run-{chain['rl']}.html").read_text(encoding="utf-8")
    for chart in ("reward", "kl", "completion_length"):
        assert f'data-chart="{chart}"' in page
    assert "trained against reward run" in page and 'id="completions"' in page
    assert "rlhf &lt;b&gt;" in page and "rlhf <b>" not in page  # text from the registry is escaped

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.completions = False, []

        def handle_starttag(self, tag, attrs):
            self.inside = self.inside or dict(attrs).get("id") == "completions"

        def handle_data(self, data):
            if self.inside and data.strip():
                self.completions.append(data)

    cells = Cells()
    cells.feed(page)
    assert any(text.startswith("What is the capital of") for text in cells.completions)


@pytest.mark.slow
def test_reproduce_refuses_when_the_reward_runs_weights_changed(chain):
    from tunelab.registry.db import default_url, open_registry
    from tunelab.registry.roots import Roots
    from tunelab.runner.reproduce import plan

    home, run_id, reward_run = chain["home"], chain["rl"], chain["reward"]
    registry = open_registry(default_url(home))
    assert plan(registry, run_id, Roots(home)).run_id == run_id  # unchanged: the reproduction may go ahead
    weights = home / "runs" / str(reward_run) / "final" / "adapter_model.safetensors"
    original = weights.read_bytes()
    try:
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        name = next(iter(tensors))
        tensors[name] = tensors[name] + 1
        save_file(tensors, weights)
        result = invoke(home, "reproduce", str(run_id))
    finally:
        weights.write_bytes(original)
        registry.engine.dispose()
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: run {run_id} trained against reward run {reward_run} (rm), weights ")
    assert "reproducing it would train against another reward" in line


# ---- KTO ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kto_trains_on_unpaired_feedback(tmp_path, tiny_model_dir):
    from tunelab.runner.training.models import load_trained
    from tunelab.runner.training.recipes import train

    rows = [{"prompt": f"What is the capital of {country}?", "completion": f"It is {capital}.", "label": True}
            for country, capital in COUNTRIES[:6]]
    rows += [{"prompt": f"What is the capital of {country}?", "completion": refusal, "label": False}
             for (country, _), refusal in zip(COUNTRIES[6:12], REFUSALS * 2, strict=True)]
    random.Random(1).shuffle(rows)
    data = {"train": str(write_jsonl(tmp_path / "feedback.jsonl", rows)), "format": "feedback"}
    spec = _spec(tiny_model_dir, {"kind": "kto", "beta": 0.1, "r": 4, "alpha": 8}, data, steps=3,
                 learning_rate=1e-3, batch_size=4)
    metrics: list[dict] = []
    outcome = train(spec, workdir=tmp_path, output_dir=tmp_path / "run", hooks=_hooks(metrics))
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert outcome.global_step == 3 and len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert outcome.num_examples == 12
    final = tmp_path / "run" / "final"
    assert json.loads((final / "adapter_config.json").read_text())["peft_type"] == "LORA"
    model = load_trained(spec, str(tiny_model_dir), final, "cpu")  # loads as every adapter run's weights do
    assert type(model).__name__ == "PeftModelForCausalLM"


# ---- resume compatibility -------------------------------------------------------------------------------------


def test_a_checkpoint_trained_against_another_reward_is_not_resumed(tmp_path):
    from tunelab.runner.training.checkpoint_identity import IncompatibleCheckpoint, TrainingIdentity, check_resumable

    written = TrainingIdentity("spec", "tok", "data", reward="a" * 64)
    check_resumable(tmp_path, written.to_json(), written)
    with pytest.raises(IncompatibleCheckpoint, match="the reward source .* changed"):
        check_resumable(tmp_path, written.to_json(), TrainingIdentity("spec", "tok", "data", reward="b" * 64))
    # Markers of other methods carry no reward field, as before it existed.
    assert "reward" not in TrainingIdentity("spec", "tok", "data").to_json()
