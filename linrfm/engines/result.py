"""What a completion problem hands back when the loop is done (either engine)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CompletionResult", "fallback_values", "held_out_error"]


@dataclass
class CompletionResult:
    """The final state of a completion fit, in the units the fit iterated in.

    Exactly one of ``iterate`` (dense engine) and ``factors`` (low-rank
    engine) is set, and likewise one of ``kernel`` and ``kernel_factors``.

    Attributes
    ----------
    iterate : ndarray, shape (d1, d2), or None
        The dense iterate (user orientation).
    factors : (ndarray (d1, m), ndarray (d2, m)) or None
        ``A, B`` with the iterate equal to ``A @ B.T`` off the observed entries.
    kernel : ndarray, shape (d2, d2), or None
        Column kernel of the final iterate (fold-in, dense engine).
    kernel_factors : (ndarray (k,), ndarray (d2, k)) or None
        Its ``k`` leading eigenpairs ``(D, V)`` (fold-in, low-rank engine).
    column_reg : float
        Absolute smoothing to use with the column kernel (floored as in the fit).
    reg : float
        Smoothing of the last iteration in the units of the ``reg`` parameter.
    kernel_reg : float
        The same smoothing in absolute units.
    side : str
        Orientation of the last step (``"columns"`` or ``"rows"``).
    """

    column_reg: float
    reg: float
    kernel_reg: float
    side: str
    iterate: np.ndarray | None = None
    factors: tuple | None = None
    kernel: np.ndarray | None = None
    kernel_factors: tuple | None = None


def fallback_values(row_means, col_means, global_mean):
    """The documented fill of rows and columns without any observed entry.

    An empty row gets the column means (the global mean where a column is empty
    too); an empty column gets the row means (likewise). Shared by both engines.

    Returns
    -------
    for_empty_rows : ndarray, shape (d2,)
    for_empty_cols : ndarray, shape (d1,)
    """
    return (np.where(np.isnan(col_means), global_mean, col_means),
            np.where(np.isnan(row_means), global_mean, row_means))


def held_out_error(problem) -> float | None:
    """Relative error of a completion problem's iterate on its ``validation`` entries.

    ``problem.predict_entries(rows, cols)`` gives the iterate there (float64);
    None when the problem has no validation entries. Every completion engine's
    ``validation_error``.
    """
    v = problem.validation
    if v is None:
        return None
    pred = problem.predict_entries(v.rows, v.cols)
    ref = v.values.astype(np.float64)
    return float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), np.finfo(float).tiny))
