"""Completion phase transition: success rate vs oversampling, one-sided vs alternating sides.

Rank-5 square matrices (``make_completion_problem``: Gaussian factors, entries
of mean square 1, entries sampled uniformly without replacement, seeds 0, 1,
...) at 200 x 200 and 500 x 500, observed on ``oversampling * r (2d - r)``
entries (1.0 = the information limit). ``LinRFMCompleter`` with its defaults
(``reg="auto"``, ``max_iter=1000``, ``tol=1e-7``, no rank) except
``side="columns"`` (one-sided, the paper's algorithm) or ``side="alternate"``.
A fit succeeds when its relative error on the missing entries is <= 1e-3.
The truth is only used for that error, after the fit.

Seeds are the outer loop, so when ``--time-budget`` runs out every cell has
the same number of seeds (or one fewer); the table says how many each used.

Usage::

    .venv/bin/python benchmarks/bench_completion_phase.py           # 200^2 (>= 5 seeds) + 500^2
    .venv/bin/python benchmarks/bench_completion_phase.py --sizes 500 --seeds-500 3
    .venv/bin/python benchmarks/bench_completion_phase.py --quick   # 200^2, 3 values, 2 seeds
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completion_table import loadavg, pin_blas  # noqa: E402

from benchmarks._common import print_table, write_results  # noqa: E402
from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.datasets import make_completion_problem  # noqa: E402

RANK = 5
THRESHOLD = 1e-3
SIDES = ("columns", "alternate")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200^2, 3 oversamplings, 2 seeds")
    parser.add_argument("--seeds-200", type=int, default=6)
    parser.add_argument("--seeds-500", type=int, default=3)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds per size after which no new seed is started")
    parser.add_argument("--sizes", default="200,500",
                        help="comma-separated subset of 200,500 (run sizes in separate processes "
                             "to use both cores)")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args(argv)

    if args.quick:
        plan = [(200, [1.5, 2.0, 3.0], 2)]
    else:
        sizes = {int(x) for x in args.sizes.split(",")}
        plan = [(200, [1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0], args.seeds_200),
                (500, [1.0, 1.5, 2.0, 2.5, 3.0, 4.0], args.seeds_500)]
        plan = [p for p in plan if p[0] in sizes]

    load_start = loadavg()
    runs = []
    with pin_blas(args.blas_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: n_iter says it
        for d, overs, n_seeds in plan:
            t_size = time.perf_counter()
            for seed in range(n_seeds):
                if args.time_budget and time.perf_counter() - t_size > args.time_budget:
                    print(f"d={d}: time budget reached after {seed} seeds", flush=True)
                    break
                for over in overs:
                    prob = make_completion_problem(d, d, RANK, oversampling=over,
                                                   random_state=seed)
                    for side in SIDES:
                        t0 = time.perf_counter()
                        est = LinRFMCompleter(side=side).fit(prob.observed)
                        secs = time.perf_counter() - t0
                        err = prob.missing_error(est.completed_)
                        runs.append({"d": d, "oversampling": over, "side": side, "seed": seed,
                                     "n_observed": prob.observed.nnz, "error": err,
                                     "success": bool(err <= THRESHOLD), "n_iter": est.n_iter_,
                                     "stop_reason": est.stop_reason_, "time_s": secs,
                                     "load": loadavg()[0]})
                print(f"d={d} seed {seed} done ({time.perf_counter() - t_size:.0f} s, "
                      f"load {loadavg()[0]})", flush=True)

    rows = []
    for d, overs, _ in plan:
        for over in overs:
            for side in SIDES:
                cell = [r for r in runs if r["d"] == d and r["oversampling"] == over
                        and r["side"] == side]
                if not cell:
                    continue
                errs = np.array([r["error"] for r in cell])
                rows.append({"d": d, "rank": RANK, "oversampling": over, "side": side,
                             "seeds": len(cell), "success_rate": float(np.mean(errs <= THRESHOLD)),
                             "median_error": float(np.median(errs)),
                             "median_iter": float(np.median([r["n_iter"] for r in cell])),
                             "median_time_s": float(np.median([r["time_s"] for r in cell]))})
    print()
    print(f"success = error on missing entries <= {THRESHOLD:g}; BLAS threads "
          f"{args.blas_threads}; load average {load_start} -> {loadavg()}")
    print_table(rows, ["d", "oversampling", "side", "seeds", "success_rate", "median_error",
                       "median_iter", "median_time_s"])
    meta = {"blas_threads": args.blas_threads, "threshold": THRESHOLD, "rank": RANK,
            "load_start": load_start, "load_end": loadavg(),
            "estimator": "LinRFMCompleter(side=...) defaults otherwise"}
    suffix = "_quick" if args.quick else ""
    if not args.quick and args.sizes != "200,500":
        suffix = "_" + args.sizes.replace(",", "_")
    with pin_blas(args.blas_threads):  # so the JSON's BLAS info shows the pinning
        write_results("completion_phase" + suffix, rows, meta)
        write_results("completion_phase_runs" + suffix, runs, meta)


if __name__ == "__main__":
    main()
