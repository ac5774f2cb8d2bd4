"""Completion at scale: dense vs low-rank engine vs MatrixIRLS (quoted), cost vs |Omega|.

Three parts, each case in a fresh subprocess (so its peak RSS is its own):

* **table**: the SPEC section 7 reference problems
  (``linrfm.datasets.reference_problem``), ``LinRFMCompleter(engine=...)``
  with default parameters (no rank) on both engines; wall time of ``fit``,
  process CPU time, load average, iterations, final rank, error on the missing
  entries (exact, from factors for the low-rank engine), peak RSS. The
  MatrixIRLS figures (Octave, true rank given) are *quoted* from SPEC section 7,
  not rerun here.
* **scaling**: per-iteration time and peak memory of the low-rank engine
  against |Omega| (square matrices, rank 5, 3x the information limit, so
  ``d = |Omega| / 30``), measured on 5 steps started from a state near the
  solution after 2 warm-up steps (k = rank, as in the late iterations that
  dominate a fit); log-log
  plot with the fitted slope (``completion_scale.png``).
* **large** (``--large``): 20 000^2 rank 10 3x and 200 000 x 20 000 rank 5 3x,
  full fits with the default stopping rule.

The machine is shared: every row records the 1-minute load and the process
CPU time beside the wall time.

Usage::

    .venv/bin/python benchmarks/bench_completion_scale.py --quick          # < 2 min
    .venv/bin/python benchmarks/bench_completion_scale.py                  # table + scaling
    .venv/bin/python benchmarks/bench_completion_scale.py --large          # the two big cases
    .venv/bin/python benchmarks/bench_completion_scale.py --large 200000x20000_r5_3x \
        --time-limit 3000                                                  # one, wall budget
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completion_table import (loadavg, peak_rss_since_reset_mb,  # noqa: E402
                                    reset_peak_rss)

from benchmarks._common import RESULTS, print_table, write_results  # noqa: E402

# SPEC section 7, measured with MatrixIRLS under Octave given the true rank:
# wall s / outer iterations / error on the missing entries (quoted, not rerun).
MATRIX_IRLS = {
    "500_r5_10000": (1.26, 19, 3e-14), "1000_r5_1.5x": (37.2, 186, 5.8e-4),
    "1000_r5_2x": (2.53, 25, 1e-13), "1000_r5_3x": (1.94, 18, 1e-14),
    "1000_r10_cond100_2x": (8.8, 29, 9e-15), "2000_r10_3x": (8.3, 15, 6e-15),
    "5000_r10_3x": (26.2, 17, 8e-15),
}
# 20000x2000_r5_3x: 200000x20000_r5_3x ten times smaller, same observations per
# row (~16) and column (~165), same seed: what the large case should do.
LARGE = {"20000_r10_3x": (20000, 20000, 10, 3.0, 10), "200000x20000_r5_3x":
         (200000, 20000, 5, 3.0, 11), "20000x2000_r5_3x": (20000, 2000, 5, 3.0, 11)}
SCALING_RANK, SCALING_RHO = 5, 3.0


def _problem(name):
    from linrfm.datasets import make_reference_problem, reference_problem

    if name in LARGE:
        d1, d2, r, rho, seed = LARGE[name]
        return make_reference_problem(d1, d2, r, oversampling=rho, random_state=seed)
    return reference_problem(name)


class _Progress:
    """Callback: one line per iteration on stderr; stops the fit after ``limit`` s.

    The wall-clock budget acts like a user pressing Ctrl-C; it never looks at
    the hidden entries.
    """

    def __init__(self, limit: float | None):
        self.limit, self.t0, self.stopped = limit, time.perf_counter(), False

    def __call__(self, iteration, record):
        wall = time.perf_counter() - self.t0
        print(f"iter {iteration} wall {wall:.1f} cpu {time.process_time():.1f} "
              f"rank {record.get('rank')} rel {record['rel_change']:.2e} "
              f"reg {record['reg']:.2e} load {loadavg()[0]}", file=sys.stderr, flush=True)
        self.stopped = self.limit is not None and wall > self.limit
        return self.stopped


def oracle_floor(prob) -> dict:
    """Rows with fewer observations than the rank, and the error they force.

    Such a row cannot be recovered by any method: even knowing the true column
    factor ``V`` exactly, its minimum-norm fit ``V[Omega_i] u = y_i`` leaves an
    error on its missing entries. Returns their number and that error relative
    to all missing entries (a floor for every estimator; truth used only here,
    to measure).
    """
    import numpy as np

    o, V, U = prob.observed, prob.right, prob.left
    counts = o.row_counts()
    start = np.concatenate([[0], np.cumsum(counts)])
    num = 0.0
    for i in np.flatnonzero(counts < prob.rank):
        cols, y = o.cols[start[i]:start[i + 1]], o.values[start[i]:start[i + 1]]
        u = np.linalg.lstsq(V[cols], y, rcond=None)[0] if cols.size else np.zeros(prob.rank)
        miss = np.setdiff1d(np.arange(V.shape[0]), cols)
        num += float(np.sum((V[miss] @ (u - U[i])) ** 2))
    return {"rows_below_rank": int(np.sum(counts < prob.rank)),
            "oracle_floor_error": float(np.sqrt(num / prob._missing_norm2()))}


def run_fit(name: str, engine: str, max_iter: int, limit: float | None = None) -> dict:
    """One fit of a named problem (runs inside the child process)."""
    from linrfm import LinRFMCompleter

    t0 = time.perf_counter()
    prob = _problem(name)
    gen_s = time.perf_counter() - t0
    obs = prob.observed
    reset_peak_rss()
    load0, cpu0, t0 = loadavg()[0], time.process_time(), time.perf_counter()
    progress = _Progress(limit)
    # reg='auto': the interpolating schedule (these problems are exact low rank; the
    # default reg='path' reduces to it after a held-out check and stays on the dense engine)
    est = LinRFMCompleter(engine=engine, reg="auto", max_iter=max_iter,
                          callback=progress).fit(obs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = peak_rss_since_reset_mb()
    recoverable = math.nan
    if est.engine_ == "lowrank":
        err = prob.missing_error_factored(*est.factors_)
        # rows with at least `rank` observations: the ones any method can recover
        recoverable = prob.missing_error_factored(
            *est.factors_, rows=obs.row_counts() >= prob.rank)
    else:
        err = prob.missing_error(est.completed_)
    return {"problem": name, "engine": est.engine_, "n_observed": obs.nnz,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_1m": load0,
            "load_1m_end": loadavg()[0], "iterations": est.n_iter_,
            "final_rank": est.history_.get("rank", [math.nan])[-1],
            "missing_error": err, "missing_error_recoverable_rows": recoverable,
            "peak_rss_mb": round(peak, 1), "generate_s": round(gen_s, 2),
            "stopped_by_time_limit": progress.stopped, **oracle_floor(prob)}


def run_step_cost(n_obs: int, n_steps: int = 5) -> dict:
    """Per-iteration time of the low-rank engine at ``|Omega| = n_obs`` (child process)."""
    import numpy as np

    from linrfm.core.smoothing import SmoothingSchedule
    from linrfm.datasets import make_reference_problem
    from linrfm.engines.lowrank import LowRankCompletionProblem

    r = SCALING_RANK
    d = int(round(n_obs / (SCALING_RHO * 2 * r)))
    prob = make_reference_problem(d, d, r, n_observed=n_obs, random_state=0)
    obs = prob.observed
    rng = np.random.default_rng(1)
    sched = {o: SmoothingSchedule("auto") for o in ("columns", "rows")}
    for sc in sched.values():  # the smoothing of a late iteration (scale is 1 here)
        sc.start(1.0)
        sc.value = 1e-6
    reset_peak_rss()
    problem = LowRankCompletionProblem(obs, None, 0.5, ("columns", "rows"), sched, None,
                                       1e-13, 1.5, 256 * 2**20)
    problem.initialize()
    # A state near the solution: truth factors plus 1e-4 noise, observed
    # entries interpolated (what the late iterations of a fit look like).
    problem.P = prob.left + 1e-4 * rng.standard_normal(prob.left.shape)
    problem.Q = prob.right.copy()
    problem.s = obs.values - np.einsum("ij,ij->i", problem.P[obs.rows], problem.Q[obs.cols])
    problem.block = {"columns": r + 8, "rows": r + 8}
    for _ in range(2):  # warm-up: k settles to the rank
        problem.step()
    load0, cpu0, t0 = loadavg()[0], time.process_time(), time.perf_counter()
    ranks = [problem.step()["rank"] for _ in range(n_steps)]
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"n_observed": obs.nnz, "d": d, "rank": r, "s_per_iter": wall / n_steps,
            "cpu_s_per_iter": cpu / n_steps, "k": max(ranks), "load_1m": load0,
            "peak_rss_mb": round(peak_rss_since_reset_mb(), 1)}


def _child(args: list[str], timeout: float, log_stderr: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout,
                             stderr=None if log_stderr else subprocess.PIPE)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    if not out.stdout.strip():
        return {"error": "no output"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(names, engines, dense_max: int, timeout: float, limit=None) -> list[dict]:
    rows = []
    for name in names:
        for engine in engines:
            d = int(name.split("_")[0].split("x")[0])
            if engine == "dense" and d > dense_max:
                continue
            job = ["fit", name, engine, 2000, limit]
            row = {"problem": name, "engine": engine,
                   **_child(job, timeout, log_stderr=limit is not None)}
            rows.append(row)
            print_table([row], ["problem", "engine", "wall_s", "cpu_s", "load_1m",
                                "iterations", "final_rank", "missing_error",
                                "missing_error_recoverable_rows", "peak_rss_mb"])
        if name in MATRIX_IRLS:
            t, it, err = MATRIX_IRLS[name]
            rows.append({"problem": name, "engine": "MatrixIRLS (quoted, rank given)",
                         "wall_s": t, "iterations": it, "missing_error": err})
    return rows


def scaling(sizes, timeout: float) -> list[dict]:
    rows = []
    for n in sizes:
        row = _child(["step", n], timeout)
        rows.append(row)
        print_table([row])
    return rows


def plot_scaling(rows, path) -> dict:
    """Log-log plot of wall/CPU seconds per iteration and peak RSS vs |Omega|; fitted slopes."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linrfm.io import save_figure

    ok = [r for r in rows if "s_per_iter" in r]
    n = np.array([r["n_observed"] for r in ok], dtype=float)
    slopes = {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = ((axes[0], "s_per_iter", "wall s / iteration"),
              (axes[0], "cpu_s_per_iter", "CPU s / iteration"),
              (axes[1], "peak_rss_mb", "peak RSS (MiB)"))
    for ax, key, label in panels:
        y = np.array([r[key] for r in ok], dtype=float)
        slope = float(np.polyfit(np.log10(n), np.log10(y), 1)[0])
        slopes[key] = slope
        ax.loglog(n, y, "o-", label=f"{label} (slope {slope:.2f})")
        ax.loglog(n, y[0] * n / n[0], ":", color="gray")
        ax.set_xlabel("observed entries |Omega|")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("seconds per iteration (dotted: slope 1)")
    axes[1].set_ylabel("MiB (dotted: slope 1)")
    fig.suptitle(f"low-rank engine, square d = |Omega|/{2 * SCALING_RANK * SCALING_RHO:g}, "
                 f"rank {SCALING_RANK}, k = rank")
    save_figure(fig, path)
    return slopes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small table and scaling, < 2 min")
    parser.add_argument("--large", nargs="*", choices=list(LARGE),
                        help="only these large cases (none named: both), progress on stderr")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="large cases: stop a fit after this many wall seconds")
    parser.add_argument("--dense-max", type=int, default=2000,
                        help="largest dimension run on the dense engine (default 2000)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        limit = rest[3] if len(rest) > 3 else None
        out = run_fit(rest[0], rest[1], int(rest[2]), limit) if kind == "fit" else \
            run_step_cost(int(rest[0]))
        print(json.dumps(out, default=float))
        return 0
    suffix = "_quick" if args.quick else ""
    meta = {"load_start": loadavg(), "cpus": os.cpu_count()}
    if args.large is not None:
        names = args.large or list(LARGE)
        timeout = max(args.timeout, (args.time_limit or 0) + 600)  # never below the limit
        rows = table(names, ["lowrank"], 0, timeout, args.time_limit or 1e9)
        write_results("completion_scale_large_" + "_".join(names), rows, meta)
        return 0
    names = ["500_r5_10000", "1000_r5_3x"] if args.quick else list(MATRIX_IRLS)
    rows = table(names, ["dense", "lowrank"], args.dense_max, args.timeout)
    sizes = [10**5, 2 * 10**5, 5 * 10**5] if args.quick else \
        [10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7]
    srows = scaling(sizes, args.timeout)
    out_dir = RESULTS  # quick results end in _quick: git-ignored
    slopes = plot_scaling(srows, out_dir / f"completion_scale{suffix}.png")
    print(f"log-log slopes vs |Omega|: {slopes}")
    meta["slopes"], meta["load_end"] = slopes, loadavg()
    write_results(f"completion_scale{suffix}", rows, meta, out_dir)
    write_results(f"completion_scale_cost{suffix}", srows, meta, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
