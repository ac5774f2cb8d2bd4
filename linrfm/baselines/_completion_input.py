"""Input handling and fitted-model plumbing shared by the completion and sensing baselines.

Completion baselines parse their input with
:func:`linrfm._observations.as_observations`, exactly like the lin-RFM
estimators, so every input form and every bad-input error is the same.
Sensing baselines take anything
:func:`linrfm.operators.as_measurement_operator` accepts, like
:class:`linrfm.problems.sensing.LinRFMSensing`.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .._memory import check_memory
from .._observations import Observations, as_observations
from .._validation import check_entry_indices
from ..exceptions import UnobservedWarning

__all__ = ["check_observations", "CompletionBaselineMixin", "check_sensing_input",
           "History"]


def check_observations(X, shape=None, *, dtype=np.float64) -> Observations:
    """Validate completion input and warn about rows/columns with no entry.

    Parameters
    ----------
    X : array, sparse matrix, (rows, cols, values), DataFrame or Observations
        Anything :func:`~linrfm._observations.as_observations` accepts.
    shape : tuple of int, optional
        ``(d1, d2)``; required when triplets do not reach the last row/column.

    Returns
    -------
    Observations
    """
    obs = as_observations(X, shape=shape, dtype=dtype)
    d1, d2 = obs.shape
    # the baselines iterate on dense d1 x d2 matrices (iterate, SVD/solve copies)
    check_memory(4.0 * d1 * d2 * np.dtype(dtype).itemsize,
                 what=f"the dense {d1} x {d2} iterates of this baseline",
                 cheaper="use LinRFMCompleter (row-decoupled, float32 or the low-rank engine)")
    empty_rows = int(np.sum(obs.row_counts() == 0))
    empty_cols = int(np.sum(obs.col_counts() == 0))
    if empty_rows or empty_cols:
        warnings.warn(
            f"{empty_rows} rows and {empty_cols} columns have no observed entry and cannot "
            "be recovered; their predictions are whatever the baseline's iteration gives "
            "(see the estimator's docstring).", UnobservedWarning, stacklevel=3)
    return obs


class History:
    """Append-only ``dict`` of lists with a clock (``time.perf_counter`` origin ``start``,
    default: construction)."""

    def __init__(self, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.data: dict[str, list] = {}

    def elapsed(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start

    def append(self, **record) -> None:
        """Record one iteration (``time`` is added)."""
        record["time"] = self.elapsed()
        n = len(next(iter(self.data.values()))) if self.data else 0
        for key, value in record.items():
            self.data.setdefault(key, [np.nan] * n).append(value)
        for column in self.data.values():
            if len(column) == n:
                column.append(np.nan)


class CompletionBaselineMixin:
    """``fit_transform`` and ``predict`` for estimators that set ``completed_``."""

    def fit_transform(self, X, y=None, shape=None):
        """Fit and return the completed matrix.

        Parameters
        ----------
        X : array, sparse matrix, (rows, cols, values), DataFrame or Observations
            Observed entries (NaN marks a missing entry in dense input).
        y : None
            Ignored.
        shape : tuple of int, optional
            ``(d1, d2)`` for triplet or DataFrame input.

        Returns
        -------
        ndarray, shape (d1, d2)
        """
        return self.fit(X, shape=shape).completed_

    def predict(self, rows, cols):
        """Predicted entries ``completed_[rows, cols]``.

        Parameters
        ----------
        rows, cols : array_like of int, same shape
            Entry coordinates.

        Returns
        -------
        ndarray, same shape as ``rows``
        """
        if not hasattr(self, "completed_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        rows, cols = check_entry_indices(rows, cols, self.completed_.shape)
        return self.completed_[rows, cols]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        tags.target_tags.required = False
        return tags


def check_sensing_input(A, y, shape=None, random_state=None):
    """Validate a measurement operator and its measurements.

    Parameters
    ----------
    A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse (m, d1*d2), or LinearOperator
        Anything :func:`linrfm.operators.as_measurement_operator` accepts
        (row-major ``vec(A_k)`` when flattened; ``shape`` is then required).
    y : array_like, shape (m,)
        Measurements ``y_k = <A_k, Z>``.
    shape : tuple of int, optional
        ``(d1, d2)``.
    random_state : int, RandomState or None
        Vectors of the adjoint check run on a ``LinearOperator``.

    Returns
    -------
    op : linrfm.operators.MeasurementOperator
    y : ndarray of float64, shape (m,)
    """
    from ..operators import as_measurement_operator, check_measurement_norms

    op = as_measurement_operator(A, shape, random_state=random_state)
    check_measurement_norms(op)
    if y is None:
        raise ValueError("y (the measurements) is required")
    y = np.asarray(y)
    if y.dtype.kind not in "iuf":
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, shape (m,), got shape {y.shape}")
    if y.shape[0] != op.n_measurements:
        raise ValueError(f"A has {op.n_measurements} measurements but y has {y.shape[0]}")
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values")
    return op, y
