r"""Choosing the smoothing of lin-RFM completion on held-out *observed* entries.

The default of :class:`~linrfm.LinRFMCompleter` (``reg="path"``) is the rule
implemented by :func:`fit_selected`:

1. Hold out a seeded ``validation_fraction`` (default 5 %) of the observed
   entries; every row and column keeps at least one training entry. With
   fewer than ``MIN_HOLDOUT`` held-out entries there is nothing reliable to
   select on and the fit is the plain interpolating ``reg="auto"`` schedule.
2. Follow the decreasing ``"auto"`` smoothing path on the training entries and
   track the held-out error. If it falls below ``INTERPOLATION_SWITCH`` (the
   data interpolate: noiseless low-rank) or does not rise more than ``RISE``
   above its minimum before the path stops (still falling, or a plateau), add the held-out entries back and *continue the same path* on
   all entries from where it is (warm start): this is today's interpolating
   fit, at the cost of a few extra iterations.
3. Otherwise (the held-out error rose again: noise) the smoothing at the best
   point of the path, ``r*``, anchors a grid ``r* 2^k`` (``k = 4 .. -2``,
   extended upwards while a side's best is the largest smoothing tried) of
   *fixed* smoothings, each warm-started from the previous one and run
   ``STAGE_ITER`` (8) iterations, visited in decreasing order. With the
   alternating scheme the iteration at a fixed smoothing settles into a pair of
   matrices, one per side (column kernel / row kernel), which on noisy data are
   two different estimators with different best smoothings; the last iterate of
   each side is scored (a stage that may be selected is confirmed: run to at
   least ``STAGE_CONFIRM_ITER`` iterations and on while its score still moves,
   up to ``STAGE_MAX_ITER``), each side keeps its best smoothing, and the grid
   stops when every side has gone two stages without improving.
4. The kept estimator is the best on the held-out entries among: each side's
   best iterate, and the average of the two (each at its own smoothing). It is
   refitted on all entries, warm-started from its held-out iterate, with each
   side's smoothing on that side's steps (``REFIT_MAX_ITER`` iterations); the
   completion is the last iterate of the chosen side, or the average of the
   last iterate of each side. On exact data the two sides coincide, and steps
   3-4 are not reached.

Hidden entries are never used. The user-facing pieces for manual control are
:class:`SmoothingPath` (the path with its held-out errors and a plot),
:class:`EntryCompleter`, :class:`ObservedEntriesKFold` and
:func:`make_completion_scorer` (scikit-learn ``GridSearchCV`` over observed
entries).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.metrics import make_scorer
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from ._observations import Observations
from .core.centering import Offsets, choose_bias_reg, fit_offsets
from .core.loop import LinRFMProblem, check_callback, run_loop
from .exceptions import LinRFMWarning

__all__ = ["SmoothingPath", "EntryCompleter", "ObservedEntriesKFold", "make_completion_scorer",
           "fit_selected", "HOLDOUT_FRACTION"]

# Share of observed entries held out by reg="path" when the user gives no
# validation_fraction. 5 % rather than 10 %: on the paper's noiseless demo
# (500^2, rank 5, 2x) the path with 10 % held out needed 33 iterations to a
# held-out error of 1e-3, with 5 % 27 (the full fit converges in 48).
HOLDOUT_FRACTION = 0.05
# Below this many held-out entries the selection is noise: fall back to "auto".
MIN_HOLDOUT = 100
# Relative held-out error below which the data are treated as exact: noise
# below 0.1 % of the signal changes nothing a user can see, and interpolation
# is then the best smoothing.
INTERPOLATION_SWITCH = 1e-3
# Relative rise of the held-out error above its minimum that marks noise.
RISE = 0.01
# Grid of fixed smoothings r* 2^k, k = 4 .. -2, around the best point r* of the
# "auto" path: on rank-5 problems with 3-30 % noise the best fixed smoothing
# was 3-15 r* (the path's transient over-fits before it is converged); on
# MovieLens-100K 4-8 r*. When a side's best is the largest smoothing tried the
# grid is extended upwards (k = 5, 6, ... up to GRID_TOP_MAX).
GRID_EXPONENTS = tuple(range(4, -3, -1))
GRID_TOP_MAX = 8
# Each grid stage runs STAGE_ITER iterations from the previous stage's iterate
# (fewer only if the relative change falls below STAGE_TOL) and is scored at
# its end. A tolerance of 1e-3 alone stopped stages after 1-2 iterations: at a
# fixed smoothing the MM steps are small long before the fixed point. Eight
# iterations are four steps per side of the alternating scheme; on
# MovieLens-100K the held-out error of each side moved by < 1e-3 after them.
STAGE_ITER, STAGE_TOL = 8, 1e-6
# A stage whose last iterate of some side beats that side's best so far (a
# smoothing that may be selected) is confirmed: it is continued, two iterations
# at a time, to at least STAGE_CONFIRM_ITER iterations and then while that
# side's held-out error still moves by more than STAGE_SETTLE (relative) from
# one of its iterates to the next, up to STAGE_MAX_ITER. A too-small smoothing
# can over-fit after a delay: 500^2, rank 5, 10 % noise, reg 0.044 was flat at
# 0.1163 held-out RMSE for 9 iterations, then 0.1189 after 12 and 0.1246 after
# 16 (its fixed point has 1.6x the test error of reg 0.09; selected from
# 8-iteration stages it gave 1.23x the oracle's error). Stages that cannot be
# selected stop after STAGE_ITER. On MovieLens-100K the first three stages of
# each fold are candidates (10-14 iterations each).
STAGE_CONFIRM_ITER = 12
STAGE_MAX_ITER, STAGE_SETTLE = 24, 1e-3
# A side stops improving after this many grid stages in a row without a lower
# held-out error; the grid stops when every side has.
PATIENCE = 2
# Refit on all entries at the chosen fixed smoothing(s).
REFIT_MAX_ITER, REFIT_TOL = 12, 1e-5


@dataclass
class Fitted:
    """What :func:`fit_selected` hands back to the estimator."""

    problem: LinRFMProblem
    offsets: Offsets
    n_iter: int = 0
    history: dict = field(default_factory=dict)
    stop_reason: str = "max_iter"
    selection: str = "none"
    selected_reg: float | str | None = None
    validation: dict | None = None
    path: list = field(default_factory=list)
    best_auto: tuple | None = None
    selected_side: str | None = None
    selected_regs: dict | None = None


class _Tracked(LinRFMProblem):
    """A completion problem measured on held-out entries, optionally warm-started.

    Wraps the estimator's problem (composition, nothing reassigned): adds
    ``validation_rmse``/``validation_mae`` (in the user's units, offsets added
    back, clipped) to every record, and starts from ``start`` (a snapshot of
    another problem of the same shape) instead of the cold start. With
    ``exact_first`` the first step is not over-relaxed, so entries that were
    not observed in ``start`` become exact at once.
    """

    def __init__(self, inner, validation=None, offsets=None, clip=None, start=None,
                 exact_first=False):
        self.inner = inner
        self.validation = validation
        # False: measure and record the held-out errors but hide them from
        # run_loop, so it neither stops on them nor restores an earlier iterate.
        self.early_stopping = True
        self.clip = clip
        self.start = start
        self.exact_first = exact_first
        self._exact_next = False
        self.metrics = None
        # side -> (inner snapshot, metrics) of the last iterate of that side, and
        # the relative held-out error of the one before it (kept across runs
        # until reset_sides())
        self.last_by_side = {}
        self.previous_error = {}
        self.prediction = None
        if validation is not None:
            self._base = offsets.at(validation.rows, validation.cols)
            self._ref = validation.values.astype(np.float64)
            self._ref_norm = max(float(np.linalg.norm(self._ref - self._base)), np.finfo(float).tiny)

    def initialize(self) -> None:
        if self.start is None:
            self.inner.initialize()
        else:
            self.inner.restore(self.start)
        self._exact_next = self.exact_first
        self._measure()

    def step(self) -> dict:
        if self._exact_next:
            with _plain_step(self.inner):
                record = self.inner.step()
            self._exact_next = False
        else:
            record = self.inner.step()
        self._measure()
        if self.metrics is not None:
            record["validation_rmse"] = self.metrics["rmse"]
            record["validation_mae"] = self.metrics["mae"]
        if "side" in record:
            side = record["side"]
            if side in self.last_by_side and self.last_by_side[side][1] is not None:
                self.previous_error[side] = self.last_by_side[side][1]["relative"]
            self.last_by_side[side] = (self.inner.snapshot(), self.metrics, self.prediction)
        return record

    def reset_sides(self) -> None:
        """Forget the per-side iterates (a new stage starts)."""
        self.last_by_side, self.previous_error = {}, {}

    def _measure(self) -> None:
        if self.validation is None:
            return
        self.prediction = self.inner.predict_entries(self.validation.rows,
                                                     self.validation.cols)
        self.metrics = self.score(self.prediction)

    def errors(self, residual_pred) -> np.ndarray:
        """Held-out errors (data units of the fit, offsets added, clipped) of
        predictions of the residual at the held-out entries."""
        pred = residual_pred + self._base
        if self.clip is not None:
            pred = np.clip(pred, *self.clip)
        return pred - self._ref

    def score(self, residual_pred) -> dict:
        """Held-out metrics of predictions of the residual at the held-out entries."""
        err = self.errors(residual_pred)
        return {"relative": float(np.linalg.norm(err) / self._ref_norm),
                "rmse": float(np.sqrt(np.mean(err ** 2))),
                "mae": float(np.mean(np.abs(err)))}

    def validation_error(self):
        if self.metrics is None or not self.early_stopping:
            return None
        return self.metrics["relative"]

    def snapshot(self):
        return self.inner.snapshot(), self.metrics

    def iterate(self):
        return self.inner.iterate()

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state) -> None:
        self.inner.load_state_dict(state)
        self._measure()

    def restore(self, snap) -> None:
        inner_snap, self.metrics = snap
        self.inner.restore(inner_snap)


class _plain_step:
    """Context manager: one step of ``problem`` without over-relaxation."""

    def __init__(self, problem):
        self.problem = problem

    def __enter__(self):
        self.saved = self.problem.relaxation
        self.problem.relaxation = 1.0

    def __exit__(self, *exc):
        self.problem.relaxation = self.saved
        return False


def _with_values(snap, values):
    """A completion snapshot ``(Z, orient, t, reg values)`` with other reg values."""
    Z, orient, t, _ = snap
    return Z, orient, t, dict(values)


def _append_history(fitted: Fitted, result, phase: str) -> None:
    """Concatenate one run's history into ``fitted.history`` with a phase label."""
    hist = result.history
    n = len(hist.get("iteration", []))
    t0 = fitted.history["time"][-1] if fitted.history.get("time") else 0.0
    keys = set(fitted.history) | set(hist) | {"phase"}
    before = len(fitted.history.get("iteration", []))
    for key in keys:
        column = fitted.history.setdefault(key, [math.nan] * before)
        if key == "phase":
            column.extend([phase] * n)
        elif key == "iteration":
            column.extend(before + i + 1 for i in range(n))
        elif key == "time":
            column.extend(t0 + v for v in hist["time"])
        else:
            column.extend(hist.get(key, [math.nan] * n))
    fitted.n_iter += int(result.n_iter)
    fitted.stop_reason = result.stop_reason


def _offsets(center, train, validation, clip):
    """Centring model of ``train`` (bias ridge chosen on ``validation`` when given)."""
    if center != "biases" or validation is None:
        return fit_offsets(train, center)
    return fit_offsets(train, center, choose_bias_reg(train, validation))


def _split(obs: Observations, fraction, rng, required: bool):
    """Held-out split, or ``(obs, None)`` when it would be too small and is optional."""
    train, validation = obs.split(fraction, random_state=rng)
    if validation.nnz == 0 and required:
        raise ValueError(
            f"validation_fraction={fraction} holds out no entry: every row and column "
            "needs at least two observed entries to give one to validation")
    if not required and validation.nnz < MIN_HOLDOUT:
        return obs, None
    return train, validation


def fit_selected(make, obs: Observations, *, reg, validation_fraction, center, clip, rng,
                 loop: dict, path_regs=None, checkpoint=None) -> Fitted:
    """Fit a completion problem with the smoothing rule ``reg`` (see the module docstring).

    Parameters
    ----------
    make : callable
        ``make(observations, reg, schedules=None)`` returns a fresh completion
        problem (``reg`` "auto" or a float) on those observations.
    obs : Observations
        All observed entries.
    reg : "path", "auto" or float
    validation_fraction : float or None
        Held-out share (None: ``HOLDOUT_FRACTION`` for "path", none otherwise).
    center : {None, "mean", "biases"}
    clip : (float, float) or None
        Range of the held-out predictions when measuring errors.
    rng : numpy RandomState
        Seeds the held-out split.
    loop : dict
        ``run_loop`` keyword arguments of the estimator (max_iter, tol, ...).
    path_regs : sequence of float, optional
        Explicit fixed smoothings for "path" (relative to the first kernel's
        scale); default: the grid around the "auto" path's best point.
    checkpoint : Checkpointer, optional
        Checkpoints of the final fit (the single fit, or the path's refit on
        all entries); the path's selection phases are re-run on resume (they
        are deterministic).

    Returns
    -------
    Fitted
    """
    single = {**loop, "checkpoint": checkpoint}
    if reg != "path":
        train, validation = (obs, None) if validation_fraction is None else \
            _split(obs, validation_fraction, rng, True)
        fitted = _fit_single(make, train, validation, reg, center, clip, single)
        return _check_against_mean(fitted, train, validation, clip)
    frac = HOLDOUT_FRACTION if validation_fraction is None else validation_fraction
    train, validation = _split(obs, frac, rng, required=validation_fraction is not None)
    if validation is None:
        fitted = _fit_single(make, obs, None, "auto", center, clip, single)
        fitted.selection = "auto (too few entries to hold out)"
        return fitted
    fitted = _fit_path(make, obs, train, validation, center, clip, loop, path_regs,
                       checkpoint)
    return _check_against_mean(fitted, train, validation, clip)


def _check_against_mean(fitted: Fitted, train, validation, clip) -> Fitted:
    """Warn when the kept model predicts the held-out entries worse than the mean."""
    if validation is None or fitted.validation is None:
        return fitted
    ref = validation.values.astype(np.float64)
    base = np.full(ref.shape, float(train.values.mean()))
    if clip is not None:
        base = np.clip(base, *clip)
    mean_rmse = float(np.sqrt(np.mean((base - ref) ** 2)))
    fitted.validation["mean_rmse"] = mean_rmse
    if fitted.validation["rmse"] > mean_rmse:
        warnings.warn(
            f"the completion predicts the held-out entries worse (RMSE "
            f"{fitted.validation['rmse']:.4g}) than their training mean does ({mean_rmse:.4g}): "
            "the data show no usable low-rank structure; compare with center='biases' or a "
            "mean/bias model.", LinRFMWarning, stacklevel=4)
    return fitted


def _fit_path(make, obs, train, validation, center, clip, loop, path_regs,
              checkpoint=None) -> Fitted:
    """``reg="path"`` with a held-out set (phases 1-4 of the module docstring)."""
    offsets = _offsets(center, train, validation, clip)
    fitted = Fitted(problem=None, offsets=offsets, selection="path")
    train_res = offsets.subtract(train)
    scale0, start, extend = None, None, False
    if path_regs is None:
        tracked = _Tracked(make(train_res, "auto"), validation, offsets, clip)
        start = _auto_path(tracked, fitted, loop)
        if fitted.selection == "interpolate" or _stopped(fitted):
            return _refit(make, obs, center, fitted, tracked.inner, start, loop, checkpoint)
        regs = [fitted.selected_reg * 2.0 ** k for k in GRID_EXPONENTS]
        scale0 = {o: s.scale0 for o, s in tracked.inner.schedules.items()}
        extend = True
    else:
        regs = sorted((float(r) for r in path_regs), reverse=True)
    stage = make(train_res, regs[0])
    tracked = _Tracked(stage, validation, offsets, clip)
    best, chosen, scale0 = _fixed_path(tracked, fitted, regs, scale0, start, loop, extend)
    choice = _combine_sides(tracked, chosen)
    if fitted.best_auto is not None and fitted.best_auto[1] <= choice[1]:
        # The early-stopped "auto" path beat every fixed smoothing: keep it as is.
        fitted.selection, fitted.selected_reg = "auto (early stopped)", "auto"
        fitted.validation = fitted.best_auto[2]
        stage.restore(_with_values(fitted.best_auto[0], fitted.best_auto[0][3]))
        fitted.problem = stage
        return fitted
    side, _, metrics = choice
    single = min(chosen, key=lambda o: chosen[o][0])
    fitted.selected_reg = chosen[single][1]
    fitted.selected_side = side
    fitted.selected_regs = {o: chosen[o][1] for o in (chosen if side == "both" else (side,))}
    fitted.validation = metrics
    # warm start: the best held-out iterate of the chosen side (of the column side
    # for "both"), with each side's schedule at its own selected smoothing
    first = "columns" if side == "both" and "columns" in best else \
        (side if side != "both" else single)
    regs_abs = {o: fitted.selected_regs.get(o, fitted.selected_regs[first]) * s0
                for o, s0 in scale0.items()}
    start = _with_values(best[first][2], regs_abs)
    return _refit(make, obs, center, fitted, stage, start, loop, checkpoint)


def _stopped(fitted: Fitted) -> bool:
    return fitted.stop_reason in ("interrupted", "callback")


def _fixed_path(tracked: _Tracked, fitted: Fitted, regs, scale0, start, loop, extend=False):
    """Phase 3: warm-started fixed smoothings in decreasing order, held-out scored.

    Each stage runs ``STAGE_ITER`` iterations towards its fixed point (a stage that
    may be selected is confirmed, see ``STAGE_CONFIRM_ITER``) and is scored at its end, not at its best iteration: the refit converges at the chosen
    smoothing, so the score must describe that smoothing, not an early-stopped
    transient (scored at the best iteration, every stage of a 5 %-noise problem kept
    the warm start's error and the smallest smoothing won, 1.9x the oracle's test
    RMSE). With the alternating scheme the last iterate of *each side* is scored:
    at a fixed smoothing the iteration settles into a pair of matrices, one per
    side, which are different estimators on noisy data (MovieLens-100K: column side
    0.902, row side 0.918 test RMSE at the same smoothing), with different best
    smoothings. Each side keeps its own best; the grid stops when every side has
    gone ``PATIENCE`` stages without improving. With ``extend``, smoothings above
    the grid are added (factor 2, up to ``r* 2^GRID_TOP_MAX``, each started from
    the iterate the grid started from) while a side's best is the largest one tried.

    Returns
    -------
    best : dict
        side -> ``(relative error, reg, snapshot, metrics)`` of its best stage.
    chosen : dict
        side -> ``(relative error, reg, held-out prediction, metrics)`` of the same.
    scale0 : dict
        side -> scale of the first kernel (absolute smoothing = reg * scale0).
    """
    stage_loop = {**loop, "max_iter": STAGE_ITER, "tol": max(loop["tol"], STAGE_TOL),
                  "warn_on_max_iter": False}
    tracked.early_stopping = False
    best, worse, visited = {}, {}, {}
    top, origin = max(regs), start
    queue = list(regs)
    while queue:
        reg = queue.pop(0)
        if start is not None:
            start = _with_values(start, {o: reg * s0 for o, s0 in scale0.items()})
        tracked.start = start
        tracked.reset_sides()
        result = run_loop(tracked, **stage_loop)
        _append_history(fitted, result, f"reg={reg:.4g}")
        n_stage = result.n_iter
        while (n_stage < STAGE_MAX_ITER and result.stop_reason == "max_iter"
               and _unsettled(tracked, best, n_stage)):
            tracked.start = tracked.inner.snapshot()
            result = run_loop(tracked, **{**stage_loop, "max_iter": 2})
            _append_history(fitted, result, f"reg={reg:.4g}")
            n_stage += result.n_iter
        if scale0 is None:  # cold-started first stage: its schedules know the scale
            scale0 = {o: s.scale0 for o, s in tracked.inner.schedules.items()}
        start = tracked.inner.snapshot()
        scored = dict(tracked.last_by_side) or \
            {"columns": (start, dict(tracked.metrics), tracked.prediction)}
        for side, (snap, metrics, pred) in scored.items():
            visited.setdefault(side, []).append((reg, dict(metrics), pred))
            if side not in best or metrics["relative"] < best[side][0] * (1.0 - 1e-4):
                best[side], worse[side] = (metrics["relative"], reg, snap, dict(metrics)), 0
            else:
                worse[side] = worse.get(side, 0) + 1
        top_side = min(scored, key=lambda o: scored[o][1]["relative"])
        fitted.path.append({"reg": reg, "iteration": fitted.n_iter, "side": top_side,
                            **scored[top_side][1],
                            "sides": {o: dict(m) for o, (_, m, _) in scored.items()}})
        if _stopped(fitted):
            break
        if reg < top and min(worse.values()) >= PATIENCE:
            queue = []
        if not queue and extend and any(b[1] >= top for b in best.values()) \
                and top < fitted.selected_reg * 2.0 ** GRID_TOP_MAX * (1 + 1e-9):
            # a side is best at the largest smoothing tried: look above it, from the
            # iterate the grid started from (the "auto" path's best), as if the grid
            # had started there (from the top stage's end, a smoothing that over-fits
            # slowly would hand its damage on: MovieLens, power 1, centred, reg 16
            # went from 0.92 to 1.15 held-out RMSE in 24 iterations)
            top *= 2.0
            start = origin
            queue = [top]
    chosen = {}
    for side, stages in visited.items():
        reg, metrics, pred = next(v for v in stages if v[0] == best[side][1])
        chosen[side] = (metrics["relative"], reg, pred, metrics)
    return best, chosen, scale0


def _unsettled(tracked: _Tracked, best: dict, n_stage: int) -> bool:
    """True when a side's last iterate beats its best so far and is either not yet
    confirmed (fewer than ``STAGE_CONFIRM_ITER`` iterations) or still moving."""
    for side, (_, metrics, _) in tracked.last_by_side.items():
        prev = tracked.previous_error.get(side)
        if metrics is None or prev is None:
            continue
        err = metrics["relative"]
        if side in best and err >= best[side][0]:
            continue
        if n_stage < STAGE_CONFIRM_ITER or abs(err - prev) > STAGE_SETTLE * err:
            return True
    return False


def _combine_sides(tracked: _Tracked, chosen: dict):
    """Phase 4: the kept estimator, ``(side, relative error, metrics)``.

    Candidates: each side's chosen smoothing and, with two sides, the average of
    the two (each at its own smoothing), all scored on the held-out entries; the
    lowest error wins. On MovieLens-100K the average was best on the held-out
    entries of every fold (test RMSE 0.001-0.004 below the better side refitted
    alone); on exact data the sides coincide.
    """
    cands = {o: (c[0], c[3]) for o, c in chosen.items()}
    if len(chosen) == 2 and tracked.validation is not None:
        preds = [c[2] for c in chosen.values()]
        metrics = tracked.score(0.5 * (preds[0] + preds[1]))
        cands["both"] = (metrics["relative"], metrics)
    side = min(cands, key=lambda o: cands[o][0])
    return side, cands[side][0], cands[side][1]


class _Averaged:
    """The average of a problem's iterates on two sides (``selected_side == "both"``).

    Offers what the estimator reads from a finished problem: :meth:`result`
    (iterate or factors averaged; fold-in kernel and smoothing of the column
    side), :meth:`iterate` and :meth:`predict_entries`.
    """

    def __init__(self, problem, snaps: dict):
        self.problem = problem
        self.snaps = snaps

    def _each(self, fn):
        out = {}
        for side, snap in self.snaps.items():
            self.problem.restore(snap)
            out[side] = fn(self.problem)
        return out

    def result(self):
        results = self._each(lambda p: p.result())
        first = results.get("columns", next(iter(results.values())))
        parts = list(results.values())
        if first.iterate is not None:
            iterate = 0.5 * (parts[0].iterate + parts[1].iterate)
            return dataclasses.replace(first, iterate=iterate, side="both")
        (A1, B1), (A2, B2) = parts[0].factors, parts[1].factors
        factors = (np.hstack([0.5 * A1, 0.5 * A2]), np.hstack([B1, B2]))
        return dataclasses.replace(first, factors=factors, side="both")

    def iterate(self):
        its = list(self._each(lambda p: np.asarray(p.iterate(), dtype=np.float64)).values())
        return 0.5 * (its[0] + its[1])

    def predict_entries(self, rows, cols):
        preds = list(self._each(lambda p: p.predict_entries(rows, cols)).values())
        return 0.5 * (preds[0] + preds[1])


def _refit(make, obs, center, fitted: Fitted, problem, start, loop, checkpoint=None) -> Fitted:
    """Final fit on all entries, warm-started from ``start`` (a training-split iterate).

    "interpolate" continues the same "auto" schedules (same objects, so the
    path goes on where it was); a fixed smoothing keeps the chosen values (one
    per side when both sides are kept) and ends on the selected side, or is the
    average of the last iterate of each side.
    """
    if _stopped(fitted):
        problem.restore(start)
        fitted.problem = problem
        return fitted
    reg_b = fitted.offsets.reg
    offsets = fit_offsets(obs, center, 10.0 if math.isnan(reg_b) else reg_b)
    residual = offsets.subtract(obs)
    if fitted.selection == "interpolate":
        full = make(residual, "auto", schedules=problem.schedules)
        run = {**loop, "max_iter": max(1, loop["max_iter"] - fitted.n_iter)}
    else:
        full = make(residual, 1.0)
        run = {**loop, "max_iter": REFIT_MAX_ITER, "tol": max(loop["tol"], REFIT_TOL),
               "warn_on_max_iter": False}
    tracked = _Tracked(full, start=start, exact_first=True)
    result = run_loop(tracked, **run, checkpoint=checkpoint)
    _append_history(fitted, result, "refit")
    fitted.problem, fitted.offsets = full, offsets
    side, last = fitted.selected_side, tracked.last_by_side
    if side == "both" and len(last) == 2 and not _stopped(fitted):
        fitted.problem = _Averaged(full, {o: v[0] for o, v in last.items()})
    elif side in last and side != "both" and full.snapshot()[1] != side:
        full.restore(last[side][0])  # end on the selected side's iterate
    return fitted


def _fit_single(make, train, validation, reg, center, clip, loop) -> Fitted:
    """One run with ``reg`` ("auto" or float), held-out stopping when ``validation`` is set."""
    offsets = _offsets(center, train, validation, clip)
    tracked = _Tracked(make(offsets.subtract(train), reg), validation, offsets, clip)
    fitted = Fitted(problem=tracked.inner, offsets=offsets, selection="none", selected_reg=reg)
    result = run_loop(tracked, **loop)
    _append_history(fitted, result, "fit")
    fitted.validation = tracked.metrics
    return fitted


def _auto_path(tracked: _Tracked, fitted: Fitted, loop: dict):
    """Phase 1: the "auto" path on the training entries.

    Returns the snapshot of the path's best iterate. When the data interpolate
    ``fitted.selection`` becomes "interpolate"; otherwise
    ``fitted.selected_reg`` is the path's best smoothing relative to its first
    kernel scale (the anchor of the fixed grid).
    """
    user_cb = check_callback(loop.get("callback"))
    user_stopped = []

    def stop(state):
        if user_cb is not None and user_cb(state):
            user_stopped.append(state.iteration)
            return True
        return state.record.get("validation_error", math.inf) < INTERPOLATION_SWITCH

    result = run_loop(tracked, **{**loop, "callback": stop, "warn_on_max_iter": False})
    if result.stop_reason == "callback" and not user_stopped:
        result.stop_reason = "interpolating"
    _append_history(fitted, result, "auto")
    fitted.validation = tracked.metrics
    val = fitted.history["validation_error"]
    best_it = int(np.nanargmin(val))
    # Noise shows as a held-out error that rises again after its minimum; a
    # plateau (slow exact recovery: 300x800, rank 5, 2.5x stalled near 2.5e-2
    # for 10 iterations on one split) is no evidence of noise.
    rising = val[-1] > val[best_it] * (1.0 + RISE)
    interpolating = (tracked.metrics["relative"] < INTERPOLATION_SWITCH or not rising
                     or result.stop_reason == "interrupted")
    if interpolating:
        fitted.selection = "interpolate"
        fitted.selected_reg = "auto"
        return tracked.inner.snapshot()
    # history_["reg"] is already relative to the first kernel's scale on its side
    fitted.selected_reg = float(fitted.history["reg"][best_it])
    fitted.path.append({"reg": "auto", "iteration": best_it + 1, **tracked.metrics})
    snap = tracked.inner.snapshot()
    fitted.best_auto = (snap, tracked.metrics["relative"], dict(tracked.metrics))
    return snap


def check_path_regs(path_regs):
    """Validate ``path_regs``: None or a non-empty sequence of finite floats > 0."""
    if path_regs is None:
        return None
    regs = np.asarray(path_regs, dtype=float).ravel() if not isinstance(path_regs, str) else None
    if regs is None or regs.size == 0 or not np.all(np.isfinite(regs)) or np.any(regs <= 0):
        raise ValueError(f"path_regs must be None or a non-empty sequence of positive floats, "
                         f"got {path_regs!r}")
    return tuple(float(r) for r in regs)


def check_clip(clip, obs: Observations):
    """Resolve ``clip``: None/False, True (observed range) or a ``(lo, hi)`` pair."""
    if clip is None or clip is False:
        return None
    if clip is True:
        vals = obs.values
        return float(vals.min()), float(vals.max())
    try:
        lo, hi = (float(c) for c in clip)
    except (TypeError, ValueError):
        raise ValueError(f"clip must be None, True or a (low, high) pair, got {clip!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip must be a pair of finite floats with low < high, got {clip!r}")
    return lo, hi


class SmoothingPath(BaseEstimator):
    """The smoothing path of a :class:`~linrfm.LinRFMCompleter`, scored on held-out entries.

    Fits ``estimator`` with ``reg="path"``: fixed smoothings ``regs`` (or the
    automatic grid around the "auto" path's best point), visited in decreasing
    order, each warm-started from the previous one and scored on a held-out
    share of the observed entries (each side of the alternating scheme on its
    own); the best (one side, or the average of both) is refitted on all
    entries.

    Parameters
    ----------
    estimator : LinRFMCompleter, optional
        Settings of the completer (cloned; its ``reg``, ``path_regs``,
        ``validation_fraction`` and ``random_state`` are overridden).
        Default: ``LinRFMCompleter()``.
    regs : sequence of float, optional
        Smoothings to try, relative to the scale of the first kernel (the
        units of a float ``reg``). None: the automatic grid.
    validation_fraction : float, optional
        Held-out share (default ``HOLDOUT_FRACTION``).
    random_state : int, RandomState instance or None
        Seeds the held-out split.

    Attributes
    ----------
    best_estimator_ : LinRFMCompleter
        The completer refitted with the best smoothing.
    best_reg_ : float or "auto"
        The smoothing of the best single side on the held-out entries
        (``"auto"``: interpolation was best).
    best_side_ : str or None
        What the refitted completer keeps: ``"columns"``, ``"rows"`` or
        ``"both"`` (the average of the two sides, each at its own smoothing:
        ``best_estimator_.selected_regs_``).
    history_ : dict of str to list
        One entry per visited smoothing: ``reg``, ``validation_rmse``,
        ``validation_mae``, ``validation_error`` (relative) of its better
        side, that ``side``, and ``iteration`` (cumulative iterations when
        it was scored).
    """

    def __init__(self, estimator=None, regs=None, validation_fraction=None, random_state=None):
        self.estimator = estimator
        self.regs = regs
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X, y=None, shape=None):
        """Follow the path on ``X`` (any input :meth:`LinRFMCompleter.fit` accepts).

        Parameters
        ----------
        X : array-like, sparse matrix, (rows, cols, values) tuple or DataFrame
        y : None
            Ignored.
        shape : tuple of int, optional

        Returns
        -------
        self : SmoothingPath
        """
        from .problems.completion import LinRFMCompleter

        est = clone(self.estimator) if self.estimator is not None else LinRFMCompleter()
        est.set_params(reg="path", path_regs=self.regs,
                       validation_fraction=self.validation_fraction,
                       random_state=self.random_state)
        est.fit(X, shape=shape)
        rows = [p for p in est.path_ if p["reg"] != "auto"]
        self.history_ = {"reg": [p["reg"] for p in rows],
                         "validation_rmse": [p["rmse"] for p in rows],
                         "validation_mae": [p["mae"] for p in rows],
                         "validation_error": [p["relative"] for p in rows],
                         "side": [p.get("side") for p in rows],
                         "iteration": [p["iteration"] for p in rows]}
        self.best_reg_ = est.selected_reg_
        self.best_side_ = est.selected_side_
        self.best_estimator_ = est
        return self

    def predict(self, rows, cols):
        """Entries of the best completion (see :meth:`LinRFMCompleter.predict`).

        Parameters
        ----------
        rows, cols : array-like of int, shape (n,)

        Returns
        -------
        ndarray of shape (n,)
        """
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(rows, cols)

    def plot(self, ax=None):
        """Held-out RMSE against the smoothing (log scale), best point marked.

        Parameters
        ----------
        ax : matplotlib Axes, optional

        Returns
        -------
        matplotlib Axes
        """
        check_is_fitted(self, "history_")
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]
        h = self.history_
        ax.semilogx(h["reg"], h["validation_rmse"], "o-", label="held-out RMSE")
        if self.best_reg_ in h["reg"]:
            k = h["reg"].index(self.best_reg_)
            ax.semilogx([h["reg"][k]], [h["validation_rmse"][k]], "r*", ms=12, label="selected")
        ax.set_xlabel("smoothing reg (relative to the first kernel's scale)")
        ax.set_ylabel("RMSE on held-out observed entries")
        ax.legend()
        return ax


class EntryCompleter(RegressorMixin, BaseEstimator):
    """A completer seen as a regressor on entries, for scikit-learn model selection.

    Each sample is one observed entry: ``X[k] = (row, col)``, ``y[k]`` its value.
    ``GridSearchCV(EntryCompleter(LinRFMCompleter(), shape=(d1, d2)),
    {"estimator__reg": [...]}, cv=ObservedEntriesKFold(5),
    scoring=make_completion_scorer())`` cross-validates over observed entries.

    Parameters
    ----------
    estimator : LinRFMCompleter or another completer, optional
        Anything with ``fit(X, shape=...)`` on triplets and ``predict(rows, cols)``.
        Default: ``LinRFMCompleter()``.
    shape : tuple of int, optional
        ``(d1, d2)`` of the full matrix. Give it: a training fold may miss the
        last rows or columns (default: largest index + 1 of the training fold).

    Attributes
    ----------
    estimator_ : fitted completer
    """

    def __init__(self, estimator=None, shape=None):
        self.estimator = estimator
        self.shape = shape

    def fit(self, X, y):
        """Fit the completer on entries ``X`` (n, 2) with values ``y`` (n,).

        Parameters
        ----------
        X : array-like of int, shape (n, 2)
        y : array-like of float, shape (n,)

        Returns
        -------
        self : EntryCompleter
        """
        from .problems.completion import LinRFMCompleter

        X = _entries(X)
        est = clone(self.estimator) if self.estimator is not None else LinRFMCompleter()
        self.estimator_ = est.fit((X[:, 0], X[:, 1], np.asarray(y, dtype=float)),
                                  shape=self.shape)
        return self

    def predict(self, X):
        """Predicted values of entries ``X`` (n, 2).

        Parameters
        ----------
        X : array-like of int, shape (n, 2)

        Returns
        -------
        ndarray of shape (n,)
        """
        check_is_fitted(self, "estimator_")
        X = _entries(X)
        return self.estimator_.predict(X[:, 0], X[:, 1])


def _entries(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"entries must have shape (n, 2) = (row, col) pairs, got {X.shape}")
    if X.dtype.kind == "f" and np.all(X == np.round(X)):
        X = X.astype(np.int64)
    if X.dtype.kind not in "iu":
        raise TypeError(f"entry coordinates must be integers, got dtype {X.dtype}")
    return X


class ObservedEntriesKFold:
    """K-fold over observed entries that keeps every row and column in training.

    Plain ``KFold`` over entries can put all of a row's entries in one test
    fold, leaving a row the completer never saw. Such entries are moved back
    to the training side (so test folds can be slightly smaller than ``n/k``).

    Parameters
    ----------
    n_splits : int, default=5
    shuffle : bool, default=True
    random_state : int or None
    """

    def __init__(self, n_splits=5, shuffle=True, random_state=None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds."""
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield ``(train, test)`` index arrays over the entries ``X`` (n, 2)."""
        X = _entries(X)
        kf = KFold(self.n_splits, shuffle=self.shuffle,
                   random_state=self.random_state if self.shuffle else None)
        for train, test in kf.split(X):
            in_train_rows = np.zeros(X[:, 0].max() + 1, dtype=bool)
            in_train_cols = np.zeros(X[:, 1].max() + 1, dtype=bool)
            in_train_rows[X[train, 0]] = True
            in_train_cols[X[train, 1]] = True
            keep = in_train_rows[X[test, 0]] & in_train_cols[X[test, 1]]
            # Give each uncovered row/column one of its test entries back.
            back = test[~keep]
            _, first_r = np.unique(X[back, 0], return_index=True)
            _, first_c = np.unique(X[back, 1], return_index=True)
            moved = np.union1d(back[first_r], back[first_c])
            yield np.sort(np.concatenate([train, moved])), np.setdiff1d(test, moved)


def make_completion_scorer(metric="rmse", clip=None):
    """A scikit-learn scorer (higher is better) on held-out observed entries.

    Parameters
    ----------
    metric : {"rmse", "mae"}, default="rmse"
    clip : (float, float), optional
        Clip predictions to this range first (e.g. ``(1, 5)`` for ratings).

    Returns
    -------
    callable
        ``scorer(estimator, X, y)`` = minus the metric of ``estimator.predict(X)``.
    """
    if metric not in ("rmse", "mae"):
        raise ValueError(f"metric must be 'rmse' or 'mae', got {metric!r}")
    clip = None if clip is None else tuple(float(c) for c in clip)

    def error(y_true, y_pred):
        y_pred = np.asarray(y_pred, dtype=float)
        if clip is not None:
            y_pred = np.clip(y_pred, *clip)
        diff = y_pred - np.asarray(y_true, dtype=float)
        return float(np.sqrt(np.mean(diff ** 2)) if metric == "rmse" else np.mean(np.abs(diff)))

    return make_scorer(error, greater_is_better=False)
