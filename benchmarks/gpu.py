"""One prepared GPU check (issue 10): run it, in one go, when a GPU machine is lent.

It has never run on a GPU: this project has not been lent one yet. It measures
both completion engines on PyTorch/CUDA: the **low-rank** engine
(``LinRFMCompleter(engine="lowrank", device="cuda")``) at every size, and the
**dense** engine only up to ``--dense-max`` (its ``d1 x d2`` iterate and
``d x d`` Grams do not fit beyond; the memory guard would refuse it anyway).

Steps, each recorded as a row (nothing is skipped silently):

1. **equivalence**, per engine: a 300 x 250 rank-3 problem fitted on NumPy
   and on the device for 20 iterations (``reg="auto"``, float64): the largest
   difference of the completed matrices, relative to their largest entry
   (expected at rounding level, ~1e-12);
2. **sizes** (default 10 000^2, 50 000^2, 100 000^2; rank 10; 3x the
   information limit; ``linrfm.datasets.make_reference_problem`` with seeds
   21, 22, 23), per engine: time per iteration, iterations and time until the
   relative change falls below ``tol`` or ``--time-limit`` seconds pass (a
   callback stops the fit; not the truth), the final ``k`` of the low-rank
   engine, and the relative error on 10^6 sampled missing entries (truth from
   the factors, never a dense truth). A size the memory guard refuses, or the
   dense engine above ``--dense-max``, is recorded with its reason.
   ``--cpu-lowrank`` adds the NumPy low-rank engine at each size for reference.

Budget: at most ``--time-limit`` (default 45 s) per fit plus problem generation
and the final eigenpairs; the defaults (4 timed fits) stay under 5 minutes.

Usage::

    python benchmarks/gpu.py                         # cuda, float32, 3 sizes
    python benchmarks/gpu.py --device torch --sizes 400,600 --quick   # CPU smoke test
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import print_table, write_results  # noqa: E402
from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.datasets import make_completion_problem, make_reference_problem  # noqa: E402

SEEDS = {10_000: 21, 50_000: 22, 100_000: 23}


def equivalence(device: str, engine: str) -> dict:
    """Same fit on NumPy and on ``device``: largest difference of the results."""
    prob = make_completion_problem(300, 250, 3, oversampling=3.0, random_state=0)
    kw = dict(reg="auto", engine=engine, max_iter=20, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LinRFMCompleter(**kw).fit(prob.observed).completed_
        t0 = time.perf_counter()
        got = LinRFMCompleter(device=device, **kw).fit(prob.observed).completed_
    return {"step": "equivalence", "device": device, "engine": engine, "d": "300x250",
            "max_abs_diff": float(np.max(np.abs(got - ref))),
            "max_rel_diff": float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))),
            "seconds": round(time.perf_counter() - t0, 3)}


def sampled_error(prob, est, n: int, rng) -> float:
    """Relative error on ``n`` random missing entries (truth from the factors)."""
    d1, d2 = prob.shape
    rows, cols = rng.integers(0, d1, n), rng.integers(0, d2, n)
    o = prob.observed
    observed = np.isin(rows.astype(np.int64) * d2 + cols, o.rows.astype(np.int64) * d2 + o.cols)
    rows, cols = rows[~observed], cols[~observed]
    truth = np.einsum("ij,ij->i", prob.left[rows], prob.right[cols])
    pred = est.predict(rows, cols).astype(np.float64)
    return float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))


def one_size(prob, d: int, device: str, dtype: str, time_limit: float, engine: str) -> dict:
    row = {"step": "size", "device": device, "engine": engine, "d": d,
           "n_observed": prob.observed.nnz}
    start = time.perf_counter()
    est = LinRFMCompleter(reg="auto", engine=engine, dtype=dtype, tol=1e-6, device=device,
                          callback=lambda s: time.perf_counter() - start > time_limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(prob.observed)
    except (ValueError, MemoryError, RuntimeError) as exc:  # guard, CUDA out of memory
        row.update(status="refused", message=" ".join(str(exc).split())[:300])
        return row
    fit_s = time.perf_counter() - start
    row.update(status=est.stop_reason_, iterations=est.n_iter_, fit_s=round(fit_s, 2),
               s_per_iter=round(fit_s / max(est.n_iter_, 1), 4),
               final_rank=est.history_["rank"][-1] if "rank" in est.history_ else "",
               sampled_missing_error=sampled_error(prob, est, 1_000_000,
                                                   np.random.default_rng(0)))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or torch (CPU smoke)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--dense-max", type=int, default=10_000,
                        help="largest d the dense engine is run at")
    parser.add_argument("--time-limit", type=float, default=45.0, help="seconds per fit")
    parser.add_argument("--cpu-lowrank", action="store_true",
                        help="also time the NumPy low-rank engine at each size")
    parser.add_argument("--quick", action="store_true", help="equivalence + sizes, 10 s each")
    args = parser.parse_args(argv)
    limit = 10.0 if args.quick else args.time_limit
    rows = []
    for engine in ("dense", "lowrank"):
        rows.append(equivalence(args.device, engine))
        print_table(rows[-1:])
    for d in (int(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        prob = make_reference_problem(d, d, 10, oversampling=3.0, random_state=SEEDS.get(d, d))
        generate_s = round(time.perf_counter() - t0, 2)
        runs = [(args.device, "lowrank"), (args.device, "dense")]
        runs += [("cpu", "lowrank")] if args.cpu_lowrank else []
        for device, engine in runs:
            if engine == "dense" and d > args.dense_max:
                rows.append({"step": "size", "device": device, "engine": engine, "d": d,
                             "status": "not run", "message": f"d > --dense-max={args.dense_max}"})
            else:
                rows.append({**one_size(prob, d, device, args.dtype, limit, engine),
                             "generate_s": generate_s})
            print_table(rows[-1:])
        del prob
    name = "gpu_quick" if args.quick else "gpu"
    write_results(name, rows, {"device": args.device, "dtype": args.dtype,
                               "time_limit_s": limit, "dense_max": args.dense_max})
    return 0


if __name__ == "__main__":
    sys.exit(main())
