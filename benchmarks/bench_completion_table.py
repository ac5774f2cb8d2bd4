"""Completion vs the published MatrixIRLS figures (issue 3): time and iterations to 1e-2/1e-4/1e-6.

Each case is a seeded ``make_completion_problem`` (Gaussian rank-r matrix scaled to
mean-square 1, entries sampled uniformly without replacement) completed by
``LinRFMCompleter()`` with its DEFAULT parameters and NO rank, in a fresh
subprocess; its peak RSS is the process's peak during ``fit`` (Linux VmHWM
reset after the problem is generated), which includes the benchmark's own
copy of the dense truth (``truth_mb``) and the interpreter (~200 MiB). BLAS
threads are pinned with threadpoolctl to the same number for every case
(``--blas-threads``, default 1: with ~6 engineers sharing 2 cores, load
average ~10, two OpenBLAS threads made an iteration 1.7-3x *slower* than one;
on an idle 2-core machine use ``--blas-threads 2``).

How the error is measured without the algorithm seeing the truth
-----------------------------------------------------------------
:class:`FitObserver` is the estimator's ``callback``: the shared loop hands it
the live state after every iteration (:class:`linrfm.core.loop.LoopState`);
it reads the iterate (``state.iterate()``), measures its relative error on
the *missing* entries against the hidden truth and returns False (True only
at the wall-clock budget, like a user pressing Ctrl-C), so the fit runs
exactly as without it (same iterates, same stopping). The time spent
measuring is clocked and subtracted: the reported time of iteration k is the
wall time from the call to ``fit`` (input checks and setup included) to the
end of iteration k, minus the measuring time of iterations 1..k-1. The
process CPU time is recorded the same way (``cpu_*`` columns): with one BLAS
thread it approximates the wall time on an idle machine, which the wall time
on this loaded machine does not.

The published MatrixIRLS column is a *reference*, not a run: numbers from the
MatrixIRLS paper/issue, measured on a 2-core machine with the TRUE RANK given.
Targets (issue 3): <= 1e-6 on the missing entries in less wall time than
MatrixIRLS; for the 1.5x case <= 1e-3 (in less than its 44 s).

This machine is shared and heavily loaded: the load average and the measured
dense matmul rate of each run are recorded beside every row.

Usage::

    .venv/bin/python benchmarks/bench_completion_table.py            # the 5 issue cases
    .venv/bin/python benchmarks/bench_completion_table.py --quick    # 500^2 + small cases
    .venv/bin/python benchmarks/bench_completion_table.py --cases 500_r5_2.0x,1000_r5_1.5x
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import peak_rss_mb, print_table, write_results  # noqa: E402
from linrfm.datasets import information_limit, make_completion_problem  # noqa: E402

THRESHOLDS = (1e-2, 1e-3, 1e-4, 1e-6)

# name: (d1, d2, rank, oversampling, n_observed, condition_number, seed)
CASES = {
    "500_r5_2.0x": (500, 500, 5, None, 10_000, 1.0, 0),
    "1000_r5_2.0x": (1000, 1000, 5, 2.0, None, 1.0, 0),
    "1000_r5_1.5x": (1000, 1000, 5, 1.5, None, 1.0, 0),
    "1000_r10_cond100_2.0x": (1000, 1000, 10, 2.0, None, 100.0, 0),
    "2000_r10_3.0x": (2000, 2000, 10, 3.0, None, 1.0, 0),
}
QUICK_CASES = {
    "500_r5_2.0x": CASES["500_r5_2.0x"],
    "150_r5_1.5x": (150, 150, 5, 1.5, None, 1.0, 0),
    "200_r5_cond100_2.0x": (200, 200, 5, 2.0, None, 100.0, 0),
    "400_r10_3.0x": (400, 400, 10, 3.0, None, 1.0, 0),
}
# Published MatrixIRLS results (2-core machine, true rank given): error on the
# missing entries, seconds, iterations. Reference figures, not measured here.
MATRIXIRLS = {
    "500_r5_2.0x": (2e-14, 1.9, 19),
    "1000_r5_2.0x": (5e-14, 3.2, 25),
    "1000_r5_1.5x": (5e-4, 44.0, 188),
    "1000_r10_cond100_2.0x": (1e-14, 11.0, 29),
    "2000_r10_3.0x": (6e-15, 11.0, 15),
}
# Target error per case (issue 3): 1e-6, except 1e-3 for the 1.5x case.
TARGET = {name: (1e-3 if "1.5x" in name else 1e-6) for name in CASES}


# ---------------------------------------------------------------- shared helpers
def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages of this machine."""
    return [round(x, 2) for x in os.getloadavg()]


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``VmHWM``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> float:
    """Peak RSS since :func:`reset_peak_rss` (``VmHWM``), MiB; else ``peak_rss_mb()``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def matmul_gflops(n: int = 1500, repeats: int = 3) -> float:
    """Best-of-``repeats`` rate of an ``n x n`` float64 ``np.matmul`` (2 n^3 flops), GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def make_case(spec):
    """The seeded problem of a case tuple (see ``CASES``)."""
    d1, d2, rank, over, n_obs, cond, seed = spec
    return make_completion_problem(d1, d2, rank, oversampling=over, n_observed=n_obs,
                                   condition_number=cond, random_state=seed)


def describe(prob) -> dict:
    d1, d2 = prob.truth.shape
    nnz = prob.observed.nnz
    return {"d1": d1, "d2": d2, "rank": prob.rank, "n_observed": nnz,
            "oversampling": round(nnz / information_limit(d1, d2, prob.rank), 3)}


class MissingError:
    """Relative Frobenius error on the missing entries, without an ``(d1, d2)`` mask.

    ``||Z - T||^2`` over all entries minus its observed part, accumulated over
    row chunks (no full-size temporaries), for the iterate in either
    orientation. Used by benchmarks only; the algorithm never sees it.
    """

    def __init__(self, prob, chunk_elems: int = 4_000_000):
        self.truth = prob.truth
        obs = prob.observed
        self.rows, self.cols = obs.rows, obs.cols
        self.truth_obs = self.truth[self.rows, self.cols]
        total = float(np.sum(self.truth ** 2))
        self.den = math.sqrt(max(total - float(np.sum(self.truth_obs ** 2)), 0.0))
        self.chunk_elems = int(chunk_elems)

    def __call__(self, Z, transposed: bool = False) -> float:
        """Error of ``Z`` (``(d1, d2)``, or ``(d2, d1)`` when ``transposed``)."""
        T = self.truth
        n = Z.shape[0]
        step = max(1, self.chunk_elems // max(Z.shape[1], 1))
        total = 0.0
        for a in range(0, n, step):
            block = T[:, a:a + step].T if transposed else T[a:a + step]
            total += float(np.sum((Z[a:a + step] - block) ** 2))
        at_obs = Z[self.cols, self.rows] if transposed else Z[self.rows, self.cols]
        total -= float(np.sum((at_obs - self.truth_obs) ** 2))
        return math.sqrt(max(total, 0.0)) / self.den


class FitObserver:
    """Record the missing-entry error of every iterate of one ``fit`` (see module doc).

    Parameters
    ----------
    meter : callable
        ``meter(Z, transposed) -> float`` (e.g. :class:`MissingError`).
    time_limit : float, optional
        Stop the fit through the loop's callback after this many seconds (a
        wall-clock budget, like a user pressing Ctrl-C; not a use of the truth).
    every : int
        Measure the error every ``every`` iterations (always the last one).
    """

    def __init__(self, meter, time_limit: float | None = None, every: int = 1,
                 on_record=None):
        self.meter = meter
        self.time_limit = time_limit
        self.every = max(1, int(every))
        self.on_record = on_record
        self.trace: list[dict] = []
        self.eval_s = 0.0
        self.eval_cpu = 0.0
        self.t0 = math.nan
        self.c0 = math.nan
        self.cpu_s = math.nan
        self.fit_s = math.nan
        self.hit_time_limit = False

    def _enter(self):
        return time.perf_counter(), time.process_time()

    def _leave(self, t_in, c_in):
        self.eval_s += time.perf_counter() - t_in
        self.eval_cpu += time.process_time() - c_in

    def _measure(self, it, Z, transposed, extra, t_in, c_in):
        err = float(self.meter(Z, transposed))
        row = {"iteration": it, "time": t_in - self.t0 - self.eval_s,
               "cpu": c_in - self.c0 - self.eval_cpu, "error": err, **extra}
        self.trace.append(row)
        if self.on_record is not None:
            self.on_record(row)

    def __call__(self, state) -> bool:
        """The estimator's loop callback: measure the iterate, stop at the time limit."""
        t_in, c_in = self._enter()
        it = state.iteration
        stop = bool(self.time_limit is not None
                    and t_in - self.t0 - self.eval_s > self.time_limit)
        self.hit_time_limit |= stop
        if it % self.every == 0 or it == self.max_iter or stop or it == 1:
            rec = state.record
            self._measure(it, state.iterate(), False,
                          {"reg": rec.get("reg", rec.get("gamma")), "side": rec.get("side"),
                           "rel_change": rec.get("rel_change")}, t_in, c_in)
        self._leave(t_in, c_in)
        return stop

    def fit(self, est, X):
        """``est.fit(X)`` with this observer as the estimator's callback; returns ``est``."""
        user_callback = est.get_params()["callback"]
        if user_callback is not None:
            raise ValueError("FitObserver needs the estimator's callback slot")
        self.max_iter = est.get_params()["max_iter"]
        est.set_params(callback=self)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is reported
                self.t0, self.c0 = time.perf_counter(), time.process_time()
                est.fit(X)
                self.fit_s = time.perf_counter() - self.t0 - self.eval_s
                self.cpu_s = time.process_time() - self.c0 - self.eval_cpu
        finally:
            est.set_params(callback=None)
        return est

    def time_to(self, threshold: float, clock: str = "time"):
        """(time, iteration) of the first recorded iterate with error <= threshold.

        ``clock="cpu"``: process CPU seconds instead of wall seconds (less
        sensitive to the machine's load when BLAS runs one thread).
        """
        for row in self.trace:
            if row["error"] <= threshold:
                return row[clock], row["iteration"]
        return None, None

    def s_per_iter(self) -> float:
        """Median wall time of one iteration (differences of recorded times)."""
        t = [r["time"] for r in self.trace if r["iteration"] > 0]
        its = [r["iteration"] for r in self.trace if r["iteration"] > 0]
        if len(t) < 2:
            return t[0] / its[0] if t else math.nan
        d = np.diff(t) / np.diff(its)
        return float(np.median(d))

    def summary(self, prefix: str = "") -> dict:
        out = {}
        for thr in THRESHOLDS:
            t, it = self.time_to(thr)
            out[f"{prefix}t_{thr:.0e}_s"] = t
            out[f"{prefix}it_{thr:.0e}"] = it
            out[f"{prefix}cpu_{thr:.0e}_s"] = self.time_to(thr, "cpu")[0]
        return out


def pin_blas(n_threads: int):
    """threadpoolctl context pinning every BLAS/OpenMP pool to ``n_threads``."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n_threads)


# ---------------------------------------------------------------- one case
def run_case(name: str, spec, blas_threads: int) -> dict:
    from linrfm import LinRFMCompleter

    load0 = loadavg()
    with pin_blas(blas_threads):
        prob = make_case(spec)
        meter = MissingError(prob)
        rss_before = peak_rss_mb()
        reset_peak_rss()
        est = LinRFMCompleter()
        obs = FitObserver(meter)
        obs.fit(est, prob.observed)
        peak = peak_rss_since_reset_mb()
        rate = matmul_gflops()  # after the fit: its arrays must not count in the peak
    final = prob.missing_error(est.completed_)
    row = {"case": name, **describe(prob), "n_iter": est.n_iter_,
           "stop_reason": est.stop_reason_, "side": est.side_, "fit_s": obs.fit_s,
           "fit_cpu_s": obs.cpu_s,
           "s_per_iter": obs.s_per_iter(), **obs.summary(), "final_error": final,
           "peak_rss_mb": peak, "peak_rss_before_fit_mb": rss_before,
           "truth_mb": prob.truth.nbytes / 2**20,
           "matmul_gflops": rate, "load_start": load0[0], "load_end": loadavg()[0],
           "measure_s": obs.eval_s}
    return row


def verdict(row, clock: str = "t") -> str:
    """Target met or missed, on wall time (``clock="t"``) or process CPU time (``"cpu"``)."""
    name = row["case"]
    if name not in MATRIXIRLS:
        return "-"
    target = TARGET[name]
    mi_time = MATRIXIRLS[name][1]
    t = row.get(f"{clock}_{target:.0e}_s")
    if t is None:
        return f"MISSED: {row['final_error']:.1e} > {target:.0e} after {row['fit_s']:.0f} s"
    if t <= mi_time:
        return f"met ({t:.1f} s <= {mi_time:g} s)"
    return f"MISSED on time: {target:.0e} in {t:.1f} s = {t / mi_time:.2f}x MatrixIRLS"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the 500^2 case + four small cases (< 2 min)")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for every case (default 1: on this shared, "
                             "oversubscribed 2-core machine 2 threads were 1.7-3x slower)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    table = dict(QUICK_CASES if args.quick else CASES)
    table.update({k: v for k, v in CASES.items() if k not in table})
    if args.worker:
        row = run_case(args.worker, table[args.worker], args.blas_threads)
        Path(args.worker_out).write_text(json.dumps(row))
        return

    names = args.cases.split(",") if args.cases else list(QUICK_CASES if args.quick else CASES)
    load_start = loadavg()
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--worker-out", str(out), "--blas-threads", str(args.blas_threads)]
            if args.quick:
                cmd.append("--quick")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not out.exists():
                print(proc.stderr[-3000:], file=sys.stderr)
                rows.append({"case": name, "stop_reason": f"FAILED rc={proc.returncode}"})
                continue
            row = json.loads(out.read_text())
        if name in MATRIXIRLS:
            err, secs, its = MATRIXIRLS[name]
            row.update({"MatrixIRLS_pub_error": err, "MatrixIRLS_pub_s": secs,
                        "MatrixIRLS_pub_iter": its, "target": TARGET[name]})
        row["verdict"] = verdict(row)
        row["verdict_cpu"] = verdict(row, "cpu")
        rows.append(row)
        print(f"{name}: {row['n_iter']} it, {row['fit_s']:.1f} s, final {row['final_error']:.1e}, "
              f"load {row['load_start']}", flush=True)

    meta = {"blas_threads": args.blas_threads, "load_start": load_start, "load_end": loadavg(),
            "estimator": "LinRFMCompleter() defaults, no rank",
            "matrixirls_note": "MatrixIRLS columns are PUBLISHED figures (2-core machine, true "
                               "rank given), not runs of this script",
            "time_definition": "wall time from fit() call to end of iteration, measuring "
                               "time subtracted"}
    print()
    print(f"BLAS threads {args.blas_threads}; load average {load_start} -> {loadavg()} "
          "(1/5/15 min, 2 cores)")
    print_table(rows, ["case", "n_observed", "n_iter", "s_per_iter", "t_1e-02_s", "t_1e-04_s",
                       "t_1e-06_s", "cpu_1e-06_s", "final_error", "peak_rss_mb", "matmul_gflops",
                       "load_start"])
    print()
    print("MatrixIRLS = published (2 cores, true rank given); verdict on wall time, "
          "verdict_cpu on process CPU time:")
    print_table(rows, ["case", "MatrixIRLS_pub_error", "MatrixIRLS_pub_s", "MatrixIRLS_pub_iter",
                       "it_1e-06", "t_1e-03_s", "verdict", "verdict_cpu"])
    with pin_blas(args.blas_threads):  # so the JSON's BLAS info shows the pinning
        write_results("completion_table" + ("_quick" if args.quick else ""), rows, meta)


if __name__ == "__main__":
    main()
