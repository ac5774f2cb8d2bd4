r"""Low-rank matrix sensing with lin-RFM.

Recover a low-rank :math:`Z^\star \in \mathbb{R}^{d_1 \times d_2}` from
linear measurements :math:`y_k = \langle A_k, Z^\star \rangle`,
:math:`k = 1, \dots, m`. Unlike completion the problem does not decouple by
rows: each lin-RFM step is one ``m x m`` symmetric positive-definite system,
solved by Cholesky or, matrix-free, by preconditioned conjugate gradients.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg as sla
from scipy.sparse.linalg import LinearOperator, cg
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._memory import available_bytes, check_memory
from .._observations import value_scale
from .._validation import check_choice, check_float, check_int, check_power, check_verbose
from .._validation import finite_predictions
from ..backends._threads import blas_threads_for
from ..core.checkpoint import checkpointer_for
from ..core.kernel import kernel_from_agop, spectral_objective
from ..core.loop import LinRFMProblem, check_callback, run_loop
from ..core.sides import SIDES, side_cycle
from ..core.smoothing import SmoothingSchedule, check_reg
from ..exceptions import ConvergenceWarning, LinRFMWarning
from ..operators import (FunctionMeasurementOperator, MeasurementOperator,
                         as_measurement_operator, check_measurement_norms)
from ..persistence import PersistenceMixin

__all__ = ["LinRFMSensing"]

# "auto" solver: Cholesky of the m x m system up to this many measurements and
# this much memory for S (and for a dense copy of a matrix-free operator).
_DIRECT_MAX_M = 4000
_DIRECT_MAX_BYTES = 1 << 30


def _choose_solver(op: MeasurementOperator) -> str:
    m = op.n_measurements
    d1, d2 = op.matrix_shape
    need = 16.0 * m * m  # S and its Cholesky factor
    if not op.explicit:
        need += 8.0 * m * d1 * d2
    budget = min(_DIRECT_MAX_BYTES, 0.25 * available_bytes())
    return "direct" if m <= _DIRECT_MAX_M and need <= budget else "cg"


class _SensingProblem(LinRFMProblem):
    """One lin-RFM sensing problem.

    A step on the ``"columns"`` side uses ``G = Z^T Z / d1`` and
    ``Z = mat(A^T c) Kt``; on the ``"rows"`` side ``G = Z Z^T / d2`` and
    ``Z = Kt mat(A^T c)`` (the same step on the transposed problem, computed
    without transposing ``A``). ``sides`` is cycled through, one per step.
    """

    def __init__(self, op: MeasurementOperator, y: np.ndarray, power: float,
                 schedule: SmoothingSchedule, sides: tuple[str, ...], solver: str,
                 cg_tol: float, cg_maxiter: int | None):
        self.op, self.y, self.power, self.schedule, self.sides = op, y, power, schedule, sides
        self.solver, self.cg_tol, self.cg_maxiter = solver, cg_tol, cg_maxiter
        self.d1, self.d2 = op.matrix_shape
        self.y_norm = float(np.linalg.norm(y)) or 1.0
        self.n_cg_unconverged = 0
        self.n_direct_fallback = 0
        self.t = 0

    @staticmethod
    def _apply_kernel(W: np.ndarray, Kt: np.ndarray, side: str) -> np.ndarray:
        return W @ Kt if side == "columns" else Kt @ W

    # -- one minimum-norm interpolation --------------------------------------
    def _solve(self, side: str, Kt: np.ndarray, c0: np.ndarray | None):
        """``Z = mat(A^T c) Kt`` (or ``Kt mat(A^T c)``) with ``S c = y``."""
        info: dict[str, float] = {}
        if self.solver == "direct":
            S = self.op.gram(Kt, side)
            try:
                c = sla.cho_solve(sla.cho_factor(S, lower=False, check_finite=False), self.y,
                                  check_finite=False)
            except np.linalg.LinAlgError:
                # singular S: dependent measurements (m > d1*d2 or repeats)
                self.n_direct_fallback += 1
                c = sla.lstsq(S, self.y, cond=None, check_finite=False)[0]
        else:
            c, info = self._cg(side, Kt, c0)
        return self._apply_kernel(self.op.adjoint(c), Kt, side), c, info

    def _cg(self, side: str, Kt: np.ndarray, c0: np.ndarray | None):
        op, m, shape = self.op, self.op.n_measurements, self.op.matrix_shape

        def S_matvec(c):
            # the private _matvec/_rmatvec skip LinearOperator's per-call checks,
            # which cost as much as the products at this size
            W = self._apply_kernel(op._rmatvec(np.ravel(c)).reshape(shape), Kt, side)
            return op._matvec(W.ravel())

        S = LinearOperator((m, m), matvec=S_matvec, dtype=np.float64)
        if op.explicit:
            diag = op.gram_diagonal(Kt, side)
        else:
            # E<A_k, A_k K> = ||A_k||^2 tr(K)/d for isotropic A_k: avoids m
            # adjoint applications per iteration on a matrix-free operator.
            diag = op.row_norms_sq() * (np.trace(Kt) / Kt.shape[0])
        diag = np.where(diag > 0, diag, 1.0)
        M = LinearOperator((m, m), matvec=lambda r: np.ravel(r) / diag, dtype=np.float64)
        count = [0]

        def callback(_):
            count[0] += 1

        maxiter = self.cg_maxiter if self.cg_maxiter is not None else 10 * m
        c, status = cg(S, self.y, x0=c0, rtol=self.cg_tol, atol=0.0, maxiter=maxiter, M=M,
                       callback=callback)
        if status != 0:
            self.n_cg_unconverged += 1
        residual = float(np.linalg.norm(S_matvec(c) - self.y)) / self.y_norm
        return c, {"cg_iterations": count[0], "cg_residual": residual}

    # -- LinRFMProblem ---------------------------------------------------------
    def agop(self, Z: np.ndarray, side: str) -> np.ndarray:
        """``Z^T Z / d1`` (columns) or ``Z Z^T / d2`` (rows)."""
        return Z.T @ Z / self.d1 if side == "columns" else Z @ Z.T / self.d2

    def kernel_scale(self, Z: np.ndarray) -> float:
        """``(trace(G)/d)**(2 power)``: the data scale in the units of the kernel."""
        # trace(G)/d = ||Z||_F^2 / (d1 d2) on either side. Raising it to 2 power
        # keeps K + reg I, hence the fit, equivariant under y -> s y for every power.
        with np.errstate(over="ignore"):  # inf: the schedule falls back to 1
            return float(np.float64(np.sum(Z * Z) / (self.d1 * self.d2)) ** (2.0 * self.power))

    def initialize(self):
        # M_0 = I: the minimum Frobenius-norm interpolant (same on both sides).
        Z, c, _ = self._solve("columns", np.eye(self.d2), None)
        if not np.all(np.isfinite(Z)):
            raise ValueError("the minimum-norm interpolant Z_0 is not finite: the measurement "
                             "system over- or underflows; rescale A")
        self.Z, self.c, self.t = Z, c, 0
        self.schedule.start(self.kernel_scale(Z))

    @property
    def side(self) -> str:
        """Side of the next step."""
        return self.sides[self.t % len(self.sides)]

    def step(self):
        side, reg = self.side, self.schedule.value
        K = kernel_from_agop(self.agop(self.Z, side), self.power)
        Kt = K + reg * np.eye(K.shape[0])
        if not np.all(np.isfinite(Kt)):
            return self._reject()
        Z, c, info = self._solve(side, Kt, self.c)
        if not np.all(np.isfinite(Z)):
            return self._reject()
        z_norm = float(np.linalg.norm(Z))
        rel = float(np.linalg.norm(Z - self.Z)) / z_norm if z_norm > 0 else 0.0
        G = self.agop(Z, side)
        record = {
            "rel_change": rel,
            "objective": spectral_objective(np.linalg.eigvalsh(G), self.power, reg),
            "reg": reg / self.schedule.scale0,
            "residual": float(np.linalg.norm(self.op.forward(Z) - self.y)) / self.y_norm,
            **info,
        }
        self.schedule.update(rel, self.kernel_scale(Z))
        self.Z, self.c, self.t = Z, c, self.t + 1
        return record

    def _reject(self) -> dict:
        """A non-finite step: the loop keeps the last finite iterate (not replaced here)."""
        return {"rel_change": math.nan, "objective": math.nan,
                "reg": self.schedule.relative_value}

    def snapshot(self):
        return (self.Z, self.c, self.t, self.schedule.value)

    def restore(self, snap):
        self.Z, self.c, self.t, self.schedule.value = snap

    def state_dict(self) -> dict:
        return {"Z": self.Z, "c": self.c, "t": self.t, "schedule": self.schedule.state()}

    def load_state_dict(self, state) -> None:
        self.Z = np.array(state["Z"], dtype=np.float64)
        self.c = np.array(state["c"], dtype=np.float64)
        self.t = int(state["t"])
        self.schedule.set_state(state["schedule"])

    def iterate(self) -> np.ndarray:
        """The current ``(d1, d2)`` iterate (a reference: do not modify)."""
        return self.Z


def _fingerprint_data(op: MeasurementOperator, y: np.ndarray) -> list:
    """The arrays a sensing fit depends on, for a checkpoint's fingerprint."""
    if not op.explicit:
        raise ValueError("checkpoint_path needs an explicit sensing operator (an array or a "
                         "sparse matrix A); a matrix-free operator cannot be fingerprinted")
    M = op.matrix
    parts = [M.data, M.indices, M.indptr] if hasattr(M, "indptr") else [M]
    return parts + [np.asarray(op.matrix_shape), y]


class LinRFMSensing(PersistenceMixin, BaseEstimator):
    r"""Low-rank matrix sensing with a linear Recursive Feature Machine.

    Given measurements :math:`y_k = \langle A_k, Z^\star \rangle` of an
    unknown ``d1 x d2`` matrix, lin-RFM alternates a minimum-norm
    interpolation in a reweighted feature space with an update of the feature
    matrix from the interpolant's AGOP. It is IRLS-p with ``p = 2 - 4 power``.

    Parameters
    ----------
    power : float, default=0.5
        lin-RFM power (the paper's alpha): feature matrix ``M = G**power``,
        kernel ``K = G**(2 power)``. ``0.5`` is SVD-free (``K = G``), ``0.25``
        is nuclear-norm IRLS (p = 1), ``1`` is p = -2.
    reg : "auto" or float, default="auto"
        Smoothing added to the kernel (``K + reg I``), relative to the data
        scale in kernel units, ``s = (trace(G)/d)**(2 power)`` (``trace(G)/d``
        for power 1/2), so that scaling ``y`` scales ``Z_`` for every power.
        ``"auto"``: starts at ``s_0`` and, after each iteration,
        ``reg <- min(reg, rel_change * s)``
        (:class:`~linrfm.core.smoothing.SmoothingSchedule` with ``decrease=1``;
        with the completion default 0.1, or 0.3, ``reg`` fell too early and
        one-sided iterations stopped at 20-60 % error), so the fixed point
        interpolates. A float is a fixed value ``reg * s_0``, with ``s_0`` from
        the first iterate (``Z_0``, the minimum-norm interpolant).
    side : {"auto", "alternate", "columns", "rows"}, default="auto"
        Where the kernel acts. ``"columns"``: ``G = Z^T Z / d1`` (``d2 x d2``),
        ``Z = sum_k c_k A_k (K + reg I)``. ``"rows"``: ``G = Z Z^T / d2``
        (``d1 x d1``), ``Z = (K + reg I) sum_k c_k A_k``. ``"alternate"``:
        columns, then rows, and so on: much faster (30 x 30, rank 2, power 1/2,
        3 seeds: at 2x the information limit ~75 iterations to 3e-8 against
        ~260 one-sided; at 1.5x alternating reached 1e-7 on every seed,
        one-sided 4e-4, 2e-2 and 3e-1 after 400 iterations). ``"auto"`` is
        ``"alternate"``, as in every linrfm estimator with a ``side``.
    max_iter : int, default=500
        Maximum number of lin-RFM iterations.
    tol : float, default=1e-8
        Stop when ``||Z_t - Z_{t-1}||_F / ||Z_t||_F < tol``.
    solver : {"auto", "direct", "cg"}, default="auto"
        ``"direct"``: form the ``m x m`` matrix ``S`` and solve by Cholesky.
        ``"cg"``: matrix-free preconditioned conjugate gradients on ``S``.
        ``"auto"``: direct when ``m <= 4000`` and ``S`` fits in
        ``min(1 GiB, available memory / 4)``, else CG.
    cg_tol : float, default=1e-10
        Relative residual tolerance of each CG solve.
    cg_maxiter : int or None, default=None
        CG iteration cap per lin-RFM iteration (``None``: ``10 m``).
    random_state : int, RandomState, Generator or None, default=None
        Random vectors of the adjoint (dot) test run on a ``LinearOperator``
        input. The fit itself is deterministic.
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per iteration.
    callback : callable, optional
        ``callback(state)`` after each iteration with a
        :class:`~linrfm.core.loop.LoopState` (``state.record`` is the row of
        ``history_``, ``state.iterate()`` the current ``(d1, d2)`` iterate);
        ``callback(iteration, record)`` is accepted too. Returning True stops
        the fit.
    checkpoint_path : str or path-like, optional
        Write the fit's full state to this ``.npz`` file every
        ``checkpoint_every`` iterations and when the fit stops (Ctrl-C and
        callback stops included), atomically. If the file exists, ``fit``
        resumes from it and ends bit-identical to an uninterrupted fit; a
        checkpoint written for other data or parameters is refused. Needs an
        explicit operator (array or sparse ``A``): a matrix-free operator
        cannot be fingerprinted. ``max_iter``, ``verbose`` and ``callback``
        may differ on resume.
    checkpoint_every : int, default=10
        Iterations between two checkpoints.
    max_memory : int or None, default=None
        Memory budget in bytes for the arrays a fit allocates (the ``m x m``
        system and its factor with the direct solver, a dense copy of a
        matrix-free operator). None: 80 % of the memory available when ``fit``
        starts. A larger request is refused before any work, naming the
        cheaper option (``solver="cg"``).

    Attributes
    ----------
    Z_ : ndarray, shape (d1, d2)
        Recovered matrix.
    feature_matrix_ : ndarray, shape (d, d)
        ``M = G**power`` of the final AGOP (``d = d2`` for columns, ``d1``
        for rows).
    kernel_ : ndarray, shape (d, d)
        ``K = G**(2 power)`` of the final AGOP (without ``reg``).
    agop_ : ndarray, shape (d, d)
        Final AGOP ``G``.
    reg_ : float
        Smoothing at the end of the fit, relative to the scale ``s_0`` of the
        first iterate (the units of the ``reg`` parameter, as in every linrfm
        estimator); the absolute value added to ``kernel_`` is
        ``kernel_reg_``.
    kernel_reg_ : float
        Absolute smoothing at the end of the fit (same units as ``kernel_``).
    side_ : {"columns", "rows"}
    solver_ : {"direct", "cg"}
    shape_ : tuple of int
        ``(d1, d2)``.
    n_measurements_ : int
    n_iter_ : int
    history_ : dict of str to list
        Per iteration: ``iteration``, ``time``, ``objective`` (see Notes),
        ``rel_change``, ``reg`` (used in that step, relative to ``s_0``), ``residual``
        (``||A(Z) - y|| / ||y||``) and, with CG, ``cg_iterations`` and
        ``cg_residual`` (``||S c - y|| / ||y||`` of the returned solution).
    converged_ : bool
    stop_reason_ : str
        ``"tol"``, ``"max_iter"``, ``"interrupted"`` or ``"nonfinite"`` (a step
        gave a non-finite iterate: the last finite one is kept, with a
        :class:`~linrfm.exceptions.NonFiniteWarning`).

    Notes
    -----
    **One step** (kernel on the columns). With ``K_t = G_t**(2 power)`` and
    ``G_t = Z_t^T Z_t / d1``:

    .. math:: Z_{t+1} = \arg\min_Z \operatorname{tr}(Z (K_t + \lambda I)^{-1} Z^T)
              \quad \text{s.t.}\quad \langle A_k, Z\rangle = y_k,

    whose solution is :math:`Z = \sum_k c_k A_k (K_t + \lambda I)` with
    :math:`S c = y`, :math:`S_{kl} = \langle A_k, A_l (K_t + \lambda I)\rangle`.
    The smoothing enters as the ridge ``K + reg I``, exactly as in
    completion, where ridge-plus-replace equals interpolation with
    ``K + reg I``. ``Z_0`` uses ``K = I`` (minimum Frobenius norm).

    **Objective.** At fixed ``reg`` each step is a majorize-minimize step on
    :math:`F(Z) = \sum_j h(\lambda_j(Z^T Z / d_1))`,
    :math:`h'(s) = 1/(s^{2\,power} + reg)`, so ``F`` never increases;
    ``history_["objective"]`` is ``F(Z_{t+1})`` with the ``reg`` of step ``t``.
    With ``reg -> 0`` a step equals IRLS-p with weights
    ``(G + eps I)**(p/2 - 1)``, ``p = 2 - 4 power``.

    **Cost per iteration.** Direct: ``m d1 d2^2`` (``A_l K``) + ``m^2 d1 d2``
    (``S``) + ``m^3/3`` (Cholesky). CG: per CG iteration one ``A``, one
    ``A^T`` and one ``d1 d2^2`` product; the Jacobi preconditioner is the
    exact ``diag(S)`` for stored ``A_k`` and ``||A_k||^2 tr(K)/d2`` for a
    matrix-free ``LinearOperator``; each CG solve starts from the previous
    coefficients ``c``.

    References
    ----------
    A. Radhakrishnan, M. Belkin, D. Drusvyatskiy, "Linear Recursive Feature
    Machines provably recover low-rank matrices", PNAS 122(13), 2025.

    Examples
    --------
    >>> from linrfm.datasets import make_sensing_problem
    >>> from linrfm.problems.sensing import LinRFMSensing
    >>> A, y, Z = make_sensing_problem(20, 20, 2, 3 * 2 * 38, random_state=0)
    >>> est = LinRFMSensing().fit(A, y)
    >>> bool(np.linalg.norm(est.Z_ - Z) / np.linalg.norm(Z) < 1e-6)
    True
    """

    # constant c of the "auto" rule reg <- min(reg, c * rel_change * scale)
    _DECREASE = 1.0

    def __init__(self, power=0.5, reg="auto", side="auto", max_iter=500, tol=1e-8,
                 solver="auto", cg_tol=1e-10, cg_maxiter=None, random_state=None, verbose=0,
                 callback=None, checkpoint_path=None, checkpoint_every=10, max_memory=None):
        self.power = power
        self.reg = reg
        self.side = side
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.cg_tol = cg_tol
        self.cg_maxiter = cg_maxiter
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.max_memory = max_memory

    def _check_params(self):
        power = check_power(self.power)
        reg = check_reg(self.reg)
        side = check_choice(self.side, "side", SIDES)
        max_iter = check_int(self.max_iter, "max_iter", low=1)
        tol = check_float(self.tol, "tol", low=0.0)
        solver = check_choice(self.solver, "solver", {"auto", "direct", "cg"})
        cg_tol = check_float(self.cg_tol, "cg_tol", low=0.0, low_inclusive=False)
        cg_maxiter = (None if self.cg_maxiter is None
                      else check_int(self.cg_maxiter, "cg_maxiter", low=1))
        check_verbose(self.verbose)
        return power, reg, side, max_iter, tol, solver, cg_tol, cg_maxiter

    def fit(self, A, y, shape=None):
        """Recover ``Z`` from measurements ``y_k = <A_k, Z>``.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse (m, d1*d2), or \
LinearOperator (m, d1*d2)
            Sensing matrices (row-major ``vec(A_k)`` when flattened); see
            :func:`linrfm.operators.as_measurement_operator`.
        y : array_like, shape (m,)
            Measurements.
        shape : tuple (d1, d2), optional
            Required when ``A`` is flattened.

        Returns
        -------
        self
        """
        power, reg, side, max_iter, tol, solver, cg_tol, cg_maxiter = self._check_params()
        rng = check_random_state(self.random_state)
        op = as_measurement_operator(A, shape, random_state=rng)
        y = self._check_y(y, op.n_measurements)
        check_measurement_norms(op)
        # scale-equivariant fit: iterate on y of order one (exact power of two)
        y_scale = value_scale(y)
        y = y / y_scale
        d1, d2 = op.matrix_shape
        if solver == "auto":
            solver = _choose_solver(op)
        if op.n_measurements > d1 * d2:
            warnings.warn(f"{op.n_measurements} measurements for {d1 * d2} unknowns: the "
                          "system is overdetermined and S is singular; least squares is used "
                          "where Cholesky fails.", LinRFMWarning, stacklevel=2)
        self._check_memory(op, solver)
        if solver == "direct" and isinstance(op, FunctionMeasurementOperator):
            op = op.materialize()
        sides = side_cycle(side)
        schedule = SmoothingSchedule(reg, decrease=self._DECREASE)
        problem = _SensingProblem(op, y, power, schedule, sides, solver, cg_tol, cg_maxiter)
        m = op.n_measurements
        flops = (m * m * d1 * d2 + m**3 / 3 if solver == "direct"
                 else m * d1 * d2 * max(d1, d2))
        # per-iteration work: see backends/_threads.py; overflow inside a step is
        # caught by the non-finite check (NumericalWarning), not NumPy's warning
        with blas_threads_for(flops), np.errstate(over="ignore", invalid="ignore"):
            result = run_loop(problem, max_iter=max_iter, tol=tol, verbose=self.verbose,
                              callback=check_callback(self.callback), desc="LinRFMSensing",
                              checkpoint=checkpointer_for(
                                  self, lambda: _fingerprint_data(op, y)))
        if problem.n_cg_unconverged:
            warnings.warn(f"CG reached cg_maxiter in {problem.n_cg_unconverged} lin-RFM "
                          "iteration(s); see history_['cg_residual'], raise cg_maxiter or "
                          "cg_tol.", ConvergenceWarning, stacklevel=2)

        last = sides[(problem.t - 1) % len(sides)]
        G = problem.agop(problem.Z, last)
        # back to the user's units (powers of the exact power-of-two y_scale)
        s2 = np.float64(y_scale) ** 2
        with np.errstate(over="ignore"):
            self.Z_ = problem.Z * y_scale
            self.agop_ = G * s2
            self.feature_matrix_ = kernel_from_agop(G, power / 2.0) * s2 ** power
            self.kernel_ = kernel_from_agop(G, power) * s2 ** (2.0 * power)
            self.kernel_reg_ = float(schedule.value * s2 ** (2.0 * power))
        self.reg_ = float(schedule.relative_value)
        self.side_ = last
        self.solver_ = solver
        self.shape_ = (d1, d2)
        self.n_measurements_ = op.n_measurements
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.converged_ = result.converged
        self.stop_reason_ = result.stop_reason
        return self

    def _check_memory(self, op, solver: str) -> None:
        """Refuse a direct solve whose arrays exceed ``max_memory``, before any work."""
        m = op.n_measurements
        d1, d2 = op.matrix_shape
        d = max(d1, d2)
        need = 8.0 * (3 * d * d + 3 * d1 * d2)  # kernels, iterate, adjoint
        if solver == "direct":
            need += 16.0 * m * m  # S and its Cholesky factor
            if isinstance(op, FunctionMeasurementOperator):
                need += 8.0 * m * d1 * d2
        check_memory(need, what=f"lin-RFM sensing with {m} measurements of a {d1} x {d2} "
                                f"matrix (solver={solver!r})",
                     cheaper='use solver="cg" (matrix-free, no m x m system)'
                     if solver == "direct" else "use fewer measurements or a smaller matrix",
                     max_memory=self.max_memory)

    @staticmethod
    def _check_y(y, m: int) -> np.ndarray:
        y = np.asarray(y)
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number)
                                     or np.issubdtype(y.dtype, np.bool_)):
            raise TypeError(f"y must be numeric, got dtype {y.dtype}")
        if np.iscomplexobj(y):
            raise TypeError("y must be real-valued")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D with shape (m,), got shape {y.shape}")
        if y.shape[0] != m:
            raise ValueError(f"A has {m} measurements but y has {y.shape[0]} values")
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values")
        return y

    def predict(self, A):
        """Measurements ``<A_k, Z_>`` of the recovered matrix.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse, or LinearOperator
            New sensing matrices of the fitted shape ``shape_``.

        Returns
        -------
        ndarray, shape (m,)
        """
        check_is_fitted(self, "Z_")
        if isinstance(A, np.ndarray) and A.ndim == 3 and A.shape[1:] != self.shape_:
            raise ValueError(f"A has matrix shape {A.shape[1:]}, the model was fitted on "
                             f"{self.shape_}")
        op = as_measurement_operator(A, self.shape_, random_state=0)
        with np.errstate(over="ignore", invalid="ignore"):
            pred = op.forward(self.Z_)
        return finite_predictions(pred, "A")
