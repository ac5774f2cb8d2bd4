"""Sparse-recovery phase transition: success rate vs number of samples.

Noiseless k-sparse regression (Gaussian X, d = 200, k = 10, ``make_sparse_regression``).
A fit succeeds when ``||beta - beta*|| <= 1e-3 ||beta*||``. Methods: lin-RFM with power
1/4 (IRLS-1, l1-like), 1/2 (default, log penalty) and 1 (p = -2), all with default
``reg="auto"`` and ``fit_intercept=False`` (the data have no intercept, as for basis
pursuit), and exact l1 minimisation (``BasisPursuit``, HiGHS).

    .venv/bin/python benchmarks/bench_regression_phase.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import print_table, write_results  # noqa: E402
from linrfm.baselines.l1 import BasisPursuit  # noqa: E402
from linrfm.datasets import make_sparse_regression  # noqa: E402
from linrfm.exceptions import ConvergenceWarning  # noqa: E402
from linrfm.problems.regression import LinRFMRegressor  # noqa: E402

D, K, THRESHOLD = 200, 10, 1e-3


def methods():
    out = {f"lin-RFM power={name}": (lambda p=p: LinRFMRegressor(power=p, fit_intercept=False))
           for name, p in (("1/4", 0.25), ("1/2", 0.5), ("1", 1.0))}
    out["l1 (BasisPursuit)"] = BasisPursuit
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 values of n, 5 seeds")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (default 1: these are small problems, and threaded "
                             "BLAS on a shared machine is slower, not faster)")
    args = parser.parse_args(argv)
    with threadpool_limits(args.blas_threads):
        run(args)


def run(args):
    ns = [30, 40, 50, 60] if args.quick else [20, 25, 30, 35, 40, 45, 50, 55, 60, 70, 80]
    seeds = range(5 if args.quick else 20)

    rows = []
    for n in ns:
        problems = [make_sparse_regression(n, D, K, random_state=s) for s in seeds]
        for name, make in methods().items():
            errs, iters, times = [], [], []
            for X, y, coef in problems:
                est = make()
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    est.fit(X, y)
                times.append(time.perf_counter() - t0)
                errs.append(np.linalg.norm(est.coef_ - coef) / np.linalg.norm(coef))
                iters.append(getattr(est, "n_iter_", 0))
            rows.append({"method": name, "n": n, "d": D, "k": K, "seeds": len(problems),
                         "success_rate": float(np.mean(np.asarray(errs) <= THRESHOLD)),
                         "median_rel_error": float(np.median(errs)),
                         "median_iter": float(np.median(iters)),
                         "median_time_s": float(np.median(times))})
            print(f"n={n:3d} {name:20s} success={rows[-1]['success_rate']:.2f}", flush=True)

    print()
    print_table(rows, ["method", "n", "success_rate", "median_rel_error", "median_iter",
                       "median_time_s"])
    summary = []
    for name in methods():
        hit = [r["n"] for r in rows if r["method"] == name and r["success_rate"] >= 0.9]
        summary.append({"method": name, "n_for_90pct": min(hit) if hit else None})
    print()
    print_table(summary, ["method", "n_for_90pct"])
    write_results("regression_phase" + ("_quick" if args.quick else ""), rows,
                  {"d": D, "k": K, "blas_threads": args.blas_threads, "threshold": THRESHOLD, "ns": ns, "seeds": list(seeds),
                   "n_for_90pct": {s["method"]: s["n_for_90pct"] for s in summary}})


if __name__ == "__main__":
    main()
