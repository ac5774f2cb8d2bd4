r"""MatrixIRLS: second-order IRLS for matrix completion (Kümmerle & Verdun, ICML 2021).

Written from the paper's equations. The iterate is never formed densely: it is
held as a low-rank part ``L R^T`` (the tangent-space component) plus a sparse
part on the observed entries, every weighted least-squares step is solved by
conjugate gradients in the ``r (d1 + d2 + r)`` tangent-space coordinates, and
the singular values that set the weights come from a warm-started randomized
subspace iteration on that "low rank + sparse" operator.

References
----------
C. Kümmerle and C. M. Verdun, "A scalable second order method for
ill-conditioned matrix completion from few samples", Proceedings of the 38th
International Conference on Machine Learning (ICML), PMLR 139:5872-5883, 2021.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, check_entry_indices, check_float, check_int, check_verbose
from ..core.loop import LinRFMProblem, run_loop
from ..persistence import PersistenceMixin
from ._completion_input import CompletionBaselineMixin, check_observations

__all__ = ["MatrixIRLSCompleter"]

MEANS = ("harmonic", "geometric")
# Rank-adaptive variant: a ratio sigma_i / sigma_{i+1} counts as a spectral gap
# from this value on; below it the rank is taken as max_rank. With 10, an
# ill-conditioned problem (1000_r10_cond100_2x) showed a spurious gap at 5
# early on, the monotone smoothing froze below sigma_6 and the error stalled at
# 2e-2; with 1e3 it recovered to 1e-12 in 20 steps (500_r5_10000: 12 steps with
# either). Without any threshold the zero-filled start (largest ratio sigma_1 /
# sigma_2) gave rank 1 and an error of 0.96 after 100 steps.
GAP = 1e3
# Relative CG residual never asked below this: float64 CG stalls around it
# and the outer error target (1e-10) needs far less.
_CG_RTOL_MIN = 1e-13
_CG_RTOL_MAX = 1e-2


# ----------------------------------------------------------------- weights


def _mean_inverse(a, b, mean):
    """Inverse weight ``g = 1/h`` of the pair of spectral weights ``a**-2, b**-2``."""
    if mean == "harmonic":
        return 0.5 * (a * a + b * b)
    return a * b


def tangent_weights(sigma, eps, mean="harmonic"):
    r"""Weights ``w = eps^2 / (g - eps^2)`` of the tangent-space system.

    Parameters
    ----------
    sigma : ndarray, shape (r,)
        Singular values larger than ``eps`` (the active ones, decreasing).
    eps : float
        Smoothing :math:`\epsilon_k \ge 0`.
    mean : {"harmonic", "geometric"}
        How the left and right weights :math:`\max(\sigma_i, \epsilon)^{-2}`,
        :math:`\max(\sigma_j, \epsilon)^{-2}` are combined.

    Returns
    -------
    w1 : ndarray, shape (r, r)
        Block ``U^T . V`` (both indices active).
    w2 : ndarray, shape (r,)
        Block ``U^T . V_perp`` (row ``i`` active, column at ``eps``); also
        the block ``U_perp . V`` by symmetry of the mean.
    """
    e2 = eps * eps
    g1 = _mean_inverse(sigma[:, None], sigma[None, :], mean)
    g2 = _mean_inverse(sigma, eps, mean)
    tiny = np.finfo(np.float64).tiny
    return e2 / np.maximum(g1 - e2, tiny), e2 / np.maximum(g2 - e2, tiny)


# ----------------------------------------------------------- tangent space


class TangentSpace:
    r"""The tangent space at ``U diag(s) V^T`` and its coordinates.

    A point of the space is ``U G1 V^T + U G2 + G3 V^T`` with ``G1`` (r x r),
    ``G2`` (r x d2, ``G2 V = 0``) and ``G3`` (d1 x r, ``U^T G3 = 0``); the
    map from the flat vector ``(G1, G2, G3)`` of length ``r (r + d1 + d2)``
    is an isometry onto the space.

    Parameters
    ----------
    U : ndarray, shape (d1, r)
    V : ndarray, shape (d2, r)
        Orthonormal columns.
    rows, cols : ndarray of int, shape (m,)
        Observed positions (row-major sorted).
    indptr : ndarray of int, shape (d1 + 1,)
        CSR row pointer of the observed positions.
    """

    def __init__(self, U, V, rows, cols, indptr):
        self.U, self.V, self.rows, self.cols, self.indptr = U, V, rows, cols, indptr
        self.d1, self.r = U.shape
        self.d2 = V.shape[0]
        self.size = self.r * (self.r + self.d1 + self.d2)
        self.U_rows = U[rows]
        self.V_cols = V[cols]

    def split(self, g):
        """``(G1, G2, G3)`` views of a flat coordinate vector."""
        r, d1, d2 = self.r, self.d1, self.d2
        return (g[:r * r].reshape(r, r), g[r * r:r * r + r * d2].reshape(r, d2),
                g[r * r + r * d2:].reshape(d1, r))

    def factors(self, g):
        """``(L, R)`` with ``L R^T`` the point of coordinates ``g``."""
        G1, G2, G3 = self.split(g)
        return np.hstack([self.U, G3]), np.hstack([self.V @ G1.T + G2.T, self.V])

    def sample(self, g):
        """The point's entries on the observed positions, shape (m,)."""
        G1, G2, G3 = self.split(g)
        right = self.V_cols @ G1.T + G2.T[self.cols]
        return (np.einsum("ij,ij->i", self.U_rows, right)
                + np.einsum("ij,ij->i", G3[self.rows], self.V_cols))

    def project_sparse(self, z):
        """Coordinates of the projection of the sparse matrix with values ``z`` on Omega."""
        S = sp.csr_array((z, self.cols, self.indptr), shape=(self.d1, self.d2))
        return self._project(S @ self.V, (S.T @ self.U).T)

    def project_lowrank(self, L, R):
        """Coordinates of the projection of ``L R^T``."""
        return self._project(L @ (R.T @ self.V), (self.U.T @ L) @ R.T)

    def _project(self, XV, UtX):
        G1 = self.U.T @ XV
        return np.concatenate([G1.ravel(), (UtX - G1 @ self.V.T).ravel(),
                               (XV - self.U @ G1).ravel()])

    def expand(self, w1, w2):
        """Flat vector of per-coordinate weights from the blocks of :func:`tangent_weights`."""
        return np.concatenate([w1.ravel(), np.repeat(w2, self.d2),
                               np.tile(w2, self.d1)])


def solve_tangent_system(ts, w, y, x0, rtol, maxiter):
    r"""Solve :math:`(\operatorname{diag}(w) + B^* B)\gamma = B^* y` by preconditioned CG.

    ``B`` samples a tangent-space point on the observed entries
    (:meth:`TangentSpace.sample`); ``B^*`` is :meth:`TangentSpace.project_sparse`.
    Jacobi-type preconditioner ``1/(w + m/(d1 d2))`` (``B^* B`` is close to
    ``m/(d1 d2)`` times the identity on incoherent tangent spaces).

    Returns
    -------
    gamma : ndarray, shape (ts.size,)
    n_iter : int
        CG iterations.
    """
    rate = ts.rows.shape[0] / (ts.d1 * ts.d2)
    A = LinearOperator((ts.size, ts.size), dtype=np.float64,
                       matvec=lambda g: w * g + ts.project_sparse(ts.sample(g)))
    M = LinearOperator((ts.size, ts.size), dtype=np.float64,
                       matvec=lambda g: g / (w + rate))
    count = [0]

    def tick(_):
        count[0] += 1

    gamma, _ = cg(A, ts.project_sparse(y), x0=x0, rtol=rtol, atol=0.0, maxiter=maxiter, M=M,
                  callback=tick)
    return gamma, count[0]


# ------------------------------------------------------------ partial SVD


def top_singular(L, R, s, structure, k, V0, rng, n_iter, tol=0.0, n_check=None):
    """Leading ``k`` singular triplets of ``L R^T + S`` by randomized subspace iteration.

    Parameters
    ----------
    L : ndarray, shape (d1, q)
    R : ndarray, shape (d2, q)
        Low-rank part.
    s : ndarray, shape (m,)
        Values of the sparse part on the observed positions.
    structure : tuple
        ``(cols, indptr, shape)``: CSR structure of the observed positions.
    k : int
        Block size (``<= min(d1, d2)``); all ``k`` triplets are returned.
    V0 : ndarray, shape (d2, k0), k0 <= k
        Warm start for the right singular subspace (previous iterate's).
    rng : numpy.random.RandomState
        Draws the rest of the starting block.
    n_iter : int
        Maximum number of sweeps (one product with the operator and one with
        its transpose each, re-orthonormalised).
    tol : float
        Stop once the leading ``n_check`` Ritz triplets have residuals
        ``||X v_i - sigma_i u_i|| <= tol * sigma_1``.
    n_check : int, optional
        Number of triplets whose residual is checked (default ``k``).

    Returns
    -------
    U : ndarray, shape (d1, k)
    sigma : ndarray, shape (k,), decreasing
    V : ndarray, shape (d2, k)
    n_sweeps : int
    """
    cols, indptr, shape = structure
    S = sp.csr_array((s, cols, indptr), shape=shape)
    St = S.T.tocsr()

    def times(Q):
        return L @ (R.T @ Q) + S @ Q

    k0 = min(V0.shape[1], k)
    c = k if n_check is None else max(1, min(n_check, k))
    XV = times(np.hstack([V0[:, :k0], rng.standard_normal((shape[1], k - k0))]))
    for sweep in range(1, n_iter + 2):
        Q = np.linalg.qr(XV)[0]
        # X^T Q = V diag(sigma) W^T, so Q^T X = W diag(sigma) V^T: singular
        # values to rounding of sigma_1 in absolute terms, not squared.
        V, sigma, Wt = np.linalg.svd(R @ (L.T @ Q) + St @ Q, full_matrices=False)
        U = Q @ Wt.T
        XV = times(V)
        scale = max(float(sigma[0]), np.finfo(np.float64).tiny)
        res = np.linalg.norm(XV[:, :c] - U[:, :c] * sigma[:c], axis=0) / scale
        if sweep > n_iter or np.all(res <= tol):
            break
    return U, sigma, V, sweep


def largest_gap_rank(sigma, cap, min_gap=GAP):
    """Rank at the largest ratio ``sigma_i / sigma_{i+1}``, ``1 <= i <= cap``.

    ``cap`` when no ratio reaches ``min_gap``: without a clear gap the rank is
    over- rather than under-estimated (a larger smoothing, never a frozen one).
    """
    sig = np.asarray(sigma[:cap + 1], dtype=np.float64)
    if sig.shape[0] < 2:
        return sig.shape[0]
    floor = max(float(sig[0]) * np.finfo(np.float64).eps, np.finfo(np.float64).tiny)
    ratios = sig[:-1] / np.maximum(sig[1:], floor)
    best = int(np.argmax(ratios))
    return best + 1 if ratios[best] >= min_gap else min(cap, sig.shape[0] - 1)


def identifiable_rank(d1, d2, m):
    """Largest ``r`` with ``r (d1 + d2 - r) <= m``: more cannot be determined by ``m`` samples."""
    # Smaller root of r^2 - (d1 + d2) r + m = 0.
    disc = (d1 + d2) ** 2 - 4.0 * m
    r = int(math.floor(((d1 + d2) - math.sqrt(max(disc, 0.0))) / 2.0))
    return max(1, min(r, min(d1, d2) - 1))


def lowrank_norm2(L, R):
    """``||L R^T||_F^2`` from the small Grams."""
    return float(np.sum((L.T @ L) * (R.T @ R)))


def lowrank_diff_norm(L1, R1, L0, R0):
    """``||L1 R1^T - L0 R0^T||_F`` accurate to rounding of the terms (QR cores, no Gram)."""
    L = np.hstack([L1, L0])
    R = np.hstack([R1, -R0])
    if L.shape[1] == 0:
        return 0.0
    return float(np.linalg.norm(np.linalg.qr(L, mode="r") @ np.linalg.qr(R, mode="r").T))


# ------------------------------------------------------------------ problem


class _MatrixIRLSProblem(LinRFMProblem):
    """MatrixIRLS on the shared loop: ``step`` is one weighted least-squares solve.

    State: the iterate ``X = L R^T + S`` with ``S`` supported on the observed
    entries (``X`` interpolates the data there), its leading singular
    triplets ``U, sigma, V``, the smoothing ``eps`` and the active rank.
    """

    def __init__(self, obs, rank, max_rank, mean, cg_tol, cg_max_iter, svd_n_iter, rng,
                 svd_tol=0.0):
        self.y = obs.values.astype(np.float64)
        self.rows, self.cols, self.shape = obs.rows, obs.cols, obs.shape
        self.indptr = obs.csr_arrays()[0]
        self.rank, self.max_rank, self.mean = rank, max_rank, mean
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        self.svd_n_iter, self.svd_tol = svd_n_iter, svd_tol
        self.rng = rng
        self.y_norm2 = float(self.y @ self.y)
        self.y_rms = max(math.sqrt(self.y_norm2 / self.y.shape[0]), np.finfo(np.float64).tiny)

    # -- spectral information and smoothing ---------------------------------
    def _spectrum(self, L, R, s, eps_prev, V_prev, active_prev):
        """Singular triplets, smoothing ``eps_k`` and active rank of ``L R^T + S``."""
        dmin = min(self.shape)
        target = self.rank if self.rank is not None else self.max_rank
        k = min(dmin, max(target, active_prev) + 1 + 5)
        structure = (self.cols, self.indptr, self.shape)
        sweeps = 0
        while True:
            U, sig, V, n = top_singular(L, R, s, structure, k, V_prev, self.rng,
                                        self.svd_n_iter, self.svd_tol,
                                        self.rank or max(active_prev, 1))
            sweeps += n
            r_hat = (min(self.rank, sig.shape[0]) if self.rank is not None
                     else largest_gap_rank(sig, self.max_rank))
            eps = min(eps_prev, float(sig[r_hat]) if r_hat < sig.shape[0] else 0.0)
            active = int(np.sum(sig > eps))
            # Every singular value above eps must be known for the weights to be
            # exact: grow the block until one at or below eps is found.
            if active < sig.shape[0] or k >= dmin or active >= self.max_rank:
                break
            k = min(dmin, 2 * k)
        self.svd_sweeps = sweeps
        return U, sig, V, eps, min(active, self.max_rank), r_hat

    def _norm2(self, L, R, s):
        """``||X||_F^2`` of ``X = L R^T + S``, which equals ``y`` on the observed entries."""
        return max(lowrank_norm2(L, R) - float(np.sum((self.y - s) ** 2)) + self.y_norm2, 0.0)

    def _objective(self, norm2, sig, eps, active):
        """Smoothed log-det ``F_eps(X) - d log eps`` of the iterate (see Notes)."""
        top = sig[:active]
        if eps <= 0:
            return float(np.sum(np.log(top))) if active else 0.0
        tail = max(norm2 - float(top @ top), 0.0)
        return float(np.sum(np.log(top / eps)) + 0.5 * (tail / eps ** 2
                                                       - (min(self.shape) - active)))

    # -- LinRFMProblem --------------------------------------------------------
    def initialize(self):
        # W_0 = identity: the first iterate is the zero-filled data.
        d1, d2 = self.shape
        L, R, s = np.zeros((d1, 0)), np.zeros((d2, 0)), self.y.copy()
        U, sig, V, eps, active, r_hat = self._spectrum(L, R, s, math.inf, np.zeros((d2, 0)), 0)
        self.state = (L, R, s, U, sig, V, eps, active, r_hat)

    def tangent_space(self):
        """:class:`TangentSpace` and flat weights of the current weight operator."""
        _, _, _, U, sig, V, eps, active, _ = self.state
        ts = TangentSpace(U[:, :active], V[:, :active], self.rows, self.cols, self.indptr)
        return ts, ts.expand(*tangent_weights(sig[:active], eps, self.mean))

    def solve(self):
        """One weighted least-squares step: ``(L, R, s, cg_iterations)`` of the new iterate."""
        L, R, s, _, _, _, eps, _, _ = self.state
        ts, w = self.tangent_space()
        if ts.size == 0:
            return np.zeros((self.shape[0], 0)), np.zeros((self.shape[1], 0)), self.y.copy(), 0
        # Warm start: the coordinates gamma of an iterate X satisfy
        # P_T(X) = (1 + w) gamma, so the current one maps to P_T(X_k) / (1 + w).
        x0 = (ts.project_lowrank(L, R) + ts.project_sparse(s)) / (1.0 + w)
        rtol = min(max(self.cg_tol * eps / self.y_rms, _CG_RTOL_MIN), _CG_RTOL_MAX)
        gamma, n_cg = solve_tangent_system(ts, w, self.y, x0, rtol, self.cg_max_iter)
        L_new, R_new = ts.factors(gamma)
        return L_new, R_new, self.y - ts.sample(gamma), n_cg

    def step(self):
        L0, R0, s0, _, _, V0, eps0, active0, _ = self.state
        L, R, s, n_cg = self.solve()
        U, sig, V, eps, active, r_hat = self._spectrum(L, R, s, eps0, V0, active0)
        norm2 = self._norm2(L, R, s)
        # X_new - X_old vanishes on Omega (both interpolate y), where its
        # low-rank part equals s_old - s_new.
        diff2 = lowrank_diff_norm(L, R, L0, R0) ** 2 - float(np.sum((s0 - s) ** 2))
        record = {"rel_change": math.sqrt(max(diff2, 0.0) / max(norm2, np.finfo(float).tiny)),
                  "objective": self._objective(norm2, sig, eps, active),
                  "reg": eps0, "cg_iterations": n_cg, "rank": active0,
                  "rank_estimate": r_hat, "next_eps": eps, "svd_sweeps": self.svd_sweeps}
        self.state = (L, R, s, U, sig, V, eps, active, r_hat)
        return record

    def snapshot(self):
        return self.state

    def restore(self, snap):
        self.state = snap

    def iterate(self) -> np.ndarray:
        """The current iterate as a dense ``(d1, d2)`` array: the low-rank part
        plus the sparse part on the observed entries (for callbacks on small
        problems; large ones read ``state.problem.state`` factors instead)."""
        L, R, s = self.state[:3]
        Z = L @ R.T
        Z[self.rows, self.cols] += s
        return Z


# ---------------------------------------------------------------- estimator


class MatrixIRLSCompleter(PersistenceMixin, CompletionBaselineMixin, BaseEstimator):
    r"""MatrixIRLS matrix completion: IRLS with a second-order, low-dimensional step.

    Parameters
    ----------
    rank : int, optional
        Target rank ``r`` of the smoothing rule
        :math:`\epsilon_k = \min(\epsilon_{k-1}, \sigma_{r+1}(X_k))` (the
        paper's rule). ``None``: the **rank-adaptive variant** (ours, not
        the paper's): ``r`` is re-estimated at every iteration as the position
        of the largest ratio :math:`\sigma_i/\sigma_{i+1}`, ``i <= max_rank``,
        when that ratio is at least 1e3, else ``max_rank`` (a heuristic; see
        docs/baselines.md for what it was chosen against).
    max_rank : "auto" or int, default="auto"
        Cap on the active rank (and on the rank estimate). ``"auto"``: the
        largest ``r`` with ``r (d1 + d2 - r) <= m``, beyond which ``m``
        samples cannot determine a rank-``r`` matrix.
    mean : {"harmonic", "geometric"}, default="harmonic"
        How the left and right spectral weights are combined into the weight
        operator (see Notes).
    max_iter : int, default=100
        Maximum number of weighted least-squares steps (outer iterations).
    tol : float, default=1e-10
        Stop when the relative change ``||X_k - X_{k-1}||_F / ||X_k||_F`` falls
        below ``tol`` (0 disables it).
    cg_tol : float, default=1e-5
        CG stops at relative residual ``cg_tol * eps_k / rms(y)``, clipped to
        ``[1e-13, 1e-2]`` (the paper's coupling of the inner tolerance to the
        smoothing, made scale-free).
    cg_max_iter : int, default=500
        Maximum CG iterations per step.
    svd_n_iter : int, default=30
        Maximum number of sweeps of the warm-started randomized subspace
        iteration that computes the leading singular triplets.
    svd_tol : float, default=1e-6
        The subspace iteration stops once the leading ``rank`` (else the
        previous active rank) Ritz triplets have residuals
        ``||X v_i - sigma_i u_i|| <= svd_tol * sigma_1``.
    random_state : int, RandomState instance or None
        Seeds the random part of the subspace iteration's starting block.
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per iteration.
    callback : callable, optional
        ``callback(iteration, record)`` after each step (the scalars of
        ``history_``); returning True stops the fit.

    Attributes
    ----------
    left_ : ndarray, shape (d1, q)
    right_ : ndarray, shape (d2, q)
        The completed matrix off the observed entries is ``left_ @ right_.T``
        (``q = 2 r_k``: the tangent-space point ``U G1 V^T + U G2 + G3 V^T``).
    completed_ : ndarray, shape (d1, d2)
        Dense completed matrix (observed entries equal the data), **computed
        on access** from the factors; use :meth:`predict` or the factors for
        large matrices.
    rank_ : int
        Active rank ``r_k`` (singular values above ``eps_``) of the last iterate.
    eps_ : float
        Smoothing of the last iterate.
    n_iter_ : int
        Weighted least-squares steps run (the zero-filled start is not counted;
        the MATLAB code counts it as iteration 1).
    history_ : dict of str to list
        Per step: ``iteration``, ``time``, ``rel_change``, ``objective``,
        ``reg`` (the ``eps`` of the weights used), ``rank`` (active rank
        used), ``cg_iterations``, ``rank_estimate``, ``next_eps``,
        ``svd_sweeps`` (subspace-iteration sweeps for the new iterate).
    stop_reason_ : str
        ``"tol"``, ``"max_iter"``, ``"callback"`` or ``"interrupted"``.
    shape_ : tuple of int
    n_features_in_ : int
        ``d2``.

    Notes
    -----
    With :math:`X_k = U \Sigma V^\top` (full SVD, singular values
    :math:`\sigma_i`) and :math:`a_i = \max(\sigma_i, \epsilon_k)`, the
    weight operator is

    .. math::
        W_k(Z) = U \big(H \circ (U^\top Z V)\big) V^\top, \qquad
        H_{ij} = \frac{2}{a_i^2 + a_j^2} \ \text{(harmonic)}, \quad
        \frac{1}{a_i a_j} \ \text{(geometric)},

    and one iteration is

    .. math::
        X_{k+1} = \arg\min_{P_\Omega(X) = y} \langle X, W_k(X)\rangle, \qquad
        \epsilon_{k+1} = \min(\epsilon_k, \sigma_{r+1}(X_{k+1})),

    starting from :math:`W_0 = I` (:math:`X_1 = P_\Omega^*(y)`,
    :math:`\epsilon_0 = \infty`). With ``r_k`` singular values above
    :math:`\epsilon_k`, :math:`W_k^{-1} = \epsilon_k^2 I + P_T^* D P_T` with
    ``T`` the tangent space at the rank-``r_k`` truncation and
    :math:`D = 1/H - \epsilon_k^2` on ``T``. Woodbury on
    :math:`X = W^{-1} P_\Omega^* (P_\Omega W^{-1} P_\Omega^*)^{-1} y` gives,
    with :math:`B = P_\Omega P_T^*` and :math:`w = \epsilon_k^2 / D`,

    .. math::
        (\operatorname{diag}(w) + B^* B)\,\gamma = B^* y, \qquad
        X_{k+1} = P_T^* \gamma + P_\Omega^*(y - B\gamma),

    an SPD system in the ``r_k (d_1 + d_2 + r_k)`` tangent coordinates,
    solved by CG warm-started from :math:`P_T(X_k)/(1 + w)`; no
    :math:`1/\epsilon` appears, and each CG step costs
    :math:`O(|\Omega| r_k + (d_1 + d_2) r_k^2)`. The new iterate is rank
    ``2 r_k`` plus a sparse matrix on :math:`\Omega`, and its singular
    triplets come from a randomized subspace iteration on that operator,
    warm-started from the previous right singular vectors (the block grows
    until a computed singular value is at most :math:`\epsilon_k`, so the
    weights are exact unless ``max_rank`` caps them).

    The paper's weight is the *geometric* mean for ``p = 0`` (its
    "optimal" weight operator); the harmonic mean is that of Kümmerle &
    Sigl's HM-IRLS (2018), which the paper's analysis also covers. Both are
    offered; they differ only in ``H``.

    ``history_["objective"]`` is
    :math:`\sum_{\sigma_i > \epsilon} \log(\sigma_i/\epsilon) + \frac12 \sum_{\sigma_i
    \le \epsilon} (\sigma_i^2/\epsilon^2 - 1)` (the paper's smoothed log-det
    :math:`F_\epsilon` up to :math:`d \log\epsilon`) computed from the known
    singular values and :math:`\|X\|_F`, exact when all others are at most
    :math:`\epsilon`.

    Stopping uses only the data (the relative change); the truth never
    enters. Rows or columns without observations are predicted by the
    tangent-space part (not meaningful); a warning says how many.

    References
    ----------
    C. Kümmerle and C. M. Verdun, "A scalable second order method for
    ill-conditioned matrix completion from few samples", ICML 2021.
    C. Kümmerle and J. Sigl, "Harmonic mean iteratively reweighted least
    squares for low-rank matrix recovery", JMLR 19(47), 2018.

    Examples
    --------
    >>> from linrfm.datasets import make_completion_problem
    >>> from linrfm.baselines import MatrixIRLSCompleter
    >>> prob = make_completion_problem(60, 50, 2, oversampling=3, random_state=0)
    >>> est = MatrixIRLSCompleter(rank=2, random_state=0).fit(prob.observed)
    >>> prob.missing_error(est.completed_) < 1e-8
    True
    """

    def __init__(self, rank=None, max_rank="auto", mean="harmonic", max_iter=100, tol=1e-10,
                 cg_tol=1e-5, cg_max_iter=500, svd_n_iter=30, svd_tol=1e-6, random_state=None,
                 verbose=0,
                 callback=None):
        self.rank = rank
        self.max_rank = max_rank
        self.mean = mean
        self.max_iter = max_iter
        self.tol = tol
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter
        self.svd_n_iter = svd_n_iter
        self.svd_tol = svd_tol
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _check_params(self, shape, nnz):
        dmin = min(shape)
        rank = None if self.rank is None else check_int(self.rank, "rank", low=1)
        if rank is not None and rank >= dmin:
            raise ValueError(f"rank must be < min(d1, d2) = {dmin}, got {rank}")
        if isinstance(self.max_rank, str) and self.max_rank == "auto":
            max_rank = identifiable_rank(shape[0], shape[1], nnz)
        elif isinstance(self.max_rank, str):
            raise ValueError(f"max_rank must be 'auto' or an integer, got {self.max_rank!r}")
        else:
            max_rank = min(check_int(self.max_rank, "max_rank", low=1), dmin)
        max_rank = max(max_rank, rank or 1)
        check_choice(self.mean, "mean", MEANS)
        check_int(self.max_iter, "max_iter", low=1)
        check_float(self.tol, "tol", low=0.0)
        check_float(self.cg_tol, "cg_tol", low=0.0, low_inclusive=False)
        check_int(self.cg_max_iter, "cg_max_iter", low=1)
        check_int(self.svd_n_iter, "svd_n_iter", low=0)
        check_float(self.svd_tol, "svd_tol", low=0.0)
        check_verbose(self.verbose)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {self.callback!r}")
        return rank, max_rank

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
        if self.rank is not None:
            check_int(self.rank, "rank", low=1)
        obs = check_observations(X, shape)
        rank, max_rank = self._check_params(obs.shape, obs.nnz)
        problem = _MatrixIRLSProblem(obs, rank, max_rank, self.mean, float(self.cg_tol),
                                     int(self.cg_max_iter), int(self.svd_n_iter),
                                     check_random_state(self.random_state),
                                     float(self.svd_tol))
        result = run_loop(problem, max_iter=int(self.max_iter), tol=float(self.tol),
                          verbose=self.verbose, callback=self.callback, desc="MatrixIRLS")
        L, R, _, _, _, _, eps, active, _ = problem.state
        self.left_, self.right_ = L, R
        self.rank_, self.eps_ = int(active), float(eps)
        self.n_iter_ = int(result.n_iter)
        self.history_ = result.history
        self.stop_reason_ = result.stop_reason
        self.shape_ = obs.shape
        self.n_features_in_ = obs.shape[1]
        self._observed = (obs.rows * obs.shape[1] + obs.cols, obs.values.copy())
        return self

    @property
    def completed_(self):
        """Dense completed matrix, shape (d1, d2), computed from the factors on access."""
        check_is_fitted(self, "left_")
        Z = self.left_ @ self.right_.T
        keys, values = self._observed
        Z.ravel()[keys] = values
        return Z

    def predict(self, rows, cols):
        """Entries of the completed matrix (the data on observed positions), without forming it.

        Parameters
        ----------
        rows, cols : array_like of int, same shape
            Entry coordinates.

        Returns
        -------
        ndarray, same shape as ``rows``
        """
        check_is_fitted(self, "left_")
        rows, cols = check_entry_indices(rows, cols, self.shape_)
        d2 = self.shape_[1]
        r, c = rows.ravel(), cols.ravel()
        out = np.einsum("ij,ij->i", self.left_[r], self.right_[c])
        keys, values = self._observed
        pos = np.clip(np.searchsorted(keys, r * d2 + c), 0, keys.shape[0] - 1)
        hit = keys[pos] == r * d2 + c
        out[hit] = values[pos[hit]]
        return out.reshape(rows.shape)
