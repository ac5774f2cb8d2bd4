"""Array-namespace helpers (the PyLops ``get_array_module`` idea).

Core code takes NumPy or PyTorch arrays and calls ``xp = get_namespace(a)``;
the few places where the two libraries differ get a small shim here: thin QR,
SVD, the diagonal of a batch of matrices, clipping at zero and concatenation.
The NumPy branch of each shim is the call the NumPy code made before it was
generic (SciPy's QR, ``np.linalg.svd``), so NumPy results are unchanged.
"""
from __future__ import annotations

import importlib.util

import numpy as np

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_DASK = (importlib.util.find_spec("dask") is not None
            and importlib.util.find_spec("distributed") is not None)

__all__ = ["HAS_TORCH", "HAS_DASK", "get_namespace", "is_torch", "to_numpy",
           "require_torch", "require_dask", "qr", "qr_r", "svd", "add_diagonal_",
           "clip_min", "hstack", "full_like"]


def is_torch(a) -> bool:
    """True when ``a`` is a ``torch.Tensor`` (without importing torch needlessly)."""
    return type(a).__module__.startswith("torch")


def get_namespace(a):
    """Return the module (``numpy`` or ``torch``) that owns array ``a``."""
    if is_torch(a):
        import torch

        return torch
    return np


def to_numpy(a) -> np.ndarray:
    """Copy ``a`` to a NumPy array on the host (no-op for NumPy input)."""
    if is_torch(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def require_torch():
    """Import torch or raise an ImportError that says how to install it."""
    if not HAS_TORCH:
        raise ImportError("this feature needs PyTorch: pip install 'linrfm[torch]'")
    import torch

    return torch


def require_dask():
    """Import dask.array and distributed or raise an ImportError with a hint."""
    if not HAS_DASK:
        raise ImportError("this feature needs Dask: pip install 'linrfm[dask]'")
    import dask.array as da

    return da


def qr(A):
    """Thin QR: ``(Q, R)`` with ``Q`` of shape ``(n, min(n, m))`` for ``A`` of shape ``(n, m)``."""
    if is_torch(A):
        import torch

        return torch.linalg.qr(A, mode="reduced")
    import scipy.linalg as sla

    return sla.qr(A, mode="economic")


def qr_r(A):
    """The ``R`` factor of a QR of ``A`` (shape ``(min(n, m), m)`` with torch,
    ``(n, m)`` with SciPy: only the first ``min(n, m)`` rows are meaningful)."""
    if is_torch(A):
        import torch

        return torch.linalg.qr(A, mode="r")[1]
    import scipy.linalg as sla

    return sla.qr(A, mode="r")[0]


def svd(A):
    """``(U, s, Vh)`` with ``A = U[:, :p] diag(s) Vh[:p]``, ``p = min(A.shape)``, ``s`` descending.

    NumPy returns the full ``U`` and ``Vh`` (its default), torch the thin ones:
    callers use only the first ``p`` columns/rows.
    """
    if is_torch(A):
        import torch

        return torch.linalg.svd(A, full_matrices=False)
    return np.linalg.svd(A)


def add_diagonal_(M, value: float):
    """Add ``value`` to the diagonal of each matrix of the batch ``M`` (``(c, k, k)``), in place."""
    if is_torch(M):
        M.diagonal(dim1=-2, dim2=-1).add_(value)
        return M
    c, k = M.shape[0], M.shape[-1]
    M.reshape(c, k * k)[:, :: k + 1] += value
    return M


def clip_min(a, low: float = 0.0):
    """``max(a, low)`` elementwise (``np.clip(a, low, None)`` / ``torch.clamp(a, min=low)``)."""
    if is_torch(a):
        import torch

        return torch.clamp(a, min=low)
    return np.clip(a, low, None)


def hstack(arrays):
    """Stack 2-D arrays side by side (``np.hstack`` / ``torch.hstack``)."""
    return get_namespace(arrays[0]).hstack(arrays)


def full_like(a, n: int, value: float):
    """A vector of ``n`` entries equal to ``value``, in ``a``'s library, dtype and device."""
    if is_torch(a):
        import torch

        return torch.full((n,), value, dtype=a.dtype, device=a.device)
    return np.full(n, value, dtype=a.dtype)
