"""Matrix-sensing phase transition: success rate vs number of measurements.

Gaussian sensing (``make_sensing_problem``: i.i.d. N(0, 1/m) matrices A_k), 30 x 30,
ranks 1-3, ``m = ratio * r (d1 + d2 - r)`` measurements. A fit succeeds when
``||Z - Z*||_F <= 1e-3 ||Z*||_F``. Methods: ``LinRFMSensing`` (power 1/2 by default,
``reg="auto"``, alternating sides, direct solver, ``max_iter=500``) and nuclear-norm
minimisation ``min ||Z||_* s.t. A(Z) = y`` with cvxpy + SCS (eps 1e-7; ``--nn-solver
CLARABEL`` gives the same errors ~10x slower). BLAS runs on one thread for every method.

    .venv/bin/python benchmarks/bench_sensing_phase.py [--quick] [--seeds N] [--powers 0.5 0.25]
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
from linrfm.datasets import information_limit, make_sensing_problem  # noqa: E402
from linrfm.exceptions import ConvergenceWarning  # noqa: E402
from linrfm.problems.sensing import LinRFMSensing  # noqa: E402

D, THRESHOLD = 30, 1e-3


def nuclear_norm(A, y, solver):
    """``argmin ||Z||_* s.t. <A_k, Z> = y_k`` with cvxpy."""
    import cvxpy as cp

    m, d1, d2 = A.shape
    Z = cp.Variable((d1, d2))
    prob = cp.Problem(cp.Minimize(cp.normNuc(Z)), [A.reshape(m, -1) @ cp.vec(Z, order="C") == y])
    opts = {"eps_abs": 1e-7, "eps_rel": 1e-7, "max_iters": 50_000} if solver == "SCS" else {}
    prob.solve(solver=solver, **opts)
    return (np.zeros((d1, d2)) if Z.value is None else Z.value), {"status": prob.status}


def lin_rfm(power):
    def fit(A, y):
        est = LinRFMSensing(power=power, solver="direct", max_iter=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(A, y)
        return est.Z_, {"n_iter": est.n_iter_, "status": est.stop_reason_}
    return fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 ratios, 1 seed (< 2 min)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per point (default 5)")
    parser.add_argument("--powers", type=float, nargs="+", default=[0.5])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--nn-solver", default="SCS", choices=["SCS", "CLARABEL"])
    args = parser.parse_args(argv)

    ratios = [1.25, 2.0, 3.0] if args.quick else [1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.25,
                                                  2.5, 2.75, 3.0, 3.5]
    seeds = range(args.seeds or (1 if args.quick else 5))
    methods = {f"lin-RFM power={p:g}": lin_rfm(p) for p in args.powers}
    methods["nuclear norm"] = lambda A, y: nuclear_norm(A, y, args.nn_solver)

    raw = []
    with threadpool_limits(1):
        for r in args.ranks:
            dof = information_limit(D, D, r)
            for ratio in ratios:
                m = int(round(ratio * dof))
                for seed in seeds:
                    A, y, Z = make_sensing_problem(D, D, r, m, random_state=seed)
                    for name, fit in methods.items():
                        t0 = time.perf_counter()
                        Zhat, info = fit(A, y)
                        err = float(np.linalg.norm(Zhat - Z) / np.linalg.norm(Z))
                        raw.append({"rank": r, "ratio": ratio, "m": m, "seed": seed,
                                    "method": name, "rel_error": err,
                                    "success": err <= THRESHOLD,
                                    "time_s": time.perf_counter() - t0, **info})
                print(f"rank {r} ratio {ratio}: done", file=sys.stderr, flush=True)

    rows = []
    for r in args.ranks:
        for ratio in ratios:
            row = {"rank": r, "m/dof": ratio}
            for name in methods:
                sel = [x for x in raw if x["rank"] == r and x["ratio"] == ratio
                       and x["method"] == name]
                row["m"] = sel[0]["m"]
                row[f"{name} success"] = float(np.mean([x["success"] for x in sel]))
                row[f"{name} median err"] = float(np.median([x["rel_error"] for x in sel]))
                row[f"{name} median s"] = float(np.median([x["time_s"] for x in sel]))
            rows.append(row)
    print(f"\nSuccess rate (rel. error <= {THRESHOLD:g}), {D}x{D} Gaussian sensing, "
          f"{len(seeds)} seed(s) per point")
    cols = ["rank", "m/dof", "m"] + [f"{n} {k}" for n in methods for k in ("success",
                                                                        "median err")]
    print_table(rows, cols)

    summary = []
    for r in args.ranks:
        entry = {"rank": r}
        for name in methods:
            ok = [ratio for ratio in ratios
                  if all(x["success"] for x in raw if x["rank"] == r and x["ratio"] == ratio
                         and x["method"] == name)]
            # smallest ratio from which every larger ratio succeeded on every seed
            first = next((ratio for ratio in ratios
                          if all(q in ok for q in ratios if q >= ratio)), None)
            entry[f"{name}: all seeds succeed from m/dof"] = first if first is not None else "-"
        summary.append(entry)
    print("\nTransition (smallest m/dof from which all seeds succeed at every larger ratio)")
    print_table(summary)

    meta = {"d1": D, "d2": D, "ranks": args.ranks, "ratios": ratios, "seeds": list(seeds),
            "threshold": THRESHOLD, "powers": args.powers, "nn_solver": args.nn_solver,
            "blas_threads": 1, "quick": args.quick, "summary": summary, "raw": raw}
    write_results("sensing_phase" + ("_quick" if args.quick else ""), rows, meta)


if __name__ == "__main__":
    main()
