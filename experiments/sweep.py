"""Sweep expansion: a `[sweep]` table of dotted keys to lists becomes one spec per point.

    [sweep]
    "method.r" = [8, 16]
    "train.learning_rate" = [1e-4, 2e-4]

expands to the Cartesian product (4 points), in the order the keys are written, each named
`<name>/method.r=8,train.learning_rate=0.0001`.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from tunelab.experiments.merge import deep_merge

# Experiments one spec's [sweep] may expand to: each is validated, stored and queued, so a typo that asks for a
# million is refused before anything is expanded.
MAX_SWEEP_POINTS = 1_000


class SweepDefinitionError(ValueError):
    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        super().__init__(message)


def format_value(value: Any) -> str:
    """Short, stable text for a sweep value in an experiment name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and not value.isprintable():
        # A name holds no control characters: a swept template's newlines show as \n.
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = value
    for part in reversed(dotted.split(".")):
        result = {part: result}
    return result


def check_definition(sweep: Any) -> dict[str, list[Any]]:
    if not isinstance(sweep, dict):
        raise SweepDefinitionError(None, "[sweep] must be a table of dotted keys to lists of values")
    for key, values in sweep.items():
        if isinstance(values, dict):
            raise SweepDefinitionError(key, f'write sweep keys dotted and quoted, e.g. "{key}.field" = [1, 2]')
        if not isinstance(values, list) or not values:
            raise SweepDefinitionError(key, "a sweep key needs a non-empty list of values")
        if key.split(".")[0] == "experiment" and key.split(".")[-1] in ("name", "extends"):
            raise SweepDefinitionError(key, "experiment.name and experiment.extends cannot be swept")
    points = math.prod(len(values) for values in sweep.values())
    if points > MAX_SWEEP_POINTS:
        raise SweepDefinitionError(None, f"[sweep] expands to {points:,} experiments; at most {MAX_SWEEP_POINTS:,} "
                                         "per spec (split it into several specs)")
    return sweep


def apply_point(raw: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each dotted key of `point` set to its value (a sweep point, a search trial's parameters)."""
    applied = raw
    for key, value in point.items():
        applied = deep_merge(applied, _nested(key, value))
    return applied


def expand(raw: dict[str, Any], sweep: dict[str, list[Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """[(point, raw spec with the point applied and a derived name), ...] in declaration order."""
    keys = list(sweep)
    name = raw.get("experiment", {}).get("name", "")
    points = []
    for values in itertools.product(*(sweep[key] for key in keys)):
        point = dict(zip(keys, values, strict=True))
        applied = apply_point(raw, point)
        suffix = ",".join(f"{key}={format_value(value)}" for key, value in point.items())
        applied = deep_merge(applied, {"experiment": {"name": f"{name}/{suffix}"}})
        points.append((point, applied))
    return points
