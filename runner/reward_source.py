"""The reward an online RL run trains against, found when the run starts, recorded on it, and checked again by
`tunelab reproduce`.

`method.reward_model = "run:ID"` is a succeeded reward run of this registry (its final weights, merged onto its base
when they are an adapter); `judge_model` a causal LM (a directory, a hub id, or a run's final weights as
runner/lineage.py resolves a run:ID base); `reward_function` the user's "module:function". Each is pinned by a digest
(the reward run's final weights, the judge's weights, the function's source file), which the run records
(registry/reward_sources.py RewardRecord), every checkpoint carries (runner/training/checkpoint_identity.py), and a
reproduction compares.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.experiments.schema import ONLINE_RL_KINDS, Spec
from tunelab.registry.db import Registry
from tunelab.registry.models import Run
from tunelab.registry.recording import update_run
from tunelab.registry.reward_checks import reward_run_problem
from tunelab.registry.reward_sources import RewardRecord
from tunelab.registry.roots import Roots
from tunelab.runner.errors import RunFailed
from tunelab.runner.evaluation.cache import model_digest
from tunelab.runner.evaluation.targets import base_model_digest
from tunelab.runner.lineage import base_model_dir, final_weights, lineage_of, run_base_id
from tunelab.runner.training.methods import trains_adapter
from tunelab.runner.training.rewards import RewardSource, import_reward_function


class RewardChanged(RunFailed):
    """The reward source an RL run trained against is no longer what it was (`tunelab reproduce` refuses)."""


def _reward_run(registry: Registry, run_id: int, output_dir: Path | None,
                roots: Roots) -> tuple[RewardSource, RewardRecord]:
    """A reward run's final weights as a source (its base resolved under `output_dir`; None: only to hash them)."""
    context = f'method.reward_model = "run:{run_id}"'
    problem = reward_run_problem(registry, run_id)
    if problem is not None:
        raise RunFailed(f"{context}: {problem}")
    final, spec, workdir = final_weights(registry, run_id, roots, context=context)
    digest = model_digest([final], registry)
    base_dir = None
    if output_dir is not None and trains_adapter(spec.method):  # an adapter: its base, to merge it into
        base_dir = base_model_dir(registry, spec.model.base, workdir, roots, scratch=output_dir / "reward-base")
    name = f"run:{run_id}"
    record = RewardRecord("run", name, digest, run_id=run_id, run_name=spec.experiment.name)
    return RewardSource("run", name, digest, model_dir=str(final), base_dir=base_dir, dtype=spec.model.dtype), record


def _judge_digest(registry: Registry, judge: str, model_dir: str, workdir: Path) -> str | None:
    if Path(model_dir).is_dir():
        return model_digest([Path(model_dir)], registry)
    return base_model_digest(registry, judge, workdir=workdir)  # a hub id: its cached snapshot, where there is one


def resolve_reward_source(registry: Registry, run_id: int, spec: Spec, *, workdir: Path, output_dir: Path,
                          roots: Roots, held_by: str | None = None) -> RewardSource | None:
    """The reward source of an online RL run (None for other kinds), recorded on the run (a write fenced by
    `held_by`, registry/recording.py)."""
    method = spec.method
    if method.kind not in ONLINE_RL_KINDS:
        return None
    if method.reward_model is not None:
        source, record = _reward_run(registry, int(method.reward_model.removeprefix("run:")), output_dir, roots)
    elif method.judge_model is not None:
        judge = method.judge_model
        if run_base_id(judge) is not None:
            lineage_of(registry, judge, workdir, roots, run_id=run_id)  # refuses a loop through this very run
        model_dir = base_model_dir(registry, judge, workdir, roots, scratch=output_dir / "judge")
        digest = _judge_digest(registry, judge, model_dir, workdir)
        source = RewardSource("judge", judge, digest, model_dir=model_dir, template=method.judge_template,
                              dtype=spec.model.dtype)
        record = RewardRecord("judge", judge, digest, template=method.judge_template)
    else:
        name = method.reward_function or ""
        _, digest = import_reward_function(name, workdir)
        source = RewardSource("function", name, digest, workdir=workdir)
        record = RewardRecord("function", name, digest)
    update_run(registry, run_id, held_by=held_by, reward_source_json=json.dumps(record.to_json(), sort_keys=True))
    return source


def check_reward_unchanged(registry: Registry, run: Run, spec: Spec, workdir: Path, roots: Roots) -> None:
    """Refuse (RewardChanged) to reproduce an RL run whose reward source no longer hashes as it did: the reward
    run's final weights, the judge's weights or the reward function's source changed, or are gone."""
    if spec.method.kind not in ONLINE_RL_KINDS or not run.reward_source_json:
        return
    recorded = RewardRecord.from_json(json.loads(run.reward_source_json))
    try:
        if recorded.kind == "run":
            now = _reward_run(registry, recorded.run_id or 0, None, roots)[1].digest
        elif recorded.kind == "judge":
            scratch = roots.run_dir(run.id) / "judge"
            location = base_model_dir(registry, recorded.name, workdir, roots, scratch=scratch)
            now = _judge_digest(registry, recorded.name, location, workdir)
        else:
            now = import_reward_function(recorded.name, workdir)[1]
    except RunFailed as exc:
        raise RewardChanged(f"run {run.id} trained against {recorded.describe()}, which cannot be used now: "
                            f"{exc}") from None
    if now != recorded.digest:
        raise RewardChanged(f"run {run.id} trained against {recorded.describe()}; it hashes "
                            f"{(now or 'to nothing')[:12]} now: reproducing it would train against another reward")
