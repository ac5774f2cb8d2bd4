r"""Sparse and reduced-rank linear regression with lin-RFM.

:class:`LinRFMRegressor` fits ``y ~ X beta`` (or ``Y ~ X B`` with several
outputs) by the lin-RFM recursion of SPEC §1 and §4: a minimum-norm fit in the
features ``x -> M x``, then ``M`` replaced by a power of the fit's AGOP. It is
IRLS-p with ``p = 2 - 4 * power``: ``power = 1/4`` targets the l1 norm,
``power = 1/2`` (the default) the log penalty ``sum_j log(beta_j^2 + eps)``,
which recovers sparse vectors from fewer samples than l1.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._memory import check_memory
from .._observations import value_scale
from .._validation import check_choice, check_float, check_int, check_power, check_verbose
from .._validation import check_numeric_input as _check_numeric
from .._validation import finite_predictions
from ..backends._threads import blas_threads_for
from ..core.checkpoint import checkpointer_for
from ..core.kernel import irls_objective, psd_power
from ..core.loop import LinRFMProblem, check_callback, run_loop
from ..core.smoothing import SmoothingSchedule, check_reg
from ..persistence import PersistenceMixin

__all__ = ["LinRFMRegressor", "ContinuationSchedule"]


class ContinuationSchedule(SmoothingSchedule):
    r"""Smoothing that waits for the iterate to settle before it decreases.

    ``reg="auto"`` rule for regression (Chartrand & Yin, 2008, made
    scale-free): after an iteration whose relative change is below
    ``threshold * sqrt(reg / scale)``, where ``scale = trace(G)/d`` is the mean
    square coefficient of the current iterate,

    .. math:: reg \leftarrow \min\bigl(reg / \text{factor},\;
              (\text{rel\_change} / \text{threshold})^2 \, \text{scale}\bigr),

    floored at ``reg_min * scale0``. ``sqrt(reg)`` is the size below which a
    coefficient counts as zero in the weights, so the rule lowers it only once
    the iterate has converged at the current resolution. Lowering it earlier
    (as the plain rule ``reg <- min(reg, c * rel_change * scale)`` of
    :class:`SmoothingSchedule` does) freezes wrong coordinates at zero near the
    phase transition. The second term lets ``reg`` follow an iterate that
    converges fast, so that a small relative change always comes with a small
    smoothing. Only the data-driven ``rel_change`` and ``scale`` are used.

    Parameters
    ----------
    reg : "auto" or float
        As in :class:`SmoothingSchedule`; a float is kept fixed (``reg *
        scale0``).
    threshold : float, default=0.03
        Chartrand & Yin use 0.01; 0.03 gives the same d = 200, k = 10
        phase transition with about 20 % fewer iterations.
    factor : float, default=10.0
    reg_min : float, default=1e-10
    tol : float, default=0.0
        A relative change below ``tol`` also counts as converged at the
        current smoothing, so that the fit cannot stop (at ``tol``) before
        the smoothing reaches its floor.
    """

    def __init__(self, reg="auto", threshold: float = 0.03, factor: float = 10.0,
                 reg_min: float = 1e-10, tol: float = 0.0):
        super().__init__(reg, reg_min=reg_min)
        self.threshold = float(threshold)
        self.factor = float(factor)
        self.tol = float(tol)

    def update(self, rel_change: float, scale: float, tail_eig: float | None = None) -> float:
        """Apply the rule after an iteration; return the new value."""
        if not self.adaptive:
            return self.value
        scale = float(scale) if scale > 0 else self._scale0
        if rel_change < max(self.threshold * math.sqrt(self.value / scale), self.tol):
            self.value = min(self.value / self.factor,
                             (rel_change / self.threshold) ** 2 * scale)
        if tail_eig is not None:
            self.value = min(self.value, max(float(tail_eig), 0.0))
        self.value = max(self.value, self.reg_min * self._scale0)
        return self.value


def _smoothing_floor(power: float) -> float:
    # Off-support kernel entries scale like eps**(2 power): this floor keeps the
    # condition number of the kernel near 1e10 for every power.
    return min(max(1e-10 ** (1.0 / (2.0 * power)), 1e-14), 1e-2)


def _spd_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``A x = B`` for symmetric PSD ``A``; minimum-norm if (near) singular."""
    try:
        c, low = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
        diag = np.abs(np.diag(c))
        if diag.min() > 1e-7 * diag.max():
            return scipy.linalg.cho_solve((c, low), B, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
        pass
    return scipy.linalg.pinvh(A, check_finite=False) @ B


class _Design:
    """Centred design ``Xc = X - 1 xm^T`` without densifying a sparse ``X``."""

    def __init__(self, X, x_mean):
        self.sparse = sp.issparse(X)
        self.centered = x_mean is not None
        if self.sparse:
            self.X = X.tocsr()
            self.xm = x_mean
        else:
            self.X = X - x_mean if x_mean is not None else X
            self.xm = None
        self.n, self.d = X.shape

    def matmul(self, W):
        """``Xc @ W`` for ``W`` of shape (d, m)."""
        out = np.asarray(self.X @ W)
        if self.xm is not None:
            out = out - self.xm @ W
        return out

    def rmatmul(self, V):
        """``Xc.T @ V`` for ``V`` of shape (n, m)."""
        out = np.asarray(self.X.T @ V)
        if self.xm is not None:
            out = out - np.outer(self.xm, V.sum(axis=0))
        return out

    def sq_norm(self) -> float:
        """``||Xc||_F^2``."""
        if not self.sparse:
            return float(np.sum(self.X * self.X))
        total = float(self.X.multiply(self.X).sum())
        if self.xm is not None:
            total -= self.n * float(self.xm @ self.xm)
        return max(total, 0.0)

    def gram(self):
        """``Xc.T @ Xc``, shape (d, d), dense."""
        if not self.sparse:
            return self.X.T @ self.X
        G = (self.X.T @ self.X).toarray()
        if self.xm is not None:
            G -= self.n * np.outer(self.xm, self.xm)
        return G

    def weighted_gram(self, D):
        """``Xc diag(D) Xc.T``, shape (n, n), dense."""
        if not self.sparse:
            XS = self.X * np.sqrt(D)
            return XS @ XS.T  # NumPy uses a symmetric rank-k update (syrk): half the flops
        K = (self.X @ sp.diags(D) @ self.X.T).toarray()
        if self.xm is not None:
            u = np.asarray(self.X @ (D * self.xm)).ravel()
            K += float(self.xm @ (D * self.xm)) - u[:, None] - u[None, :]
        return K


class _RegressionProblem(LinRFMProblem):
    r"""One lin-RFM regression problem for :func:`run_loop`.

    Iterate ``B`` (d, k). With the smoothed, normalised AGOP
    ``Gs = (G + eps I) / scale0`` the kernel is ``K = Gs**(2 power)`` and

    * dual (``n < d``): ``B = K Xc^T (Xc K Xc^T + r I)^{-1} Yc``;
    * primal (``n >= d``): ``B = M (M A M + r I)^{-1} M Xc^T Yc`` with
      ``M = Gs**power`` (so ``K = M^2``) and ``A = Xc^T Xc``.

    Both are the same map; ``r = ridge * ||Xc||_F^2 / n``.
    """

    def __init__(self, design: _Design, Y, *, power, schedule, ridge, full):
        self.design = design
        self.Y = Y
        self.power = power
        self.schedule = schedule
        self.full = full
        self.dual = design.n < design.d
        self.ridge = ridge * design.sq_norm() / max(design.n, 1)
        self.B = None
        self.scale0 = 1.0
        self.t = 0
        if not self.dual:
            self._A = design.gram()
            self._b = design.rmatmul(Y)

    # -- the map B_prev -> B -------------------------------------------------
    def _agop(self, B):
        return B @ B.T if self.full else np.sum(B * B, axis=1)

    def solve(self, G_scaled):
        """Coefficients for the normalised, smoothed AGOP (``None``: ``M = I``)."""
        des, r = self.design, self.ridge
        if self.dual:
            if self.full and G_scaled is not None:
                K = psd_power(G_scaled, 2.0 * self.power)
                Kxt = des.matmul(K).T
                S = des.matmul(Kxt)
            else:
                D = np.ones(des.d) if G_scaled is None else G_scaled ** (2.0 * self.power)
                S = des.weighted_gram(D)
            if r > 0:
                S[np.diag_indices_from(S)] += r
            if des.centered:
                # Xc^T 1 = 0 makes S singular; adding a multiple of 1 1^T changes
                # neither a's component orthogonal to 1 (Yc is) nor Xc^T a
                S += np.trace(S) / des.n ** 2
            a = _spd_solve(S, self.Y)
            if self.full and G_scaled is not None:
                return Kxt @ a
            return D[:, None] * des.rmatmul(a)
        if G_scaled is None:
            S, rhs = self._A.copy(), self._b
        elif self.full:
            M = psd_power(G_scaled, self.power)
            S, rhs = M @ self._A @ M, M @ self._b
        else:
            m = G_scaled ** self.power
            S, rhs = m[:, None] * self._A * m[None, :], m[:, None] * self._b
        if r > 0:
            S[np.diag_indices_from(S)] += r
        C = _spd_solve(S, rhs)
        if G_scaled is None:
            return C
        return M @ C if self.full else m[:, None] * C

    def scaled_agop(self, B, eps):
        G = self._agop(B) / self.scale0
        e = eps / self.scale0
        if self.full:
            G = G.copy()
            G[np.diag_indices_from(G)] += e
            return G
        return G + e

    def objective(self, B, eps) -> float:
        r"""``F = sum_j h(lambda_j(G)/scale0)`` (+ ``||R||^2 / (r scale0)``), h from
        :func:`~linrfm.core.kernel.irls_objective`."""
        if self.full:
            eigs = np.linalg.eigvalsh(B.T @ B) if B.shape[1] < B.shape[0] else \
                np.linalg.eigvalsh(B @ B.T)
        else:
            eigs = np.sum(B * B, axis=1)
        F = irls_objective(eigs / self.scale0, self.power, eps / self.scale0)
        if self.ridge > 0:
            R = self.Y - self.design.matmul(B)
            F += float(np.sum(R * R)) / (self.ridge * self.scale0)
        return F

    # -- LinRFMProblem ---------------------------------------------------------
    def initialize(self):
        B = self.solve(None)
        scale = float(np.sum(B * B)) / self.design.d
        self.scale0 = scale if scale > 0 and math.isfinite(scale) else 1.0
        self.schedule.start(self.scale0)
        self.B = B

    def step(self):
        eps_used = self.schedule.value
        B_prev = self.B
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                B = self.solve(self.scaled_agop(B_prev, eps_used))
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
            B = None  # eigh/pinvh of a non-finite kernel
        if B is None or not np.all(np.isfinite(B)):
            # the loop keeps the last finite iterate (this step has not replaced it)
            return {"rel_change": math.nan, "objective": math.nan, "reg": eps_used / self.scale0}
        self.t += 1
        norm = math.sqrt(float(np.sum(B * B)))
        diff = math.sqrt(float(np.sum((B - B_prev) ** 2)))
        rel = diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)
        scale = norm ** 2 / self.design.d
        eps_next = self.schedule.update(rel, scale if scale > 0 else self.scale0)
        record = {
            "objective": self.objective(B, eps_used),
            "coef_change": rel,
            # stopping also waits for the smoothing to settle: a small change at
            # a large smoothing is not yet the sparse solution
            "rel_change": max(rel, 1.0 - eps_next / eps_used),
            "reg": eps_used / self.scale0,
        }
        self.B = B
        return record

    def snapshot(self):
        return (self.B, self.schedule.value)

    def restore(self, snap):
        self.B, self.schedule.value = snap

    def state_dict(self) -> dict:
        return {"B": self.B, "schedule": self.schedule.state()}

    def load_state_dict(self, state) -> None:
        self.B = np.array(state["B"], dtype=np.float64)
        self.schedule.set_state(state["schedule"])

    def iterate(self) -> np.ndarray:
        """The current coefficients ``B``, shape (d, k), in the units of the
        standardised design and targets (a reference: do not modify)."""
        return self.B


class LinRFMRegressor(PersistenceMixin, RegressorMixin, BaseEstimator):
    r"""Sparse or reduced-rank linear regression by lin-RFM (IRLS-p).

    Parameters
    ----------
    power : float, default=0.5
        lin-RFM power (``alpha`` in the paper), any value > 0. The feature
        matrix is ``M = G**power`` for the AGOP ``G`` and the kernel
        ``K = G**(2 power)``; the method is IRLS-p with ``p = 2 - 4 power``
        (``1/4``: l1, ``1/2``: log-penalty / p = 0, ``1``: p = -2).
    reg : "auto" or float, default="auto"
        Smoothing ``eps`` *inside* the weights: the kernel is
        ``(G + eps I)**(2 power)``. Scale-free: ``eps`` is measured in units
        of ``scale0 = trace(G_0)/d``, the mean square coefficient of the first
        (minimum-norm) iterate. ``"auto"``: starts at ``scale0`` and decreases
        as the iterate converges (:class:`ContinuationSchedule`), down to a
        floor chosen so that the kernel stays well conditioned; use it for
        exact recovery. A float keeps ``eps = reg * scale0`` fixed; then each
        iteration is a majorize-minimize step on the smoothed objective.
    ridge : float, default=0.0
        Ridge strength for noisy data (>= 0), relative to ``||Xc||_F^2 / n``
        so it is scale-free: the dual system is
        ``Xc K Xc^T + ridge * ||Xc||_F^2 / n * I``. ``ridge=0`` means exact
        minimum-norm interpolation ``X beta = y`` when ``n < d`` (and least
        squares when ``n >= d``). With ``ridge > 0`` each iteration minimises
        ``||yc - Xc beta||^2 + r * sum_j beta_j^2 / K_jj`` with
        ``r = ridge * ||Xc||_F^2 / n``; the first iterate is
        ``sklearn.linear_model.Ridge(alpha=r)``. Choose it by cross-validation.
    feature_matrix : {"diagonal", "full"}, default="diagonal"
        ``"diagonal"``: the diagonal of the AGOP, ``G = diag(sum_k B_jk^2)``
        (``beta_j^2`` for one output), so ``M = diag(|beta|**(2 power))``
        and ``K = diag((beta^2 + eps)**(2 power))``: sparse (group-sparse for
        several outputs) regression. ``"full"``: the AGOP of
        ``f(x) = B^T x``, ``G = B B^T`` (d x d), kernel
        ``(B B^T + eps I)**(2 power)`` (no eigendecomposition for
        ``power = 1/2`` in the dual form): reduced-rank regression.
    fit_intercept : bool, default=True
        Centre ``X`` and ``y`` (sparse ``X`` is centred implicitly).
    max_iter : int, default=1000
        Maximum number of reweighting iterations (>= 1).
    tol : float, default=1e-6
        Stop when neither the coefficients nor the smoothing change by more
        than ``tol`` (relative) in one iteration.
    callback : callable, optional
        ``callback(state)`` after each iteration with a
        :class:`~linrfm.core.loop.LoopState` (``state.record`` is the row of
        ``history_``, ``state.iterate()`` the current coefficients in
        standardised units); ``callback(iteration, record)`` is accepted too.
        Returning True stops the fit.
    checkpoint_path : str or path-like, optional
        Write the fit's full state to this ``.npz`` file every
        ``checkpoint_every`` iterations and when the fit stops (Ctrl-C and
        callback stops included), atomically. If the file exists, ``fit``
        resumes from it and ends bit-identical to an uninterrupted fit; a
        checkpoint written for other data or parameters is refused.
        ``max_iter``, ``verbose`` and ``callback`` may differ on resume.
    checkpoint_every : int, default=10
        Iterations between two checkpoints.
    random_state : int, RandomState or None, default=None
        Unused: the fit is deterministic (``M_0 = I``, no random start).
        Accepted for a common signature with the other linrfm estimators.
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per iteration.
    max_memory : int or None, default=None
        Memory budget in bytes for the dense systems a fit allocates
        (``n x n`` when ``n < d``, ``d x d`` otherwise, plus ``d x d`` kernels
        for ``feature_matrix="full"``). None: 80 % of the memory available
        when ``fit`` starts. A larger request is refused before any work.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray, shape (n_targets,)
    feature_matrix_ : ndarray, shape (n_features,) or (n_features, n_features)
        ``M = G**power`` of the final coefficients (the diagonal for
        ``feature_matrix="diagonal"``), without smoothing.
    support_ : ndarray of bool, shape (n_features,)
        Features whose AGOP diagonal ``G_jj`` (``beta_j^2``) exceeds the
        final smoothing ``eps`` and ``1e-12 * max_j G_jj``: their weight is not
        dominated by the smoothing. Scale-free.
    reg_ : float
        Final smoothing, in units of ``scale0`` (comparable to ``reg``).
    n_iter_ : int
    stop_reason_ : str
        Why the loop stopped: ``"tol"``, ``"max_iter"``, ``"callback"`` or
        ``"interrupted"`` (Ctrl-C; the last complete iterate is kept).
    history_ : dict of str to list
        Per iteration: ``objective`` (at the smoothing used in that step),
        ``coef_change``, ``rel_change`` (what ``tol`` is compared to),
        ``reg``, ``time``, ``iteration``.
    n_features_in_ : int

    Notes
    -----
    Each iteration, with ``Xc``, ``Yc`` centred and ``K`` the kernel built
    from the previous coefficients,

    .. math:: B_{t} = K X_c^T (X_c K X_c^T + r I)^{-1} Y_c
              = \arg\min_{B} \|Y_c - X_c B\|_F^2 + r\,\mathrm{tr}(B^T K^{-1} B)

    (``r = 0``: the minimum ``K^{-1}``-norm interpolant). Since
    ``K^{-1} = (G + eps I)^{-2 power}`` is the IRLS-p weight, one step is one
    IRLS-p step, and at fixed ``eps`` a majorize-minimize step on

    .. math:: F(B) = \sum_j h(\lambda_j(B B^T)), \qquad h'(s) = (s + eps)^{-2 power}

    (:func:`~linrfm.core.kernel.irls_objective`), plus
    ``||Yc - Xc B||^2 / (r scale0)`` when ``r > 0``. ``F`` never increases.
    The system is ``n x n`` (Cholesky) when ``n < d`` and ``d x d``
    otherwise; sparse ``X`` is never densified (only ``X diag(K) X^T``).

    References
    ----------
    A. Radhakrishnan, M. Belkin, D. Drusvyatskiy, "Linear Recursive Feature
    Machines provably recover low-rank matrices", PNAS 122(13), 2025.
    R. Chartrand, W. Yin, "Iteratively reweighted algorithms for compressive
    sensing", ICASSP 2008.

    Examples
    --------
    >>> from linrfm import LinRFMRegressor
    >>> from linrfm.datasets import make_sparse_regression
    >>> X, y, coef = make_sparse_regression(50, 200, 10, random_state=0)
    >>> model = LinRFMRegressor().fit(X, y)
    >>> bool(abs(model.coef_ - coef).max() < 1e-6)
    True
    """

    def __init__(self, power=0.5, reg="auto", ridge=0.0, feature_matrix="diagonal",
                 fit_intercept=True, max_iter=1000, tol=1e-6, callback=None,
                 random_state=None, verbose=0, max_memory=None, checkpoint_path=None,
                 checkpoint_every=10):
        self.power = power
        self.reg = reg
        self.ridge = ridge
        self.feature_matrix = feature_matrix
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.callback = callback
        self.random_state = random_state
        self.verbose = verbose
        self.max_memory = max_memory
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _check_params(self):
        power = check_power(self.power)
        reg = check_reg(self.reg)
        ridge = check_float(self.ridge, "ridge", low=0.0)
        full = check_choice(self.feature_matrix, "feature_matrix", ("diagonal", "full")) == "full"
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {type(self.fit_intercept).__name__}")
        max_iter = check_int(self.max_iter, "max_iter", low=1)
        tol = check_float(self.tol, "tol", low=0.0)
        check_callback(self.callback)
        check_verbose(self.verbose)
        return power, reg, ridge, full, max_iter, tol

    def fit(self, X, y):
        """Fit the coefficients.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self : LinRFMRegressor
        """
        power, reg, ridge, full, max_iter, tol = self._check_params()
        _check_numeric(X, "X")
        _check_numeric(y, "y")
        X, y = validate_data(self, X, y, accept_sparse=("csr", "csc", "coo"),
                             dtype=np.float64, multi_output=True, y_numeric=True)
        # Global rescaling by exact powers of two (the fit is equivariant under
        # X -> a X, y -> b y) keeps Grams of 1e+-150 data finite.
        sx = value_scale(X.data if sp.issparse(X) else X)
        sy = value_scale(y)
        X = X * (1.0 / sx) if sx != 1.0 else X
        y = np.asarray(y, dtype=np.float64) / sy
        one_output = y.ndim == 1
        Y = y[:, None] if one_output else y
        if self.fit_intercept:
            x_mean = np.asarray(X.mean(axis=0)).ravel()
            y_mean = Y.mean(axis=0)
        else:
            x_mean, y_mean = None, np.zeros(Y.shape[1])
        self._check_memory(*X.shape, full)
        design = _Design(X, x_mean)
        schedule = ContinuationSchedule(reg, reg_min=_smoothing_floor(power), tol=tol)
        problem = _RegressionProblem(design, Y - y_mean, power=power, schedule=schedule,
                                     ridge=ridge, full=full)

        def data():
            csr = sp.csr_array(X) if sp.issparse(X) else None
            return ([X] if csr is None else [csr.data, csr.indices, csr.indptr]) + [Y]

        n, d = X.shape
        with blas_threads_for(min(n, d) ** 2 * max(n, d)):  # see backends/_threads.py
            result = run_loop(problem, max_iter=max_iter, tol=tol, verbose=self.verbose,
                              callback=self.callback, desc="LinRFMRegressor",
                              checkpoint=checkpointer_for(self, data))
        B = problem.B
        G_diag = np.sum(B * B, axis=1)
        eps = schedule.value
        self.support_ = G_diag > max(eps, 1e-12 * float(G_diag.max(initial=0.0)))
        # back to the user's units: B * f, AGOP * f**2 (f = sy / sx, a power of two)
        log_f = math.log2(sy) - math.log2(sx)
        with np.errstate(over="ignore"):
            f, f2p = np.exp2(log_f), np.exp2(2.0 * power * log_f)
            if full:
                self.feature_matrix_ = psd_power(B @ B.T, power) * f2p if np.any(B) \
                    else np.zeros((B.shape[0], B.shape[0]))
            else:
                self.feature_matrix_ = G_diag ** power * f2p
            B = B * f
        if not np.all(np.isfinite(B)):
            raise ValueError("the coefficients overflow float64: y is too large relative to X "
                             "(about 1e308 times); rescale y or X")
        coef = B.T
        intercept = y_mean * sy - (x_mean * sx @ B if x_mean is not None else 0.0)
        self.coef_ = coef[0] if one_output else coef
        self.intercept_ = float(intercept[0]) if one_output else np.asarray(intercept)
        self.reg_ = eps / problem.scale0
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.stop_reason_ = result.stop_reason
        return self

    def _check_memory(self, n: int, d: int, full: bool) -> None:
        """Refuse dense systems that exceed ``max_memory``, before any work."""
        k = min(n, d)
        need = 8.0 * 3 * k * k + (8.0 * 4 * d * d if full else 0.0)
        side = "n x n" if n < d else "d x d"
        cheaper = ("use feature_matrix='diagonal' (no d x d kernel)" if full and d * d > k * k
                   else "select fewer features first (e.g. by their correlation with y), or "
                        "fit on fewer samples than features (an n x n system)")
        check_memory(need, what=f"LinRFMRegressor on {n} samples x {d} features (a dense "
                                f"{side} system{' and d x d kernels' if full else ''})",
                     cheaper=cheaper, max_memory=self.max_memory)

    def predict(self, X):
        """Predict with the fitted linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix}, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,) or (n_samples, n_targets)
        """
        check_is_fitted(self)
        _check_numeric(X, "X")
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=np.float64,
                          reset=False)
        with np.errstate(over="ignore", invalid="ignore"):
            pred = np.asarray(X @ self.coef_.T) + self.intercept_
        return finite_predictions(pred, "X")
