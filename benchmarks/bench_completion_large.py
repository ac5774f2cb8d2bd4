"""Large completion: 5000 x 5000, rank 10, 3x oversampling -- target <= 1e-4 in < 10 min, < 3 GB.

One seeded ``make_completion_problem(5000, 5000, 10, oversampling=3.0,
random_state=0)`` (299 700 observed entries, 24.7 million missing) completed
by ``LinRFMCompleter()`` with its DEFAULT parameters (no rank), BLAS threads
pinned (``--blas-threads``, default 1). ``--quick``: 1500 x 1500.

The error on the missing entries of every iterate is recorded by
``bench_completion_table.FitObserver`` (a callback on the shared loop,
measuring time subtracted; the algorithm never sees the truth) and each
iteration is printed and appended to ``benchmarks/results/<name>_trace.csv``
as it happens, so a run killed by an outer ``timeout`` still leaves its
trace. ``--time-limit`` (seconds of fit time) stops the fit through the same
callback (a wall-clock budget, like a user pressing Ctrl-C).

Peak memory is the process's peak RSS during ``fit`` (Linux VmHWM reset after
the problem is generated); it includes the benchmark's dense copy of the
truth (200 MB at 5000^2) and the interpreter (~200 MB).

Usage::

    timeout 900 .venv/bin/python benchmarks/bench_completion_large.py --time-limit 780
    .venv/bin/python benchmarks/bench_completion_large.py --quick       # 1500^2, < 2 min
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completion_table import (THRESHOLDS, FitObserver, MissingError, describe,  # noqa: E402
                                    loadavg, matmul_gflops, peak_rss_since_reset_mb, pin_blas,
                                    reset_peak_rss)

from benchmarks._common import RESULTS, peak_rss_mb, print_table, write_results  # noqa: E402
from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.datasets import make_completion_problem  # noqa: E402

TARGET_ERROR, TARGET_S, TARGET_MB = 1e-4, 600.0, 3000.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1500 x 1500")
    parser.add_argument("--d", type=int, default=5000)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--oversampling", type=float, default=3.0)
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop the fit after this many seconds (default: none)")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.d = 1500
    name = "completion_large" + ("_quick" if args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    trace_path = RESULTS / f"{name}_trace.csv"

    load_start = loadavg()
    with pin_blas(args.blas_threads):
        t0 = time.perf_counter()
        prob = make_completion_problem(args.d, args.d, args.rank,
                                       oversampling=args.oversampling, random_state=0)
        meter = MissingError(prob)
        gen_s = time.perf_counter() - t0
        info = describe(prob)
        print(f"{info}: generated in {gen_s:.1f} s, peak RSS so far {peak_rss_mb():.0f} MiB, "
              f"load {loadavg()}", flush=True)

        fh = open(trace_path, "w", newline="")
        writer = csv.DictWriter(fh, fieldnames=["iteration", "time", "cpu", "error", "reg",
                                                "side", "rel_change", "rss_peak_mb", "load"])
        writer.writeheader()

        def on_record(row):
            row = {**row, "rss_peak_mb": round(peak_rss_since_reset_mb(), 1),
                   "load": loadavg()[0]}
            writer.writerow(row)
            fh.flush()
            print(f"  it {row['iteration']:4d}  t {row['time']:8.1f} s  cpu {row['cpu']:8.1f} s"
                  f"  error {row['error']:.3e}  reg {row['reg']:.2e}  side {row['side']}"
                  f"  peak {row['rss_peak_mb']:.0f} MiB  load {row['load']}", flush=True)

        reset_peak_rss()
        est = LinRFMCompleter()
        obs = FitObserver(meter, time_limit=args.time_limit, on_record=on_record)
        obs.fit(est, prob.observed)
        peak = peak_rss_since_reset_mb()
        fh.close()
        final = prob.missing_error(est.completed_)
        rate = matmul_gflops(2000)

    t_target, it_target = obs.time_to(TARGET_ERROR)
    row = {**info, "n_iter": est.n_iter_, "stop_reason": est.stop_reason_,
           "time_limit_hit": obs.hit_time_limit, "fit_s": obs.fit_s,
           "fit_cpu_s": obs.cpu_s,
           "s_per_iter": obs.s_per_iter(), **obs.summary(), "final_error": final,
           "peak_rss_fit_mb": peak, "truth_mb": prob.truth.nbytes / 2**20,
           "generate_s": gen_s, "matmul_gflops": rate, "load_start": load_start[0],
           "load_end": loadavg()[0],
           "target_met": bool(t_target is not None and t_target <= TARGET_S
                              and peak <= TARGET_MB)}
    print()
    print(f"BLAS threads {args.blas_threads}; load average {load_start} -> {loadavg()}; "
          f"np.matmul 2000^2 {rate:.1f} GFLOP/s; target: <= {TARGET_ERROR:g} in "
          f"< {TARGET_S:g} s with peak < {TARGET_MB:g} MB")
    cols = ["d1", "rank", "n_observed", "n_iter", "stop_reason", "s_per_iter"]
    cols += [f"t_{t:.0e}_s" for t in THRESHOLDS] + ["cpu_1e-04_s", "final_error",
                                                    "peak_rss_fit_mb", "target_met"]
    print_table([row], cols)
    with pin_blas(args.blas_threads):  # so the JSON's BLAS info shows the pinning
        write_results(name, [row], {"blas_threads": args.blas_threads, "load_start": load_start,
                                    "load_end": loadavg(), "time_limit": args.time_limit,
                                    "trace_csv": str(trace_path)})


if __name__ == "__main__":
    main()
