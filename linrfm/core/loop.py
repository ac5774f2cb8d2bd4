"""The one outer loop of every iterative method in linrfm.

A method (the three lin-RFM problem types and the IRLS, Soft-Impute and
deep-linear-network baselines) subclasses :class:`LinRFMProblem` and
implements one iteration (``step``). :class:`Loop` owns everything else, in
the setup -> step -> run -> finalize shape of PyLops' ``basesolver``:
stopping rules, ``history_``, the progress bar and verbose lines, the
convergence warning, callbacks that see the live state, validation-based
early stopping, a non-finite guard and keeping the last good iterate when the
user presses Ctrl-C. :func:`run_loop` is the one-call wrapper.
"""
from __future__ import annotations

import inspect
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validation import check_verbose
from ..exceptions import ConvergenceWarning, InterruptedFitWarning, NonFiniteWarning
from .checkpoint import FINAL_REASONS, history_to_json

__all__ = ["LinRFMProblem", "LoopResult", "LoopState", "Loop", "run_loop",
           "check_callback"]


class LinRFMProblem:
    """Interface between an iterative method and :class:`Loop`.

    Contract: ``step`` must build *new* arrays for the iterate and assign them
    only at its end, never modify in place the arrays that ``snapshot``
    returned. Then an interrupted step leaves the previous iterate intact and
    snapshots cost nothing (they are references).

    Class attributes
    ----------------
    tol_key : str
        Record entry that ``tol`` applies to (``rel_change < tol`` by default;
        the deep linear networks stop on ``loss <= tol``).
    """

    tol_key = "rel_change"
    #: Words for ``tol_key`` in the convergence warning.
    tol_description = "the relative change of the iterate"

    def initialize(self) -> None:
        """Compute the first iterate (``M_0 = I``)."""
        raise NotImplementedError

    def step(self) -> dict[str, Any]:
        """Run one iteration.

        Returns
        -------
        record : dict
            Must contain ``tol_key`` (``"rel_change"``, the relative Frobenius
            change of the iterate, by default); lin-RFM problems also return
            ``"objective"`` and ``"reg"``. Every other scalar is recorded in
            ``history_`` too.
        """
        raise NotImplementedError

    def converged(self, record: dict, tol: float) -> bool:
        """Whether the problem's stopping rule is met (``tol > 0``)."""
        value = record.get(self.tol_key, math.inf)
        if self.tol_key == "rel_change":
            return value < tol
        return value <= tol

    def finite(self, record: dict) -> bool:
        """False when the new iterate is not finite (the loop then stops)."""
        value = record.get(self.tol_key, 0.0)
        return value is None or not isinstance(value, float) or not math.isnan(value)

    def validation_error(self) -> float | None:
        """Error on held-out *observed* data, or None when there is none."""
        return None

    def snapshot(self) -> Any:
        """Return references to the current iterate (see the class contract)."""
        raise NotImplementedError

    def restore(self, snap: Any) -> None:
        """Make ``snap`` the current iterate again."""
        raise NotImplementedError

    def iterate(self) -> np.ndarray:
        """The current iterate as a NumPy array, in the user's orientation.

        Used by callbacks (:meth:`LoopState.iterate`); problems whose iterate
        is not a single array document what they return.
        """
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The current iterate and schedule state, for a checkpoint.

        Values are NumPy arrays or JSON-serialisable scalars, lists and dicts.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support checkpoints")

    def load_state_dict(self, state: dict) -> None:
        """Make the state saved by :meth:`state_dict` current (after ``initialize``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support checkpoints")


@dataclass
class LoopResult:
    """What :class:`Loop` reports.

    Attributes
    ----------
    n_iter : int
        Completed iterations (the kept iterate may be an earlier one when
        validation stopping restored the best).
    history : dict of str to list
        One entry per completed iteration: ``iteration``, ``time`` (seconds
        since the start, setup included, time spent in callbacks excluded),
        the problem's record (``rel_change``, ``objective``, ``reg``, ...) and
        ``validation_error`` when validation is on.
    converged : bool
        True when a stopping rule (``tol`` or validation patience) fired.
    stop_reason : str
        One of ``"tol"``, ``"validation"``, ``"max_iter"``, ``"callback"``,
        ``"interrupted"``, ``"nonfinite"``.
    best_iteration : int
        Iteration whose iterate was kept (0 = the initial iterate).
    """

    n_iter: int
    history: dict[str, list] = field(default_factory=dict)
    converged: bool = False
    stop_reason: str = "max_iter"
    best_iteration: int = 0


@dataclass
class LoopState:
    """What a callback sees after each iteration.

    Attributes
    ----------
    iteration : int
        The iteration just completed (1-based).
    record : dict
        Its scalars, as recorded in ``history``.
    history : dict of str to list
        Everything recorded so far (read-only by convention).
    problem : LinRFMProblem
        The live problem (its current iterate is the one just computed).
    elapsed : float
        Seconds since the start of the loop, time in callbacks excluded.
    """

    iteration: int
    record: dict
    history: dict
    problem: LinRFMProblem
    elapsed: float

    def iterate(self) -> np.ndarray:
        """The current iterate as a NumPy array (see :meth:`LinRFMProblem.iterate`)."""
        return self.problem.iterate()


def check_callback(callback) -> Callable[[LoopState], Any] | None:
    """Validate a user callback and return it in the ``callback(state)`` form.

    Two forms are accepted: ``callback(state)`` with a :class:`LoopState`, and
    the scalar form ``callback(iteration, record)`` (a function with two
    required positional parameters). Either returns True to stop the fit.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return callback
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    if len(positional) >= 2:
        return lambda state: callback(state.iteration, state.record)
    return callback


def _append(history: dict[str, list], record: dict[str, Any], n_before: int) -> None:
    for key, value in record.items():
        column = history.setdefault(key, [math.nan] * n_before)
        column.append(value)
    for key, column in history.items():
        if len(column) == n_before:
            column.append(math.nan)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


class Loop:
    """The outer loop as an object: ``setup``, ``step``, ``run``, ``finalize``.

    Parameters
    ----------
    problem : LinRFMProblem
        The method, already holding validated data.
    max_iter : int
        Maximum number of iterations (>= 1).
    tol : float
        Stopping threshold for ``problem.tol_key``; ``tol=0`` disables it.
    verbose : int or bool
        0: silent; 1: tqdm progress bar on stderr; 2: also one line per
        iteration.
    callback : callable, optional
        ``callback(state)`` with a :class:`LoopState`, or
        ``callback(iteration, record)``; returning True stops the loop.
    n_iter_no_change : int
        With validation data, stop after this many iterations without a
        relative improvement of ``min_rel_improvement`` of the validation
        error, and restore the best iterate.
    min_rel_improvement : float
        See ``n_iter_no_change``.
    desc : str
        Label of the progress bar, the verbose lines and the warnings.
    warn_on_max_iter : bool
        Emit :class:`~linrfm.exceptions.ConvergenceWarning` when ``max_iter``
        is reached without meeting a stopping rule.
    checkpoint : Checkpointer, optional
        Write the full state every ``checkpoint.every`` iterations and when
        the loop stops (Ctrl-C and callback stops included); when its file
        exists at setup, resume from it (see :mod:`linrfm.core.checkpoint`).
    """

    def __init__(self, problem: LinRFMProblem, *, max_iter: int, tol: float,
                 verbose: int | bool = 0, callback=None, n_iter_no_change: int = 10,
                 min_rel_improvement: float = 1e-4, desc: str = "lin-RFM",
                 warn_on_max_iter: bool = True, checkpoint=None):
        self.problem = problem
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.verbose = check_verbose(verbose)
        self.callback = check_callback(callback)
        self.n_iter_no_change = n_iter_no_change
        self.min_rel_improvement = min_rel_improvement
        self.desc = desc
        self.warn_on_max_iter = warn_on_max_iter
        self.checkpoint = checkpoint
        self._resumed_reason = None

    # ------------------------------------------------------------------ phases
    def setup(self) -> None:
        """Start the clock and compute the first iterate."""
        from tqdm.auto import tqdm

        self._start = time.perf_counter()
        self._in_callbacks = 0.0
        self.result = LoopResult(n_iter=0, history={})
        self.problem.initialize()
        self._best_snap = self._last_snap = self.problem.snapshot()
        self._best_val = self.problem.validation_error()
        self._best_it = 0
        self._since_best = 0
        if self.checkpoint is not None:
            self._resume()
        self._bar = tqdm(total=self.max_iter, desc=self.desc, disable=not self.verbose,
                         file=sys.stderr, leave=False)

    def elapsed(self) -> float:
        """Seconds since :meth:`setup`, time spent in callbacks excluded."""
        return time.perf_counter() - self._start - self._in_callbacks

    def step(self) -> str | None:
        """Run one iteration; return the stop reason, or None to go on."""
        it = self.result.n_iter + 1
        record = dict(self.problem.step())
        record["iteration"] = it
        if not self.problem.finite(record):
            self.problem.restore(self._last_snap)
            return "nonfinite"
        val = self.problem.validation_error()
        if val is not None:
            record["validation_error"] = val
        record["time"] = self.elapsed()
        _append(self.result.history, record, it - 1)
        self.result.n_iter = it
        self._last_snap = self.problem.snapshot()
        self._track_best(it, val)
        if self.checkpoint is not None and it % self.checkpoint.every == 0:
            self._save_checkpoint("running")
        self._report(it, record)
        if self._call_back(it, record):
            return "callback"
        if self.tol > 0 and self.problem.converged(record, self.tol):
            return "tol"
        if val is not None and self._since_best >= self.n_iter_no_change:
            return "validation"
        return None

    def run(self) -> LoopResult:
        """:meth:`setup`, :meth:`step` until a rule fires, :meth:`finalize`."""
        self.setup()
        reason = self._resumed_reason or "max_iter"
        try:
            while self._resumed_reason is None and self.result.n_iter < self.max_iter:
                try:
                    reason = self.step() or reason
                except KeyboardInterrupt:
                    # step() assigns its new iterate only at its end, so the
                    # state is still that of the last completed iteration.
                    reason = "interrupted"
                if reason != "max_iter":
                    break
        finally:
            self._bar.close()
        return self.finalize(reason)

    def finalize(self, reason: str) -> LoopResult:
        """Warn as needed, restore the best iterate, fill in the result."""
        res = self.result
        res.stop_reason = reason
        res.converged = reason in ("tol", "validation")
        if self.checkpoint is not None and self._resumed_reason is None:
            self._save_checkpoint(reason)
        if reason == "interrupted":
            kept = self._best_it if self._best_val is not None else res.n_iter
            warnings.warn(f"{self.desc}: fit interrupted at iteration {res.n_iter + 1}; "
                          f"keeping the iterate of iteration {kept}.",
                          InterruptedFitWarning, stacklevel=5)
        elif reason == "nonfinite":
            warnings.warn(f"{self.desc}: diverged at iteration {res.n_iter + 1}: non-finite "
                          f"iterate ({self.problem.tol_key} is not finite: overflow, a singular "
                          f"system or too large a step); stopped and kept the iterate of "
                          f"iteration {res.n_iter}.", NonFiniteWarning, stacklevel=5)
        elif reason == "max_iter" and self.warn_on_max_iter:
            warnings.warn(
                f"{self.desc}: stopped at max_iter={self.max_iter} before "
                f"{self.problem.tol_description} fell below tol={self.tol:g}; the last "
                "iterate is returned. On noisy data this is expected with a vanishing "
                "smoothing: use a fixed regularisation or validation data; otherwise "
                "raise max_iter.", ConvergenceWarning, stacklevel=5)
        if self._best_val is not None:
            self.problem.restore(self._best_snap)
        res.best_iteration = self._best_it
        return res

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, reason: str) -> None:
        best = None
        if self._best_val is not None:
            # the problem's state_dict reads the current iterate: visit the best one
            self.problem.restore(self._best_snap)
            best = self.problem.state_dict()
            self.problem.restore(self._last_snap)
        loop = {"n_iter": self.result.n_iter, "best_it": self._best_it,
                "best_val": self._best_val, "since_best": self._since_best,
                "stop_reason": reason, "history": history_to_json(self.result.history)}
        self.checkpoint.save(loop, self.problem.state_dict(), best)

    def _resume(self) -> None:
        saved = self.checkpoint.load()
        if saved is None:
            return
        loop, state, best = saved
        if best is not None:
            self.problem.load_state_dict(best)
            self._best_snap = self.problem.snapshot()
        self.problem.load_state_dict(state)
        self._last_snap = self.problem.snapshot()
        if best is None:
            self._best_snap = self._last_snap
        self.result.history = loop["history"]
        self.result.n_iter = int(loop["n_iter"])
        self._best_it, self._best_val = int(loop["best_it"]), loop["best_val"]
        self._since_best = int(loop["since_best"])
        if loop["stop_reason"] in FINAL_REASONS:
            self._resumed_reason = loop["stop_reason"]

    # ------------------------------------------------------------------ helpers
    def _track_best(self, it: int, val: float | None) -> None:
        if val is None:
            self._best_it = it
            return
        if self._best_val is None or val < self._best_val * (1.0 - self.min_rel_improvement):
            self._best_val, self._best_snap = val, self._last_snap
            self._best_it, self._since_best = it, 0
        else:
            self._since_best += 1

    def _report(self, it: int, record: dict) -> None:
        if not self.verbose:
            return
        self._bar.update(1)
        self._bar.set_postfix({k: _fmt(record[k]) for k in (self.problem.tol_key, "reg")
                               if k in record})
        if self.verbose >= 2:
            items = " ".join(f"{k}={_fmt(v)}" for k, v in record.items()
                             if isinstance(v, (int, float)) and k != "iteration")
            self._bar.write(f"[{self.desc}] iter {it}: {items}", file=sys.stderr)

    def _call_back(self, it: int, record: dict) -> bool:
        if self.callback is None:
            return False
        t0 = time.perf_counter()
        try:
            state = LoopState(it, record, self.result.history, self.problem, self.elapsed())
            return bool(self.callback(state))
        finally:
            self._in_callbacks += time.perf_counter() - t0


def run_loop(problem: LinRFMProblem, **options) -> LoopResult:
    """Run :class:`Loop` on ``problem`` (keyword options as in :class:`Loop`).

    Returns
    -------
    LoopResult
    """
    return Loop(problem, **options).run()
