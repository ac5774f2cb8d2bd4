"""Device name -> completion backend.

The estimators call :func:`get_backend` in ``fit`` (never in ``__init__``), so
an estimator built with ``device="cuda"`` can still be created, cloned and
pickled on a machine without a GPU; the error comes when it is fitted.

========================  ===============================================
``device``                backend
========================  ===============================================
``"cpu"`` / ``"numpy"``   :class:`~linrfm.backends.base.NumpyBackend`
``"torch"``               :class:`~linrfm.backends.torch_backend.TorchBackend` on the CPU
``"cuda"``, ``"cuda:N"``  :class:`~linrfm.backends.torch_backend.TorchBackend` on a GPU
``"dask"``                :class:`~linrfm.backends.dask_backend.DaskBackend`
a backend instance        used as is (e.g. a configured ``DaskBackend``)
========================  ===============================================
"""
from __future__ import annotations

import numpy as np

from . import numpy_backend
from ..core.namespace import HAS_DASK, HAS_TORCH
from .base import CompletionBackend, NumpyBackend

__all__ = ["get_backend", "check_dtype", "torch_device", "DEVICES"]

DEVICES = ("cpu", "numpy", "torch", "cuda", "cuda:N", "dask")


def check_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as ``np.float32`` or ``np.float64``, else raise ValueError."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    # dt is None is tested first: NumPy compares None equal to float64
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def torch_device(device: str):
    """The ``torch.device`` that a device name means (the one parser for every estimator).

    ``"cpu"`` and ``"torch"``: the CPU; ``"cuda"`` / ``"cuda:N"``: a GPU, checked
    to exist. Raises ImportError without PyTorch, ValueError for an unusable name.
    """
    if not isinstance(device, str) or not (device in ("cpu", "torch", "cuda")
                                           or device.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu', 'torch', 'cuda' or 'cuda:N', got {device!r}")
    if not HAS_TORCH:
        raise ImportError(f"device={device!r} needs PyTorch: pip install 'linrfm[torch]' "
                          "(a CUDA build of PyTorch for GPUs, see https://pytorch.org)")
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but torch.cuda.is_available() is False: this PyTorch "
                f"({torch.__version__}) has no usable CUDA device. Install a CUDA build of "
                "PyTorch (https://pytorch.org) or use device='torch' or 'cpu'.")
        if device != "cuda":
            try:
                index = int(device.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"device must be 'cuda' or 'cuda:N' with an integer N, "
                                 f"got {device!r}") from None
            if not 0 <= index < torch.cuda.device_count():
                raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} "
                                 "CUDA device(s) are visible")
        return torch.device(device)
    return torch.device("cpu")


def get_backend(device="cpu", dtype="float64",
                max_batch_bytes: int = numpy_backend.DEFAULT_BATCH_BYTES,
                **kwargs) -> CompletionBackend:
    """Build the completion backend that ``device`` names.

    Parameters
    ----------
    device : str or CompletionBackend
        See the module table. A :class:`~linrfm.backends.base.CompletionBackend`
        instance is returned unchanged (its own dtype is kept).
    dtype : str or numpy dtype
        ``"float64"`` or ``"float32"``.
    max_batch_bytes : int
        Memory budget of one batch of gathered kernel blocks.
    **kwargs
        Passed to the backend's constructor (e.g. Dask options).

    Returns
    -------
    CompletionBackend

    Raises
    ------
    ImportError
        PyTorch or Dask is needed and not installed (the message says how to
        install it).
    ValueError
        Unknown device, CUDA requested but unavailable, bad dtype.
    """
    if isinstance(device, CompletionBackend):
        return device
    dt = check_dtype(dtype)
    if isinstance(max_batch_bytes, bool) or not isinstance(max_batch_bytes, (int, np.integer)) \
            or max_batch_bytes < 1:
        raise ValueError(f"max_batch_bytes must be a positive integer, got {max_batch_bytes!r}")
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or a CompletionBackend, "
                        f"got {type(device).__name__}")
    name = device.lower()
    if name in ("cpu", "numpy"):
        return NumpyBackend(dt, int(max_batch_bytes), **kwargs)
    if name == "torch" or name == "cuda" or name.startswith("cuda:"):
        torch_device_ = torch_device(name)
        from .torch_backend import TorchBackend

        return TorchBackend(dt, int(max_batch_bytes), device=torch_device_, **kwargs)
    if name == "dask":
        if not HAS_DASK:
            raise ImportError("device='dask' needs Dask: pip install 'linrfm[dask]'")
        try:
            from .dask_backend import DaskBackend
        except ImportError as exc:
            raise ImportError(f"device='dask' could not load linrfm.backends.dask_backend: "
                              f"{exc}") from exc
        return DaskBackend(dt, int(max_batch_bytes), **kwargs)
    raise ValueError(f"device must be one of 'cpu', 'torch', 'cuda', 'cuda:N', 'dask' or a "
                     f"CompletionBackend instance, got {device!r}")
