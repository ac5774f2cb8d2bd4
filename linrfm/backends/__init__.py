"""Compute backends: the few primitives that differ between NumPy, PyTorch and Dask.

Optional backends are detected once here; a missing one is reported with an
install hint when it is asked for, never at import time.
"""
from ..core.namespace import HAS_DASK, HAS_TORCH, get_namespace, is_torch, to_numpy

__all__ = ["HAS_TORCH", "HAS_DASK", "get_namespace", "is_torch", "to_numpy"]
