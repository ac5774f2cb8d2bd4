"""The low-rank engine on NumPy and on PyTorch (CPU), side by side in one run.

``LinRFMCompleter(engine="lowrank", reg="auto")`` on a SPEC section 7
reference problem (default ``2000_r10_3x``: 2000^2, rank 10, 3x the
information limit, seed 6), once on ``device="cpu"`` (NumPy/SciPy, one BLAS
thread in each step as the engine sets it) and once on ``device="torch"``
per torch thread count in ``--torch-threads`` (``torch.set_num_threads``, the
caller's setting; the engine lowers torch's pool to one thread inside each
step, so the counts differ only outside the steps). Each row: wall and process CPU
time of ``fit``, iterations, final ``k``, error on the missing entries (from
the factors; truth used only to measure), the largest difference of the
torch factors' product from NumPy's on 10^5 sampled entries, and the load
average. A fit is stopped after ``--time-limit`` seconds (callback; recorded).

Usage::

    .venv/bin/python benchmarks/bench_lowrank_torch.py                 # 2000^2, ~1-3 min
    .venv/bin/python benchmarks/bench_lowrank_torch.py --quick         # 500^2, seconds
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import print_table, write_results  # noqa: E402
from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.datasets import reference_problem  # noqa: E402


def one_fit(prob, device: str, threads, limit: float, sample) -> tuple[dict, np.ndarray]:
    import torch

    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        load0, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
        est = LinRFMCompleter(engine="lowrank", reg="auto", device=device,
                              callback=lambda s: time.perf_counter() - t0 > limit)
        est.fit(prob.observed)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        torch.set_num_threads(old)
    pred = est.predict(*sample)
    return {"device": device, "torch_threads": threads if device != "cpu" else "",
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "iterations": est.n_iter_,
            "s_per_iter": round(wall / max(est.n_iter_, 1), 4),
            "final_rank": est.history_["rank"][-1], "stop": est.stop_reason_,
            "missing_error": prob.missing_error_factored(*est.factors_),
            "load_1m": load0}, pred


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="2000_r10_3x", help="a SPEC section 7 name")
    parser.add_argument("--torch-threads", default="1,2",
                        help="comma-separated torch thread counts for device='torch'")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per fit")
    parser.add_argument("--quick", action="store_true", help="500_r5_10000, 60 s per fit")
    args = parser.parse_args(argv)
    name = "500_r5_10000" if args.quick else args.problem
    limit = min(args.time_limit, 60.0) if args.quick else args.time_limit
    prob = reference_problem(name)
    d1, d2 = prob.shape
    rng = np.random.default_rng(0)
    sample = (rng.integers(0, d1, 100_000), rng.integers(0, d2, 100_000))
    rows = []
    row, ref = one_fit(prob, "cpu", None, limit, sample)
    rows.append({"problem": name, **row, "max_diff_vs_numpy": 0.0})
    print_table(rows[-1:])
    for n in (int(t) for t in args.torch_threads.split(",")):
        row, pred = one_fit(prob, "torch", n, limit, sample)
        diff = float(np.max(np.abs(pred - ref)) / np.max(np.abs(ref)))
        rows.append({"problem": name, **row, "max_diff_vs_numpy": diff})
        print_table(rows[-1:])
    print()
    print_table(rows)
    write_results("lowrank_torch_quick" if args.quick else "lowrank_torch", rows,
                  {"problem": name, "reg": "auto", "time_limit_s": limit})
    return 0


if __name__ == "__main__":
    sys.exit(main())
