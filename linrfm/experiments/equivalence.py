r"""Claim 1: one lin-RFM step is one IRLS-p step, ``p = 2 - 4 power``.

From the same starting iterate, one step of the lin-RFM estimators
(``max_iter=1``, a fixed smoothing ``reg``) is compared with one IRLS-p step
written here from its definition (Mohan & Fazel 2012; Daubechies et al. 2010
for vectors), independently of the lin-RFM code:

* **regression**: ``beta1 = W^{-1} X^T (X W^{-1} X^T)^{-1} y`` with
  ``W^{-1} = diag((beta0^2 + eps)^{1 - p/2})``, from the minimum-norm
  ``beta0`` (lin-RFM's first iterate). lin-RFM puts ``eps`` inside the AGOP,
  so the two maps are identical at every smoothing.
* **completion**: ``W = (G + eps I)^{p/2 - 1}``, ``G = Z0^T Z0 / d1``, and each
  row's unobserved part ``U`` solves ``W[U, U] z_U = -W[U, O] y`` (the
  Lagrange conditions of ``min tr(Z W Z^T)`` with the observed entries
  fixed), from the zero-filled ``Z0``, against one plain (not over-relaxed,
  ``relaxation=1``) step of :class:`~linrfm.LinRFMCompleter`. lin-RFM uses
  ``G^{2 power} + reg I``;
  with ``eps = reg^{1/(2 power)}`` the two agree exactly for ``power = 1/2``
  and as ``reg -> 0`` otherwise. The IRLS baseline
  (:class:`~linrfm.baselines.IRLSCompleter`, ``max_iter=1``) is checked
  against the same reference.
* **sensing**: the primal KKT system of ``min tr(Z W Z^T)`` s.t. ``A(Z) = y``
  from the minimum-norm ``Z0``, against :class:`~linrfm.problems.sensing.LinRFMSensing`
  (``side="columns"``).

Reported: ``max |lin-RFM step - IRLS-p step|`` (the data have unit scale) for
several powers and smoothings.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np

from ..datasets import make_completion_problem, make_sensing_problem, make_sparse_regression
from ..exceptions import ConvergenceWarning
from . import _common as C

NAME = "equivalence"
POWERS = (0.25, 0.5, 0.75, 1.0)

FULL = {"regs": [1e-2, 1e-5, 1e-8, 1e-11], "regression": (60, 200, 10),
        "completion": (80, 50, 3, 2.0), "sensing": (10, 8, 2, 48), "seeds": 3}
QUICK = {"regs": [1e-2, 1e-10], "regression": (20, 50, 4), "completion": (30, 20, 2, 2.0),
         "sensing": (6, 5, 1, 20), "seeds": 1}


# --------------------------------------------------------------------------- IRLS-p references
def irls_regression_step(X, y, beta, p, eps):
    """One IRLS-p step for ``min sum_j (beta_j^2 + eps)^{p/2}`` s.t. ``X beta = y``."""
    w_inv = (beta ** 2 + eps) ** (1.0 - p / 2.0)
    return w_inv * (X.T @ np.linalg.solve((X * w_inv) @ X.T, y))


def _weight(G, p, eps):
    w, V = np.linalg.eigh(G + eps * np.eye(G.shape[0]))
    return (V * w ** (p / 2.0 - 1.0)) @ V.T


def irls_completion_step(Z, rows, cols, values, p, eps):
    """One IRLS-p completion step from ``Z`` (``d1 x d2``), row by row."""
    d1, d2 = Z.shape
    W = _weight(Z.T @ Z / d1, p, eps)
    out = np.zeros((d1, d2))
    for i in range(d1):
        mask = rows == i
        O, y = cols[mask], values[mask]
        U = np.setdiff1d(np.arange(d2), O)
        out[i, O] = y
        if U.size:
            out[i, U] = -np.linalg.solve(W[np.ix_(U, U)], W[np.ix_(U, O)] @ y)
    return out


def irls_sensing_step(A3, y, Z, p, eps):
    """One IRLS-p sensing step by the KKT system of ``min tr(Z W Z^T)`` s.t. ``A(Z) = y``."""
    m, d1, d2 = A3.shape
    W = _weight(Z.T @ Z / d1, p, eps)
    A2 = A3.reshape(m, -1)
    n = d1 * d2
    kkt = np.block([[2.0 * np.kron(np.eye(d1), W), A2.T], [A2, np.zeros((m, m))]])
    sol = np.linalg.solve(kkt, np.concatenate([np.zeros(n), y]))
    return sol[:n].reshape(d1, d2)


# --------------------------------------------------------------------------- one step each
def _regression_rows(cfg, seed):
    from ..problems.regression import LinRFMRegressor

    n, d, k = cfg["regression"]
    rows = []
    for s in range(cfg["seeds"]):
        X, y, _ = make_sparse_regression(n, d, k, random_state=seed + s)
        beta0 = np.linalg.pinv(X) @ y
        scale0 = float(np.mean(beta0 ** 2))
        for power in POWERS:
            for reg in cfg["regs"]:
                est = LinRFMRegressor(power=power, reg=reg, fit_intercept=False, max_iter=1,
                                      tol=0.0).fit(X, y)
                ref = irls_regression_step(X, y, beta0, 2.0 - 4.0 * power, reg * scale0)
                rows.append(_row("regression", "lin-RFM", power, reg, reg * scale0,
                                 est.coef_, ref, seed + s, f"n={n}, d={d}, k={k}"))
    return rows


def _completion_rows(cfg, seed):
    from ..baselines import IRLSCompleter
    from ..problems.completion import LinRFMCompleter

    d1, d2, rank, over = cfg["completion"]
    rows = []
    for s in range(cfg["seeds"]):
        obs = make_completion_problem(d1, d2, rank, oversampling=over,
                                      random_state=seed + s).observed
        Z0 = obs.to_dense(0.0)
        scale = float(np.trace(Z0.T @ Z0 / d1)) / d2
        shape = f"{d1}x{d2}, rank {rank}, {over:g}x"
        for power in POWERS:
            p = 2.0 - 4.0 * power
            for reg in cfg["regs"]:
                # relaxation=1: the plain MM step (the default over-relaxes it)
                est = LinRFMCompleter(power=power, reg=reg, side="columns", max_iter=1,
                                      tol=0.0, relaxation=1.0).fit(obs)
                reg_abs = float(est.kernel_reg_)  # absolute (fixed reg: the value of step 1)
                eps = reg_abs ** (1.0 / (2.0 * power))
                ref = irls_completion_step(Z0, obs.rows, obs.cols, obs.values, p, eps)
                rows.append(_row("completion", "lin-RFM", power, reg, eps, est.completed_,
                                 ref, seed + s, shape))
                base = IRLSCompleter(p=p, gamma=eps / scale, gamma_decrease=1.0,
                                     max_iter=1).fit(obs)
                rows.append(_row("completion", "IRLSCompleter baseline", power, reg, eps,
                                 base.completed_, ref, seed + s, shape))
    return rows


def _sensing_rows(cfg, seed):
    try:
        from ..problems.sensing import LinRFMSensing
    except ImportError:  # pragma: no cover - sensing is part of the package
        return []
    d1, d2, rank, m = cfg["sensing"]
    rows = []
    for s in range(cfg["seeds"]):
        A3, y, _ = make_sensing_problem(d1, d2, rank, m, random_state=seed + s)
        Z0 = (np.linalg.pinv(A3.reshape(m, -1)) @ y).reshape(d1, d2)
        for power in POWERS:
            for reg in cfg["regs"]:
                est = LinRFMSensing(power=power, reg=reg, side="columns", solver="direct",
                                    max_iter=1, tol=0.0).fit(A3, y)
                reg_abs = float(est.kernel_reg_)  # absolute (fixed reg: the value of step 1)
                eps = reg_abs ** (1.0 / (2.0 * power))
                ref = irls_sensing_step(A3, y, Z0, 2.0 - 4.0 * power, eps)
                rows.append(_row("sensing", "lin-RFM", power, reg, eps, est.Z_, ref, seed + s,
                                 f"{d1}x{d2}, rank {rank}, m={m}"))
    return rows


def _row(problem, method, power, reg, eps, got, ref, seed, setup):
    got = np.asarray(got, dtype=float)
    diff = float(np.max(np.abs(got - ref)))
    return {"problem": problem, "method": method, "power": power, "p": 2.0 - 4.0 * power,
            "reg": reg, "eps": eps, "seed": seed, "setup": setup,
            "max_abs_diff": diff, "rel_diff": diff / max(float(np.max(np.abs(ref))), 1e-300),
            "step_size": float(np.max(np.abs(ref)))}


def run(out_dir, quick: bool = False, seed: int = 0, verbose: int = 0) -> Path:
    """Compare one step of each estimator with the IRLS-p reference; write ``equivalence.csv``.

    Returns
    -------
    pathlib.Path
        One row per (problem, method, power, reg, seed): ``problem, method,
        power, p, reg, eps, seed, setup, max_abs_diff, rel_diff, step_size``.
    """
    cfg = QUICK if quick else FULL
    rows = []
    with C.single_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for part in (_regression_rows, _completion_rows, _sensing_rows):
            rows += part(cfg, seed)
            if verbose:
                print(f"[equivalence] {part.__name__[1:-5]}: done",
                file=sys.stderr, flush=True)
    return C.write_csv(out_dir, NAME, rows, dict(cfg, powers=POWERS, seed=seed, quick=quick))


def _worst(rows):
    """Max over seeds of ``max_abs_diff`` per (problem, method, power, reg)."""
    out = {}
    for r in rows:
        key = (r["problem"], r["method"], r["power"], r["reg"])
        out[key] = max(out.get(key, 0.0), r["max_abs_diff"])
    return out


def plot(csv_path, png_path) -> Path:
    """Bars (log scale): worst max |difference| per problem and power, one bar per reg."""
    rows = C.read_csv(csv_path)
    worst = _worst(rows)
    groups = []
    for r in rows:
        g = (r["problem"], r["method"], r["power"])
        if g not in groups:
            groups.append(g)
    regs = sorted({r["reg"] for r in rows}, reverse=True)
    fig, (ax,) = C.new_figure(1, width=max(7.0, 0.6 * len(groups) + 2), height=4.2)
    width = 0.8 / len(regs)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for j, reg in enumerate(regs):
        vals = [max(worst.get((*g[:3], reg), math.nan), 1e-17) for g in groups]
        ax.bar(np.arange(len(groups)) + (j - (len(regs) - 1) / 2) * width, vals, width,
               color=cmap(j / max(len(regs) - 1, 1)), label=f"reg = {reg:g}")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(groups)))
    short = {"regression": "regr.", "completion": "compl.", "sensing": "sens."}
    ax.set_xticklabels([f"{short.get(pb, pb)}\n{'IRLS bl.' if m.startswith('IRLS') else 'RFM'}"
                        f"\n{_frac(pw)}" for pb, m, pw in groups], fontsize=7)
    ax.set_xlabel("problem / method (RFM: lin-RFM estimator; IRLS bl.: IRLSCompleter) / power")
    ax.set_ylabel("max |one step - IRLS-p step|")
    ax.set_title("one lin-RFM step vs one IRLS-p step (p = 2 - 4 power)")
    ax.axhline(1e-8, color="k", lw=0.6, alpha=0.5)
    ax.legend(fontsize=7, ncol=len(regs))
    return C.save_figure(fig, png_path)


def _frac(power: float) -> str:
    from fractions import Fraction

    return str(Fraction(power).limit_denominator(16))


def summarize(csv_path) -> str:
    """Markdown: the worst difference per problem and power, at the smallest and largest reg."""
    rows = C.read_csv(csv_path)
    worst = _worst(rows)
    regs = sorted({r["reg"] for r in rows})
    small, large = regs[0], regs[-1]
    table, seen = [], []
    for r in rows:
        g = (r["problem"], r["method"], r["power"])
        if g in seen:
            continue
        seen.append(g)
        table.append({"problem": r["problem"], "method": r["method"], "power": r["power"],
                      "p": r["p"], "setup": r["setup"], "small": worst[(*g, small)],
                      "large": worst[(*g, large)]})
    out = ["### One lin-RFM step vs one IRLS-p step", "",
           C.markdown_table(table, ["problem", "method", "power", "p", "setup", "small", "large"],
                            ["problem", "method", "power", "p", "setup",
                             f"max abs diff, reg={small:g}", f"max abs diff, reg={large:g}"]),
           ""]
    lin = [t for t in table if t["method"] == "lin-RFM"]
    exact = [t for t in lin if t["power"] == 0.5 or t["problem"] == "regression"]
    # where the smoothings differ; a gap already at rounding level says nothing
    limit = [t for t in lin if t not in exact and t["large"] > 1e-8]
    worst_exact = max(max(t["small"], t["large"]) for t in exact)
    shrink = min((t["large"] / max(t["small"], 1e-300) for t in limit), default=math.inf)
    ok = worst_exact <= 1e-8 and shrink >= 100
    out.append(f"- *lin-RFM is IRLS-p with p = 2 - 4 power (claim 1)*: exact (to "
               f"{C.fmt(worst_exact)}) where the smoothings coincide (regression, and power "
               f"1/2 everywhere); elsewhere the gap shrinks at least {C.fmt(shrink)}-fold from "
               f"reg = {large:g} to reg = {small:g} — {'supported' if ok else 'not supported'} "
               "by this run.")
    half = [t for t in table if t["method"] == "lin-RFM" and t["power"] == 0.5
            and t["problem"] != "regression"]
    if half:
        worst_half = max(max(t["small"], t["large"]) for t in half)
        out.append(f"- power 1/2 with ridge + replace is *exactly* IRLS-0 with eps = reg at "
                   f"every smoothing: worst difference {C.fmt(worst_half)} (up to reg = "
                   f"{large:g}) — {'supported' if worst_half <= 1e-8 else 'not supported'}.")
    reg_rows = [t for t in table if t["problem"] == "regression"]
    if reg_rows:
        w = max(max(t["small"], t["large"]) for t in reg_rows)
        out.append(f"- Regression (eps inside the weights): identical maps at every smoothing, "
                   f"worst difference {C.fmt(w)}.")
    other = [t for t in table if t["method"] == "lin-RFM" and t["power"] != 0.5
             and t["problem"] != "regression"]
    if other:
        out.append(f"- Other powers (completion, sensing): the kernel smoothing differs "
                   f"(G^(2 power) + reg I vs (G + eps I)^(2 power)), so the gap at reg = "
                   f"{large:g} is up to {C.fmt(max(t['large'] for t in other))} and closes as "
                   f"reg -> 0 (at most {C.fmt(max(t['small'] for t in other))}).")
    base = [t["small"] for t in table if t["method"].startswith("IRLS")]
    if base:
        out.append(f"- The IRLSCompleter baseline matches the same reference to "
                   f"{C.fmt(max(base))}.")
    prov = C.provenance_line(csv_path)
    if prov:
        out += ["", prov]
    return "\n".join(out)
