"""Time to recover a sparse vector: lin-RFM (power 1/2) vs LassoCV and Lasso.

Noiseless k-sparse regression, Gaussian X (``make_sparse_regression``), default
d = 10 000, n = 1 000, k = 50 (``--quick``: d = 2 000, n = 200, k = 10). One run per
method on the same data, BLAS threads fixed for all (default 1).

* lin-RFM: ``LinRFMRegressor()`` defaults except ``fit_intercept=False`` (no intercept in
  the data). The relative error of every iterate is *recorded* for this report by the
  estimator's loop callback (after the step; the algorithm never sees it): the time to
  reach 1e-6 is read from ``history_["time"]``.
* ``LassoCV(cv=5)`` (scikit-learn defaults, ``fit_intercept=False``) and ``Lasso`` at
  LassoCV's chosen alpha: total fit time and the relative error reached.

    .venv/bin/python benchmarks/bench_regression_speed.py [--quick]
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

from benchmarks._common import peak_rss_mb, print_table, write_results  # noqa: E402
from linrfm.problems import regression  # noqa: E402
from linrfm.datasets import make_sparse_regression  # noqa: E402

TARGET = 1e-6


def run_linrfm(X, y, coef):
    errors = []

    def record_error(state):
        # After each step, outside the algorithm (the loop does not count this time).
        B = state.iterate()
        errors.append(float(np.linalg.norm(B[:, 0] - coef) / np.linalg.norm(coef)))

    t0 = time.perf_counter()
    est = regression.LinRFMRegressor(fit_intercept=False, callback=record_error).fit(X, y)
    total = time.perf_counter() - t0
    times = est.history_["time"]
    hit = next((i for i, e in enumerate(errors) if e <= TARGET), None)
    return {"method": "lin-RFM power=1/2", "fit_time_s": total,
            "time_to_1e-6_s": times[hit] if hit is not None else None,
            "iter_to_1e-6": hit + 1 if hit is not None else None,
            "n_iter": est.n_iter_, "rel_error": float(np.linalg.norm(est.coef_ - coef)
                                                      / np.linalg.norm(coef)),
            "n_selected": int(est.support_.sum()), "alpha": None}


def run_lasso(X, y, coef):
    from sklearn.linear_model import Lasso, LassoCV

    rows = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = LassoCV(cv=5, fit_intercept=False).fit(X, y)
    rows.append({"method": "LassoCV(cv=5)", "fit_time_s": time.perf_counter() - t0,
                 "n_iter": int(cv.n_iter_), "alpha": float(cv.alpha_)})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lasso = Lasso(alpha=cv.alpha_, fit_intercept=False).fit(X, y)
    rows.append({"method": "Lasso(alpha=LassoCV's)", "fit_time_s": time.perf_counter() - t0,
                 "n_iter": int(lasso.n_iter_), "alpha": float(cv.alpha_)})
    for row, model in zip(rows, (cv, lasso)):
        err = float(np.linalg.norm(model.coef_ - coef) / np.linalg.norm(coef))
        row.update({"rel_error": err, "time_to_1e-6_s": row["fit_time_s"] if err <= TARGET
                    else None, "n_selected": int(np.count_nonzero(model.coef_))})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d=2000, n=200, k=10")
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lasso", action="store_true")
    args = parser.parse_args(argv)
    n, d, k = (200, 2_000, 10) if args.quick else (1_000, 10_000, 50)
    X, y, coef = make_sparse_regression(n, d, k, random_state=args.seed)
    with threadpool_limits(args.blas_threads):
        rows = [run_linrfm(X, y, coef)]
        print(f"lin-RFM done in {rows[0]['fit_time_s']:.1f} s", flush=True)
        if not args.skip_lasso:
            rows += run_lasso(X, y, coef)
    for row in rows:
        row.update({"n": n, "d": d, "k": k, "seed": args.seed})
    print()
    print_table(rows, ["method", "time_to_1e-6_s", "iter_to_1e-6", "fit_time_s", "n_iter",
                       "rel_error", "n_selected", "alpha"])
    write_results("regression_speed" + ("_quick" if args.quick else ""), rows,
                  {"n": n, "d": d, "k": k, "seed": args.seed, "target": TARGET,
                   "blas_threads": args.blas_threads, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
