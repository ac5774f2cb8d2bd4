r"""Basis pursuit: exact l1 minimisation, the classical sparse-recovery baseline."""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..persistence import PersistenceMixin
from .._observations import value_scale
from .._validation import check_float, check_numeric_input, finite_predictions

__all__ = ["BasisPursuit"]


class BasisPursuit(PersistenceMixin, RegressorMixin, BaseEstimator):
    r"""Minimum-l1-norm interpolation, solved exactly as a linear program.

    .. math:: \min_\beta \|\beta\|_1 \quad \text{subject to} \quad X\beta = y

    with ``beta = u - v``, ``u, v >= 0``, solved by HiGHS through
    :func:`scipy.optimize.linprog`. This is what lin-RFM with ``power = 1/4``
    (IRLS-1) approaches as its smoothing goes to 0. There is no intercept.

    Parameters
    ----------
    tol : float, default=1e-9
        Primal and dual feasibility tolerance passed to HiGHS, in [1e-10, 1e-2].

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,)
    intercept_ : float
        Always 0.0.
    n_features_in_ : int
    n_iter_ : int
        Simplex / interior-point iterations reported by HiGHS.

    Raises
    ------
    ValueError
        At fit time when ``X beta = y`` has no solution (for instance noisy
        data with ``n_samples > n_features``).
    """

    def __init__(self, tol=1e-9):
        self.tol = tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y):
        """Solve the linear program.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)
        y : array-like, shape (n_samples,)

        Returns
        -------
        self : BasisPursuit
        """
        # HiGHS accepts feasibility tolerances from 1e-10; above 1e-2 it is no longer
        # an equality-constrained solve
        tol = check_float(self.tol, "tol", low=1e-10, high=1e-2)
        check_numeric_input(X, "X")
        check_numeric_input(y, "y")
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc", "coo"),
                             dtype=np.float64, y_numeric=True)
        # exact power-of-two rescaling: HiGHS' tolerances are absolute
        sx, sy = value_scale(X.data if sp.issparse(X) else X), value_scale(y)
        X, y = X * (1.0 / sx), y / sy
        n, d = X.shape
        A_eq = sp.hstack([X, -X], format="csc") if sp.issparse(X) else np.hstack([X, -X])
        res = linprog(np.ones(2 * d), A_eq=A_eq, b_eq=y, bounds=(0, None), method="highs",
                      options={"primal_feasibility_tolerance": tol,
                               "dual_feasibility_tolerance": tol})
        if res.status == 2:
            raise ValueError("X beta = y has no solution (infeasible linear program); basis "
                             "pursuit needs consistent, noiseless data")
        if res.status != 0:
            raise RuntimeError(f"linprog (HiGHS) failed: {res.message}")
        with np.errstate(over="ignore"):
            self.coef_ = (res.x[:d] - res.x[d:]) * np.exp2(math.log2(sy) - math.log2(sx))
        self.intercept_ = 0.0
        self.n_iter_ = int(getattr(res, "nit", 0))
        return self

    def predict(self, X):
        """``X @ coef_``.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        check_is_fitted(self)
        check_numeric_input(X, "X")
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=np.float64,
                          reset=False)
        with np.errstate(over="ignore", invalid="ignore"):
            return finite_predictions(np.asarray(X @ self.coef_).ravel(), "X")
