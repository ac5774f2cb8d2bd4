r"""Low-rank matrix completion with lin-RFM (SPEC §2).

:class:`LinRFMCompleter` turns any partially observed matrix into
:class:`~linrfm._observations.Observations`, picks a compute backend from
``device``, and runs the shared loop (:func:`~linrfm.core.loop.run_loop`) on
:class:`_CompletionProblem`, whose ``step`` is one lin-RFM iteration:

1. AGOP of the current iterate on the kernel side, ``G = Z^T Z / n_rows``;
2. kernel ``K = G**(2 power)`` (no decomposition for ``power = 1/2``);
3. every row solved over its observed entries with ``K + reg I``, observed
   entries replaced by the data (the backend's batched engine);
4. ``reg`` updated by a :class:`~linrfm.core.smoothing.SmoothingSchedule`.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._observations import Observations, as_observations, value_scale
from .persistence import PersistenceMixin
from ._validation import check_choice, check_float, check_int, check_power
from .backends import numpy_backend
from .backends._threads import blas_threads_for
from .backends.registry import check_dtype, get_backend
from .core.kernel import spectral_objective
from .core.loop import LinRFMProblem, run_loop
from .core.smoothing import SmoothingSchedule, check_reg
from .exceptions import NumericalWarning, UnobservedWarning

__all__ = ["LinRFMCompleter"]

SIDES = ("auto", "columns", "rows", "alternate")
_OTHER = {"columns": "rows", "rows": "columns"}
# Smallest smoothing, relative to the scale trace(K)/d of the current kernel,
# that keeps the gathered kernel blocks numerically positive definite. Below
# it the iteration drifts in rounding noise (measured on 120x100 rank 3, 3x:
# float64 stays at 8e-14 with 1e-13; float32 with ~1e-6 oscillates with
# relative changes of 1e-3 and errors up to 0.3 on 300x800, with 1e-5 it
# reaches 1e-5 to 5e-5).
_REG_MIN = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-5}
# Constant c of the "auto" rule reg <- min(reg, c * rel_change * scale). The
# alternating scheme tolerates (and is fastest with) a quick decrease; a
# one-sided iteration moves less per step, and with c = 0.1 its smoothing
# collapsed after two steps and froze the error near 0.5 (200x200, rank 5, 3x);
# c = 3 recovered it to 7e-6 (and 500x500 2x kept improving: 8.5e-2 after
# 1500 iterations instead of freezing at 0.8).
_DECREASE_ALTERNATE = 0.1
_DECREASE_ONE_SIDED = 3.0
# Relative change at which float32 iterates stop moving (rounding level).
_TOL_MIN = {np.dtype(np.float64): 0.0, np.dtype(np.float32): 5e-6}


class _CompletionProblem(LinRFMProblem):
    """One completion fit as a :class:`~linrfm.core.loop.LinRFMProblem`.

    The iterate ``Z`` is held by the backend in the orientation of the last
    step: ``"columns"`` is the user's ``(d1, d2)`` matrix (column kernel,
    rows decoupled), ``"rows"`` its transpose (row kernel, columns decoupled).

    Parameters
    ----------
    backend : CompletionBackend
    train : Observations
        Entries the iteration interpolates.
    validation : Observations or None
        Held-out observed entries, only used to measure the error.
    power : float
    sides : tuple of str
        Orientations used in turn, e.g. ``("columns",)`` or
        ``("columns", "rows")`` for the alternating scheme.
    schedules : dict of str to SmoothingSchedule
        One schedule per orientation in ``sides``.
    rank : int or None
        Rank hint: the tail eigenvalue ``lambda_{r+1}(K)`` caps ``reg``.
    track_objective : bool
        Record the spectral objective of each new iterate (one extra Gram
        and ``eigvalsh`` per iteration).
    """

    def __init__(self, backend, train: Observations, validation, power: float, sides,
                 schedules, rank, track_objective: bool):
        self.backend = backend
        self.power = power
        self.sides = tuple(sides)
        self.schedules = schedules
        self.rank = rank
        self.track_objective = track_objective
        oriented = {"columns": train, "rows": None}
        if "rows" in self.sides:
            oriented["rows"] = train.transpose()
        self.prepared = {o: backend.prepare(oriented[o]) for o in set(self.sides)}
        self.validation = validation
        self.reg_floor = 0.0
        self.relaxation = 1.0
        self._gram_cache = None
        self.Z = None
        self.orient = self.sides[0]
        self.t = 0
        self.nonfinite_at = None  # iteration whose step gave a non-finite iterate

    def initialize(self) -> None:
        self.orient = self.sides[0]
        self.Z = self.backend.initial(self.prepared[self.orient])
        self.t = 0
        self._gram_cache = None

    def oriented(self, orient: str):
        """The current iterate in orientation ``orient`` (a backend array)."""
        return self.Z if self.orient == orient else self.backend.transpose(self.Z)

    def _scale(self, K, d: int) -> float:
        return self.backend.trace(K) / d

    def step(self) -> dict:
        be = self.backend
        o = self.sides[self.t % len(self.sides)]
        if self.nonfinite_at is not None:
            return self.reject_nonfinite(self.schedules[o].value, o)
        Zo = self.oriented(o)
        n_rows, d = self.prepared[o].shape
        if self._gram_cache is not None and self._gram_cache[0] == o:
            G = self._gram_cache[1]
        else:
            G = be.gram(Zo)
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite K is rejected below
            K = be.kernel(G, self.power)
        scale = self._scale(K, d)
        sched = self.schedules[o]
        if math.isnan(sched.value):
            sched.start(scale)
        # The dtype floor is relative to the *current* scale: the schedule's own
        # floor is relative to the first iterate, whose scale is diluted by the
        # sampling rate.
        reg = max(sched.value, self.reg_floor * scale)
        tail = None
        if self.rank is not None and self.rank < d:
            eigs = be.eigvalsh(G)
            tail = max(float(eigs[-(self.rank + 1)]), 0.0) ** (2.0 * self.power)

        Z_new = be.step(self.prepared[o], K, reg, replace=True)

        diff2, norm2 = be.sq_norms(Z_new, Zo)
        if not math.isfinite(norm2):
            return self.reject_nonfinite(reg, o)
        rel = math.sqrt(diff2 / norm2) if norm2 > 0 else 0.0
        if self.relaxation != 1.0:
            # Over-relaxation of the MM step: the alternating iteration behaves
            # like alternating least squares near the solution (linear rate);
            # extrapolating along the step cuts iterations 1.5-3x. Observed
            # entries are equal in Zo and Z_new, so they stay exact.
            Z_new = be.relax(Zo, Z_new, self.relaxation)
        objective = math.nan
        self._gram_cache = None
        if self.track_objective:
            G_new = be.gram(Z_new)
            objective = spectral_objective(be.eigvalsh(G_new), self.power, reg)
            self._gram_cache = (o, G_new)
        sched.update(rel, scale, tail_eig=tail)
        self.Z, self.orient = Z_new, o
        self.t += 1
        return {"rel_change": rel, "objective": objective, "reg": reg, "side": o}

    def reject_nonfinite(self, reg, side) -> dict:
        """Keep the last finite iterate; a zero change stops the loop at ``tol``.

        Every later call returns at once (also with ``tol=0``).
        """
        if self.nonfinite_at is None:
            self.nonfinite_at = self.t + 1
        return {"rel_change": 0.0, "objective": math.nan, "reg": reg, "side": side}

    def validation_error(self):
        if self.validation is None:
            return None
        v = self.validation
        rows, cols = (v.rows, v.cols) if self.orient == "columns" else (v.cols, v.rows)
        pred = self.backend.gather(self.Z, rows, cols)
        ref = v.values.astype(np.float64)
        return float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), np.finfo(float).tiny))

    def snapshot(self):
        return (self.Z, self.orient, self.t,
                {o: s.value for o, s in self.schedules.items()})

    def restore(self, snap) -> None:
        self.Z, self.orient, self.t, values = snap
        for o, value in values.items():
            self.schedules[o].value = value
        self._gram_cache = None

    def check_nonfinite(self, result) -> None:
        """Warn and set ``result.stop_reason`` when a step was rejected as non-finite."""
        if self.nonfinite_at is not None:
            warnings.warn(f"LinRFMCompleter: iteration {self.nonfinite_at} gave a non-finite "
                          f"iterate (power={self.power} may overflow the kernel); stopped and "
                          f"kept iteration {self.nonfinite_at - 1}", NumericalWarning,
                          stacklevel=3)
            result.stop_reason = "non_finite"

    def fold_in(self):
        """Column kernel, its smoothing (floored as in ``step``) and scale, for transform."""
        be = self.backend
        Kc = be.kernel(be.gram(self.oriented("columns")), self.power)
        col_scale = be.trace(Kc) / Kc.shape[0]
        if "columns" in self.schedules:
            col_reg = _reg_value(self.schedules["columns"], col_scale)
        else:
            Kr = be.kernel(be.gram(self.oriented("rows")), self.power)
            row_scale = be.trace(Kr) / Kr.shape[0]
            row_reg = _reg_value(self.schedules["rows"], row_scale)
            col_reg = row_reg / row_scale * col_scale if row_scale > 0 else row_reg
        return Kc, max(col_reg, self.reg_floor * col_scale), col_scale

    def final(self) -> np.ndarray:
        """The iterate as a NumPy ``(d1, d2)`` array."""
        return self.backend.to_numpy(self.oriented("columns"))


def _reg_value(schedule: SmoothingSchedule, scale: float) -> float:
    """The schedule's value; its starting value at ``scale`` if it never started
    (the kept iterate is the initial one, e.g. after validation stopping)."""
    if math.isnan(schedule.value):
        return SmoothingSchedule(schedule.reg).start(scale)
    return schedule.value


def _means(obs: Observations):
    """Per-row and per-column means of the observed values (NaN where empty)."""
    d1, d2 = obs.shape
    vals = obs.values.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = np.bincount(obs.rows, vals, minlength=d1) / obs.row_counts()
        col = np.bincount(obs.cols, vals, minlength=d2) / obs.col_counts()
    return row, col, float(vals.mean())


def _fill_unobserved(Z, empty_rows, empty_cols, row_means, col_means, global_mean):
    """Documented fallback for rows/columns without any observed entry."""
    if empty_rows.any():
        fill = np.where(np.isnan(col_means), global_mean, col_means)
        Z[empty_rows] = fill.astype(Z.dtype)
    if empty_cols.any():
        fill = np.where(np.isnan(row_means), global_mean, row_means)
        Z[:, empty_cols] = fill.astype(Z.dtype)[:, None]
    return Z


class LinRFMCompleter(PersistenceMixin, TransformerMixin, BaseEstimator):
    r"""Matrix completion by linear Recursive Feature Machines (lin-RFM).

    Iterates, from ``Z_0`` = observed values and zeros elsewhere,

    .. math::
        G_t = Z_t^\top Z_t / d_1, \qquad K_t = G_t^{2\,power},\qquad
        z_i \leftarrow K_t[:, \Omega_i]\,(K_t[\Omega_i, \Omega_i] + reg\,I)^{-1} y_i,
        \quad z_i[\Omega_i] \leftarrow y_i

    for every row ``i`` with observed columns ``Omega_i`` and values ``y_i``.
    This is IRLS-p with ``p = 2 - 4 power``; the default ``power=0.5`` (IRLS-0,
    log-det) needs no eigendecomposition: the kernel is the Gram itself.

    Parameters
    ----------
    power : float, default=0.5
        lin-RFM power (> 0): the feature matrix is ``G**power`` and the
        kernel ``G**(2 power)``. 1/4 is the nuclear norm (IRLS-1), 1/2 log-det
        (IRLS-0, SVD-free), 1 IRLS-(-2) (one extra product); other values
        use one ``eigh`` of ``G`` per iteration.
    reg : "auto" or float, default="auto"
        Smoothing added to the kernel block of each row. ``"auto"``: decreasing
        rule for noiseless recovery (see
        :class:`~linrfm.core.smoothing.SmoothingSchedule`), relative to the
        scale ``trace(K)/d`` of the current kernel. A float is a fixed
        regularisation strength relative to the scale of the first kernel
        (for noisy data; choose it with ``validation_fraction`` or a search).
    side : {"auto", "columns", "rows", "alternate"}, default="auto"
        Which AGOP builds the kernel. ``"columns"``: ``d2 x d2`` kernel, rows
        decoupled. ``"rows"``: ``d1 x d1`` kernel on the transpose.
        ``"alternate"``: column kernel, then row kernel, and so on (one
        smoothing schedule per side); it converges in far fewer iterations.
        ``"auto"``: ``"alternate"``.
    max_iter : int, default=1000
        Maximum number of iterations.
    tol : float, default=1e-7
        Stop when the relative change ``||Z_t - Z_{t-1}||_F / ||Z_t||_F``
        falls below ``tol`` (0 disables it). With float32 a positive ``tol``
        is raised to at least 5e-6, the rounding level of the iterates.
    rank : int, optional
        Rank hint. When given, ``reg`` is also capped by the ``(rank+1)``-th
        eigenvalue of the kernel (IRLS practice; one ``eigvalsh`` per
        iteration). Never required.
    validation_fraction : float, optional
        Hold out this fraction of the *observed* entries (in ``(0, 1)``),
        stop when their relative error has not improved for
        ``n_iter_no_change`` iterations and keep the best iterate.
    n_iter_no_change : int, default=10
        Patience of the validation stopping rule.
    track_objective : bool, default=False
        Record the spectral objective of each iterate in ``history_``
        (one extra Gram and ``eigvalsh`` per iteration).
    random_state : int, RandomState instance or None
        Seeds the validation split (the iteration itself is deterministic).
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per iteration.
    dtype : {"float64", "float32"}, default="float64"
        Working precision. float32 halves memory and is faster (Gram, GPUs);
        it reaches relative errors of about 1e-5 to 5e-5 on the missing
        entries of noiseless problems, float64 1e-13 with ``tol=0``.
    device : str or CompletionBackend, default="cpu"
        ``"cpu"`` (NumPy), ``"torch"`` (PyTorch on the CPU), ``"cuda"`` or
        ``"cuda:N"`` (PyTorch on a GPU), ``"dask"`` (row blocks on a Dask
        cluster), or a backend instance. Resolved in ``fit``.
    max_batch_bytes : int, default=256 MiB
        Memory budget of one batch of gathered kernel blocks.
    relaxation : float in [1, 2), default=1.5
        Over-relaxation ``omega`` of each step: ``Z <- Z + omega (F(Z) - Z)``
        where ``F`` is the lin-RFM step (observed entries are unchanged by
        it). ``1.0`` is the plain lin-RFM / IRLS iteration, whose objective
        provably never increases; ``1.5`` needed 1.5-3x fewer iterations to
        reach 1e-6 on every test problem we measured (well- and
        ill-conditioned, square and rectangular), and 1.9 diverged.
    callback : callable, optional
        ``callback(iteration, record)`` after each iteration, with the scalars
        recorded in ``history_`` (``rel_change``, ``reg``, ``time``, ...);
        returning True stops the fit (``stop_reason_ == "callback"``).

    Attributes
    ----------
    completed_ : ndarray of shape (d1, d2)
        The completed matrix (observed entries equal the data, validation
        entries included).
    column_kernel_ : ndarray of shape (d2, d2)
        Kernel ``G**(2 power)`` of the final iterate's column AGOP, used by
        :meth:`transform` to complete new rows, in the units of the training
        values divided by ``value_scale_``.
    value_scale_ : float
        Power of two nearest the root mean square of the observed values; the
        fit iterates on the values divided by it (exact), so that data of any
        magnitude keep finite Grams, and scales the result back.
    column_reg_ : float
        Smoothing used with ``column_kernel_`` by :meth:`transform`.
    side_ : str
        Resolved side (``"columns"``, ``"rows"`` or ``"alternate"``).
    reg_ : float
        Smoothing of the last iteration.
    n_iter_ : int
        Number of iterations run.
    history_ : dict of str to list
        Per iteration: ``iteration``, ``time``, ``rel_change``, ``reg``,
        ``side``, ``objective`` (NaN unless ``track_objective``) and
        ``validation_error`` (with ``validation_fraction``).
    shape_ : tuple of int
        ``(d1, d2)``.
    n_features_in_ : int
        ``d2``.
    n_unobserved_rows_, n_unobserved_cols_ : int
        Rows / columns without any observed entry (filled by the fallback).
    validation_error_ : float or None
        Relative error on the held-out entries for the kept iterate.
    stop_reason_ : str
        ``"tol"``, ``"validation"``, ``"max_iter"``, ``"callback"``,
        ``"interrupted"`` or ``"non_finite"`` (a step gave a non-finite
        iterate: the last finite one is kept, with a
        :class:`~linrfm.exceptions.NumericalWarning`).

    Notes
    -----
    *Ridge + replace is exact interpolation.* The unobserved part of each
    updated row equals that of the minimum-norm interpolant with kernel
    ``K + reg I``, so with ``power = 1/2`` each step is exactly Mohan–Fazel
    IRLS-0 with smoothing ``reg``; at fixed ``reg`` each step is a
    majorize-minimize step on
    :math:`F(Z) = \sum_j h(\lambda_j(Z^\top Z / d_1))`, ``h'(s) = 1/(s^{2 power} + reg)``
    (:func:`~linrfm.core.kernel.spectral_objective`), which never increases.

    *Unobserved rows and columns* cannot be recovered: a
    :class:`~linrfm.exceptions.UnobservedWarning` says how many, and they are
    filled with the column mean of the observed entries (empty row), the row
    mean (empty column), or the global mean (both).

    *Fold-in.* :meth:`transform` completes new rows with one row-decoupled
    step with ``column_kernel_ + column_reg_ I``; the training matrix is not
    refitted.

    References
    ----------
    A. Radhakrishnan, M. Belkin, D. Drusvyatskiy, "Linear Recursive Feature
    Machines provably recover low-rank matrices", PNAS 122(13), 2025.
    K. Mohan, M. Fazel, "Iterative reweighted algorithms for matrix rank
    minimization", JMLR 13, 2012.

    Examples
    --------
    >>> from linrfm import LinRFMCompleter
    >>> from linrfm.datasets import make_completion_problem
    >>> prob = make_completion_problem(60, 50, 2, oversampling=3.0, random_state=0)
    >>> Z = LinRFMCompleter().fit_transform(prob.observed.to_dense())
    >>> prob.missing_error(Z) < 1e-4
    True
    """

    def __init__(self, power=0.5, reg="auto", side="auto", max_iter=1000, tol=1e-7, rank=None,
                 validation_fraction=None, n_iter_no_change=10, track_objective=False,
                 random_state=None, verbose=0, dtype="float64", device="cpu",
                 max_batch_bytes=numpy_backend.DEFAULT_BATCH_BYTES, relaxation=1.5,
                 callback=None):
        self.power = power
        self.reg = reg
        self.side = side
        self.max_iter = max_iter
        self.tol = tol
        self.rank = rank
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.track_objective = track_objective
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device
        self.max_batch_bytes = max_batch_bytes
        self.relaxation = relaxation
        self.callback = callback

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        tags.requires_fit = True
        return tags

    def _check_params(self):
        power = check_power(self.power)
        reg = check_reg(self.reg)
        side = check_choice(self.side, "side", SIDES)
        max_iter = check_int(self.max_iter, "max_iter", low=1)
        tol = check_float(self.tol, "tol", low=0.0)
        rank = None if self.rank is None else check_int(self.rank, "rank", low=1)
        frac = self.validation_fraction
        if frac is not None:
            frac = check_float(frac, "validation_fraction", low=0.0, high=1.0,
                               low_inclusive=False, high_inclusive=False)
        patience = check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        if not isinstance(self.verbose, (bool, numbers.Integral)) or self.verbose < 0:
            raise ValueError(f"verbose must be a non-negative integer, got {self.verbose!r}")
        if not isinstance(self.track_objective, (bool, np.bool_)):
            raise TypeError(f"track_objective must be a bool, got {self.track_objective!r}")
        dtype = check_dtype(self.dtype)
        check_float(self.relaxation, "relaxation", low=1.0, high=2.0, high_inclusive=False)
        return power, reg, side, max_iter, tol, rank, frac, patience, dtype

    @staticmethod
    def _resolve_side(side: str, shape) -> str:
        if side == "auto":
            return "alternate"
        return side

    def fit(self, X, y=None, shape=None):
        """Complete the partially observed matrix ``X``.

        Parameters
        ----------
        X : array-like of shape (d1, d2), sparse matrix, (rows, cols, values) tuple or DataFrame
            Dense with NaN for missing entries; sparse with the stored entries
            observed (explicit zeros included); or coordinates and values.
        y : None
            Ignored (scikit-learn API).
        shape : tuple of int, optional
            ``(d1, d2)`` for triplet/DataFrame input (default: largest
            index + 1).

        Returns
        -------
        self : LinRFMCompleter
        """
        power, reg, side, max_iter, tol, rank, frac, patience, dtype = self._check_params()
        obs = as_observations(X, shape=shape, dtype=dtype)
        # The fit is scale-equivariant; iterating on values of order one keeps
        # Grams and kernels of 1e+-150 data finite (see value_scale).
        value_scale_ = value_scale(obs.values)
        scaled = obs.scaled(value_scale_) if value_scale_ != 1.0 else obs
        backend = get_backend(self.device, dtype, self.max_batch_bytes)
        rng = check_random_state(self.random_state)
        d1, d2 = obs.shape

        empty_rows = obs.row_counts() == 0
        empty_cols = obs.col_counts() == 0
        if empty_rows.any() or empty_cols.any():
            warnings.warn(
                f"{int(empty_rows.sum())} row(s) and {int(empty_cols.sum())} column(s) have no "
                "observed entry and cannot be recovered; they are filled with the column mean "
                "(empty rows), the row mean (empty columns) or the global mean of the observed "
                "entries.", UnobservedWarning, stacklevel=2)

        train, validation = scaled, None
        if frac is not None:
            train, validation = scaled.split(frac, random_state=rng)
            if validation.nnz == 0:
                raise ValueError(
                    f"validation_fraction={frac} holds out no entry: every row and column "
                    "needs at least two observed entries to give one to validation")

        side_ = self._resolve_side(side, obs.shape)
        sides = ("columns", "rows") if side_ == "alternate" else (side_,)
        decrease = _DECREASE_ALTERNATE if len(sides) == 2 else _DECREASE_ONE_SIDED
        schedules = {o: SmoothingSchedule(reg, decrease=decrease) for o in sides}
        problem = _CompletionProblem(backend, train, validation, power, sides, schedules,
                                     rank, bool(self.track_objective))
        problem.reg_floor = _REG_MIN[np.dtype(getattr(backend, "dtype", dtype))]
        problem.relaxation = float(self.relaxation)
        if tol > 0:
            tol = max(tol, _TOL_MIN[np.dtype(getattr(backend, "dtype", dtype))])
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {self.callback!r}")
        # Gram and A @ K of one iteration: threads only where they pay (backends/_threads.py)
        # overflow inside a step is caught by the non-finite check (NumericalWarning)
        with blas_threads_for(float(d1) * d2 * max(d1, d2)), \
                np.errstate(over="ignore", invalid="ignore"):
            result = run_loop(problem, max_iter=max_iter, tol=tol, verbose=self.verbose,
                              n_iter_no_change=patience, desc="LinRFMCompleter",
                              callback=self.callback)

        problem.check_nonfinite(result)
        Z = np.array(problem.final(), dtype=np.float64, copy=True) * value_scale_
        Z = Z.astype(dtype)
        Z[obs.rows, obs.cols] = obs.values
        row_means, col_means, global_mean = _means(obs)
        _fill_unobserved(Z, empty_rows, empty_cols, row_means, col_means, global_mean)

        with np.errstate(over="ignore", invalid="ignore"):
            Kc, col_reg, col_scale = problem.fold_in()

        self.completed_ = Z
        self.column_kernel_ = np.asarray(backend.to_numpy(Kc), dtype=dtype)
        self.column_reg_ = float(col_reg)
        self.side_ = side_
        self.reg_ = float(_reg_value(schedules[problem.orient], col_scale))
        self.value_scale_ = value_scale_
        self.n_iter_ = int(result.n_iter)
        self.history_ = result.history
        self.shape_ = (d1, d2)
        self.n_features_in_ = d2
        self.n_unobserved_rows_ = int(empty_rows.sum())
        self.n_unobserved_cols_ = int(empty_cols.sum())
        self.validation_error_ = problem.validation_error()
        self.stop_reason_ = result.stop_reason
        self._col_means = col_means
        self._global_mean = global_mean
        self._empty_cols = empty_cols
        return self

    def fit_transform(self, X, y=None, shape=None):
        """Fit and return the completed matrix.

        Parameters
        ----------
        X, y, shape
            See :meth:`fit`.

        Returns
        -------
        ndarray of shape (d1, d2)
            ``completed_`` (a copy).
        """
        return self.fit(X, y, shape=shape).completed_.copy()

    def predict(self, rows, cols):
        """Entries of the completed matrix.

        Parameters
        ----------
        rows, cols : array-like of int, shape (n,)
            Coordinates in the fitted ``(d1, d2)`` matrix.

        Returns
        -------
        ndarray of shape (n,)
        """
        check_is_fitted(self, "completed_")
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        for name, idx, dim in (("rows", rows, self.shape_[0]), ("cols", cols, self.shape_[1])):
            if idx.dtype.kind not in "iu":
                raise TypeError(f"{name} must be integer indices, got dtype {idx.dtype}")
            if idx.size and (idx.min() < 0 or idx.max() >= dim):
                raise ValueError(f"{name} indices out of range [0, {dim})")
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same shape, got {rows.shape} "
                             f"and {cols.shape}")
        return self.completed_[rows, cols]

    def transform(self, X, shape=None):
        """Complete new rows by fold-in with the learned column kernel (no refit).

        Each new row ``x`` with observed columns ``Omega`` is predicted as
        ``K[:, Omega] (K[Omega, Omega] + column_reg_ I)^{-1} x[Omega]`` with
        ``K = column_kernel_``, its observed entries kept.

        Parameters
        ----------
        X : array-like of shape (n_new, d2), sparse matrix or (rows, cols, values) tuple
            New rows, in any format :meth:`fit` accepts. For triplets the
            number of columns is ``d2`` unless ``shape`` says otherwise.
        shape : tuple of int, optional
            ``(n_new, d2)`` for triplet input.

        Returns
        -------
        ndarray of shape (n_new, d2)
        """
        check_is_fitted(self, "completed_")
        d2 = self.shape_[1]
        triplets = isinstance(X, tuple) or type(X).__name__ == "DataFrame"
        obs = as_observations(X, shape=shape, dtype=self.completed_.dtype)
        if triplets and shape is None:
            if obs.shape[1] > d2:
                raise ValueError(f"X has column indices up to {obs.shape[1] - 1} but the "
                                 f"model was fitted on {d2} columns")
            obs = Observations(obs.rows, obs.cols, obs.values, (obs.shape[0], d2))
        if obs.shape[1] != d2:
            raise ValueError(f"X has {obs.shape[1]} columns but the model was fitted on {d2}")
        csr = obs.to_csr()
        csr.sort_indices()
        K = self.column_kernel_
        # column_kernel_ is in the units of the rescaled training values
        s = getattr(self, "value_scale_", 1.0)
        data = (csr.data.astype(np.float64) / s).astype(K.dtype)
        Z = numpy_backend.solve_rows(K, csr.indptr.astype(np.int64),
                                     csr.indices.astype(np.int64), data,
                                     self.column_reg_, replace=True,
                                     max_batch_bytes=self.max_batch_bytes)
        Z = (Z.astype(np.float64) * s).astype(K.dtype)  # exact: s is a power of two
        if not np.all(np.isfinite(Z)):
            raise ValueError("transform: the fold-in kernel column_kernel_ is not finite "
                             f"(power={self.power} overflows it for this data); refit with a "
                             "smaller power")
        row_means, _, _ = _means(obs)
        empty_rows = obs.row_counts() == 0
        return _fill_unobserved(Z, empty_rows, self._empty_cols, row_means, self._col_means,
                                self._global_mean)
