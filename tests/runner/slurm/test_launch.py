"""`tunelab launch slurm` without a cluster: the batch script says what the options ask, sbatch gets exactly that
script with the registry URL in its environment, and what no launched worker would take is said before submitting.
The same, submitted to a real cluster, is in test_cluster.py."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from tunelab.registry.roots import Roots
from tunelab.registry.submissions import NewExperiment, submit
from tunelab.runner.slurm.launch import LaunchError, LaunchOptions, WorkerSetting, batch_script, plan_launch
from tunelab.runner.slurm.launch import submit as submit_jobs

from tests.helpers import invoke

PYTHON = "/venv/bin/python"


def _setting(tmp_path: Path, project: Path | None = None) -> WorkerSetting:
    return WorkerSetting(home=tmp_path / "home", roots=Roots.at(tmp_path / "art", project), python=PYTHON)


def _sbatch_options(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def _queue(registry, name: str, *, gpus: int = 0, nodes: int = 1) -> int:
    (submitted,) = submit(registry, [NewExperiment(
        name=name, description="", tags=[], spec_path="s.toml", spec_text="", resolved_json="{}",
        spec_hash=name, workdir="/w", gpus=gpus, nodes=nodes)])
    return submitted.run_id


def test_the_script_asks_slurm_for_what_the_options_say(tmp_path):
    options = LaunchOptions(workers=3, partition="gpu", account="lab", nodes=1, cpus=8, memory="64G",
                            time="4:00:00", warning_seconds=300, sbatch_lines=("--qos=high", "#SBATCH --exclusive"),
                            worker_args=("--heartbeat", "5"))
    script = batch_script(options, 2, _setting(tmp_path, tmp_path / "proj"), tmp_path / "art" / "slurm")
    assert script.startswith("#!/bin/bash\n")
    assert _sbatch_options(script) == [
        "--job-name=tunelab-worker", "--array=0-2", f"--output={tmp_path}/art/slurm/%x-%A_%a.out",
        "--open-mode=append", "--nodes=1",
        "--partition=gpu", "--account=lab", "--gres=gpu:2", "--cpus-per-task=8", "--mem=64G", "--time=4:00:00",
        "--signal=B:USR1@300", "--export=ALL", "--qos=high", "--exclusive"]
    body = script.splitlines()
    assert f"export TUNELAB_HOME={tmp_path}/home" in body
    assert f"export TUNELAB_ARTIFACTS={tmp_path}/art" in body
    assert f"export TUNELAB_PROJECT={tmp_path}/proj" in body
    # The worker replaces the shell, so that Slurm's signals to the batch shell reach it.
    assert body[-1] == f"exec {PYTHON} -m tunelab worker --until-empty --quiet --heartbeat 5"
    # The registry URL never lands in the script; the job refuses to start without it.
    assert any(line.startswith(': "${TUNELAB_DB:?') for line in body)


def test_separate_jobs_multi_node_workers_and_no_warning(tmp_path):
    options = LaunchOptions(workers=2, array=False, nodes=4, warning_seconds=0)
    options_list = _sbatch_options(batch_script(options, 0, _setting(tmp_path), tmp_path / "logs"))
    assert options_list == ["--job-name=tunelab-worker", f"--output={tmp_path}/logs/%x-%j.out", "--open-mode=append",
                            "--nodes=4",
                            "--ntasks-per-node=1", "--export=ALL"]


@pytest.mark.parametrize("line", ["qos=high", "--qos=high\n#SBATCH --x", ""])
def test_an_sbatch_line_that_is_not_one_option_is_refused(tmp_path, line):
    with pytest.raises(LaunchError, match="expected one sbatch option"):
        batch_script(LaunchOptions(sbatch_lines=(line,)), 0, _setting(tmp_path), tmp_path)


def test_gpus_default_to_the_most_a_queued_run_asks_and_runs_left_over_are_named(registry, tmp_path):
    plan = plan_launch(registry, LaunchOptions(allow_sqlite=True), _setting(tmp_path))
    assert plan.notes == ["nothing is queued and no search is open: the workers will find the queue empty and exit"]
    _queue(registry, "one-gpu", gpus=1)
    _queue(registry, "two-gpus", gpus=2)
    _queue(registry, "two-nodes", gpus=1, nodes=2)
    plan = plan_launch(registry, LaunchOptions(allow_sqlite=True), _setting(tmp_path))
    assert plan.gpus == 2 and "--gres=gpu:2" in _sbatch_options(plan.script)
    assert plan.notes == ["1 queued run(s) need more than 2 GPU(s) per node or 1 node(s): no worker launched with "
                          "these options takes them"]
    plan = plan_launch(registry, LaunchOptions(allow_sqlite=True, gpus=1, nodes=2), _setting(tmp_path))
    assert plan.notes == ["1 queued run(s) need more than 1 GPU(s) per node or 2 node(s): no worker launched with "
                          "these options takes them"]
    assert plan.log_dir == tmp_path / "art" / "slurm"


def test_an_sqlite_registry_is_refused_unless_every_job_runs_here(tmp_path, sqlite_template):
    from tunelab.registry.db import default_url, open_registry

    registry = open_registry(default_url(tmp_path))
    with pytest.raises(LaunchError, match="SQLite file, which workers on other machines cannot share"):
        plan_launch(registry, LaunchOptions(), _setting(tmp_path))
    assert plan_launch(registry, LaunchOptions(allow_sqlite=True), _setting(tmp_path)).script
    registry.engine.dispose()


def _fake_sbatch(tmp_path: Path, *, fail: bool = False) -> Path:
    """An sbatch that records the script on its standard input and the registry URL of its environment."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    record = tmp_path / "submitted.jsonl"
    fake.write_text(f"""#!{sys.executable}
import json, os, sys
if {fail!r}:
    print("sbatch: error: Invalid partition name specified", file=sys.stderr)
    sys.exit(1)
with open({str(record)!r}, "a") as f:
    seen = {{"args": sys.argv[1:], "script": sys.stdin.read(), "db": os.environ.get("TUNELAB_DB")}}
    f.write(json.dumps(seen) + "\\n")
count = sum(1 for _ in open({str(record)!r}))
print(f"{{100 + count}};tunelab-test")
""", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def test_sbatch_gets_the_script_once_per_job_and_the_registry_url_in_its_environment(registry, tmp_path):
    fake = _fake_sbatch(tmp_path)
    plan = plan_launch(registry, LaunchOptions(workers=3, array=False, allow_sqlite=True), _setting(tmp_path))
    assert submit_jobs(plan, "postgresql+psycopg://u:secret@db/reg", sbatch=str(fake)) == ["101", "102", "103"]
    submitted = [json.loads(line) for line in (tmp_path / "submitted.jsonl").read_text().splitlines()]
    assert [s["script"] for s in submitted] == [plan.script] * 3
    assert {s["db"] for s in submitted} == {"postgresql+psycopg://u:secret@db/reg"}
    assert submitted[0]["args"] == ["--parsable"]
    assert "secret" not in plan.script
    assert plan.log_dir.is_dir()  # sbatch would not create it, and the jobs' logs would go nowhere

    array = plan_launch(registry, LaunchOptions(workers=3, allow_sqlite=True), _setting(tmp_path))
    assert submit_jobs(array, "sqlite:///x", sbatch=str(fake)) == ["104"]


def test_a_refusal_of_sbatch_is_one_line(registry, tmp_path):
    fake = _fake_sbatch(tmp_path, fail=True)
    plan = plan_launch(registry, LaunchOptions(allow_sqlite=True), _setting(tmp_path))
    with pytest.raises(LaunchError, match="^sbatch refused the job: sbatch: error: Invalid partition name specified$"):
        submit_jobs(plan, "sqlite:///x", sbatch=str(fake))
    with pytest.raises(LaunchError, match="not found: run tunelab launch slurm where Slurm's commands are installed"):
        submit_jobs(plan, "sqlite:///x", sbatch=str(tmp_path / "no-such-sbatch"))


def test_the_command_prints_the_script_of_its_options_and_submits_nothing(tmp_path):
    home = tmp_path / "home"
    refused = invoke(home, "launch", "slurm", "--dry-run")
    assert refused.exit_code == 1 and "SQLite file" in refused.output
    result = invoke(home, "--artifacts", str(tmp_path / "art"), "launch", "slurm", "--allow-sqlite", "--dry-run",
                    "--workers", "2", "--time", "1:00:00", "--sbatch=--qos=low", "--", "--device", "cpu")
    assert result.exit_code == 0, result.output
    options = _sbatch_options(result.stdout)
    assert "--array=0-1" in options and "--time=1:00:00" in options and "--qos=low" in options
    assert result.stdout.splitlines()[-1].endswith("-m tunelab worker --until-empty --quiet --device cpu")
    assert f"export TUNELAB_ARTIFACTS={tmp_path}/art" in result.stdout.splitlines()
    assert "nothing is queued" in result.stderr
    assert not (tmp_path / "art" / "slurm").exists()
