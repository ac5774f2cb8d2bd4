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

import dataclasses
import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._observations import Observations, as_observations, value_scale
from .._validation import (check_choice, check_entry_indices, check_float, check_int,
                           check_power, check_verbose)
from ..backends import numpy_backend
from ..backends._threads import blas_threads_for
from ..backends.registry import check_dtype, get_backend
from ..core.centering import CENTERS, Offsets
from ..core.checkpoint import checkpointer_for
from ..core.kernel import spectral_objective
from ..core.loop import LinRFMProblem, check_callback
from ..core.sides import SIDES, resolve_side, side_cycle
from ..core.smoothing import SmoothingSchedule, check_reg, final_smoothing
from ..engines import lowrank, lowrank_dask
from ..engines.result import CompletionResult, fallback_values, held_out_error
from ..exceptions import UnobservedWarning
from ..model_selection import check_clip, check_path_regs, fit_selected
from ..persistence import PersistenceMixin

__all__ = ["LinRFMCompleter"]

ENGINES = ("auto", "dense", "lowrank")
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
            # overflow (e.g. a large power on unnormalised data): the loop keeps
            # the last finite iterate, which this step has not replaced
            return {"rel_change": math.nan, "objective": math.nan, "reg": reg, "side": o}
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
        return {"rel_change": rel, "objective": objective, "reg": reg / sched.scale0,
                "side": o}

    def predict_entries(self, rows, cols) -> np.ndarray:
        """Entries ``(rows, cols)`` of the current iterate (user orientation), float64."""
        if self.orient != "columns":
            rows, cols = cols, rows
        return np.asarray(self.backend.gather(self.Z, rows, cols), dtype=np.float64)

    def validation_error(self):
        return held_out_error(self)

    def snapshot(self):
        return (self.Z, self.orient, self.t,
                {o: s.value for o, s in self.schedules.items()})

    def restore(self, snap) -> None:
        self.Z, self.orient, self.t, values = snap
        for o, value in values.items():
            self.schedules[o].value = value
        self._gram_cache = None

    def state_dict(self) -> dict:
        return {"Z": np.asarray(self.backend.to_numpy(self.Z)), "orient": self.orient,
                "t": self.t, "schedules": {o: s.state() for o, s in self.schedules.items()}}

    def load_state_dict(self, state) -> None:
        self.Z = self.backend.from_numpy(state["Z"])
        self.orient, self.t = str(state["orient"]), int(state["t"])
        for o, sched in state["schedules"].items():
            self.schedules[o].set_state(sched)
        self._gram_cache = None

    def result(self) -> CompletionResult:
        """The final iterate, the column kernel for fold-in and the smoothings."""
        be = self.backend
        Z = np.asarray(self.iterate(), dtype=np.float64)
        d1, d2 = Z.shape
        Kc = be.kernel(be.gram(self.oriented("columns")), self.power)
        col_scale, row_scale = be.trace(Kc) / d2, math.nan
        if "columns" not in self.schedules:
            row_scale = be.trace(be.kernel(be.gram(self.oriented("rows")), self.power)) / d1
        column_reg, reg, kernel_reg = final_smoothing(self.schedules, self.orient, col_scale,
                                                      row_scale, self.reg_floor)
        return CompletionResult(column_reg, reg, kernel_reg, self.orient, iterate=Z,
                                kernel=np.asarray(be.to_numpy(Kc)))

    def iterate(self) -> np.ndarray:
        """The iterate as a NumPy ``(d1, d2)`` array (the user's orientation)."""
        return self.backend.to_numpy(self.oriented("columns"))


def _with_offsets(A: np.ndarray, B: np.ndarray, offsets: Offsets):
    """Factors of ``A B^T + mean + row_i + col_j``: the centring model is rank two."""
    if offsets.mean == 0.0 and not np.any(offsets.row) and not np.any(offsets.col):
        return A, B
    d1, d2 = A.shape[0], B.shape[0]
    extra_a = np.column_stack([np.ones(d1), offsets.row]).astype(A.dtype)
    extra_b = np.column_stack([offsets.mean + offsets.col, np.ones(d2)]).astype(B.dtype)
    return np.hstack([A, extra_a]), np.hstack([B, extra_b])


def _means(obs: Observations):
    """Per-row and per-column means of the observed values (NaN where empty)."""
    d1, d2 = obs.shape
    vals = obs.values.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = np.bincount(obs.rows, vals, minlength=d1) / obs.row_counts()
        col = np.bincount(obs.cols, vals, minlength=d2) / obs.col_counts()
    return row, col, float(vals.mean())


def _finish(Z, offsets: Offsets, clip):
    """Add the centring model back and clip (both optional) to a residual completion."""
    if offsets.mean != 0.0 or np.any(offsets.row) or np.any(offsets.col):
        Z += offsets.dense().astype(Z.dtype)
    if clip is not None:
        np.clip(Z, clip[0], clip[1], out=Z)
    return Z


def _fill_unobserved(Z, empty_rows, empty_cols, row_means, col_means, global_mean):
    """Documented fallback for rows/columns without any observed entry (in place)."""
    for_rows, for_cols = fallback_values(row_means, col_means, global_mean)
    if empty_rows.any():
        Z[empty_rows] = for_rows.astype(Z.dtype)
    if empty_cols.any():
        Z[:, empty_cols] = for_cols.astype(Z.dtype)[:, None]
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
    reg : "path", "auto" or float, default="path"
        Smoothing added to the kernel block of each row. ``"path"``: chosen on
        held-out observed entries (``validation_fraction``, default 5 %, of
        them; see :mod:`linrfm.model_selection`): the ``"auto"`` path is
        followed while the held-out error falls, and continued on all entries
        when it reaches 1e-3 (exact data: the result and the cost are those of
        ``"auto"``); when it rises again (noisy data) a warm-started grid of
        fixed smoothings is scored on the held-out entries, the column-kernel
        and row-kernel iterates of the alternating scheme each on their own
        (they are different estimators on noisy data), and the best of: either
        side at its best smoothing, or the average of both sides, is refitted
        on all entries (``selected_side_``, ``selected_regs_``). Cost on noisy
        data: about 65-100 iterations (held-out path ~15, 8-24 per grid
        smoothing, typically 5 smoothings, 12 for the refit) instead of one
        fixed-smoothing fit; scoring both sides costs no iteration. On
        MovieLens-100K (943 x 1682, 80 000 ratings) 78-80 iterations, 17 s
        wall / 28 s CPU. With fewer than 100 held-out entries it is ``"auto"``. ``"auto"``: decreasing
        rule for noiseless recovery, no selection (see
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
        Hold out this fraction of the *observed* entries (in ``(0, 1)``).
        With ``reg="auto"`` or a float: stop when their relative error has not
        improved for ``n_iter_no_change`` iterations and keep the best
        iterate (no refit). With ``reg="path"``: the held-out share used to
        choose the smoothing (default 0.05).
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
        ``callback(state)`` after each iteration with a
        :class:`~linrfm.core.loop.LoopState`: ``state.iteration``,
        ``state.record`` (the scalars recorded in ``history_``),
        ``state.iterate()`` (the current ``(d1, d2)`` iterate as NumPy) and
        ``state.problem``; the form ``callback(iteration, record)`` is
        accepted too. Returning True stops the fit
        (``stop_reason_ == "callback"``). Time spent in the callback is not
        counted in ``history_["time"]``.
    checkpoint_path : str or path-like, optional
        Write the fit's full state to this ``.npz`` file every
        ``checkpoint_every`` iterations and when the fit stops (Ctrl-C and
        callback stops included), atomically. If the file exists, ``fit``
        resumes from it and ends bit-identical to an uninterrupted fit; a
        checkpoint written for other data or parameters is refused.
        ``max_iter``, ``verbose`` and ``callback`` may differ on resume.
    checkpoint_every : int, default=10
        Iterations between two checkpoints.
    engine : {"auto", "dense", "lowrank"}, default="auto"
        ``"dense"`` forms the ``d1 x d2`` iterate and its Gram (fastest on
        small matrices; any ``device``). ``"lowrank"`` keeps the iterate as
        factors plus a sparse part on the observed entries and the kernel as
        its ``k`` leading eigenpairs, ``k`` chosen from the spectrum (cost
        ``O(|observed| k + (d1 + d2) k^2)`` per iteration; ``device="cpu"``,
        ``"torch"``, ``"cuda"`` or ``"cuda:N"``, or ``"dask"`` with row blocks
        of the observed entries and factors on the workers, see
        :mod:`linrfm.engines.lowrank_dask`); results stay factored, as NumPy on
        the host (``factors_``, :meth:`predict`). ``"auto"`` (on those
        devices): low-rank when the dense engine would not fit in memory (the
        GPU's on CUDA, the client's on Dask), or from ``d1 * d2 >= 250 000``
        entries with ``reg="auto"`` and no ``track_objective``; dense otherwise
        (see :func:`linrfm.engines.lowrank.choose_engine`).
    center : {None, "mean", "biases"}, default=None
        Remove an additive model before the low-rank fit and add it back to
        every prediction: the global mean of the observed entries, or the mean
        plus ridge-regularised row and column biases (alternating exact
        updates; the ridge strength is chosen on the held-out entries when
        there are any, else 10). Recommended for ratings.
    clip : None, True or (float, float), default=None
        Clip the completed matrix, predictions and fold-in to ``(low, high)``;
        True: the range of the observed values.
    path_regs : sequence of float, optional
        Fixed smoothings tried by ``reg="path"`` instead of its automatic
        grid (relative to the first kernel's scale, like a float ``reg``).

    Attributes
    ----------
    completed_ : ndarray of shape (d1, d2)
        The completed matrix (observed entries equal the data, validation
        entries included). With the low-rank engine it is formed on first
        access, and access raises ValueError (naming ``factors_`` and
        :meth:`predict`) when it would not fit in memory.
    engine_ : str
        Resolved engine, ``"dense"`` or ``"lowrank"``.
    factors_ : tuple of ndarray or None
        Low-rank engine: ``(A, B)`` of shapes ``(d1, m)`` and ``(d2, m)``; the
        completed matrix is ``A @ B.T`` off the observed entries and the data
        on them. None with the dense engine.
    column_kernel_factors_ : tuple of ndarray or None
        Low-rank engine: ``(eigenvalues (k,), eigenvectors (d2, k))`` of the
        column kernel, used by :meth:`transform`. None with the dense engine.
    column_kernel_ : ndarray of shape (d2, d2) or None
        Kernel ``G**(2 power)`` of the final iterate's column AGOP, used by
        :meth:`transform` to complete new rows (None with the low-rank engine).
    value_scale_ : float
        Power of two nearest the root mean square of the observed values; the
        fit iterates on the values divided by it (exact), so that data of any
        magnitude keep finite Grams, and scales the result back.
    column_reg_ : float
        Smoothing used with ``column_kernel_`` by :meth:`transform`.
    side_ : str
        Resolved side (``"columns"``, ``"rows"`` or ``"alternate"``).
    reg_ : float
        Smoothing of the last iteration, relative to the scale of the first
        iterate on its side (the units of the ``reg`` parameter, as in every
        linrfm estimator).
    kernel_reg_ : float
        The same smoothing in absolute units (added to the kernel).
    n_iter_ : int
        Number of iterations run.
    history_ : dict of str to list
        Per iteration: ``iteration``, ``time``, ``rel_change``, ``reg``,
        ``side``, ``objective`` (NaN unless ``track_objective``),
        ``validation_error``, ``validation_rmse``, ``validation_mae`` (when
        entries are held out) and ``phase`` (``"fit"``; for ``reg="path"``
        ``"auto"``, ``"reg=<value>"`` per grid stage, then ``"refit"``).
    shape_ : tuple of int
        ``(d1, d2)``.
    n_features_in_ : int
        ``d2``.
    n_unobserved_rows_, n_unobserved_cols_ : int
        Rows / columns without any observed entry (filled by the fallback).
    validation_error_ : float or None
        Relative error on the held-out entries for the kept (``reg="path"``:
        the selected) iterate, before any refit on all entries.
    validation_rmse_, validation_mae_ : float or None
        RMSE and MAE on the held-out entries in the data's units (centring
        added back, clipped); also per iteration in ``history_``.
    selection_ : str
        How the smoothing was chosen: ``"none"`` (``reg`` given),
        ``"interpolate"`` (exact data), ``"path"`` (best fixed smoothing),
        ``"auto (early stopped)"`` or ``"auto (too few entries to hold out)"``.
    selected_reg_ : float or str
        The chosen smoothing (relative to the first kernel's scale) or
        ``"auto"``; with ``selected_side_ == "both"``, that of the side with
        the lower held-out error.
    selected_side_ : str or None
        ``reg="path"`` on noisy data: the kept estimator, ``"columns"`` or
        ``"rows"`` (the last iterate of that side of the alternating scheme)
        or ``"both"`` (the average of the last iterate of each side, each at
        its own smoothing; :meth:`transform` folds new rows in with the
        column side). None otherwise.
    selected_regs_ : dict of str to float or None
        The smoothing of each kept side, e.g. ``{"columns": 0.5, "rows": 0.25}``.
    path_ : list of dict
        ``reg="path"``: for each smoothing visited, the held-out ``rmse``,
        ``mae``, ``relative`` error of its better ``side``, the errors of
        every side (``sides``) and the cumulative ``iteration``.
    offsets_ : Offsets
        The centring model (zeros without ``center``).
    clip_ : (float, float) or None
        Resolved clipping range.
    stop_reason_ : str
        ``"tol"``, ``"validation"``, ``"max_iter"``, ``"callback"``,
        ``"interrupted"`` or ``"nonfinite"`` (a step gave a non-finite
        iterate: the last finite one is kept, with a
        :class:`~linrfm.exceptions.NonFiniteWarning`).

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

    def __init__(self, power=0.5, reg="path", side="auto", max_iter=1000, tol=1e-7, rank=None,
                 validation_fraction=None, n_iter_no_change=10, track_objective=False,
                 random_state=None, verbose=0, dtype="float64", device="cpu",
                 max_batch_bytes=numpy_backend.DEFAULT_BATCH_BYTES, relaxation=1.5,
                 callback=None, checkpoint_path=None, checkpoint_every=10, engine="auto",
                 center=None, clip=None, path_regs=None):
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
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.engine = engine
        self.center = center
        self.clip = clip
        self.path_regs = path_regs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        tags.requires_fit = True
        return tags

    def _check_params(self):
        power = check_power(self.power)
        reg = "path" if isinstance(self.reg, str) and self.reg == "path" else check_reg(self.reg)
        if self.center not in CENTERS:
            raise ValueError(f"center must be None, 'mean' or 'biases', got {self.center!r}")
        check_path_regs(self.path_regs)
        side = check_choice(self.side, "side", SIDES)
        max_iter = check_int(self.max_iter, "max_iter", low=1)
        tol = check_float(self.tol, "tol", low=0.0)
        rank = None if self.rank is None else check_int(self.rank, "rank", low=1)
        frac = self.validation_fraction
        if frac is not None:
            frac = check_float(frac, "validation_fraction", low=0.0, high=1.0,
                               low_inclusive=False, high_inclusive=False)
        patience = check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        check_verbose(self.verbose)
        if not isinstance(self.track_objective, (bool, np.bool_)):
            raise TypeError(f"track_objective must be a bool, got {self.track_objective!r}")
        dtype = check_dtype(self.dtype)
        check_float(self.relaxation, "relaxation", low=1.0, high=2.0, high_inclusive=False)
        check_choice(self.engine, "engine", ENGINES)
        return power, reg, side, max_iter, tol, rank, frac, patience, dtype

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
        engine = lowrank.choose_engine(self.engine, obs.shape, dtype.itemsize, self.device,
                                       fixed_reg=reg != "auto" or bool(self.track_objective))
        if engine == "lowrank" and self.track_objective:
            raise ValueError("track_objective=True needs the whole spectrum of the Gram; "
                             "use engine='dense' or track_objective=False")
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

        side_ = resolve_side(side)
        make = self._problem_factory(engine, backend, side_cycle(side_), power, rank, dtype)
        if tol > 0:
            tol = max(tol, _TOL_MIN[np.dtype(getattr(backend, "dtype", dtype))])
        clip = check_clip(self.clip, obs)
        loop = dict(max_iter=max_iter, tol=tol, verbose=self.verbose, n_iter_no_change=patience,
                    desc="LinRFMCompleter", callback=check_callback(self.callback))
        # Gram and A @ K of one iteration: threads only where they pay (backends/_threads.py);
        # overflow inside a step is caught by the loop's non-finite check, not NumPy's warning
        with blas_threads_for(float(d1) * d2 * max(d1, d2)), \
                np.errstate(over="ignore", invalid="ignore"):
            fitted = fit_selected(
                make, scaled, reg=reg, validation_fraction=frac, center=self.center,
                clip=None if clip is None else (clip[0] / value_scale_, clip[1] / value_scale_),
                rng=rng, loop=loop, path_regs=self.path_regs,
                checkpoint=checkpointer_for(self, lambda: [obs.rows, obs.cols, obs.values]))
        self._finish_fit(fitted, engine, obs, (empty_rows, empty_cols), value_scale_, clip)
        self.side_ = side_
        self.shape_ = (d1, d2)
        self.n_features_in_ = d2
        self.n_unobserved_rows_ = int(empty_rows.sum())
        self.n_unobserved_cols_ = int(empty_cols.sum())
        return self

    def _problem_factory(self, engine, backend, sides, power, rank, dtype):
        """``make(entries, reg, schedules=None)``: a fresh problem on ``entries``."""
        decrease = _DECREASE_ALTERNATE if len(sides) == 2 else _DECREASE_ONE_SIDED
        floor = _REG_MIN[np.dtype(getattr(backend, "dtype", dtype))]
        relaxation = float(self.relaxation)
        # the low-rank engine runs on the torch device that the backend parsed
        # (device="torch", "cuda", "cuda:N" or a TorchBackend), else on NumPy
        device = backend.device if getattr(backend, "name", None) == "torch" else None

        def make(entries, reg_value, schedules=None):
            # relative: the iterate fills in from zeros off the observed entries
            # (see SmoothingSchedule)
            schedules = schedules or {o: SmoothingSchedule(reg_value, decrease=decrease,
                                                           relative=True) for o in sides}
            if engine == "lowrank" and lowrank_dask.is_dask_device(backend):
                return lowrank_dask.DaskLowRankCompletionProblem(
                    entries, None, power, sides, schedules, rank, floor, relaxation,
                    self.max_batch_bytes, backend=backend)
            if engine == "lowrank":
                return lowrank.LowRankCompletionProblem(
                    entries, None, power, sides, schedules, rank, floor, relaxation,
                    self.max_batch_bytes, device=device)
            problem = _CompletionProblem(backend, entries, None, power, sides, schedules,
                                         rank, bool(self.track_objective))
            problem.reg_floor, problem.relaxation = floor, relaxation
            return problem

        return make

    def _finish_fit(self, fitted, engine, obs, empty, value_scale_, clip) -> None:
        """Copy the selected fit's result into attributes, in the data's units.

        ``empty`` is ``(empty_rows, empty_cols)``, the masks of rows and columns
        without observations (computed once in :meth:`fit`).
        """
        res = fitted.problem.result()
        s, off = value_scale_, fitted.offsets
        offsets = dataclasses.replace(off, mean=off.mean * s, row=off.row * s, col=off.col * s)
        # residual of the centring model, in the data's units (s is a power of two)
        residual = offsets.subtract(obs)
        row_means, col_means, global_mean = _means(residual)
        empty_rows, empty_cols = empty
        fill = (empty_rows, empty_cols, row_means, col_means, global_mean)
        for name in ("_completed", "_observed"):
            self.__dict__.pop(name, None)
        self.offsets_, self.clip_, self.value_scale_ = offsets, clip, s
        if engine == "lowrank":
            self._copy_factored(res, residual, fill)
        else:
            self._copy_dense(res, residual, fill)
        self.column_reg_, self.reg_, self.kernel_reg_ = res.column_reg, res.reg, res.kernel_reg
        self.engine_ = engine
        self.n_iter_ = int(fitted.n_iter)
        self.history_ = fitted.history
        self._store_selection(fitted, clip)
        self._col_means, self._global_mean, self._empty_cols = col_means, global_mean, empty_cols

    def _copy_dense(self, res: CompletionResult, obs, fill) -> None:
        """``completed_`` and the fold-in kernel from a dense result."""
        dtype = obs.values.dtype
        Z = (res.iterate * self.value_scale_).astype(dtype)
        Z[obs.rows, obs.cols] = obs.values  # obs: the residual of the centring model
        _fill_unobserved(Z, *fill)
        self.completed_ = _finish(Z, self.offsets_, self.clip_)
        self.column_kernel_ = np.asarray(res.kernel, dtype=dtype)
        self.factors_ = self.column_kernel_factors_ = None

    def _copy_factored(self, res: CompletionResult, obs, fill) -> None:
        """``factors_`` (plus fallback and centring as rank-one terms) and the fold-in
        eigenpairs from a low-rank result; ``completed_`` is formed on demand."""
        P, Q = res.factors
        A, B = lowrank.append_fill(P * self.value_scale_, Q, fill)
        self.factors_ = _with_offsets(A, B, self.offsets_)
        # plain arrays (not an object) so that the model saves; observed entries are
        # the data (residual + centring model)
        values = (obs.values + self.offsets_.at(obs.rows, obs.cols)).astype(obs.values.dtype)
        self._observed = (obs.rows, obs.cols, values)
        self.column_kernel_ = None
        self.column_kernel_factors_ = res.kernel_factors

    def _factored(self) -> lowrank.FactoredCompletion:
        """The low-rank engine's result: ``factors_`` off the observed entries."""
        rows, cols, values = self._observed
        obs = Observations(rows, cols, values, self.shape_)
        return lowrank.FactoredCompletion(*self.factors_, obs)

    @property
    def completed_(self):
        """The completed ``(d1, d2)`` matrix (formed on first access with the low-rank engine)."""
        if "_completed" in self.__dict__:
            return self.__dict__["_completed"]
        if "_observed" not in self.__dict__:
            raise AttributeError("'LinRFMCompleter' object has no attribute 'completed_'")
        Z = self._factored().to_dense()
        self.__dict__["_completed"] = Z if self.clip_ is None else np.clip(Z, *self.clip_)
        return self.__dict__["_completed"]

    @completed_.setter
    def completed_(self, value):
        self.__dict__["_completed"] = value

    def _store_selection(self, fitted, clip) -> None:
        """Fitted attributes of the smoothing selection and held-out errors."""
        metrics = fitted.validation or {}
        self.validation_error_ = metrics.get("relative")
        self.validation_rmse_ = metrics.get("rmse")
        self.validation_mae_ = metrics.get("mae")
        self.selection_ = fitted.selection
        self.selected_reg_ = fitted.selected_reg
        self.selected_side_ = fitted.selected_side
        self.selected_regs_ = fitted.selected_regs
        self.path_ = fitted.path
        self.stop_reason_ = fitted.stop_reason

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
        check_is_fitted(self, "n_iter_")
        rows, cols = check_entry_indices(rows, cols, self.shape_)
        if self.engine_ == "lowrank":
            out = self._factored().entries(rows.ravel(), cols.ravel()).reshape(rows.shape)
            return out if self.clip_ is None else np.clip(out, *self.clip_)
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
        check_is_fitted(self, "n_iter_")
        d2 = self.shape_[1]
        triplets = isinstance(X, tuple) or type(X).__name__ == "DataFrame"
        obs = as_observations(X, shape=shape, dtype=self.dtype)
        if triplets and shape is None:
            if obs.shape[1] > d2:
                raise ValueError(f"X has column indices up to {obs.shape[1] - 1} but the "
                                 f"model was fitted on {d2} columns")
            obs = Observations(obs.rows, obs.cols, obs.values, (obs.shape[0], d2))
        if obs.shape[1] != d2:
            raise ValueError(f"X has {obs.shape[1]} columns but the model was fitted on {d2}")
        offsets = self.offsets_.for_new_rows(obs)
        obs = offsets.subtract(obs)
        # the kernel is in the units of the rescaled training values (value_scale_)
        scale = self.value_scale_
        obs_s = obs.scaled(scale) if scale != 1.0 else obs
        if self.engine_ == "lowrank":
            D, V = self.column_kernel_factors_
            Z = lowrank.fold_in(obs_s, V, D, self.column_reg_, self.max_batch_bytes)
        else:
            K = self.column_kernel_
            indptr, indices, values = obs_s.csr_arrays(K.dtype)
            Z = numpy_backend.solve_rows(K, indptr, indices, values, self.column_reg_,
                                         replace=True, max_batch_bytes=self.max_batch_bytes)
        Z = (Z.astype(np.float64) * scale).astype(Z.dtype)  # exact: a power of two
        if not np.all(np.isfinite(Z)):
            raise ValueError("transform: the fold-in kernel is not finite (power="
                             f"{self.power} overflows it for this data); refit with a "
                             "smaller power")
        row_means, _, _ = _means(obs)
        empty_rows = obs.row_counts() == 0
        Z = _fill_unobserved(Z, empty_rows, self._empty_cols, row_means, self._col_means,
                             self._global_mean)
        return _finish(Z, offsets, self.clip_)
