"""Parameter checks shared by every estimator (one clear error, before any work)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse as sp

__all__ = ["check_power", "check_int", "check_float", "check_choice", "check_numeric_input",
           "check_verbose", "finite_predictions", "check_entry_indices"]


def check_float(value, name: str, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as a finite float inside the given bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high}, got {value}")
    return value


def check_int(value, name: str, *, low: int | None = None) -> int:
    """Return ``value`` as an int ``>= low``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_power(power) -> float:
    """lin-RFM power: a finite float > 0 (p = 2 - 4*power)."""
    return check_float(power, "power", low=0.0, low_inclusive=False)


def check_entry_indices(rows, cols, shape) -> tuple[np.ndarray, np.ndarray]:
    """Validate coordinates ``(rows, cols)`` of a fitted ``shape`` matrix (for ``predict``).

    Returns
    -------
    rows, cols : ndarray of int, same shape
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    for name, idx, dim in (("rows", rows, shape[0]), ("cols", cols, shape[1])):
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= dim):
            raise ValueError(f"{name} indices out of range [0, {dim}) of the fitted shape "
                             f"{tuple(shape)}")
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same shape, got {rows.shape} "
                         f"and {cols.shape}")
    return rows, cols


def check_verbose(verbose) -> int:
    """Validate ``verbose``: a non-negative integer (or bool); return it as an int."""
    if not isinstance(verbose, (bool, numbers.Integral)) or verbose < 0:
        raise ValueError(f"verbose must be a non-negative integer, got {verbose!r}")
    return int(verbose)


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_numeric_input(a, name: str) -> None:
    """Raise a ValueError naming ``name`` for string or non-numeric object data."""
    if a is None or sp.issparse(a):
        return
    dtypes = getattr(a, "dtypes", None)  # DataFrame: one dtype per column
    kinds = {dt.kind for dt in dtypes} if dtypes is not None and not isinstance(
        dtypes, np.dtype) else {np.asarray(a).dtype.kind}
    if kinds & set("USV"):
        raise ValueError(f"{name} must be numeric; got strings or bytes")
    if "O" in kinds:
        try:
            values = np.asarray(a, dtype=np.float64)
        except TypeError as exc:  # an object that is no number (scikit-learn's wording kept)
            raise TypeError(f"{name} must be numeric: {exc}") from None
        except ValueError:
            raise ValueError(f"{name} must hold numbers only; found a string that is not "
                             "a number") from None
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains None, NaN or infinity")


def finite_predictions(pred, operand: str):
    """Return ``pred`` if finite, else raise: the product of the user's ``operand`` and
    the fitted model overflows float64 (never a silent inf/NaN)."""
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"the predictions overflow float64 ({operand} is too large for the "
                         f"fitted model); rescale {operand}")
    return pred
