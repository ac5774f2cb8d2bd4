"""BLAS threads under load: the README's sensing and completion examples, with the
library's default thread choice and with one BLAS thread, on an idle machine and
beside a process that keeps one core busy.

Target (issue 12): the default within 1.5x of the single-thread time under load.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_blas_load.py [--quick] [--repeats N]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_results  # noqa: E402


def _busy(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _sensing():
    from linrfm import LinRFMSensing
    from linrfm.datasets import information_limit, make_sensing_problem

    m = int(1.5 * information_limit(30, 30, 2))
    A, y, Z = make_sensing_problem(30, 30, 2, m, random_state=0)
    return lambda: LinRFMSensing().fit(A, y)


def _completion():
    from linrfm import LinRFMCompleter
    from linrfm.datasets import make_completion_problem

    prob = make_completion_problem(500, 500, 5, n_observed=10_000, random_state=0)
    X = prob.observed.to_dense()
    return lambda: LinRFMCompleter().fit(X)


def _time(fit, threads, repeats):
    from threadpoolctl import threadpool_limits

    times = []
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if threads == "1":
                with threadpool_limits(1, user_api="blas"):
                    t0 = time.perf_counter()
                    fit()
            else:
                t0 = time.perf_counter()
                fit()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat (< 2 min)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    examples = {"sensing 30x30 m=174": _sensing(), "completion 500x500 10k obs": _completion()}
    rows = []
    for load in ("idle", "one busy process"):
        stop = mp.Event()
        proc = None
        if load != "idle":
            proc = mp.Process(target=_busy, args=(stop,), daemon=True)
            proc.start()
            time.sleep(0.5)
        try:
            for name, fit in examples.items():
                fit()  # warm-up (imports, plans)
                t_default = _time(fit, "default", repeats)
                t_one = _time(fit, "1", repeats)
                rows.append({"example": name, "load": load, "default_s": t_default,
                             "one_thread_s": t_one, "ratio": t_default / t_one,
                             "loadavg_1m": os.getloadavg()[0]})
        finally:
            if proc is not None:
                stop.set()
                proc.join()
    print_table(rows)
    worst = max(r["ratio"] for r in rows if r["load"] != "idle")
    print(f"worst default / one-thread ratio under load: {worst:.2f} (target <= 1.5)")
    write_results("blas_load" + ("_quick" if args.quick else ""), rows,
                  {"repeats": repeats, "target_ratio": 1.5, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
