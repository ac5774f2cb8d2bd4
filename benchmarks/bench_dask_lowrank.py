"""The low-rank completion engine in process and on a local Dask cluster, same problem.

Runs ``LinRFMCompleter(engine="lowrank", reg="auto")`` (the problems are exact
low rank; no rank given) twice, each in a fresh subprocess so that its peak
RSS is its own:

* ``in-process``: ``device="cpu"`` (:mod:`linrfm.engines.lowrank`);
* ``dask-<w>w``: ``device="dask"`` on a ``distributed.LocalCluster`` of ``w``
  worker processes x 1 thread started in the child
  (:mod:`linrfm.engines.lowrank_dask`: observed entries, sparse values and the
  decoupled-side factor in row blocks on the workers; only ``d x b``, ``k x k``
  and ``p x p`` arrays and scalars travel per iteration, plus, with the
  default alternating sides, a worker-to-worker shuffle of the ``|Omega|``
  sparse values).

Columns: wall time of ``fit`` (cluster start-up excluded, reported apart), CPU
time (client process, which also runs the scheduler, plus every worker),
iterations, final ``k``, relative error on the missing entries (exact, from the
factors; also on the rows with at least ``rank`` observations), the relative difference of the two runs' completions on the missing
entries (exact, same algebra), peak RSS of the client and of the largest
worker (Linux ``VmHWM``; a worker's includes its interpreter and imports,
~150 MiB), and the machine's 1-minute load.

Problems are those of ``benchmarks/bench_completion_scale.py`` (its generator
and oracle floor are imported): the SPEC section 7 names (``500_r5_10000`` ...
``5000_r10_3x``) and the large ``20000_r10_3x`` and ``200000x20000_r5_3x``.

On one small machine Dask adds overhead (a round trip to the workers 5-6 times
per iteration, one BLAS thread per task, pickling); the point of the engine is
that the ``|Omega|``-sized state lives on many machines, not that it is faster
here (``benchmarks/bench_dask.py`` says the same of the dense Dask backend).

Usage::

    .venv/bin/python benchmarks/bench_dask_lowrank.py --quick       # 1000^2 r5 3x
    .venv/bin/python benchmarks/bench_dask_lowrank.py               # 5000^2 r10 3x
    .venv/bin/python benchmarks/bench_dask_lowrank.py --problem 200000x20000_r5_3x \\
        --time-limit 3000                                           # the large case
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completion_scale import LARGE, MATRIX_IRLS, _problem, _Progress, oracle_floor  # noqa: E402
from bench_completion_table import loadavg, peak_rss_since_reset_mb, reset_peak_rss  # noqa: E402

from benchmarks._common import print_table, write_results  # noqa: E402

PROBLEMS = sorted(MATRIX_IRLS) + sorted(LARGE)
COLUMNS = ["problem", "mode", "wall_s", "cpu_s", "iterations", "final_rank", "missing_error",
           "diff_vs_in_process", "peak_rss_client_mb", "peak_rss_worker_mb", "cluster_start_s",
           "load_1m"]


def _worker_usage(reset: bool = False):
    """(CPU seconds, peak RSS MiB since the last reset) of the calling process; run on
    each worker (self-contained: the workers need not import this script)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak = float("nan")
    try:
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) / 1024.0 for line in fh
                        if line.startswith("VmHWM:"))
        if reset:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
    except (OSError, StopIteration):
        pass
    return ru.ru_utime + ru.ru_stime, peak


def run_fit(name: str, mode: str, workers: int, max_iter: int, limit, out_npz: str) -> dict:
    """One fit (inside the child process); the factors are saved to ``out_npz``."""
    import numpy as np

    from linrfm import LinRFMCompleter

    prob = _problem(name)
    obs = prob.observed
    progress = _Progress(limit)
    kw = {"engine": "lowrank", "reg": "auto", "max_iter": max_iter, "callback": progress}
    row = {"problem": name, "mode": mode, "n_observed": obs.nnz}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning at a time limit
        if mode == "in-process":
            reset_peak_rss()
            load0, cpu0, t0 = loadavg()[0], time.process_time(), time.perf_counter()
            est = LinRFMCompleter(**kw).fit(obs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        else:
            import distributed

            t0 = time.perf_counter()
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                          processes=True, dashboard_address=None) as lc, \
                    distributed.Client(lc) as client:
                client.wait_for_workers(workers)
                row["cluster_start_s"] = round(time.perf_counter() - t0, 2)
                before = client.run(_worker_usage, True)
                reset_peak_rss()
                load0, cpu0, t0 = loadavg()[0], time.process_time(), time.perf_counter()
                progress.t0 = t0
                est = LinRFMCompleter(device="dask", **kw).fit(obs)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                after = client.run(_worker_usage)
            cpu_workers = sum(after[w][0] - before[w][0] for w in after)
            row["cpu_workers_s"] = round(cpu_workers, 2)
            row["peak_rss_worker_mb"] = round(max(a[1] for a in after.values()), 1)
            cpu += cpu_workers
    A, B = est.factors_
    np.savez(out_npz, A=A, B=B)
    row.update({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_1m": load0,
                "iterations": est.n_iter_, "final_rank": est.history_["rank"][-1],
                "missing_error": prob.missing_error_factored(A, B),
                # rows with at least `rank` observations: the ones any method can recover
                "missing_error_recoverable_rows": prob.missing_error_factored(
                    A, B, rows=obs.row_counts() >= prob.rank),
                "peak_rss_client_mb": round(peak_rss_since_reset_mb(), 1),
                "stopped_by_time_limit": progress.stopped, **oracle_floor(prob)})
    return row


def missing_difference(prob, first, second) -> float:
    """``||A1 B1^T - A2 B2^T|| / ||A1 B1^T||`` on the missing entries, exactly
    (the algebra of ``ReferenceProblem.missing_error_factored``)."""
    import numpy as np

    o = prob.observed

    def missing_norm2(L, R):
        core = np.linalg.qr(L, mode="r") @ np.linalg.qr(R, mode="r").T
        on_obs = np.einsum("ij,ij->i", L[o.rows], R[o.cols])
        return max(float(np.sum(core * core)) - float(on_obs @ on_obs), 0.0)

    (A1, B1), (A2, B2) = first, second
    diff = missing_norm2(np.hstack([A1, -A2]), np.hstack([B1, B2]))
    return float(np.sqrt(diff / max(missing_norm2(A1, B1), np.finfo(float).tiny)))


def _child(job: list, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(job)]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": f"exit status {out.returncode}"}
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000^2 rank 5 3x (< 2 min)")
    parser.add_argument("--problem", choices=PROBLEMS, default=None,
                        help="problem name (default 5000_r10_3x; --quick: 1000_r5_3x)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--modes", default="in-process,dask",
                        help="comma-separated: in-process, dask")
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop each fit after this many wall seconds (like Ctrl-C)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_fit(*json.loads(args.child)), default=float))
        return 0
    name = args.problem or ("1000_r5_3x" if args.quick else "5000_r10_3x")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    timeout = max(args.timeout, (args.time_limit or 0) + 600)
    rows, factors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            label = mode if mode == "in-process" else f"dask-{args.workers}w"
            path = os.path.join(tmp, f"{mode}.npz")
            row = {"problem": name, "mode": label,
                   **_child([name, label, args.workers, args.max_iter, args.time_limit, path],
                            timeout)}
            if os.path.exists(path):
                import numpy as np

                with np.load(path) as f:
                    factors[label] = (f["A"], f["B"])
            rows.append(row)
            print_table([row], COLUMNS)
        if "in-process" in factors and len(factors) > 1:
            prob = _problem(name)
            for row in rows:
                if row["mode"] in factors and row["mode"] != "in-process":
                    row["diff_vs_in_process"] = missing_difference(
                        prob, factors["in-process"], factors[row["mode"]])
    print()
    print_table(rows, COLUMNS)
    suffix = "_quick" if args.quick else ""
    write_results(f"dask_lowrank_{name}{suffix}", rows,
                  {"workers": args.workers, "time_limit": args.time_limit,
                   "cpus": os.cpu_count(), "load_end": loadavg()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
