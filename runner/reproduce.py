"""`tunelab reproduce`: re-run a run from its registry record alone, and say whether it reproduced.

Before running: what differs from the original's environment (packages, device, git commit,
dirty tree), and a refusal when the training data no longer fingerprints the same, or (online RL) when the reward
run, judge or reward function it trained against no longer hashes the same. The reproduction
is a new run of the same experiment, created already claimed by this process and executed here: a
worker polling the same registry never sees it queued. After (`--verify`): a verdict on the loss
curve, the final weights and every eval score.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open
from tunelab.experiments.schema import Spec, stored_spec
from tunelab.registry.db import Registry
from tunelab.registry.errors import RegistryError
from tunelab.registry.models import RunStatus
from tunelab.registry.queries import experiment_for_run, run_detail
from tunelab.registry.roots import Roots
from tunelab.registry.run_state import add_claimed_run
from tunelab.runner.environment import snapshot
from tunelab.runner.errors import RunFailed
from tunelab.runner.execute import RunResult, execute_run
from tunelab.runner.lineage import final_weights, run_base_id, submit_dir
from tunelab.runner.reward_source import check_reward_unchanged
from tunelab.runner.training.recipes import fingerprint_spec_data
from tunelab.runner.worker import worker_name

LOSS_TOLERANCE = 1e-6


class DataChanged(RunFailed):
    """The training data no longer fingerprints as it did for the original run."""


@dataclass
class Difference:
    what: str
    original: str
    now: str


@dataclass
class Plan:
    run_id: int
    experiment_id: int
    spec: Spec
    workdir: Path
    differences: list[Difference]
    data_fingerprint: str
    original_data_fingerprint: str | None


@dataclass
class Check:
    what: str
    original: str
    reproduced: str
    difference: str
    ok: bool


@dataclass
class Verdict:
    original_run_id: int
    new_run_id: int
    checks: list[Check] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def bit_identical(self) -> bool:
        return any(c.what == "final weights" and c.ok for c in self.checks) and self.reproduced


def _flatten(data, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        flat: dict[str, str] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: json.dumps(data)}


def environment_differences(original: dict | None, now: dict) -> list[Difference]:
    if original is None:
        return [Difference("environment", "(not recorded)", "(recorded now)")]
    before, after = _flatten(original), _flatten(now)
    return [Difference(key, before.get(key, "-"), after.get(key, "-"))
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def plan(registry: Registry, run_id: int, roots: Roots) -> Plan:
    """Everything that can be checked before any training: environment and data."""
    run, experiment = experiment_for_run(registry, run_id)
    if run.status != RunStatus.succeeded.value:
        raise RegistryError(f"run {run_id} is {run.status}; only a succeeded run can be reproduced")
    spec = stored_spec(experiment.resolved_json)
    workdir = submit_dir(roots, experiment.workdir)
    # An RL run re-trains against the same reward source, and only if it still hashes as it did.
    check_reward_unchanged(registry, run, spec, workdir, roots)
    original_env = json.loads(run.environment_json) if run.environment_json else None
    differences = environment_differences(original_env, snapshot(workdir).to_dict())
    return Plan(run_id, experiment.id, spec, workdir, differences,
                fingerprint_spec_data(_with_loadable_base(registry, spec, roots), workdir), run.data_fingerprint)


def _with_loadable_base(registry: Registry, spec: Spec, roots: Roots) -> Spec:
    """For a sequential run (model.base = "run:ID"), the spec with its base pointing at that run's final
    weights, whose directory holds the tokenizer the data was tokenised with."""
    parent = run_base_id(spec.model.base)
    if parent is None:
        return spec
    final, _, _ = final_weights(registry, parent, roots)
    return spec.model_copy(update={"model": spec.model.model_copy(update={"base": str(final)})})


def start(registry: Registry, the_plan: Plan, *, worker: str, allow_data_change: bool = False) -> int:
    """Create the reproduction as a new run of the same experiment, linked to the original and already claimed
    by `worker` (one transaction: no other worker can take it); its id."""
    if the_plan.original_data_fingerprint is None and not allow_data_change:
        raise DataChanged(f"run {the_plan.run_id} has no data fingerprint recorded, so unchanged data cannot be "
                          "proven; pass --allow-data-change to reproduce anyway")
    if (the_plan.original_data_fingerprint is not None
            and the_plan.original_data_fingerprint != the_plan.data_fingerprint and not allow_data_change):
        raise DataChanged(
            f"the training data of run {the_plan.run_id} changed since it ran (fingerprint "
            f"{the_plan.original_data_fingerprint[:12]} then, {the_plan.data_fingerprint[:12]} now); "
            "pass --allow-data-change to reproduce with the new data")
    return add_claimed_run(registry, experiment_id=the_plan.experiment_id, worker=worker,
                           gpus=the_plan.spec.resources.gpus, nodes=the_plan.spec.resources.nodes,
                           reproduces_run_id=the_plan.run_id)


def weights_hash(directory: Path) -> str | None:
    """sha256 over every tensor (name, dtype, shape, bytes) in the safetensors files of `directory`."""
    import torch

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in sorted(handle.keys()):
                tensor = handle.get_tensor(name).contiguous()
                digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_run(registry: Registry, original_id: int, new_id: int, roots: Roots) -> Verdict:
    """Compare a reproduction with its original: loss curve, final weights, eval scores."""
    a, b = run_detail(registry, original_id), run_detail(registry, new_id)
    verdict = Verdict(original_id, new_id)
    if b.summary.status != RunStatus.succeeded.value:
        verdict.checks.append(Check("run", "succeeded", b.summary.status, "-", False))
        return verdict
    loss_a = {m["step"]: m["loss"] for m in a.metrics if m["loss"] is not None}
    loss_b = {m["step"]: m["loss"] for m in b.metrics if m["loss"] is not None}
    same_steps = loss_a.keys() == loss_b.keys()
    worst = max((abs(loss_a[s] - loss_b[s]) for s in loss_a if s in loss_b), default=math.inf)
    verdict.checks.append(Check("loss curve", f"{len(loss_a)} steps", f"{len(loss_b)} steps",
                                f"max |Δ| {worst:.3g}", same_steps and worst <= LOSS_TOLERANCE))
    hash_a = weights_hash(roots.artifact(a.output_dir) / "final") if a.output_dir else None
    hash_b = weights_hash(roots.artifact(b.output_dir) / "final") if b.output_dir else None
    verdict.checks.append(Check("final weights", (hash_a or "missing")[:12], (hash_b or "missing")[:12],
                                "equal" if hash_a == hash_b else "differ", hash_a is not None and hash_a == hash_b))
    # The run's own evaluation only: scores `tunelab eval` recorded later (model_kind "eval") are no part of what
    # training the spec produces, and the reproduction has none.
    scores_a = {(r.model_kind, r.task): r for r in a.scores if r.task_group is None and r.model_kind != "eval"}
    scores_b = {(r.model_kind, r.task): r for r in b.scores if r.task_group is None and r.model_kind != "eval"}
    for key in sorted(scores_a):
        ra, rb = scores_a[key], scores_b.get(key)
        label = f"{key[1]} ({key[0]})"
        if rb is None:
            verdict.checks.append(Check(label, f"{ra.value:.4f}", "missing", "-", False))
            continue
        delta = rb.value - ra.value
        tolerance = ra.stderr if ra.stderr is not None and math.isfinite(ra.stderr) else 0.0
        verdict.checks.append(Check(label, f"{ra.value:.4f}", f"{rb.value:.4f}",
                                    f"{delta:+.4f} (stderr {tolerance:.4f})", abs(delta) <= tolerance))
    return verdict


@dataclass
class Reproduction:
    """What `tunelab reproduce` did: the plan, the new run and how it ended, and the verdict if one was asked."""

    plan: Plan
    new_run_id: int
    result: RunResult
    verdict: Verdict | None = None

    @property
    def ok(self) -> bool:
        """The re-run succeeded and, when verified, reproduced the original."""
        return self.result.status == RunStatus.succeeded.value and (self.verdict is None or self.verdict.reproduced)

    def to_json(self) -> dict[str, Any]:
        verdict = None if self.verdict is None else {"reproduced": self.verdict.reproduced,
                                                     "bit_identical": self.verdict.bit_identical,
                                                     "checks": [asdict(c) for c in self.verdict.checks]}
        return {"original_run_id": self.plan.run_id, "new_run_id": self.new_run_id, "status": self.result.status,
                "differences": [asdict(d) for d in self.plan.differences], "verdict": verdict}


def reproduce_run(registry: Registry, run_id: int, *, roots: Roots, allow_data_change: bool = False,
                  verify: bool = False, show_progress: bool = True,
                  on_plan: Callable[[Plan], None] | None = None) -> Reproduction:
    """Re-run `run_id` here, from its registry record alone: plan (environment and data checks, which `on_plan`
    hears before anything runs), create the new run claimed by this process, execute it, and with `verify`
    compare it with the original."""
    the_plan = plan(registry, run_id, roots)
    if on_plan is not None:
        on_plan(the_plan)
    new_id = start(registry, the_plan, worker=worker_name(), allow_data_change=allow_data_change)
    result = execute_run(registry, new_id, roots=roots, show_progress=show_progress)
    return Reproduction(the_plan, new_id, result, verify_run(registry, run_id, new_id, roots) if verify else None)
