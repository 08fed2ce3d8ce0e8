"""How a change against a reference is marked on a page: the direction of the delta, and whether it is more than
chance. The templates print these; they compare nothing themselves.
"""

from __future__ import annotations

# A change whose McNemar p-value is below this is marked significant (a dagger) on every page.
SIGNIFICANCE_LEVEL = 0.05


def delta_class(delta: float | None) -> str:
    """The CSS class of a change against the base: up, down, or flat (none, or too small to show)."""
    if delta is None or abs(delta) < 1e-12:
        return "flat"
    return "up" if delta > 0 else "down"


def significant(p_value: float | None) -> bool:
    """The change is more than chance: its p-value is below SIGNIFICANCE_LEVEL."""
    return p_value is not None and p_value < SIGNIFICANCE_LEVEL
