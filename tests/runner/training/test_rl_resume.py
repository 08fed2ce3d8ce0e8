"""Online RL survives its worker: an RLOO run SIGKILLed in its second epoch is recovered by the next worker, resumes
from its last checkpoint and ends bit-identical to an uninterrupted run of the same spec: the same loss and reward
curves (every step once), the same sample completions, the same final weights.

A checkpoint holds the policy, the optimizer, the RNG states and the trainer state; generation is seeded by the
restored RNG, completions are generated once per optimizer step, and prompts are drawn in an order fixed by the seed
and the epoch (runner/training/online_rl.py), so nothing of the interrupted attempt leaks into the resumed one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, invoke, invoke_json, write_jsonl

STEPS = 12
SAVE_EVERY = 3
# 8 prompts, 2 per step (8 completions, 4 per prompt): 4 steps an epoch, so the kill after checkpoint 6 resumes
# halfway through the second epoch.
PROMPTS = [f"What is the capital of {country}?" for country in
           ("France", "Italy", "Spain", "Germany", "Austria", "Norway", "Sweden", "Finland")]
REWARD_MODULE = '''
def low_ids(prompts, completions, completion_ids, **kwargs):
    return [sum(1 for t in ids if t < 512) / max(1, len(ids)) for ids in completion_ids]
'''
METRICS = "step, epoch, loss, learning_rate, grad_norm, eval_loss, reward, reward_std, kl, completion_length"


def _spec(root: Path, model_dir: Path) -> Path:
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    path = root / "rl.toml"
    path.write_text(f"""[experiment]
name = "rl-resume"
seed = 7

[model]
base = "{model_dir}"

[data]
train = "{prompts}"
format = "prompt"

[method]
kind = "rloo"
reward_function = "rl_resume_rewards:low_ids"
max_new_tokens = 6
num_generations = 4
r = 4
alpha = 8

[train]
max_steps = {STEPS}
save_every = {SAVE_EVERY}
batch_size = 8
learning_rate = 1e-2

[eval]
tasks = []
baseline = false

[[eval.custom]]
name = "capitals"
path = "{REPO_ROOT / 'examples' / 'data' / 'capitals_mc.jsonl'}"
limit = 2
""", encoding="utf-8")
    return path


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "registry.db", timeout=30)


def _progress(db: sqlite3.Connection, run_id: int) -> tuple[int, int]:
    checkpoint = db.execute("SELECT COALESCE(MAX(step), 0) FROM checkpoint WHERE run_id = ?", (run_id,)).fetchone()
    metric = db.execute("SELECT COALESCE(MAX(step), 0) FROM trainmetric WHERE run_id = ?", (run_id,)).fetchone()
    return checkpoint[0], metric[0]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("rl-resume")
    home = root / "home"
    (root / "rl_resume_rewards.py").write_text(REWARD_MODULE, encoding="utf-8")
    spec = _spec(root, tiny_model_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the reward function is imported from the directory submit ran in
        killed = invoke_json(home, "submit", str(spec))[0]["run_id"]
        reference = invoke_json(home, "submit", str(spec), "--force")[0]["run_id"]

    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_DB"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "--home", str(home), "worker", "--once", "--quiet", "--heartbeat", "0.5"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = _db(home)
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, "the worker did not reach checkpoint 6 in time"
        assert worker.poll() is None, worker.communicate()[0]
        checkpoint, metric = _progress(db, killed)
        if checkpoint >= 2 * SAVE_EVERY and metric > checkpoint:
            worker.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    killed_at = time.monotonic()
    worker.wait(timeout=60)
    seen = (checkpoint, metric)
    samples_before = db.execute("SELECT COUNT(*) FROM completionsample WHERE run_id = ?", (killed,)).fetchone()[0]
    db.close()
    # The killed run's heartbeat must be older than --stale-after for the next worker to take it back.
    time.sleep(max(0.0, killed_at + 2.5 - time.monotonic()))
    final = invoke(home, "worker", "--until-empty", "--quiet", "--heartbeat", "0.5", "--stale-after", "2")
    return {"home": home, "killed": killed, "reference": reference, "seen": seen, "final": final,
            "samples_before": samples_before}


def _rows(home: Path, sql: str, run_id: int) -> list[tuple]:
    with _db(home) as db:
        return db.execute(sql, (run_id,)).fetchall()


@pytest.mark.slow
def test_the_killed_run_is_recovered_and_both_runs_finish(resumed):
    checkpoint, metric = resumed["seen"]
    assert checkpoint >= 2 * SAVE_EVERY and metric > checkpoint  # steps after the checkpoint, redone on resume
    assert resumed["samples_before"] > 0
    output = resumed["final"].output
    assert resumed["final"].exit_code == 0, output
    for run_id in (resumed["killed"], resumed["reference"]):
        assert f"run {run_id}: succeeded" in output


@pytest.mark.slow
def test_the_resumed_run_continues_its_curves_where_they_stopped(resumed):
    home = resumed["home"]
    sql = f"SELECT {METRICS} FROM trainmetric WHERE run_id = ? ORDER BY step, reward IS NOT NULL, id"
    expected = _rows(home, sql, resumed["reference"])
    assert sorted({row[0] for row in expected}) == list(range(1, STEPS + 1))
    assert len(expected) == 2 * STEPS  # a loss row and an RL row per step
    assert _rows(home, sql, resumed["killed"]) == expected  # every step once, every float exactly equal
    samples = "SELECT step, prompt, completion, reward FROM completionsample WHERE run_id = ? ORDER BY step, id"
    assert _rows(home, samples, resumed["killed"]) == _rows(home, samples, resumed["reference"])


@pytest.mark.slow
def test_the_resumed_run_ends_with_the_same_weights(resumed):
    import torch
    from safetensors.torch import load_file

    home = resumed["home"]
    ours, theirs = (load_file(home / "runs" / str(resumed[key]) / "final" / "adapter_model.safetensors")
                    for key in ("killed", "reference"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
