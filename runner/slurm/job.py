"""The Slurm job this process runs in, as Slurm's environment variables describe it; None outside a job."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SlurmJob:
    job_id: str  # SLURM_JOB_ID
    array_job_id: str | None  # SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID, in a job array
    array_task_id: str | None
    node: str | None  # SLURMD_NODENAME: the node this process runs on
    tasks: int  # tasks in the allocation (SLURM_NTASKS); `tunelab launch slurm --nodes N` gives one per node

    @property
    def label(self) -> str:
        """How Slurm's commands name the job: ARRAYJOB_TASK for a task of a job array, else JOBID."""
        if self.array_job_id and self.array_task_id:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    @property
    def max_nodes(self) -> int:
        """The most [resources] nodes a run trained from this job can have: one torchrun per task (nodes.py)."""
        return max(self.tasks, 1)


def _count(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def current_job(environ: Mapping[str, str] = os.environ) -> SlurmJob | None:
    """The job around this process, or None when it does not run under Slurm."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    tasks = _count(environ.get("SLURM_NTASKS")) or _count(environ.get("SLURM_JOB_NUM_NODES")) or 1
    return SlurmJob(job_id=job_id, array_job_id=environ.get("SLURM_ARRAY_JOB_ID") or None,
                    array_task_id=environ.get("SLURM_ARRAY_TASK_ID") or None,
                    node=environ.get("SLURMD_NODENAME") or None, tasks=tasks)
