"""Scale-free smoothing schedules for ``reg``, never using hidden entries.

Every problem type passes a *scale* computed from the data it was given (for
completion, ``trace(G)/d`` of the current AGOP, which is the mean square of the
iterate), so the same ``reg`` works whatever the units of the data.

* ``reg="auto"`` (noiseless recovery): start at ``reg_0 = scale``; after each
  iteration ``reg <- min(reg, c * rel_change * scale)``, where ``rel_change`` is
  the relative change of the iterate. As the iterate converges the smoothing
  goes to 0, so the fixed point interpolates. With a ``rank`` hint, the IRLS
  rule ``reg <- min(reg, lambda_{r+1}(G))`` is applied as well.
  With ``relative=True`` (matrix completion) the minimum is taken on
  ``reg / scale``: the previous smoothing is carried along with the scale,
  ``reg <- min(reg * scale / scale_prev, c * rel_change * scale)``. A
  completion iterate starts with zeros off the observed entries, so its
  scale grows about ``1/p`` times (``p`` the observed fraction) while it fills
  in; an absolute minimum keeps the smoothing at the first iterate's scale,
  which on very sparse data is ~``p`` times too small once the iterate is
  filled in, and the iteration stalls far from the solution.
* ``reg=<float>`` (noisy data, a regularisation strength): fixed at
  ``reg * scale0`` where ``scale0`` is the scale of the *first* iterate, so
  the objective is a fixed function and the iteration a pure
  majorize-minimize scheme.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["SmoothingSchedule", "check_reg", "final_smoothing"]


def check_reg(reg, name: str = "reg"):
    """Validate a ``reg`` parameter: ``"auto"`` or a finite float > 0."""
    if isinstance(reg, str):
        if reg != "auto":
            raise ValueError(f"{name} must be 'auto' or a positive float, got {reg!r}")
        return reg
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real):
        raise TypeError(f"{name} must be 'auto' or a positive float, got {type(reg).__name__}")
    if not math.isfinite(reg) or reg <= 0:
        raise ValueError(f"{name} must be 'auto' or a positive float, got {reg!r}")
    return float(reg)


class SmoothingSchedule:
    """State of the smoothing parameter along the iterations.

    Parameters
    ----------
    reg : "auto" or float
        See the module docstring.
    decrease : float, default=0.1
        The constant ``c`` of the adaptive rule.
    reg_min : float, default=1e-14
        Floor, relative to the scale, that keeps the linear systems
        numerically positive definite.
    relative : bool, default=False
        Take the adaptive rule's minimum relative to the current scale (see the
        module docstring). Measured on the low-rank completion engine: 60 000 x
        6 000, rank 5, 3x, solved in 72 iterations (error 6.4e-3, the rows below
        rank) where the absolute rule stalled at rank 28-79 for 160 iterations;
        the SPEC section 7 problems take the same or fewer iterations (1 000^2,
        rank 5, 1.5x: 300 instead of 420 on the dense engine). A ``value`` set
        from outside (a restored snapshot) is read in the unit of the last
        update's scale; :meth:`state` / :meth:`set_state` carry both exactly.
    """

    def __init__(self, reg="auto", decrease: float = 0.1, reg_min: float = 1e-14,
                 relative: bool = False):
        self.reg = check_reg(reg)
        self.decrease = float(decrease)
        self.reg_min = float(reg_min)
        self.relative = bool(relative)
        self.value = math.nan
        self._scale0 = math.nan
        # scale at the last start/update: the unit the current value was set in
        self._last_scale = math.nan

    def state(self) -> dict:
        """The mutable state (current value, first and last scale), for checkpoints."""
        return {"value": self.value, "scale0": self._scale0, "last_scale": self._last_scale}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""
        self.value, self._scale0 = float(state["value"]), float(state["scale0"])
        self._last_scale = float(state.get("last_scale", math.nan))

    @property
    def scale0(self) -> float:
        """Scale of the first iterate, the unit of ``reg`` (NaN before :meth:`start`)."""
        return self._scale0

    @property
    def relative_value(self) -> float:
        """The current smoothing in the units of the ``reg`` parameter (``value / scale0``)."""
        return self.value / self._scale0

    @property
    def adaptive(self) -> bool:
        """True for the decreasing ``"auto"`` rule."""
        return self.reg == "auto"

    def start(self, scale: float) -> float:
        """Set the first value from the data scale; return it."""
        scale = float(scale) if scale > 0 and math.isfinite(scale) else 1.0
        self._scale0 = self._last_scale = scale
        self.value = scale if self.adaptive else self.reg * scale
        return self.value

    def update(self, rel_change: float, scale: float, tail_eig: float | None = None) -> float:
        """Apply the rule after an iteration; return the new value."""
        if not self.adaptive:
            return self.value
        scale = float(scale)
        cand = self.decrease * float(rel_change) * scale
        if tail_eig is not None:
            cand = min(cand, max(float(tail_eig), 0.0))
        carried = self.value
        if self.relative and math.isfinite(scale) and scale > 0:
            if self._last_scale > 0:  # NaN (a state saved without it): absolute once
                carried = self.value * (scale / self._last_scale)
            self._last_scale = scale
        floor = self.reg_min * self._scale0
        self.value = max(min(carried, cand), floor)
        return self.value


def _value_or_start(schedule: SmoothingSchedule, scale: float) -> float:
    """The schedule's value; its starting value at ``scale`` if it never started
    (the kept iterate is the initial one, e.g. after validation stopping)."""
    if math.isnan(schedule.value):
        return SmoothingSchedule(schedule.reg).start(scale)
    return schedule.value


def final_smoothing(schedules: dict, orient: str, col_scale: float, row_scale: float,
                    floor: float) -> tuple[float, float, float]:
    """Smoothings of a finished completion fit: ``(column_reg, reg, kernel_reg)``.

    ``column_reg`` goes with the column kernel for fold-in (converted from the
    row side's schedule when only the row side ran, floored at ``floor`` times
    the column scale as in the fit's steps); ``reg`` is the last smoothing in
    the units of the ``reg`` parameter and ``kernel_reg`` the same in absolute
    units. ``row_scale`` may be NaN when the column side ran.
    """
    if "columns" in schedules:
        column = _value_or_start(schedules["columns"], col_scale)
    else:
        column = _value_or_start(schedules["rows"], row_scale)
        column = column / row_scale * col_scale if row_scale > 0 else column
    column = max(column, floor * col_scale)
    last = schedules[orient]
    if math.isnan(last.value):
        reg = SmoothingSchedule(last.reg).start(1.0)
    else:
        reg = last.relative_value
    kernel_reg = _value_or_start(last, col_scale if orient == "columns" else row_scale)
    return float(column), float(reg), float(kernel_reg)
