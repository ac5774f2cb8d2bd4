r"""IRLS-p for matrix completion and matrix sensing (Mohan & Fazel, 2012).

This is the classical iteratively reweighted least-squares algorithm for rank
minimisation that lin-RFM is compared with: the weight matrix is formed from an
**eigendecomposition** of the Gram matrix at every iteration, which is what
"lin-RFM with ``power = 1/2`` is SVD-free" is measured against.

References
----------
K. Mohan and M. Fazel, "Iterative reweighted algorithms for matrix rank
minimization", Journal of Machine Learning Research 13:3441-3473, 2012.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator

from .._observations import value_scale
from ..persistence import PersistenceMixin
from .._validation import check_float, check_int
from ..backends.numpy_backend import DEFAULT_BATCH_BYTES, solve_rows
from ..core.kernel import irls_objective
from ..core.loop import LinRFMProblem, check_callback, run_loop
from ..core.smoothing import check_reg
from ._completion_input import (CompletionBaselineMixin, check_observations,
                                check_sensing_input)

__all__ = ["IRLSCompleter", "IRLSSensing"]

_NOTES = r"""
    Notes
    -----
    With ``Z`` oriented so that the kernel lives on its ``d``-sized side
    (``n x d`` after an internal transpose when that side is the smaller one)
    and ``G = Z^T Z / n``, one iteration is

    .. math::

        \lambda, V = \operatorname{eigh}(G_k), \qquad
        W_k^{-1} = V \operatorname{diag}\big((\lambda + \gamma_k)^{1 - p/2}\big) V^T,

        Z_{k+1} = \arg\min_Z \operatorname{tr}(Z W_k Z^T)
                  \ \text{subject to the observations},

    followed by :math:`\gamma_{k+1} = \max(\gamma_k/\eta, \gamma_{min})` and, when
    ``rank = r`` is given, :math:`\gamma_{k+1} \le \lambda_{r+1}(G_{k+1})`
    (the rank-based rule of Mohan & Fazel). The first iterate is the
    minimum-Frobenius-norm interpolant (``W_0 = I``). Each step decreases the
    smoothed Schatten-p objective :math:`\sum_j (\lambda_j + \gamma_k)^{p/2}`
    (:math:`\sum_j \log(\lambda_j + \gamma_k)` for ``p = 0``) at fixed
    :math:`\gamma_k`; ``history_["objective"]`` records it in the form of
    :func:`linrfm.core.kernel.irls_objective` (zero at ``Z = 0``).

    **Correspondence with Mohan & Fazel and with lin-RFM.** Mohan & Fazel
    write :math:`W = (X^T X + \gamma_{MF} I)^{p/2-1}` without the ``1/n``;
    here :math:`G = Z^T Z / n` (the AGOP), so :math:`\gamma_{MF} = n\,\gamma`
    and the two weights differ by the positive factor :math:`n^{p/2-1}`,
    which does not change the minimiser. With ``p = 0`` the kernel
    :math:`W^{-1} = G + \gamma I` is exactly the lin-RFM ``power = 1/2``
    kernel ``G`` with ``reg = gamma`` (ridge + replace equals exact
    interpolation with ``G + reg I``), so one IRLS-0 step equals one lin-RFM
    step; in general IRLS-p corresponds to lin-RFM ``power = (2 - p)/4``.

    **Cost per iteration** (``d`` the kernel side, ``n`` the other): the Gram
    matrix ``n d^2``, one symmetric eigendecomposition ``~9 d^3`` (always
    done, even for ``p = 0`` where lin-RFM skips it: this is the "SVD" of the
    comparison) and ``d^3`` to form the kernel, plus the interpolation
    (completion: a batched solve per bucket of rows with equally many
    observations, :math:`\sum_i |\Omega_i|^3/3`, and the predictions
    :math:`\sum_i |\Omega_i| d`; sensing: ``m n d^2 + m^2 n d`` to form the
    ``m x m`` system and ``m^3/3`` to solve it).

    Stopping uses only the data: the relative change
    :math:`\|Z_{k+1} - Z_k\|_F / \|Z_{k+1}\|_F < tol`. ``gamma`` is relative
    to the scale ``trace(G_0)/d`` of the first iterate, so the same value
    works whatever the units of the data.
"""


def _check_common(est, shape=None):
    # below -100 the weights (s + gamma)**(1 - p/2) overflow for any data
    p = check_float(est.p, "p", low=-100.0, high=2.0, high_inclusive=False)
    gamma = check_reg(est.gamma, "gamma")
    eta = check_float(est.gamma_decrease, "gamma_decrease", low=1.0)
    gamma_min = check_float(est.gamma_min, "gamma_min", low=0.0, low_inclusive=False)
    rank = None if est.rank is None else check_int(est.rank, "rank", low=1)
    max_iter = check_int(est.max_iter, "max_iter", low=1)
    tol = check_float(est.tol, "tol", low=0.0)
    if shape is not None and rank is not None and rank >= min(shape):
        raise ValueError(f"rank must be < min(d1, d2) = {min(shape)}, got {rank}")
    return p, gamma, eta, gamma_min, rank, max_iter, tol


def _kernel(w, V, gamma, p):
    """``V diag((w + gamma)^(1 - p/2)) V^T`` with ``w`` clipped at 0."""
    scaled = V * (np.clip(w, 0.0, None) + gamma) ** (1.0 - p / 2.0)
    return scaled @ V.T


class _IRLSProblem(LinRFMProblem):
    """IRLS-p as a :class:`~linrfm.core.loop.LinRFMProblem`.

    ``interpolate(K)`` returns the minimum-norm interpolant with kernel
    ``K`` (``n x d``, the kernel on the ``d`` side); ``transposed`` says
    whether that orientation is the transpose of the user's matrix.
    """

    def __init__(self, interpolate, d: int, p: float, gamma, eta: float, gamma_min: float,
                 rank, transposed: bool):
        self.interpolate, self.d, self.p = interpolate, d, p
        self.gamma_opt, self.eta, self.gamma_min, self.rank = gamma, eta, gamma_min, rank
        self.transposed = transposed
        self.power = (2.0 - p) / 4.0

    def _decompose(self, Z):
        return np.linalg.eigh((Z.T @ Z) / Z.shape[0])

    def initialize(self) -> None:
        self.Z = self.interpolate(np.eye(self.d))
        self.w, self.V = self._decompose(self.Z)
        scale = float(np.sum(np.clip(self.w, 0.0, None))) / self.d
        scale = scale if scale > 0 and math.isfinite(scale) else 1.0
        self.gamma = scale * (1.0 if self.gamma_opt == "auto" else self.gamma_opt)
        self.floor = self.gamma_min * scale

    def step(self) -> dict:
        gamma = self.gamma
        if self.rank is not None:
            gamma = min(gamma, max(float(self.w[::-1][self.rank]), 0.0))
        gamma = max(gamma, self.floor)
        Z_new = self.interpolate(_kernel(self.w, self.V, gamma, self.p))
        if not np.all(np.isfinite(Z_new)):  # the loop keeps the last finite iterate
            return {"objective": math.nan, "rel_change": math.nan, "gamma": gamma}
        rel = float(np.linalg.norm(Z_new - self.Z) / max(np.linalg.norm(Z_new), 1e-300))
        w, V = self._decompose(Z_new)
        self.Z, self.w, self.V, self.gamma = Z_new, w, V, gamma / self.eta
        return {"objective": irls_objective(w, self.power, gamma), "rel_change": rel,
                "gamma": gamma}

    def snapshot(self):
        return (self.Z, self.w, self.V, self.gamma)

    def restore(self, snap) -> None:
        self.Z, self.w, self.V, self.gamma = snap

    def iterate(self) -> np.ndarray:
        """The current iterate in the user's orientation, shape (d1, d2)."""
        return self.Z.T if self.transposed else self.Z


def _run_irls(est, interpolate, d, transposed, desc):
    """Run IRLS on the shared loop; returns the iterate in the user's orientation."""
    p, gamma, eta, gamma_min, rank, max_iter, tol = _check_common(est)
    problem = _IRLSProblem(interpolate, d, p, gamma, eta, gamma_min, rank, transposed)
    result = run_loop(problem, max_iter=max_iter, tol=tol, verbose=est.verbose,
                      callback=check_callback(est.callback), desc=desc)
    est.stop_reason_ = result.stop_reason
    return np.array(problem.iterate()), result.n_iter, result.history


class IRLSCompleter(PersistenceMixin, CompletionBaselineMixin, BaseEstimator):
    __doc__ = r"""IRLS-p matrix completion with eigendecomposition-based weights.

    This is the **"IRLS with eigendecompositions (Mohan–Fazel)"** baseline of
    the paper's claim 3 (lin-RFM is SVD-free): a first-order-style IRLS whose
    weight comes from a full ``eigh`` of the Gram every iteration. For the
    strongest IRLS for completion (second order, tangent-space CG, given
    rank) use :class:`~linrfm.baselines.MatrixIRLSCompleter`.

    Parameters
    ----------
    p : float, default=0.0
        Schatten-p exponent, ``p < 2``: 0 targets rank (log det), 1 the
        nuclear norm. Mohan & Fazel analyse ``0 <= p <= 1``; negative values
        are the IRLS counterpart of lin-RFM powers above 1/2 (down to -100).
    gamma : "auto" or float, default="auto"
        Initial smoothing, relative to ``trace(G_0)/d`` (``"auto"``: 1.0).
    gamma_decrease : float, default=1.05
        :math:`\eta \ge 1` in :math:`\gamma_{k+1} = \gamma_k / \eta`
        (1 keeps gamma fixed, a regularised rather than interpolating fit).
    gamma_min : float, default=1e-12
        Floor of gamma, relative to ``trace(G_0)/d``.
    rank : int, optional
        Rank hint enabling :math:`\gamma \leftarrow \min(\gamma, \lambda_{r+1}(G))`.
    max_iter : int, default=1000
    tol : float, default=1e-9
        Stop when the relative change of the iterate falls below ``tol``.
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per iteration (stderr).
    max_batch_bytes : int, default=256 MiB
        Memory budget of one batch of gathered kernel blocks.
    callback : callable, optional
        ``callback(state)`` after each iteration with a
        :class:`~linrfm.core.loop.LoopState` (``state.iterate()`` is the
        current ``(d1, d2)`` iterate); ``callback(iteration, record)`` is
        accepted too. Returning True stops the fit.

    Attributes
    ----------
    completed_ : ndarray, shape (d1, d2)
        Completed matrix; observed entries equal the observations.
    n_iter_ : int
    history_ : dict of lists
        ``iteration``, ``time`` (seconds since the start of the loop),
        ``objective``, ``rel_change``, ``gamma`` (absolute value used).
    stop_reason_ : str
        ``"tol"``, ``"max_iter"``, ``"callback"``, ``"interrupted"`` or
        ``"nonfinite"``.
    shape_ : tuple of int
    """ + _NOTES + r"""
    Rows with no observation are predicted as 0 (the minimum-norm value).
    The kernel is put on the smaller side of the matrix.

    References
    ----------
    K. Mohan and M. Fazel, JMLR 13:3441-3473, 2012.

    Examples
    --------
    >>> from linrfm.datasets import make_completion_problem
    >>> from linrfm.baselines import IRLSCompleter
    >>> prob = make_completion_problem(60, 50, 2, oversampling=3, random_state=0)
    >>> Z = IRLSCompleter().fit_transform(prob.observed)
    >>> prob.missing_error(Z) < 1e-6
    True
    """

    def __init__(self, p=0.0, gamma="auto", gamma_decrease=1.05, gamma_min=1e-12, rank=None,
                 max_iter=1000, tol=1e-9, verbose=0, max_batch_bytes=DEFAULT_BATCH_BYTES,
                 callback=None):
        self.p = p
        self.gamma = gamma
        self.gamma_decrease = gamma_decrease
        self.gamma_min = gamma_min
        self.rank = rank
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.max_batch_bytes = max_batch_bytes
        self.callback = callback

    def fit(self, X, y=None, shape=None):
        """Complete the partially observed matrix ``X``.

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
        self
        """
        batch = check_int(self.max_batch_bytes, "max_batch_bytes", low=1)
        obs = check_observations(X, shape)
        _check_common(self, obs.shape)
        scale = value_scale(obs.values)  # exact power of two: 1e+-150 data stay finite
        obs = obs.scaled(scale)
        transposed = obs.shape[0] < obs.shape[1]
        work = obs.transpose() if transposed else obs
        indptr, indices, values = work.csr_arrays()

        def interpolate(K):
            return solve_rows(K, indptr, indices, values, 0.0, replace=True,
                              max_batch_bytes=batch)

        Z, self.n_iter_, self.history_ = _run_irls(
            self, interpolate, work.shape[1], transposed, "IRLSCompleter")
        self.completed_ = Z * scale
        self.shape_ = obs.shape
        return self


class IRLSSensing(PersistenceMixin, BaseEstimator):
    __doc__ = r"""IRLS-p low-rank recovery from linear measurements ``y_k = <A_k, Z>``.

    Parameters
    ----------
    p, gamma, gamma_decrease, gamma_min, rank, max_iter, tol, verbose, callback
        As in :class:`IRLSCompleter`.

    Attributes
    ----------
    Z_ : ndarray, shape (d1, d2)
        Recovered matrix.
    n_iter_ : int
    history_ : dict of lists
        ``iteration``, ``time``, ``objective``, ``rel_change``, ``gamma``.
    stop_reason_ : str
        As in :class:`IRLSCompleter`.
    shape_ : tuple of int
    """ + _NOTES + r"""
    The constrained step has the closed form
    :math:`Z = (\sum_k c_k A_k) W^{-1}` with
    :math:`(\langle A_k W^{-1}, A_l\rangle)_{kl}\, c = y`, one ``m x m``
    positive-definite solve (``MeasurementOperator.gram``); the kernel goes on
    the smaller side. Matrix-free operators are materialised: this baseline
    is a direct solver for small and medium problems.

    References
    ----------
    K. Mohan and M. Fazel, JMLR 13:3441-3473, 2012.
    """

    def __init__(self, p=0.0, gamma="auto", gamma_decrease=1.05, gamma_min=1e-12, rank=None,
                 max_iter=1000, tol=1e-9, verbose=0, callback=None):
        self.p = p
        self.gamma = gamma
        self.gamma_decrease = gamma_decrease
        self.gamma_min = gamma_min
        self.rank = rank
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.callback = callback

    def fit(self, A, y, shape=None):
        """Recover ``Z`` from ``y = A(Z)``.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse (m, d1*d2), or LinearOperator
            Sensing matrices (row-major ``vec(A_k)`` when flattened); see
            :func:`linrfm.operators.as_measurement_operator`.
        y : array_like, shape (m,)
        shape : tuple of int, optional
            ``(d1, d2)``, required when ``A`` is flattened.

        Returns
        -------
        self
        """
        _check_common(self)
        op, y = check_sensing_input(A, y, shape, random_state=0)
        scale = value_scale(y)
        y = y / scale
        d1, d2 = op.matrix_shape
        _check_common(self, (d1, d2))
        transposed = d1 < d2
        oriented = op.swap_sides() if transposed else op
        if getattr(oriented, "explicit", True) is False and hasattr(oriented, "materialize"):
            oriented = oriented.materialize()

        def interpolate(K):
            S = oriented.gram(K)
            try:
                with warnings.catch_warnings():  # ill-conditioned near convergence: expected
                    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                    c = scipy.linalg.solve(S, y, assume_a="pos")
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                c = np.linalg.lstsq(S, y, rcond=None)[0]
            return oriented.adjoint(c) @ K

        Z, self.n_iter_, self.history_ = _run_irls(
            self, interpolate, oriented.matrix_shape[1], transposed, "IRLSSensing")
        self.Z_ = Z * scale
        self.shape_ = (d1, d2)
        return self

    def predict(self, A):
        """Measurements ``<A_k, Z_>`` of the recovered matrix.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse, or LinearOperator
            Sensing matrices of the fitted shape ``shape_``.

        Returns
        -------
        ndarray, shape (m,)
        """
        return _predict_sensing(self, A)


def _predict_sensing(est, A):
    from sklearn.utils.validation import check_is_fitted

    from ..operators import as_measurement_operator

    check_is_fitted(est, "Z_")
    op = as_measurement_operator(A, est.shape_, random_state=0)
    return op.forward(est.Z_)
