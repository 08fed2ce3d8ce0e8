"""One training over several nodes of a Slurm allocation: `srun` starts one torchrun per task (one task per node in
an allocation made with `--nodes N --ntasks-per-node 1`, as `tunelab launch slurm --nodes N` asks), and the torchruns
meet through a c10d rendezvous on the worker's own node, the allocation's first, each starting the run's processes
for its node's GPUs. Slurm places the tasks; nothing of tunelab's runs on the other nodes but these processes."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from tunelab.runner.errors import RunFailed
from tunelab.runner.slurm.job import SlurmJob


class AllocationTooSmall(RunFailed):
    """A run needs more nodes than the Slurm allocation of the worker that took it."""


def check_run_nodes(wanted: int, job: SlurmJob | None) -> None:
    """A run's [resources] nodes against this worker's allocation; one clear line when short."""
    have = job.max_nodes if job is not None else 1
    if wanted > have:
        where = f"Slurm job {job.label} has {have} task(s)" if job is not None else "this worker runs outside Slurm"
        raise AllocationTooSmall(f"[resources] nodes = {wanted}: {where}; start workers that span {wanted} nodes "
                                 f"(tunelab launch slurm --nodes {wanted})")


@dataclass(frozen=True)
class Rendezvous:
    """Where the torchruns of one training meet: a host every node reaches, and a port free on it."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def rendezvous_here() -> Rendezvous:
    """A rendezvous on this machine (the worker's node) at a port free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return Rendezvous(socket.gethostname(), port)


def srun_torchrun_command(module_args: list[str], *, nodes: int, nproc_per_node: int, rendezvous: Rendezvous,
                          run_id: int, python: str = sys.executable) -> list[str]:
    """`srun` of one torchrun per node, each running `python -m torch.distributed.run ... MODULE_ARGS`.

    --kill-on-bad-exit: a node whose training fails takes the others down, so the worker hears of it at once;
    --max-restarts=0: a failed training is the worker's to retry, from the last complete checkpoint.
    """
    return ["srun", f"--ntasks={nodes}", "--kill-on-bad-exit=1", "--export=ALL",
            python, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={nproc_per_node}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous.endpoint}", f"--rdzv-id=tunelab-run-{run_id}",
            "--max-restarts=0", *module_args]
