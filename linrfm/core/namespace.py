"""Array-namespace helpers (the PyLops ``get_array_module`` idea).

Core code takes NumPy or PyTorch arrays and calls ``xp = get_namespace(a)``;
the few places where the two libraries differ get a small shim here.
"""
from __future__ import annotations

import importlib.util

import numpy as np

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_DASK = (importlib.util.find_spec("dask") is not None
            and importlib.util.find_spec("distributed") is not None)

__all__ = ["HAS_TORCH", "HAS_DASK", "get_namespace", "is_torch", "to_numpy",
           "require_torch", "require_dask"]


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
