"""Image inpainting: lin-RFM vs Soft-Impute vs biharmonic inpainting (scikit-image).

Images: scikit-image's ``camera`` and ``astronaut`` (grayscale, [0, 1], 512 x 512,
:func:`linrfm.datasets.load_image`). For each fraction of missing pixels (50 %, 80 %,
90 %) a seeded uniform mask hides pixels; every method sees only the observed ones and
is scored by the PSNR on the *missing* pixels (completions clipped to [0, 1], the
demo's metric) and its wall time, side by side in one process with one BLAS thread:

* ``lin-RFM defaults``: ``LinRFMCompleter()``, nothing tuned.
* ``lin-RFM reg on held-out``: the demo's rule, a fixed ``reg`` from
  ``linrfm.demo.IMAGE_REGS`` chosen by the error on 10 % of the *observed* pixels
  (``max_iter=50``, ``tol=1e-4``), then refitted on all observed pixels.
* ``Soft-Impute``: ``SoftImpute(validation_fraction=0.1)``, its shrinkage path with
  the value chosen on 10 % of the observed pixels (the fair, tuned configuration).
* ``biharmonic``: ``skimage.restoration.inpaint_biharmonic``, what an image user
  reaches for first (uses the pixel grid, which the matrix methods do not know).

One figure per image (rows: fractions missing; columns: observed, each method) and
``inpainting.csv/json`` go to ``benchmarks/results/`` (``--quick``: camera only,
80 % missing, downscaled 4x, files named ``*_quick``, git-ignored).

    .venv/bin/python benchmarks/bench_inpainting.py [--quick] [--images camera astronaut]
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

from benchmarks._common import RESULTS, print_table, write_results  # noqa: E402
from linrfm import LinRFMCompleter  # noqa: E402
from linrfm._observations import as_observations  # noqa: E402
from linrfm.baselines import SoftImpute  # noqa: E402
from linrfm.datasets import load_image  # noqa: E402
from linrfm.demo import IMAGE_REGS, _psnr  # noqa: E402
from linrfm.exceptions import ConvergenceWarning  # noqa: E402
from linrfm.io import save_figure  # noqa: E402

VALIDATION_FRACTION = 0.1


def _quiet_fit(est, obs):
    with warnings.catch_warnings():
        # A method that stops on its iteration budget is scored as it is.
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit((obs.rows, obs.cols, obs.values), shape=obs.shape)
    return est


def lin_rfm_defaults(obs, seed):
    return _quiet_fit(LinRFMCompleter(random_state=seed), obs).completed_, {}


def lin_rfm_heldout(obs, seed):
    """The demo's rule: fixed reg chosen on held-out observed pixels, then refit."""
    train, val = obs.split(VALIDATION_FRACTION, random_state=seed)
    errors = {}
    for reg in IMAGE_REGS:
        est = _quiet_fit(LinRFMCompleter(reg=reg, max_iter=50, tol=1e-4), train)
        errors[reg] = float(np.linalg.norm(est.completed_[val.rows, val.cols] - val.values))
    reg = min(errors, key=errors.get)
    est = _quiet_fit(LinRFMCompleter(reg=reg, max_iter=50, tol=1e-4), obs)
    return est.completed_, {"reg": reg}


def soft_impute(obs, seed):
    est = _quiet_fit(SoftImpute(validation_fraction=VALIDATION_FRACTION, random_state=seed),
                     obs)
    return est.completed_, {"rank": est.rank_, "shrinkage": est.shrinkage_}


def biharmonic(obs, seed):
    from skimage.restoration import inpaint_biharmonic

    missing = np.ones(obs.shape, dtype=bool)
    missing[obs.rows, obs.cols] = False
    return inpaint_biharmonic(obs.to_dense(0.0), missing), {}


METHODS = {"lin-RFM defaults": lin_rfm_defaults, "lin-RFM reg on held-out": lin_rfm_heldout,
           "Soft-Impute": soft_impute, "biharmonic": biharmonic}


def run_case(name, image, missing, seed, methods, completions):
    """Every method on one image and mask; one result row per method."""
    rng = np.random.RandomState(seed)
    observed = rng.random_sample(image.shape) >= missing
    rows, cols = np.nonzero(observed)
    obs = as_observations((rows, cols, image[rows, cols]), shape=image.shape)
    completions[(name, missing)] = {"observed": np.where(observed, image, np.nan)}
    out = []
    for method in methods:
        fit = METHODS[method]
        t0 = time.perf_counter()
        Z, extra = fit(obs, seed)
        seconds = time.perf_counter() - t0
        completions[(name, missing)][method] = Z
        out.append({"image": name, "shape": "x".join(map(str, image.shape)),
                    "missing": missing, "method": method,
                    "psnr_missing_db": _psnr(Z, image, ~observed), "time_s": seconds,
                    **{k: v for k, v in extra.items()}})
        print(f"{name} {missing:.0%} {method}: {out[-1]['psnr_missing_db']:.2f} dB, "
              f"{seconds:.1f} s", flush=True)
    return out


def plot(name, methods, fractions, completions, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["observed", *methods]
    fig, axes = plt.subplots(len(fractions), len(columns),
                             figsize=(2.4 * len(columns), 2.6 * len(fractions)), squeeze=False)
    for i, frac in enumerate(fractions):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(np.clip(completions[(name, frac)][col], 0, 1), cmap="gray",
                      vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            row = next((r for r in rows if r["missing"] == frac and r["method"] == col), None)
            label = f"{frac:.0%} missing" if col == "observed" else \
                f"{col}\n{row['psnr_missing_db']:.1f} dB, {row['time_s']:.0f} s"
            ax.set_title(label, fontsize=8)
    return save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="camera only, 80 %% missing, downscaled 4x (< 2 min)")
    parser.add_argument("--images", nargs="+", default=["camera", "astronaut"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--downscale", type=int, default=1, metavar="N",
                        help="keep every N-th pixel in each direction (default 1: 512 x 512; "
                             "--quick uses 4)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS),
                        metavar="METHOD", help=f"subset of: {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    methods = [m for m in METHODS if m in args.methods]
    images = ["camera"] if args.quick else args.images
    fractions = [0.8] if args.quick else [0.5, 0.8, 0.9]
    step = 4 if args.quick else args.downscale
    suffix = ("_quick" if args.quick else "") + args.tag
    rows, figures = [], []
    with threadpool_limits(1, user_api="blas"):
        for name in images:
            image = load_image(name)[::step, ::step]
            completions = {}
            for frac in fractions:
                rows += run_case(name, image, frac, args.seed, methods, completions)
            figures.append(str(plot(name, methods, fractions, completions,
                                    [r for r in rows if r["image"] == name],
                                    RESULTS / f"inpainting_{name}{suffix}.png")))
    print_table(rows, ["image", "missing", "method", "psnr_missing_db", "time_s"])
    write_results(f"inpainting{suffix}", rows, {"figures": figures, "seed": args.seed,
                                                "downscale": step, "shape": list(image.shape),
                                                "blas_threads": 1,
                                                "validation_fraction": VALIDATION_FRACTION})


if __name__ == "__main__":
    main()
