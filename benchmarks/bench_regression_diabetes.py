"""Real data: scikit-learn's diabetes set, lin-RFM vs LassoCV (5-fold CV R^2, features kept).

Two designs: the 10 original features, and the quadratic expansion
``PolynomialFeatures(2, include_bias=False)`` (10 + 10 squares + 45 products = 65 features).
Both methods run in a ``StandardScaler`` pipeline. lin-RFM (power 1/2, ``reg="auto"``)
gets its noise strength ``ridge`` from an inner 5-fold ``GridSearchCV``; LassoCV picks its
alpha by inner 5-fold CV. Outer loop: ``KFold(5, shuffle=True, random_state=0)``; we report
the mean (std) test R^2 and the mean number of selected features (lin-RFM ``support_``,
Lasso non-zero coefficients) of the outer-fold models.

    .venv/bin/python benchmarks/bench_regression_diabetes.py [--quick]
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
from linrfm.problems.regression import LinRFMRegressor  # noqa: E402


def models(quick: bool):
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridges = np.logspace(-2, 1, 4) if quick else np.logspace(-3, 1.5, 10)
    out = {}
    for name, power in (("lin-RFM power=1/2", 0.5), ("lin-RFM power=1/4", 0.25)):
        if quick and power != 0.5:
            continue
        grid = GridSearchCV(LinRFMRegressor(power=power), {"ridge": list(ridges)}, cv=5,
                            scoring="r2")
        out[name] = make_pipeline(StandardScaler(), grid)
    out["LassoCV(cv=5)"] = make_pipeline(StandardScaler(), LassoCV(cv=5))
    return out


def n_selected(pipeline) -> int:
    last = pipeline[-1]
    est = getattr(last, "best_estimator_", last)
    if hasattr(est, "support_"):
        return int(np.sum(est.support_))
    return int(np.count_nonzero(est.coef_))


def chosen(pipeline):
    last = pipeline[-1]
    if hasattr(last, "best_params_"):
        return float(last.best_params_["ridge"])
    return float(last.alpha_)


def main(argv=None):
    from sklearn.base import clone
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import PolynomialFeatures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller ridge grid, power 1/2 only")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True)
    designs = {"linear": X,
               "quadratic": PolynomialFeatures(2, include_bias=False).fit_transform(X)}
    outer = KFold(5, shuffle=True, random_state=0)
    rows = []
    with threadpool_limits(args.blas_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarnings of grid points far from the optimum
        for design, Xd in designs.items():
            for name, model in models(args.quick).items():
                scores, selected, params = [], [], []
                t0 = time.perf_counter()
                for train, test in outer.split(Xd):
                    fitted = clone(model).fit(Xd[train], y[train])
                    scores.append(fitted.score(Xd[test], y[test]))
                    selected.append(n_selected(fitted))
                    params.append(chosen(fitted))
                rows.append({"design": design, "n_features": Xd.shape[1], "method": name,
                             "cv_r2_mean": float(np.mean(scores)),
                             "cv_r2_std": float(np.std(scores)),
                             "selected_mean": float(np.mean(selected)),
                             "selected_per_fold": " ".join(map(str, selected)),
                             "chosen_ridge_or_alpha": " ".join(f"{p:.3g}" for p in params),
                             "time_s": time.perf_counter() - t0})
                print(f"{design:9s} {name:18s} R2={rows[-1]['cv_r2_mean']:.4f}", flush=True)
    print()
    print_table(rows, ["design", "n_features", "method", "cv_r2_mean", "cv_r2_std",
                       "selected_mean", "chosen_ridge_or_alpha", "time_s"])
    write_results("regression_diabetes" + ("_quick" if args.quick else ""), rows,
                  {"outer_cv": "KFold(5, shuffle=True, random_state=0)", "inner_cv": 5,
                   "blas_threads": args.blas_threads})


if __name__ == "__main__":
    main()
