"""What this run ran on: versions, CPU, BLAS, GPU, Dask; one BLAS-thread limiter.

Written once and used by ``linrfm info``, the demo report, the experiments'
sidecars and the benchmark result files, so every number we publish carries
the same description of the machine.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys

__all__ = ["package_versions", "cpu_model", "blas_info", "environment_info",
           "limit_blas_threads"]

_DISTRIBUTIONS = ("numpy", "scipy", "scikit-learn", "torch", "dask", "distributed",
                  "pandas", "matplotlib", "threadpoolctl")


def package_versions() -> dict:
    """Installed versions of linrfm, Python and the packages it can use (None if absent)."""
    from importlib import metadata

    from . import __version__

    out = {"linrfm": __version__, "python": sys.version.split()[0]}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cpu_model() -> str | None:
    """CPU model name from ``/proc/cpuinfo`` (Linux) or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def blas_info() -> list | str:
    """BLAS libraries loaded by this process and their thread counts (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl)"
    import numpy  # noqa: F401 - make sure NumPy's BLAS is loaded before asking

    return [{k: pool.get(k) for k in ("internal_api", "version", "num_threads",
                                      "threading_layer", "architecture")}
            for pool in threadpool_info() if pool.get("user_api") == "blas"]


def _torch_info():
    try:
        import torch
    except ImportError:
        return None
    cuda = bool(torch.cuda.is_available())
    return {"version": torch.__version__, "cuda_available": cuda,
            "cuda_version": torch.version.cuda, "threads": torch.get_num_threads(),
            "devices": [torch.cuda.get_device_name(i)
                        for i in range(torch.cuda.device_count())] if cuda else []}


def environment_info() -> dict:
    """Versions, platform, CPU model and count, memory, BLAS, torch/CUDA, load average.

    Returns
    -------
    dict
        JSON-serialisable description of this machine and environment.
    """
    info = {"versions": package_versions(), "platform": platform.platform(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count()}
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info["blas"] = blas_info()
    info["torch"] = _torch_info()
    info["dask_available"] = info["versions"]["dask"] is not None
    return info


def limit_blas_threads(n: int | None):
    """Context manager setting BLAS to exactly ``n`` threads (no-op for None).

    The user-facing limit (``--blas-threads``, the demo, the experiments). The
    library's hot paths choose their own count inside it with
    :func:`linrfm.backends._threads.blas_threads_for`, which only lowers it.
    """
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")
