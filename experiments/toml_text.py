"""A resolved spec written back as TOML, for people: what `tunelab show` prints and a run page shows first.

The resolved spec is JSON data (experiments/canonical.py); TOML has no null, so a key left unset (None) is left
out, as a spec file would leave it out. Pure data in, text out: no pydantic, so the query path stays light.
"""

from __future__ import annotations

from typing import Any

import tomli_w


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value if item is not None]
    return value


def spec_toml(resolved: dict[str, Any]) -> str:
    """The resolved spec as a TOML document, every table and key of it: [experiment] (its name) first, the
    other tables in the order they are stored."""
    ordered = {key: resolved[key] for key in ("experiment",) if key in resolved} | resolved
    return tomli_w.dumps(_without_nulls(ordered))
