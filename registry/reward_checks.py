"""The check at submit that a spec's `method.reward_model = "run:ID"` names a reward run of this registry."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tunelab.experiments.errors import SpecError
from tunelab.experiments.loader import LoadedSpec
from tunelab.experiments.schema import RUN_BASE
from tunelab.experiments.toml_lines import field_lines, line_of
from tunelab.registry.db import Registry
from tunelab.registry.errors import NotFound
from tunelab.registry.queries import experiment_for_run


def check_reward_runs(registry: Registry, loaded: Iterable[LoadedSpec]) -> None:
    """Refuse (SpecError at the file and line) a spec whose `method.reward_model` names no run of this registry,
    or a run that is not a reward model. The run need not have finished: the RL run checks that when it starts."""
    for item in loaded:
        reward_model = item.spec.method.reward_model
        if reward_model is None:
            continue
        match = RUN_BASE.fullmatch(reward_model)
        if match is None:  # the spec's own check refuses this already
            continue
        run_id = int(match.group(1))
        problem = reward_run_problem(registry, run_id)
        if problem is not None:
            line = line_of(field_lines(item.text), ("method", "reward_model"))
            raise SpecError(item.path, problem, line=line, field="method.reward_model")


def reward_run_problem(registry: Registry, run_id: int) -> str | None:
    """Why run `run_id` cannot be a reward model (it does not exist, or is of another kind); None when it can."""
    try:
        _, experiment = experiment_for_run(registry, run_id)
    except NotFound:
        return f"there is no run {run_id} in this registry"
    kind = json.loads(experiment.resolved_json).get("method", {}).get("kind", "lora")
    if kind != "reward":
        return f'run {run_id} ({experiment.name}) is a {kind} run, not a reward model (kind = "reward")'
    return None
