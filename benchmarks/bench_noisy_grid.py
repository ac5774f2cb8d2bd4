"""Noisy low-rank completion: the defaults against an oracle-tuned fixed smoothing.

Problem: 500 x 500, rank 5, 3x the information limit r(d1 + d2 - r), truth scaled to
mean square 1, Gaussian noise of standard deviation ``noise`` (0-30 % of the signal's
RMS) added to the observed entries (``make_completion_problem``, seed 0; the same
matrix and positions at every noise level).

For each noise level:

* ``LinRFMCompleter()`` defaults (``reg="path"``, ``random_state=0``): held-out
  selection on the observed entries only;
* the oracle: ``LinRFMCompleter(reg=r)`` for a grid of fixed smoothings ``r`` (factor 2,
  refined by sqrt(2) around the best), each scored on the *hidden* entries; the best is
  the oracle. The oracle never feeds the estimator: it only says how far the
  data-driven choice is from the best possible fixed smoothing;
* ``reg="auto"`` (interpolating schedule) for reference; it is the reference of the
  noiseless level (no fixed smoothing interpolates).

Reported: test RMSE on the hidden entries, the ratio defaults / oracle, fit times.

Usage::

    .venv/bin/python benchmarks/bench_noisy_grid.py           # 500^2, 5 noise levels
    .venv/bin/python benchmarks/bench_noisy_grid.py --quick   # 300^2, 3 levels (< 2 min)
    .venv/bin/python benchmarks/bench_noisy_grid.py --paper-demo   # exact data: time only
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_results  # noqa: E402

from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.datasets import make_completion_problem  # noqa: E402


def hidden_rmse(prob, Z):
    mask = np.ones(prob.truth.shape, dtype=bool)
    mask[prob.observed.rows, prob.observed.cols] = False
    return float(np.sqrt(np.mean((Z - prob.truth)[mask] ** 2)))


def timed_fit(prob, **params):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinRFMCompleter(**params).fit(prob.observed)
    return est, time.perf_counter() - t0


def oracle(prob, grid, fixed_params):
    """Best fixed smoothing on the hidden entries: the grid, then sqrt(2) refinement."""
    scores = {}
    for reg in grid:
        est, _ = timed_fit(prob, reg=reg, **fixed_params)
        scores[reg] = hidden_rmse(prob, est.completed_)
    best = min(scores, key=scores.get)
    for reg in (best * 2 ** 0.5, best / 2 ** 0.5):
        est, _ = timed_fit(prob, reg=reg, **fixed_params)
        scores[reg] = hidden_rmse(prob, est.completed_)
    best = min(scores, key=scores.get)
    return best, scores[best], scores


def paper_demo(repeats):
    """Noiseless paper demo: defaults against ``reg="auto"``, interleaved, median times."""
    from linrfm.datasets import reference_problem

    prob = reference_problem("500_r5_10000")
    runs = {"defaults": {"random_state": 0}, "reg=auto": {"reg": "auto"}}
    times = {k: [] for k in runs}
    cpus = {k: [] for k in runs}
    out = {}
    for _ in range(repeats):
        for name, params in runs.items():
            cpu = time.process_time()
            est, wall = timed_fit(prob, **params)
            times[name].append(wall)
            cpus[name].append(time.process_time() - cpu)
            out[name] = (est.n_iter_, prob.missing_error(est.completed_), est.selection_)
    rows = [{"problem": "500_r5_10000 (paper demo, exact)", "method": name,
             "n_iter": out[name][0], "missing_rel_error": out[name][1],
             "selection": out[name][2], "wall_s_median": float(np.median(times[name])),
             "cpu_s_median": float(np.median(cpus[name])), "repeats": repeats,
             "load": os.getloadavg()[0]} for name in runs]
    print_table(rows, ["method", "n_iter", "missing_rel_error", "selection", "wall_s_median",
                       "cpu_s_median"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300^2, 3 noise levels")
    parser.add_argument("--levels", help="comma-separated noise levels (default: 0,0.05,0.1,0.2,0.3)")
    parser.add_argument("--name", default="noisy_grid", help="results file stem")
    parser.add_argument("--paper-demo", action="store_true",
                        help="only time the noiseless paper demo, defaults vs reg='auto' (5x)")
    args = parser.parse_args(argv)
    if args.paper_demo:
        write_results("paper_demo_defaults_vs_auto", paper_demo(5), {"repeats": 5})
        return
    d = 300 if args.quick else 500
    levels = [0.0, 0.1, 0.3] if args.quick else [0.0, 0.05, 0.1, 0.2, 0.3]
    if args.levels:
        levels = [float(v) for v in args.levels.split(",")]
    grid = [0.06 * 4 ** k for k in range(5)] if args.quick else \
        [0.06 * 2 ** k for k in range(8)]  # 0.06 .. 7.7
    fixed_params = {"max_iter": 100 if args.quick else 200, "tol": 1e-6}
    rows, curves = [], {}
    for noise in levels:
        prob = make_completion_problem(d, d, 5, oversampling=3.0, noise=noise, random_state=0)
        load = os.getloadavg()[0]
        est, t_def = timed_fit(prob, random_state=0)
        auto, t_auto = timed_fit(prob, reg="auto")
        if noise > 0:
            best_reg, best_rmse, scores = oracle(prob, grid, fixed_params)
        else:  # exact data: interpolation is the reference, no fixed smoothing can match it
            best_reg, best_rmse, scores = "auto", hidden_rmse(prob, auto.completed_), {}
        curves[noise] = scores
        ours = hidden_rmse(prob, est.completed_)
        row = {"noise": noise, "defaults_rmse": ours, "oracle_rmse": best_rmse,
               "ratio": ours / best_rmse if best_rmse > 0 else float("nan"),
               "oracle_reg": best_reg, "selected_reg": est.selected_reg_,
               "selection": est.selection_, "defaults_s": t_def, "defaults_iter": est.n_iter_,
               "auto_rmse": hidden_rmse(prob, auto.completed_), "auto_s": t_auto,
               "load_start": load}
        rows.append(row)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    print_table(rows, ["noise", "defaults_rmse", "oracle_rmse", "ratio", "selected_reg",
                       "oracle_reg", "auto_rmse", "defaults_s", "defaults_iter"])
    name = args.name + ("_quick" if args.quick else "")
    meta = {"problem": f"{d}x{d}, rank 5, 3x, seed 0", "oracle_grid": grid,
            "oracle_fit": fixed_params,
            "oracle_curves": {str(k): {str(r): s for r, s in v.items()}
                              for k, v in curves.items()}}
    write_results(name, rows, meta)
    plot(rows, curves, RESULTS / f"{name}.png")


def plot(rows, curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linrfm.io import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, row in enumerate(r for r in rows if r["noise"] > 0):
        regs = sorted(curves[row["noise"]])
        ax.loglog(regs, [curves[row["noise"]][r] for r in regs], "-", color=f"C{k}",
                  label=f"noise {row['noise']:g}: fixed reg (hidden-entry RMSE)")
        ax.axhline(row["defaults_rmse"], color=f"C{k}", ls=":", lw=1)
    ax.set_xlabel("fixed smoothing reg (relative to the first kernel's scale)")
    ax.set_ylabel("RMSE on the hidden entries")
    ax.set_title("dotted: LinRFMCompleter() defaults")
    ax.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
