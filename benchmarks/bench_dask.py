"""Time per lin-RFM completion iteration: NumPy vs Dask, side by side in one run.

Runs the raw backend loop (Gram -> kernel -> row step -> squared norms; with
``alternate`` also the transpose to the other side) on the same synthetic
problem with

* ``numpy``: :class:`~linrfm.backends.base.NumpyBackend` (multi-threaded BLAS);
* ``numpy-blas1``: the same with one BLAS thread (what each Dask task uses);
* ``dask-threads``: :class:`~linrfm.backends.dask_backend.DaskBackend` on
  Dask's local threaded scheduler (no cluster);
* ``dask-cluster``: the same on a ``distributed.LocalCluster`` with
  ``--workers`` worker processes of one thread each (the kernel really is
  serialised and broadcast to other processes every iteration).

On one small machine Dask can only add overhead (graph building, scheduling,
one BLAS thread per task): the point of the Dask backend is that row blocks
live on many machines, not that it is faster here. The last column checks
that every engine computes the same iterate as NumPy.

Usage::

    python benchmarks/bench_dask.py            # 4000 x 1000, rank 10, 3x, 6 iterations
    python benchmarks/bench_dask.py --quick    # 1200 x 300, rank 5, 4 iterations (< 1 min)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_results  # noqa: E402

from linrfm.backends.base import NumpyBackend  # noqa: E402
from linrfm.datasets import make_completion_problem  # noqa: E402


def run_loop(backend, obs, side: str, n_iter: int, power: float = 0.5):
    """Raw backend loop; returns (seconds per iteration list, final iterate (d1, d2), prep s)."""
    t0 = time.perf_counter()
    prepared = {"columns": backend.prepare(obs)}
    if side == "alternate":
        prepared["rows"] = backend.prepare(obs.transpose())
    Z = backend.initial(prepared["columns"])
    backend.sq_norms(Z, Z)                            # wait until the first iterate exists
    t_prep = time.perf_counter() - t0
    orient, reg, times = "columns", None, []
    for t in range(n_iter):
        tic = time.perf_counter()
        o = "columns" if side == "columns" else ("columns", "rows")[t % 2]
        Zo = Z if orient == o else backend.transpose(Z)
        G = backend.gram(Zo)
        scale = backend.trace(G) / G.shape[0]
        reg = scale if reg is None else max(0.5 * reg, 1e-10 * scale)
        Z_new = backend.step(prepared[o], backend.kernel(G, power), reg)
        backend.sq_norms(Z_new, Zo)                   # forces the step: timings are complete
        Z, orient = Z_new, o
        times.append(time.perf_counter() - tic)
    if orient != "columns":
        Z = backend.transpose(Z)
    return times, backend.to_numpy(Z), t_prep


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problem, < 1 min")
    parser.add_argument("--d1", type=int, default=4000)
    parser.add_argument("--d2", type=int, default=1000)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--oversampling", type=float, default=3.0)
    parser.add_argument("--n-iter", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block-rows", type=int, default=None,
                        help="rows per Dask block (default: one block per worker thread)")
    parser.add_argument("--sides", default="columns,alternate",
                        help="comma-separated: columns (one-sided), alternate")
    parser.add_argument("--threads-scheduler", action=argparse.BooleanOptionalAction,
                        default=True, help="also time Dask's local threaded scheduler")
    args = parser.parse_args(argv)
    if args.quick:
        args.d1, args.d2, args.rank, args.n_iter = 1200, 300, 5, 4

    import dask
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    from linrfm.backends.dask_backend import DaskBackend

    prob = make_completion_problem(args.d1, args.d2, args.rank,
                                   oversampling=args.oversampling, random_state=0)
    obs = prob.observed
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    print(f"{args.d1} x {args.d2}, rank {args.rank}, {args.oversampling}x oversampling, "
          f"{obs.nnz} observed entries, {args.n_iter} iterations; Dask: {args.workers} "
          f"worker processes x 1 thread", flush=True)

    rows, ref = [], {}

    blas1 = {}

    def record(engine, side, times, Z, t_prep, n_blocks):
        base = ref.get(side)
        per_iter = statistics.median(times[1:] or times)
        if engine == "numpy-blas1":
            blas1[side] = per_iter
        rows.append({
            "engine": engine, "side": side, "blocks": n_blocks,
            "prepare_s": t_prep,
            "s_per_iter": per_iter,
            "first_iter_s": times[0],
            "vs_numpy": per_iter / base["s_per_iter"] if base else 1.0,
            "vs_numpy_blas1": per_iter / blas1[side] if side in blas1 else float("nan"),
            "max_abs_diff_vs_numpy": float(np.abs(Z - base["Z"]).max()) if base else 0.0,
            "missing_error": prob.missing_error(Z),
        })
        if base is None:
            ref[side] = {"s_per_iter": rows[-1]["s_per_iter"], "Z": Z}
        print(f"  done: {engine:13s} {side:9s} {rows[-1]['s_per_iter']:.3f} s/iter", flush=True)

    for side in sides:
        times, Z, t_prep = run_loop(NumpyBackend(), obs, side, args.n_iter)
        record("numpy", side, times, Z, t_prep, 1)
        # Dask tasks run with one BLAS thread each; this row separates that
        # effect from Dask's own.
        with threadpool_limits(1, user_api="blas"):
            times, Z, t_prep = run_loop(NumpyBackend(), obs, side, args.n_iter)
        record("numpy-blas1", side, times, Z, t_prep, 1)

    if args.threads_scheduler:
        with dask.config.set(scheduler="threads"):
            for side in sides:
                be = DaskBackend(block_rows=args.block_rows)
                times, Z, t_prep = run_loop(be, obs, side, args.n_iter)
                record("dask-threads", side, times, Z, t_prep,
                       len(be.row_chunks(*obs.shape)))

    tic = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t_cluster = time.perf_counter() - tic
        for side in sides:
            be = DaskBackend(client=client, block_rows=args.block_rows)
            times, Z, t_prep = run_loop(be, obs, side, args.n_iter)
            record("dask-cluster", side, times, Z, t_prep, len(be.row_chunks(*obs.shape)))

    columns = ["engine", "side", "blocks", "prepare_s", "first_iter_s", "s_per_iter",
               "vs_numpy", "vs_numpy_blas1", "max_abs_diff_vs_numpy", "missing_error"]
    print()
    print_table(rows, columns)
    print(f"(LocalCluster start-up: {t_cluster:.1f} s, not included)")
    meta = {"d1": args.d1, "d2": args.d2, "rank": args.rank, "oversampling": args.oversampling,
            "nnz": obs.nnz, "n_iter": args.n_iter, "workers": args.workers,
            "threads_per_worker": 1, "block_rows": args.block_rows, "quick": args.quick,
            "cluster_startup_s": t_cluster,
            "protocol": "raw backend loop, power 1/2, reg halved each iteration; s_per_iter is "
                        "the median over iterations 2..n (the first includes warm-up)"}
    write_results("bench_dask_quick" if args.quick else "bench_dask", rows, meta)


if __name__ == "__main__":
    main()
