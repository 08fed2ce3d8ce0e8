"""Training on several GPUs: one process per GPU, launched by torchrun, the engine PyTorch ships.

The worker stays the run's single owner (heartbeat, cancel, evaluation). It writes the run's
training job to a file and starts `torchrun --standalone --nproc_per_node N -m
tunelab.runner.training.distributed_train JOB`; every process runs the same recipe
(runner/training/recipes.py) and the Trainer's DistributedDataParallel does the rest. Only
the first process writes to the registry and publishes checkpoints and the final weights.

Stopping: the worker writes its wish ("pause": checkpoint and stop, or "stop") into a control
file; the processes read it at every step and agree on it through an all-reduce, so they all
stop at the same step and the checkpoint is whole. When the processes are done, the worker
picks up the final weights the way it does after a crash in evaluation (finished_outcome).

Several nodes (`[resources] nodes = M`, in a Slurm allocation): `srun` starts one torchrun per node instead of the
standalone one (runner/slurm/nodes.py), which meet on the worker's node; the job and control files are in the run's
output directory, on storage every node sees. Rank 0, wherever it lands, is the one that writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.experiments.schema import Spec
from tunelab.registry.db import Registry
from tunelab.registry.roots import Roots
from tunelab.runner.errors import RunCancelled, RunFailed
from tunelab.runner.slurm.nodes import rendezvous_here, srun_torchrun_command
from tunelab.runner.training.checkpoints import complete_checkpoints, discard_incomplete
from tunelab.runner.training.final_weights import is_finished
from tunelab.runner.training.progress import RunProgress
from tunelab.runner.training.recipes import train
from tunelab.runner.training.strategies import launch_command
from tunelab.runner.training.trainer import TrainHooks, TrainOutcome

JOB_FILE = "distributed-job.json"
CONTROL_FILE = "distributed-control"
ERROR_FILE = "distributed-error.json"
# Where the child processes find the registry: the environment, not the job file, so a database
# password never lands on disk.
REGISTRY_ENV = "TUNELAB_DISTRIBUTED_REGISTRY"


class DistributedTrainingFailed(Exception):
    """A training process failed with an error another attempt might not repeat (retried)."""


@dataclass(frozen=True)
class DistributedJob:
    run_id: int
    spec: dict  # the resolved spec as training sees it (a run:ID base already resolved)
    workdir: str
    output_dir: str
    device: str  # cuda, or cpu (gloo; how the launch path is tested without GPUs)
    nproc: int  # processes per node
    worker_pid: int
    show_progress: bool
    artifacts: str = ""  # the worker's artifact root: rank 0 records checkpoints relative to it
    nodes: int = 1
    worker_host: str = ""  # where worker_pid lives: processes on other nodes cannot watch it
    held_by: str | None = None  # the worker holding the run: the first process's registry writes are fenced by it

    @classmethod
    def read(cls, path: Path) -> DistributedJob:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)


def torchrun_command(job_file: Path, nproc: int, *, nodes: int = 1, run_id: int = 0) -> list[str]:
    """torchrun on this machine; for several nodes, one torchrun per node under srun."""
    training = ["-m", "tunelab.runner.training.distributed_train", str(job_file)]
    if nodes > 1:
        return srun_torchrun_command(training, nodes=nodes, nproc_per_node=nproc, rendezvous=rendezvous_here(),
                                     run_id=run_id)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *training]


def _write_control(path: Path, wish: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(wish, encoding="utf-8")
    os.replace(tmp, path)


def _failure(output_dir: Path, returncode: int) -> Exception:
    try:
        error = json.loads((output_dir / ERROR_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DistributedTrainingFailed(f"torchrun exited with status {returncode}; see its output above")
    kind = RunFailed if not error["retryable"] else DistributedTrainingFailed
    return kind(f"{error['type']}: {error['message']}")


def run_torchrun(job: DistributedJob, *, should_stop: Callable[[], bool], should_pause: Callable[[], bool],
                 env: dict[str, str] | None = None, poll_seconds: float = 0.5) -> str:
    """Launch the job's processes and wait for them, relaying stop/pause wishes; how training ended:
    "finished" or "paused". Raises RunCancelled when stopped, RunFailed or DistributedTrainingFailed
    when a process failed."""
    output_dir = Path(job.output_dir)
    job_file, control = output_dir / JOB_FILE, output_dir / CONTROL_FILE
    output_dir.mkdir(parents=True, exist_ok=True)
    for leftover in (control, output_dir / ERROR_FILE):
        leftover.unlink(missing_ok=True)
    job.write(job_file)
    # `python -m` puts the working directory first on sys.path, and the processes start in the worker's:
    # a user's own tunelab.py (or torch.py) there would be what runs. PYTHONSAFEPATH leaves it off, in the
    # launcher and in the processes it starts alike.
    env = {**(os.environ if env is None else env), "PYTHONSAFEPATH": "1"}
    # A session of their own: a Ctrl-C at the terminal reaches the worker, which asks for a pause;
    # it must not kill the training processes halfway through a checkpoint.
    command = launch_command(job_file, spec=job.spec, nproc=job.nproc, device=job.device, output_dir=output_dir,
                             torchrun=torchrun_command(job_file, job.nproc, nodes=job.nodes, run_id=job.run_id))
    process = subprocess.Popen(command, env=env, start_new_session=True)
    wish = ""
    try:
        while process.poll() is None:
            wanted = "stop" if should_stop() else "pause" if should_pause() else ""
            if wanted and wanted != wish:
                _write_control(control, wanted)
                wish = wanted
            time.sleep(poll_seconds)
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)  # the worker itself is going down: take the processes along
        process.wait()
        raise
    if process.returncode != 0:
        if wish == "pause" and not (output_dir / ERROR_FILE).exists():
            # The signal that asked the worker to stop reached the processes too (Slurm signals a whole job):
            # they died before the pause's checkpoint, and the last complete one is where the run resumes.
            return "paused"
        raise _failure(output_dir, process.returncode)
    if wish == "stop":
        raise RunCancelled("cancelled while training")
    return "finished" if is_finished(output_dir / "final") else "paused"


class SharedControl:
    """The processes' common view of the control file: read by each, agreed on by an all-reduce.

    `should_stop` is what the Trainer callback polls first at every step, so it is where the
    processes meet; `should_pause` answers from the same agreement.
    """

    def __init__(self, control: Path, worker_pid: int, worker_host: str = "") -> None:
        self.control = control
        self.worker_pid = worker_pid
        # Only a process on the worker's own machine can see its pid; the all-reduce tells the others.
        self.watches_worker = not worker_host or worker_host == socket.gethostname()
        self.stop = False
        self.pause = False

    def _local_wish(self) -> tuple[bool, bool]:
        try:
            wish = self.control.read_text(encoding="utf-8")
        except OSError:
            wish = ""
        if self.watches_worker and not _alive(self.worker_pid):
            # The worker died (its pid gone, or reused by another user's process): keep what was done,
            # stop with a checkpoint.
            wish = wish or "pause"
        return wish == "stop", wish == "pause"

    def should_stop(self) -> bool:
        import torch
        import torch.distributed as dist

        stop, pause = self._local_wish()
        flags = torch.tensor([float(stop), float(pause)])
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend() == "nccl":
                flags = flags.cuda()
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self.stop, self.pause = bool(flags[0].item()), bool(flags[1].item())
        return self.stop

    def should_pause(self) -> bool:
        return self.pause


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def train_distributed(registry: Registry, run_id: int, spec: Spec, *, workdir: Path, output_dir: Path, roots: Roots,
                      hooks: TrainHooks, nproc: int, device: str, progress: RunProgress,
                      nodes: int = 1, held_by: str | None = None) -> TrainOutcome:
    """runner/training/recipes.py train's counterpart for `[resources] gpus = N > 1` (`nproc` processes) or
    `nodes = M > 1` (`nproc` processes on each of M nodes): the same TrainOutcome."""
    if not is_finished(output_dir / "final"):
        # Cleared here, once: every process clearing it at start-up would race.
        discard_incomplete(output_dir / "checkpoints")
        job = DistributedJob(run_id=run_id, spec=spec.model_dump(mode="json"), workdir=str(workdir),
                             output_dir=str(output_dir), device=device, nproc=nproc, worker_pid=os.getpid(),
                             show_progress=progress.enabled, artifacts=str(roots.artifacts), nodes=nodes,
                             worker_host=socket.gethostname(), held_by=held_by)
        launcher = "torchrun" if spec.resources.strategy == "ddp" else f"{spec.resources.strategy}, accelerate"
        how = f"on {nodes} nodes, {device}, srun + torchrun" if nodes > 1 else f"{device}, {launcher}"
        progress.note(f"training in {nproc * nodes} processes ({how})")
        with hooks.polling():
            ended = run_torchrun(job, should_stop=hooks.should_stop, should_pause=hooks.should_pause,
                                 env={**os.environ, REGISTRY_ENV: registry.url})
        if ended == "paused":
            complete = complete_checkpoints(output_dir / "checkpoints")
            return TrainOutcome(model=None, tokenizer=None, final_dir=output_dir / "final",
                                global_step=complete[-1].step if complete else 0, final_loss=None,
                                train_seconds=0.0, num_examples=0, interrupted=True)
    # The weights are final: load them here, as after a crash in evaluation, for the evaluation to come.
    return train(spec, workdir=workdir, output_dir=output_dir, hooks=dataclasses.replace(hooks, on_progress=None),
                 device=device)
