"""The main job, ``linrfm demo``: two completion problems on built-in data.

1. **The paper's setup.** A 500 x 500 rank-5 matrix (entries of mean square
   1) seen through 10 000 uniformly sampled entries, twice the degrees of
   freedom ``r (d1 + d2 - r)``. :class:`~linrfm.LinRFMCompleter` runs with its
   defaults (``power=0.5``, ``reg="auto"``, alternating sides) and is *not*
   told the rank.
2. **Image inpainting.** The 512 x 512 "camera" photograph from scikit-image
   with 80 % of its pixels removed at random. A natural image is only
   approximately low rank, so ``reg`` stays fixed (a regularisation
   strength): it is chosen among a few values by the error on a validation
   split of the *observed* pixels, then the model is refitted on every
   observed pixel with that value.

The hidden entries / pixels are used for one thing only: the errors in the
printed table and the report. They never reach an estimator, a stopping rule
or the choice of ``reg``.

Outputs in ``out_dir``: ``demo.png`` (original / observed / completed image
and the convergence of problem 1) and ``report.json`` (settings, errors,
times, histories, versions).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ._observations import Observations, as_observations
from ._provenance import environment_info
from .backends._threads import limit_blas
from .datasets import information_limit, load_image, make_completion_problem
from .exceptions import ConvergenceWarning
from .io import save_figure, write_json

__all__ = ["run_demo", "format_table", "IMAGE_REGS"]

# Candidate smoothing strengths for the image (relative to the scale of the
# first kernel, see LinRFMCompleter's ``reg``); picked on observed pixels only.
IMAGE_REGS = (0.3, 0.1, 0.03, 0.01)
IMAGE_MAX_ITER = 50
IMAGE_MISSING = 0.8
# One BLAS thread: the row solves are many small batched systems, for which
# OpenBLAS threads cost more than they give (measured 2.5-4x slower with 2
# threads on a 2-core machine, far worse when the cores are shared).
DEMO_BLAS_THREADS = 1
VALIDATION_FRACTION = 0.1


def _completer(**params):
    from . import LinRFMCompleter

    return LinRFMCompleter(**params)


def _fit(est, obs: Observations):
    """Fit on observations; return (estimator, wall-clock seconds)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # A fixed iteration budget is the plan for the image, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit((obs.rows, obs.cols, obs.values), shape=obs.shape)
    return est, time.perf_counter() - t0


def _relative_error(Z, truth, mask) -> float:
    return float(np.linalg.norm((Z - truth)[mask]) / np.linalg.norm(truth[mask]))


def _psnr(Z, truth, mask) -> float:
    mse = float(np.mean((np.clip(Z, 0.0, 1.0) - truth)[mask] ** 2))
    return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")


def synthetic_task(quick: bool, seed: int, verbose: int) -> dict:
    """Problem 1: the paper's 500 x 500, rank 5, 10 000 entries (smaller with ``quick``)."""
    d1, d2, rank, n_obs = (100, 100, 3, 1800) if quick else (500, 500, 5, 10_000)
    prob = make_completion_problem(d1, d2, rank, n_observed=n_obs, random_state=seed)
    est, seconds = _fit(_completer(verbose=verbose, random_state=seed), prob.observed)
    return {
        "task": f"synthetic rank {rank}, {n_obs / information_limit(d1, d2, rank):.1f}x "
                "min. samples",
        "shape": [d1, d2],
        "n_observed": n_obs,
        "fraction_observed": n_obs / (d1 * d2),
        "rank_told_to_estimator": False,
        "params": {k: v for k, v in est.get_params().items() if k != "verbose"},
        "relative_error_missing": prob.missing_error(est.completed_),
        "n_iter": est.n_iter_,
        "stop_reason": est.stop_reason_,
        "time_s": seconds,
        "history": est.history_,
    }


def image_task(quick: bool, seed: int, verbose: int, log: Callable[[str], None]) -> dict:
    """Problem 2: inpaint the camera image with ``IMAGE_MISSING`` of its pixels removed."""
    image = load_image("camera")
    regs, max_iter = IMAGE_REGS, IMAGE_MAX_ITER
    if quick:
        image, regs, max_iter = image[::4, ::4], IMAGE_REGS[1:3], 30
    rng = np.random.RandomState(seed)
    observed_mask = rng.random_sample(image.shape) >= IMAGE_MISSING
    rows, cols = np.nonzero(observed_mask)
    obs = as_observations((rows, cols, image[rows, cols]), shape=image.shape)
    hidden = ~observed_mask

    # Choose reg on held-out *observed* pixels.
    train, val = obs.split(VALIDATION_FRACTION, random_state=rng)
    selection = []
    for reg in regs:
        est, seconds = _fit(_completer(reg=reg, max_iter=max_iter, tol=1e-4, verbose=verbose),
                            train)
        err = float(np.linalg.norm(est.completed_[val.rows, val.cols] - val.values)
                    / np.linalg.norm(val.values))
        selection.append({"reg": reg, "validation_error": err, "n_iter": est.n_iter_,
                          "time_s": seconds})
        log(f"image: reg={reg:g}: validation error {err:.4f} ({seconds:.1f} s)")
    best = min(selection, key=lambda row: row["validation_error"])

    est, seconds = _fit(_completer(reg=best["reg"], max_iter=max_iter, tol=1e-4,
                                   verbose=verbose), obs)
    completed = est.completed_
    mean_fill = np.full(image.shape, obs.values.mean())
    return {
        "task": f"camera image, {IMAGE_MISSING:.0%} pixels missing",
        "shape": list(image.shape),
        "n_observed": obs.nnz,
        "fraction_observed": obs.nnz / image.size,
        "reg_selection": selection,
        "reg": best["reg"],
        "params": {k: v for k, v in est.get_params().items() if k != "verbose"},
        "relative_error_missing": _relative_error(completed, image, hidden),
        "psnr_missing_db": _psnr(completed, image, hidden),
        "mean_fill_relative_error_missing": _relative_error(mean_fill, image, hidden),
        "n_iter": est.n_iter_,
        "stop_reason": est.stop_reason_,
        "time_s": seconds,
        "selection_time_s": float(sum(row["time_s"] for row in selection)),
        "history": est.history_,
        "_arrays": (image, observed_mask, completed),
    }


def format_table(rows: list[dict]) -> str:
    """The table ``linrfm demo`` prints (one line per task)."""
    header = ("task", "shape", "observed", "rel. error (missing)", "iterations", "time (s)")
    lines = []
    for row in rows:
        lines.append((row["task"], "x".join(str(s) for s in row["shape"]),
                      f"{row['n_observed']:,} ({row['fraction_observed']:.1%})",
                      f"{row['relative_error_missing']:.2e}", str(row["n_iter"]),
                      f"{row['time_s']:.1f}"))
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
    out = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def _plot(path: Path, image_row: dict, synthetic_row: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, observed_mask, completed = image_row["_arrays"]
    cmap = plt.get_cmap("gray").with_extremes(bad="#27305a")
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    panels = [(image, "original"),
              (np.ma.masked_array(image, ~observed_mask),
               f"observed ({image_row['fraction_observed']:.0%} of pixels)"),
              (np.clip(completed, 0, 1),
               f"lin-RFM, reg={image_row['reg']:g}\nerror on missing "
               f"{image_row['relative_error_missing']:.3f}, "
               f"PSNR {image_row['psnr_missing_db']:.1f} dB")]
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    hist = synthetic_row["history"]
    ax = axes[3]
    ax.semilogy(hist["iteration"], hist["rel_change"], label="relative change of Z")
    ax.semilogy(hist["iteration"], hist["reg"], label="reg (smoothing)", alpha=0.7)
    ax.set_xlabel("iteration")
    ax.set_title(f"{synthetic_row['task']}\nerror on missing "
                 f"{synthetic_row['relative_error_missing']:.1e}", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_demo(out_dir="demo_output", *, quick: bool = False, seed: int = 0, verbose: int = 0,
             log: Callable[[str], None] | None = None,
             blas_threads: int | None = DEMO_BLAS_THREADS) -> dict:
    """Run the demo, print its table on stdout and write ``demo.png`` and ``report.json``.

    Parameters
    ----------
    out_dir : path-like
        Created if needed.
    quick : bool
        100 x 100 rank-3 problem and a 128 x 128 image (a few seconds).
    seed : int
        Seeds the synthetic problem, the pixel mask and the validation split.
    verbose : int
        Passed to the estimators (1: progress bars on stderr).
    log : callable, optional
        Receives progress messages (default: none).
    blas_threads : int or None, default=1
        BLAS threads during the fits (needs threadpoolctl; None: unchanged).

    Returns
    -------
    report : dict
        What ``report.json`` holds.
    """
    log = log or (lambda message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with limit_blas(blas_threads):
        log("1/2 synthetic low-rank completion (the paper's setup)")
        synthetic = synthetic_task(quick, seed, verbose)
        log("2/2 image inpainting: choosing reg on a validation split of the observed pixels")
        image = image_task(quick, seed, verbose, log)
    rows = [synthetic, image]
    table = format_table(rows)
    print(table)
    print(f"image: reg={image['reg']:g} chosen on {VALIDATION_FRACTION:.0%} of the observed "
          f"pixels ({image['selection_time_s']:.1f} s); PSNR on missing pixels "
          f"{image['psnr_missing_db']:.1f} dB; filling with the mean gives error "
          f"{image['mean_fill_relative_error_missing']:.2e}")
    print(f"total time {time.perf_counter() - start:.1f} s", flush=True)
    outputs = {"report": str(out / "report.json")}
    try:
        outputs["figure"] = str(_plot(out / "demo.png", image, synthetic))
    except ImportError:
        log("matplotlib is not installed: no figure (pip install 'linrfm[plot]')")

    report = {
        "command": "linrfm demo" + (" --quick" if quick else ""),
        "seed": seed,
        "quick": quick,
        "blas_threads": blas_threads,
        "note": "hidden entries are used only to measure the errors reported here",
        "table": table,
        "tasks": [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
        "total_time_s": time.perf_counter() - start,
        "machine": environment_info(),
        "outputs": outputs,
    }
    write_json(out / "report.json", report)
    for what, path in outputs.items():
        log(f"wrote {what}: {path}")
    return report
