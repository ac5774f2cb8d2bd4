"""The lin-RFM outer loop, shared by regression, completion and sensing.

A problem type subclasses :class:`LinRFMProblem` and implements one iteration
(``step``): build the kernel from the current iterate's AGOP, solve the
minimum-norm fit, return a few numbers. :func:`run_loop` owns everything else:
stopping rules, ``history_``, the progress bar, callbacks, validation-based
early stopping and keeping the best iterate when the user presses Ctrl-C.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from ..exceptions import ConvergenceWarning, InterruptedFitWarning

__all__ = ["LinRFMProblem", "LoopResult", "run_loop"]


class LinRFMProblem:
    """Interface between a problem type and :func:`run_loop`.

    Contract: ``step`` must build *new* arrays for the iterate and assign them
    only at its end, never modify in place the arrays that ``snapshot``
    returned. Then an interrupted step leaves the previous iterate intact and
    snapshots cost nothing (they are references).
    """

    def initialize(self) -> None:
        """Compute the first iterate (``M_0 = I``)."""
        raise NotImplementedError

    def step(self) -> dict[str, float]:
        """Run one lin-RFM iteration.

        Returns
        -------
        record : dict
            Must contain ``"rel_change"`` (relative Frobenius change of the
            iterate), ``"objective"`` and ``"reg"``; may add other scalars,
            which are recorded in ``history_`` too.
        """
        raise NotImplementedError

    def validation_error(self) -> float | None:
        """Error on held-out *observed* data, or None when there is none."""
        return None

    def snapshot(self) -> Any:
        """Return references to the current iterate (see the class contract)."""
        raise NotImplementedError

    def restore(self, snap: Any) -> None:
        """Make ``snap`` the current iterate again."""
        raise NotImplementedError


@dataclass
class LoopResult:
    """What :func:`run_loop` reports.

    Attributes
    ----------
    n_iter : int
        Completed iterations (the kept iterate may be an earlier one when
        validation stopping restored the best).
    history : dict of str to list
        One entry per completed iteration: ``iteration``, ``time`` (seconds
        since the start, setup included), ``objective``, ``rel_change``,
        ``reg``, ``validation_error`` when validation is on, and any extra
        scalars the problem returned.
    converged : bool
        True when a stopping rule (``tol`` or validation patience) fired.
    stop_reason : str
        One of ``"tol"``, ``"validation"``, ``"max_iter"``, ``"callback"``,
        ``"interrupted"``.
    best_iteration : int
        Iteration whose iterate was kept (0 = the initial iterate).
    """

    n_iter: int
    history: dict[str, list] = field(default_factory=dict)
    converged: bool = False
    stop_reason: str = "max_iter"
    best_iteration: int = 0


def _append(history: dict[str, list], record: dict[str, Any], n_before: int) -> None:
    for key, value in record.items():
        column = history.setdefault(key, [math.nan] * n_before)
        column.append(value)
    for key, column in history.items():
        if len(column) == n_before:
            column.append(math.nan)


def run_loop(
    problem: LinRFMProblem,
    *,
    max_iter: int,
    tol: float,
    verbose: int | bool = 0,
    callback: Callable[[int, dict], bool | None] | None = None,
    n_iter_no_change: int = 10,
    min_rel_improvement: float = 1e-4,
    desc: str = "lin-RFM",
    warn_on_max_iter: bool = True,
) -> LoopResult:
    """Run the lin-RFM outer loop on ``problem``.

    Parameters
    ----------
    problem : LinRFMProblem
        The problem type, already holding validated data.
    max_iter : int
        Maximum number of iterations (>= 1).
    tol : float
        Stop when the relative change of the iterate falls below ``tol``.
        ``tol=0`` disables this rule.
    verbose : int or bool
        0: silent; 1: tqdm progress bar on stderr; 2: also one line per
        iteration.
    callback : callable, optional
        ``callback(iteration, record)``; returning True stops the loop.
    n_iter_no_change : int
        With validation data, stop after this many iterations without a
        relative improvement of ``min_rel_improvement`` of the validation
        error, and restore the best iterate.
    min_rel_improvement : float
        See ``n_iter_no_change``.
    desc : str
        Progress-bar label.
    warn_on_max_iter : bool
        Emit :class:`~linrfm.exceptions.ConvergenceWarning` when ``max_iter``
        is reached without meeting a stopping rule.

    Returns
    -------
    LoopResult
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    history: dict[str, list] = {}
    problem.initialize()
    best_snap = problem.snapshot()
    best_val = problem.validation_error()
    best_it = 0
    since_best = 0
    result = LoopResult(n_iter=0, history=history)

    bar = tqdm(total=max_iter, desc=desc, disable=not verbose, file=sys.stderr, leave=False)
    try:
        for it in range(1, max_iter + 1):
            try:
                record = dict(problem.step())
            except KeyboardInterrupt:
                # step() assigns its new iterate only at its end, so the state
                # is still that of the last completed iteration.
                result.stop_reason = "interrupted"
                warnings.warn(
                    f"fit interrupted at iteration {it}; keeping the iterate of "
                    f"iteration {best_it if best_val is not None else it - 1}.",
                    InterruptedFitWarning,
                    stacklevel=3,
                )
                break
            record["iteration"] = it
            val = problem.validation_error()
            if val is not None:
                record["validation_error"] = val
            record["time"] = time.perf_counter() - start
            _append(history, record, it - 1)
            result.n_iter = it

            if val is not None:
                if best_val is None or val < best_val * (1.0 - min_rel_improvement):
                    best_val, best_snap, best_it, since_best = val, problem.snapshot(), it, 0
                else:
                    since_best += 1
            else:
                best_snap, best_it = problem.snapshot(), it

            bar.update(1)
            if verbose:
                bar.set_postfix(rel_change=f"{record.get('rel_change', math.nan):.2e}",
                                reg=f"{record.get('reg', math.nan):.1e}")
            if verbose and int(verbose) >= 2:
                items = " ".join(f"{k}={v:.4g}" for k, v in record.items()
                                 if isinstance(v, (int, float)) and k != "iteration")
                tqdm.write(f"[{desc}] iter {it}: {items}", file=sys.stderr)

            if callback is not None and callback(it, record):
                result.stop_reason = "callback"
                break
            rel = record.get("rel_change", math.inf)
            if tol > 0 and rel < tol:
                result.stop_reason, result.converged = "tol", True
                break
            if val is not None and since_best >= n_iter_no_change:
                result.stop_reason, result.converged = "validation", True
                break
        else:
            if warn_on_max_iter:
                warnings.warn(
                    f"{desc}: reached max_iter={max_iter} before the relative change "
                    f"fell below tol={tol:g}; increase max_iter or tol.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
    finally:
        bar.close()

    if best_val is not None:
        problem.restore(best_snap)
    result.best_iteration = best_it
    return result
