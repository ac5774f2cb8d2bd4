"""The contract between the completion estimator and a compute backend.

A backend owns where the iterate ``Z`` lives (host memory, a GPU, Dask
workers) and the three primitives that differ between libraries: the Gram
(column AGOP), the kernel power, and the row-decoupled step. The estimator
owns everything else (schedule, sides, stopping) and talks to any backend
through this interface only.

``Z`` is always held in the orientation being solved: rows are the decoupled
side, the kernel is ``d x d`` with ``d = Z.shape[1]``. For the alternating
scheme the estimator keeps one :class:`PreparedRows` per orientation and calls
:meth:`CompletionBackend.transpose`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._observations import Observations
from ..core.kernel import kernel_from_agop
from ._threads import blas_threads
from . import numpy_backend

__all__ = ["PreparedRows", "CompletionBackend", "NumpyBackend"]


@dataclass
class PreparedRows:
    """Observed entries of one orientation, laid out for a backend.

    Attributes
    ----------
    shape : tuple of int
        ``(n_rows, d)`` of the oriented matrix.
    data : Any
        Backend-specific layout (CSR arrays, device tensors, row blocks...).
    """

    shape: tuple[int, int]
    data: Any


class CompletionBackend:
    """Interface of a completion compute backend (see module docstring).

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64.
    max_batch_bytes : int
        Memory budget of one batch of gathered kernel blocks.
    """

    name = "abstract"

    def __init__(self, dtype=np.float64, max_batch_bytes: int = numpy_backend.DEFAULT_BATCH_BYTES):
        self.dtype = np.dtype(dtype)
        self.max_batch_bytes = int(max_batch_bytes)

    def prepare(self, obs: Observations) -> PreparedRows:
        """Lay out the observed entries (rows = decoupled side)."""
        raise NotImplementedError

    def initial(self, rows: PreparedRows):
        """First iterate: observed values, zeros elsewhere, shape ``rows.shape``."""
        raise NotImplementedError

    def gram(self, Z):
        """Column AGOP ``Z^T Z / n_rows`` as a (d, d) backend array."""
        raise NotImplementedError

    def kernel(self, G, power: float):
        """Kernel ``G**(2 power)`` (no decomposition for power 1/2)."""
        return kernel_from_agop(G, power)

    def trace(self, G) -> float:
        """``trace(G)`` as a Python float."""
        raise NotImplementedError

    def eigvalsh(self, G) -> np.ndarray:
        """Eigenvalues of the symmetric ``G`` (ascending) as a NumPy array."""
        raise NotImplementedError

    def step(self, rows: PreparedRows, K, reg: float, replace: bool = True):
        """One lin-RFM step: solve every row over its observed entries."""
        raise NotImplementedError

    def transpose(self, Z):
        """``Z.T`` in the backend's layout (rows become the other side)."""
        raise NotImplementedError

    def relax(self, Z_old, Z_new, omega: float):
        """Over-relaxed iterate ``Z_old + omega (Z_new - Z_old)`` (a new array)."""
        return Z_old + omega * (Z_new - Z_old)

    def sq_norms(self, Z_new, Z_old) -> tuple[float, float]:
        """``(||Z_new - Z_old||_F^2, ||Z_new||_F^2)`` as Python floats."""
        raise NotImplementedError

    def gather(self, Z, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Entries ``Z[rows, cols]`` as a NumPy array."""
        raise NotImplementedError

    def to_numpy(self, Z) -> np.ndarray:
        """The whole iterate as a NumPy array on the host."""
        raise NotImplementedError

    def from_numpy(self, Z: np.ndarray):
        """A host array as this backend's iterate (resuming from a checkpoint)."""
        raise NotImplementedError(f"the {self.name} backend cannot resume from a checkpoint; "
                                  "use device='cpu' or 'torch' with checkpoint_path")


class NumpyBackend(CompletionBackend):
    """In-memory NumPy/SciPy backend (the default)."""

    name = "numpy"

    def prepare(self, obs: Observations) -> PreparedRows:
        return PreparedRows(obs.shape, obs.csr_arrays(self.dtype))

    def initial(self, rows: PreparedRows):
        indptr, indices, values = rows.data
        Z = np.zeros(rows.shape, dtype=self.dtype)
        Z[np.repeat(np.arange(rows.shape[0]), np.diff(indptr)), indices] = values
        return Z

    def gram(self, Z):
        return numpy_backend.gram(Z)

    def trace(self, G) -> float:
        return float(np.trace(G))

    def eigvalsh(self, G) -> np.ndarray:
        with blas_threads(1):  # see core.kernel.psd_power
            return np.linalg.eigvalsh(G)

    def step(self, rows: PreparedRows, K, reg: float, replace: bool = True):
        indptr, indices, values = rows.data
        return numpy_backend.solve_rows(K, indptr, indices, values, reg, replace=replace,
                                        max_batch_bytes=self.max_batch_bytes)

    def transpose(self, Z):
        return np.ascontiguousarray(Z.T)

    def sq_norms(self, Z_new, Z_old) -> tuple[float, float]:
        return float(np.sum((Z_new - Z_old) ** 2)), float(np.sum(Z_new ** 2))

    def gather(self, Z, rows, cols) -> np.ndarray:
        return np.asarray(Z[rows, cols])

    def to_numpy(self, Z) -> np.ndarray:
        return np.asarray(Z)

    def from_numpy(self, Z: np.ndarray):
        return np.ascontiguousarray(Z, dtype=self.dtype)
