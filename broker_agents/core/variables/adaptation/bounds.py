"""What to do when an update would move a variable outside its range.

Works in unit coordinates (0 = min, 1 = max): ``clamp`` stops at the edge, ``wrap`` comes
back in from the other side (for cyclic quantities such as an hour of day), ``reject``
refuses the move for that variable (the value stays and its velocity is zeroed by the caller).
"""

from __future__ import annotations

from typing import Literal

BoundsMode = Literal["clamp", "wrap", "reject"]


def apply_bounds(u: float, mode: BoundsMode) -> tuple[float | None, str | None]:
    """``(new_u, event)``: new_u is None when rejected; event is None when within bounds."""
    if 0.0 <= u <= 1.0:
        return u, None
    if mode == "clamp":
        return min(max(u, 0.0), 1.0), "clamped"
    if mode == "wrap":
        return u % 1.0, "wrapped"
    return None, "rejected"
