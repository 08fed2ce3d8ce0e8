"""How a change against a reference is marked on a page: the direction of the delta, and whether it is more than
chance. The templates print these; they compare nothing themselves.
"""

from __future__ import annotations

# A change whose McNemar p-value is below this is marked significant (a dagger) on every page.
SIGNIFICANCE_LEVEL = 0.05


def _shown(delta: float, digits: int, scale: float) -> float:
    # round() of a small negative change gives -0.0, which Python prints as "-0.0000"; adding 0.0 makes it 0.0.
    return round(delta * scale, digits) + 0.0


def delta_text(delta: float | None, *, digits: int = 4, scale: float = 1.0) -> str:
    """A change as shown, with its sign: "+0.0500", "-0.2000"; a change that rounds to zero is "+0.0000" (never
    "-0.0000"). `scale` 100 shows a share as percentage points. "" for none."""
    return "" if delta is None else f"{_shown(delta, digits, scale):+.{digits}f}"


def delta_class(delta: float | None, *, digits: int = 4, scale: float = 1.0) -> str:
    """The CSS class of a change against the base: up, down, or flat (none, or zero as shown at `digits`)."""
    if delta is None:
        return "flat"
    shown = _shown(delta, digits, scale)
    if shown == 0:
        return "flat"
    return "up" if shown > 0 else "down"


def significant(p_value: float | None) -> bool:
    """The change is more than chance: its p-value is below SIGNIFICANCE_LEVEL."""
    return p_value is not None and p_value < SIGNIFICANCE_LEVEL
