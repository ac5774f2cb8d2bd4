"""Which side of the matrix the kernel lives on, and the cycle of sides.

One vocabulary for every estimator with a ``side`` parameter (completion,
sensing): ``"columns"`` (column AGOP ``Z^T Z / d1``, a ``d2 x d2`` kernel),
``"rows"`` (row AGOP ``Z Z^T / d2``, a ``d1 x d1`` kernel), ``"alternate"``
(columns, then rows, and so on: far fewer iterations, see SPEC section 2) and
``"auto"``, which is ``"alternate"``.
"""
from __future__ import annotations

__all__ = ["SIDES", "resolve_side", "side_cycle"]

SIDES = ("auto", "alternate", "columns", "rows")


def resolve_side(side: str) -> str:
    """``"auto"`` -> ``"alternate"``; other validated values unchanged."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return "alternate" if side == "auto" else side


def side_cycle(side: str) -> tuple[str, ...]:
    """The orientations used in turn, one per iteration."""
    side = resolve_side(side)
    return ("columns", "rows") if side == "alternate" else (side,)
