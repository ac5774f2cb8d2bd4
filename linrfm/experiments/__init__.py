"""One module per claim of the paper: ``run`` writes a CSV, ``plot`` a PNG from it.

Each experiment module defines::

    run(out_dir, quick=False, seed=0, verbose=0) -> pathlib.Path   # the CSV it wrote
    plot(csv_path, png_path) -> pathlib.Path
    summarize(csv_path) -> str                                      # short markdown

and is registered in :data:`EXPERIMENTS` (name -> module path).
"""
from __future__ import annotations

import importlib

EXPERIMENTS = {
    "sparse-regression": ".sparse_regression",
    "completion-phase": ".completion_phase",
    "completion-time": ".completion_time",
    "equivalence": ".equivalence",
    "dln-comparison": ".dln_comparison",
}

__all__ = ["EXPERIMENTS", "get_experiment"]


def get_experiment(name: str):
    """Import and return the experiment module called ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name], __name__)
