"""What a worker learns from the Slurm job around it: the job and node it records on the runs it takes, how many
nodes a run it takes may span, and the srun + torchrun line that spreads such a run."""

from __future__ import annotations

import pytest
from sqlmodel import select
from tunelab.registry.models import Run
from tunelab.registry.run_state import claim_next, queued_needing_more_gpus
from tunelab.registry.submissions import NewExperiment, submit
from tunelab.runner.slurm.job import SlurmJob, current_job
from tunelab.runner.slurm.nodes import AllocationTooSmall, Rendezvous, check_run_nodes, srun_torchrun_command

from tests.helpers import invoke, invoke_json, write_spec

ARRAY_TASK = {"SLURM_JOB_ID": "107", "SLURM_ARRAY_JOB_ID": "105", "SLURM_ARRAY_TASK_ID": "2",
              "SLURMD_NODENAME": "gpu-node-3", "SLURM_NTASKS": "1"}


def test_the_job_is_read_from_slurms_environment():
    assert current_job({}) is None
    task = current_job(ARRAY_TASK)
    assert (task.label, task.node, task.max_nodes) == ("105_2", "gpu-node-3", 1)
    plain = current_job({"SLURM_JOB_ID": "42", "SLURM_JOB_NUM_NODES": "4"})
    assert (plain.label, plain.node, plain.max_nodes) == ("42", None, 4)  # one task per node unless told
    assert current_job({"SLURM_JOB_ID": "43", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1"}).max_nodes == 2


def test_a_run_needing_more_nodes_than_the_allocation_spans_is_refused_in_one_line():
    check_run_nodes(2, SlurmJob("9", None, None, "n1", tasks=2))
    with pytest.raises(AllocationTooSmall, match=r"nodes = 2: Slurm job 9 has 1 task\(s\); start workers that span "
                                                 r"2 nodes \(tunelab launch slurm --nodes 2\)"):
        check_run_nodes(2, SlurmJob("9", None, None, "n1", tasks=1))
    with pytest.raises(AllocationTooSmall, match="this worker runs outside Slurm"):
        check_run_nodes(3, None)


def test_srun_starts_one_torchrun_per_node_meeting_on_the_workers_node():
    command = srun_torchrun_command(["-m", "tunelab.runner.training.distributed_train", "/art/runs/4/job.json"],
                                    nodes=2, nproc_per_node=4, rendezvous=Rendezvous("node-1", 29411), run_id=4,
                                    python="/venv/bin/python")
    assert command == ["srun", "--ntasks=2", "--kill-on-bad-exit=1", "--export=ALL", "/venv/bin/python", "-m",
                       "torch.distributed.run", "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                       "--rdzv-endpoint=node-1:29411", "--rdzv-id=tunelab-run-4", "--max-restarts=0",
                       "-m", "tunelab.runner.training.distributed_train", "/art/runs/4/job.json"]


def _queue(registry, name: str, nodes: int) -> int:
    (submitted,) = submit(registry, [NewExperiment(name=name, description="", tags=[], spec_path="s", spec_text="",
                                                   resolved_json="{}", spec_hash=name, workdir="/", nodes=nodes)])
    return submitted.run_id


def test_a_worker_claims_only_runs_its_allocation_spans(registry):
    wide = _queue(registry, "wide", nodes=2)
    narrow = _queue(registry, "narrow", nodes=1)
    assert queued_needing_more_gpus(registry, 0, 1) == 1
    assert claim_next(registry, "one-node") == narrow
    assert claim_next(registry, "one-node") is None
    assert claim_next(registry, "two-nodes", max_nodes=2) == wide


def test_the_job_and_node_are_recorded_on_the_run_a_worker_takes(tmp_path, tiny_model_dir, monkeypatch):
    from tunelab.registry.db import default_url, open_registry
    from tunelab.runner import execute as runner_execute

    def crash(*args, **kwargs):
        raise RuntimeError("stop here: the placement is recorded before training")

    monkeypatch.setattr(runner_execute, "train", crash)
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "s.toml", name="placed", model_dir=tiny_model_dir, max_steps=2, tasks=(),
                      extra="[resources]\nmax_retries = 0\n")
    (submitted,) = invoke_json(home, "submit", str(spec))
    for name, value in ARRAY_TASK.items():
        monkeypatch.setenv(name, value)
    assert invoke(home, "worker", "--until-empty", "--quiet").exit_code == 0
    registry = open_registry(default_url(home))
    with registry.session() as session:
        run = session.exec(select(Run).where(Run.id == submitted["run_id"])).one()
    registry.engine.dispose()
    assert (run.status, run.slurm_job, run.slurm_node) == ("failed", "105_2", "gpu-node-3")
    listing = invoke(home, "ls").output.splitlines()
    assert listing[1].split()[-1] == "job" and listing[3].endswith("105_2 on gpu-node-3")
    assert "last ran in Slurm job 105_2 on gpu-node-3" in invoke(home, "show", str(run.id)).output
    shown = invoke_json(home, "show", str(run.id))["summary"]
    assert (shown["slurm_job"], shown["slurm_node"]) == ("105_2", "gpu-node-3")

    # Taken again outside Slurm: the run no longer claims a job.
    for name in ARRAY_TASK:
        monkeypatch.delenv(name)
    invoke(home, "retry", str(run.id))
    invoke(home, "worker", "--until-empty", "--quiet")
    assert invoke_json(home, "show", str(run.id))["summary"]["slurm_job"] is None
