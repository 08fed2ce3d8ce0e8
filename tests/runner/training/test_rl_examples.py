"""The demo of the reward and RL methods: its data files are what examples/make_rl_data.py derives, its reward
function scores as documented, and its specs declare the methods they are named after."""

from __future__ import annotations

import importlib.util

from tunelab.experiments.loader import load_spec


def _module(repo_root, name: str):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", repo_root / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_rl_data_is_what_the_script_derives(repo_root, tmp_path):
    _module(repo_root, "make_rl_data").main(tmp_path)
    for name in ("capitals_preferences.jsonl", "capitals_prompts.jsonl", "capitals_feedback.jsonl"):
        assert (tmp_path / name).read_bytes() == (repo_root / "examples" / "data" / name).read_bytes(), name


def test_the_demo_reward_function_rewards_naming_the_capital(repo_root):
    reward = _module(repo_root, "rewards").names_the_capital
    scores = reward(prompts=["q"] * 3, completions=[" Thasport.", "It is Thasport", "Polholm"],
                    capital=["Thasport"] * 3, completion_ids=[[1], [2], [3]])
    assert scores == [1.0, 0.5, 0.0]


def test_the_demo_specs_declare_the_rl_methods(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    kinds = {name: load_spec(repo_root / "examples" / "specs" / f"tiny-{name}.toml").spec
             for name in ("reward", "rloo", "kto")}
    assert {name: spec.method.kind for name, spec in kinds.items()} == {name: name for name in kinds}
    assert (kinds["reward"].data.format, kinds["rloo"].data.format, kinds["kto"].data.format) == (
        "preference", "prompt", "feedback")
    assert kinds["rloo"].method.reward_function == "examples.rewards:names_the_capital"
