"""Plumbing shared by the experiments: provenance, CSV files, error tracing, plots.

* :func:`write_csv` writes ``<name>.csv`` (one row per measurement, with the
  parameters and seeds in columns) and a sidecar ``<name>.json`` (package
  versions, CPU/GPU model, BLAS threads, the command, the date and the
  experiment's settings). :func:`read_csv` reads the CSV back with numbers
  parsed, which is all ``plot`` and ``summarize`` ever read.
* :class:`ErrorTrace` records the error of an algorithm's iterates against the
  hidden truth *outside* the algorithm: it is the estimator's ``callback``
  (the shared loop hands it the live state after each iteration), computes
  the error for the report and never changes the iterate. The loop does not
  count callback time, and the trace stops the fit (returns True) once the
  reporting target or a time budget is reached, which ends the measurement,
  not the algorithm's decisions.
* :func:`new_figure` / :func:`save_figure`: one plotting style (Agg backend,
  small PNGs written atomically).
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .._provenance import environment_info
from ..io import atomic_write, save_figure, write_json

__all__ = ["provenance", "write_csv", "read_csv", "read_settings", "relative_error",
           "HiddenEntries", "ErrorTrace", "single_thread", "warm_up_torch", "new_figure",
           "save_figure",
           "Palette", "STYLE", "fmt", "markdown_table", "provenance_line", "has_torch"]


# --------------------------------------------------------------------------- provenance
def provenance() -> dict:
    """Machine and versions (:func:`linrfm._provenance.environment_info`), plus the
    date, command and git commit of this run."""
    info = environment_info()
    # flat keys (numpy, torch, ... versions; gpu) keep the sidecars easy to read
    torch_info = info.pop("torch") or {}
    info.update(info.pop("versions"))
    info["gpu"] = (torch_info.get("devices") or [None])[0]
    info["torch_threads"] = torch_info.get("threads")
    info.update({"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                 "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
                 "git_commit": _git_commit()})
    return info


def _git_commit():
    """``git describe --always --dirty`` of the source tree, or None outside a checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"],
                             cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def has_torch() -> bool:
    """Whether PyTorch can be imported (the deep linear baselines need it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def warm_up_torch() -> None:
    """Import torch and take one tiny Adam step, so that no timed run pays for the
    first-use imports (several seconds for ``torch.optim``)."""
    if has_torch():
        import torch

        w = torch.ones(8, 8, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=1e-3)
        (w @ w).sum().backward()
        opt.step()


@contextlib.contextmanager
def single_thread():
    """One BLAS thread and one torch thread for the duration of the block.

    The experiments time several methods side by side on small and medium
    problems; on a shared machine threaded BLAS mostly adds contention, and one
    thread for everybody keeps the comparison fair.
    """
    from ..backends._threads import limit_blas

    old = None
    if has_torch():
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        with limit_blas(1):
            yield
    finally:
        if old is not None:
            import torch

            torch.set_num_threads(old)


# --------------------------------------------------------------------------- files
def write_csv(out_dir, name: str, rows: list[dict], settings: dict | None = None) -> Path:
    """Write ``rows`` to ``out_dir/<name>.csv`` and provenance to ``<name>.json``.

    Parameters
    ----------
    out_dir : path-like
    name : str
    rows : list of dict
        One measurement per row; the columns are the union of the keys, in
        order of first appearance.
    settings : dict, optional
        The experiment's settings (grids, seeds, thresholds, budgets), stored
        in the sidecar with :func:`provenance`.

    Returns
    -------
    pathlib.Path
        The CSV file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    path = out / f"{name}.csv"
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    write_json(out / f"{name}.json", {"experiment": name, "csv": path.name,
                                      "provenance": provenance(), "settings": settings or {}})
    return path


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def read_csv(path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers parsed (empty -> NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for k, v in row.items():
            row[k] = _parse(v)
    return rows


def _parse(v):
    if v is None or v == "":
        return math.nan
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v in ("True", "False"):
        return v == "True"
    return v


def read_settings(csv_path) -> dict:
    """The sidecar of ``csv_path`` (empty dict if missing)."""
    side = Path(csv_path).with_suffix(".json")
    if not side.exists():
        return {}
    return json.loads(side.read_text())


# --------------------------------------------------------------------------- errors
def relative_error(estimate, truth) -> float:
    """``||estimate - truth|| / ||truth||`` (Frobenius / Euclidean)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


class HiddenEntries:
    """The unobserved entries of a completion problem, for reporting only.

    Parameters
    ----------
    problem : linrfm.datasets.CompletionProblem
    """

    def __init__(self, problem):
        d1, d2 = problem.truth.shape
        mask = np.ones((d1, d2), dtype=bool)
        mask[problem.observed.rows, problem.observed.cols] = False
        self.flat = np.flatnonzero(mask)
        self.values = problem.truth.ravel()[self.flat]
        self.norm = float(np.linalg.norm(self.values))
        self.shape = (d1, d2)

    def error(self, Z, transposed: bool = False) -> float:
        """Relative error of ``Z`` (or ``Z.T`` when ``transposed``) on the hidden entries."""
        Z = np.asarray(Z)
        if transposed:
            Z = Z.T
        pred = Z.ravel()[self.flat] if Z.flags.c_contiguous else Z.reshape(-1)[self.flat]
        return float(np.linalg.norm(pred - self.values) / self.norm)


class ErrorTrace:
    """Error of the iterates vs algorithm time, measured outside the algorithm.

    Pass it as the estimator's ``callback``: the shared loop calls it after
    every iteration with a :class:`~linrfm.core.loop.LoopState`; it reads the
    iterate (``state.iterate()``, the user's orientation), measures its error
    against the hidden truth and returns True to stop the fit when the target
    or the time budget is reached. It never changes the iterates, and the
    loop does not count time spent in callbacks.

    Parameters
    ----------
    error_fn : callable
        ``error_fn(Z)`` -> float for a ``(d1, d2)`` iterate (see
        :class:`HiddenEntries`).
    target : float, optional
        Stop the fit once the error is below it.
    budget_s : float, optional
        Stop the fit once this much algorithm time has elapsed.
    every : int, default=1
        Evaluate every ``every``-th iterate only (plus the first).

    Attributes
    ----------
    iterations, times, errors : list
        One entry per evaluated iterate; ``times`` is the loop's algorithm
        time (``LoopState.elapsed``: setup included, callbacks excluded).
        A fit that runs several loops (the default ``reg="path"``) is traced
        as one: iterations and times continue across its loops (the time
        between loops, e.g. splitting off the held-out entries, is not counted).
    stop : str
        ``"target"``, ``"budget"`` or ``""`` (the algorithm stopped itself).
    """

    def __init__(self, error_fn, target=None, budget_s=None, every: int = 1):
        self.error_fn = error_fn
        self.target = target
        self.budget_s = budget_s
        self.every = max(int(every), 1)
        self.iterations: list[int] = []
        self.times: list[float] = []
        self.errors: list[float] = []
        self.stop = ""
        # iterations and time of the loops already finished, and of the current one
        self._done = (0, 0.0)
        self._loop = (0, 0.0)

    def __call__(self, state) -> bool:
        """Record the error of the iterate of ``state``; True stops the fit."""
        if state.iteration <= self._loop[0]:
            # a new loop of a multi-phase fit (reg="path": held-out path, grid,
            # refit): each starts counting at 1; the trace counts on
            self._done = (self._done[0] + self._loop[0], self._done[1] + self._loop[1])
        self._loop = (state.iteration, state.elapsed)
        it, t = state.iteration + self._done[0], state.elapsed + self._done[1]
        err = None
        if it == 1 or it % self.every == 0:
            err = self.error_fn(state.iterate())
            self.iterations.append(it)
            self.times.append(t)
            self.errors.append(err)
        if self.target is not None and err is not None and err <= self.target:
            self.stop = "target"
        elif self.budget_s is not None and t >= self.budget_s:
            self.stop = "budget"
        return bool(self.stop)

    def time_to(self, target: float) -> float:
        """First recorded time at which the error was ``<= target`` (NaN if never)."""
        for t, e in zip(self.times, self.errors):
            if e <= target:
                return t
        return math.nan


# --------------------------------------------------------------------------- plots
# One colour map per method family, so that the figures read alike: shades
# tell the members of a family apart (powers, depths, sides).
STYLE = {
    "lin-RFM": "Blues",
    "IRLS": "Reds",
    "DLN": "Greens",
    "l1": "Purples",
    "SoftImpute": "Oranges",
    "zero-fill": "Greys",
}
MARKERS = "osD^vP*X"


def color_for(method: str, index: int = 0) -> str:
    """Colour of a method label (family by prefix), the ``index``-th shade."""
    import matplotlib
    import matplotlib.colors as mcolors

    name = next((c for k, c in STYLE.items() if method.startswith(k)), "Greys")
    level = 0.88 - 0.22 * (index % 3)
    return mcolors.to_hex(matplotlib.colormaps[name](level))


def line_style(method: str, index: int = 0) -> dict:
    """``plot`` keyword arguments for a method: colour, marker, line style."""
    dashed = method.startswith(("DLN", "SoftImpute"))
    return {"color": color_for(method, index), "marker": MARKERS[index % len(MARKERS)],
            "ms": 3.5, "ls": "--" if dashed else "-", "alpha": 0.9, "label": method}


class Palette:
    """Hands out :func:`line_style` with a running index per family."""

    def __init__(self):
        self.count: dict[str, int] = {}

    def __call__(self, method: str) -> dict:
        fam = next((k for k in STYLE if method.startswith(k)), method)
        idx = self.count.get(fam, 0)
        self.count[fam] = idx + 1
        return line_style(method, idx)


def new_figure(ncols: int = 1, width: float = 5.2, height: float = 3.8):
    """A figure with ``ncols`` axes side by side (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    for ax in axes[0]:
        ax.grid(True, which="major", alpha=0.3)
    return fig, list(axes[0])


# --------------------------------------------------------------------------- summaries
def fmt(v, digits: int = 3) -> str:
    """Short string for a number (NaN -> '—')."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}g}"


def markdown_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    """A GitHub markdown table of ``rows``."""
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def provenance_line(csv_path) -> str:
    """One markdown line: date, CPU, GPU, versions (from the sidecar, if present)."""
    meta = read_settings(csv_path).get("provenance", {})
    if not meta:
        return ""
    gpu = meta.get("gpu") or "no GPU"
    return (f"_Run {meta.get('date_utc', '?')} UTC on {meta.get('cpu_model', '?')} "
            f"({meta.get('cpu_count', '?')} cores, {gpu}); linrfm {meta.get('linrfm')}, "
            f"numpy {meta.get('numpy')}, torch {meta.get('torch')}; command "
            f"`{meta.get('command', '?')}`._")
