"""The reward-model, online RL and KTO kinds in the spec language: their keys, their reward sources, the data and
batch they need; every refusal one line naming the file, the line and the field, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from tunelab.experiments.canonical import resolved_dict, spec_hash
from tunelab.experiments.schema import Spec

from tests.helpers import invoke, write_file

RL_SPEC = """\
[experiment]
name = "rl"

[model]
base = "examples/models/tiny-llama"

[data]
train = "prompts.jsonl"
format = "prompt"

[method]
kind = "rloo"
{method}

[train]
batch_size = 8
"""
JUDGE = 'judge_model = "examples/models/tiny-llama"\njudge_template = "Is this a good answer? {completion}"'


def _refusal(tmp_path: Path, text: str) -> str:
    """The one line `submit --dry-run` prints for an invalid spec (and that nothing was written)."""
    spec = write_file(tmp_path, text)
    result = invoke(tmp_path / "home", "submit", "--dry-run", str(spec))
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "home" / "registry.db").exists()
    (line,) = result.output.strip().splitlines()
    return line.removeprefix(f"Error: {spec}")


@pytest.mark.parametrize(("method", "expected"), [
    ("", ':11: method: kind = "rloo" needs a reward: set reward_model = "run:ID" (a reward run), judge_model and '
         'judge_template (a judge model), or reward_function = "module:function"'),
    ('judge_model = "examples/models/tiny-llama"\njudge_template = "Rate this: {prompt}"',
     ":14: method.judge_template: the judge template must contain {completion}, where the completion to judge goes "
     "(and may contain {prompt}) (got 'Rate this: {prompt}')"),
    ('judge_template = "Good? {completion}"', ":11: method: judge_template needs judge_model: the judge is a model "
                                               "and the question put to it"),
    ('reward_model = "run:2"\nreward_function = "rewards:f"', ":11: method: one reward source, not 2: set only one "
                                                               "of reward_model, reward_function"),
    ('reward_model = "2"', ':13: method.reward_model: a reward model is a reward run of this registry: "run:ID", '
                           "e.g. \"run:3\" (got '2')"),
    ('reward_function = "rewards.py"', ':13: method.reward_function: a reward function is named "module:function", '
                                       "e.g. \"rewards:ends_with_period\" (got 'rewards.py')"),
    (f"{JUDGE}\nnum_generations = 3", ":18: train.batch_size: online RL compares the 3 completions of a prompt "
                                     "(method.num_generations) within one batch: batch_size x grad_accum (8) must "
                                     "be a multiple of it"),
    (f"{JUDGE}\ndesirable_weight = 2.0", ':11: method: option(s) desirable_weight (kto) do not apply to '
                                         'kind = "rloo"'),
    (f'{JUDGE}\nweights = "full"\nr = 4', ':11: method: LoRA option(s) r set on RLOO with weights = "full" '
                                          '(kind = "rloo")'),
])
def test_online_rl_specs_are_refused_at_the_line_at_fault(tmp_path, method, expected):
    assert _refusal(tmp_path, RL_SPEC.format(method=method)) == expected


def test_online_rl_reads_prompt_rows_and_other_kinds_do_not(tmp_path):
    wrong_format = RL_SPEC.format(method=JUDGE).replace('format = "prompt"', 'format = "preference"')
    assert _refusal(tmp_path, wrong_format) == (':9: data.format: kind = "rloo" trains on "prompt" rows: set [data] '
                                                'format = "prompt" (it is "preference")')
    supervised = RL_SPEC.format(method="").replace('kind = "rloo"', 'kind = "lora"')
    assert _refusal(tmp_path, supervised) == (':9: data.format: prompt and feedback rows are for kind = "rloo" or '
                                              '"grpo"; kind = "lora" trains on instruction, chat or text rows')


def test_a_reward_model_needs_held_out_pairs(tmp_path):
    text = RL_SPEC.format(method="").replace('kind = "rloo"', 'kind = "reward"').replace('"prompt"', '"preference"')
    assert _refusal(tmp_path, text) == (':7: data: kind = "reward" is scored by its pairwise accuracy on held-out '
                                        "pairs: set [data] validation (a preference file, or a fraction such as 0.1)")


def test_kto_takes_its_own_keys_and_a_positive_beta(tmp_path):
    kto = RL_SPEC.replace('"prompt"', '"feedback"').replace('kind = "rloo"', 'kind = "kto"')
    assert _refusal(tmp_path, kto.format(method="beta = 0")) == (
        ':11: method: beta must be greater than 0 for kind = "kto" (got 0.0)')
    assert _refusal(tmp_path, kto.format(method='reward_model = "run:1"')) == (
        ':11: method: option(s) reward_model (rloo) do not apply to kind = "kto"')


def test_online_rl_trains_in_one_process(tmp_path):
    text = RL_SPEC.format(method=JUDGE) + "\n[resources]\ngpus = 2\n"
    assert _refusal(tmp_path, text) == ':20: resources.gpus: kind = "rloo" trains in one process: gpus must be 0 or 1'


def test_the_new_kinds_store_only_their_keys_and_revalidate():
    base = {"experiment": {"name": "x"}, "model": {"base": "m"}}
    specs = {
        "reward": {"data": {"train": "p.jsonl", "format": "preference", "validation": 0.2},
                   "method": {"kind": "reward", "weights": "full"}},
        "rloo": {"data": {"train": "p.jsonl", "format": "prompt"},
                 "method": {"kind": "rloo", "reward_function": "rewards:f", "beta": 0.0}},
        "grpo": {"data": {"train": "p.jsonl", "format": "prompt"},
                 "method": {"kind": "grpo", "judge_model": "m", "judge_template": "Good? {completion}"}},
        "kto": {"data": {"train": "f.jsonl", "format": "feedback"}, "method": {"kind": "kto"}},
    }
    stored = {}
    for kind, sections in specs.items():
        spec = Spec.model_validate({**base, **sections})
        stored[kind] = resolved_dict(spec)["method"]
        assert Spec.model_validate(resolved_dict(spec)) == spec, kind
    assert stored["reward"] == {"kind": "reward", "weights": "full"}
    # Only the reward source in use is stored; beta = 0 (no KL term) is valid for online RL.
    assert stored["rloo"] == {"kind": "rloo", "weights": "lora", "beta": 0.0, "reward_function": "rewards:f",
                              "max_new_tokens": 64, "temperature": 1.0, "num_generations": 4, "r": 8, "alpha": 16.0,
                              "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert set(stored["grpo"]) >= {"judge_model", "judge_template"} and "reward_model" not in stored["grpo"]
    assert stored["kto"]["desirable_weight"] == 1.0 and stored["kto"]["beta"] == 0.1


def test_specs_of_the_older_kinds_keep_their_hash():
    # The hash of a lora spec as it was before the new kinds existed (their keys must not leak into it).
    spec = Spec.model_validate({"experiment": {"name": "x"}, "model": {"base": "m"}, "data": {"train": "d.jsonl"},
                                "method": {"kind": "lora", "r": 4}})
    assert set(resolved_dict(spec)["method"]) == {"kind", "r", "alpha", "dropout", "target_modules"}
    assert spec_hash(spec) == spec_hash(Spec.model_validate(resolved_dict(spec)))
