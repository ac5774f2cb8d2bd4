"""BLAS thread counts for the library's hot paths (one place, threadpoolctl).

OpenBLAS and MKL start as many threads as there are cores for every product.
For the small and medium products of a lin-RFM iteration that costs more than
it gains, and when another process keeps a core busy the threads wait for
each other: the README's sensing example took 4.0 s with default threads
against 0.54 s with one (11.7 s against 0.55 s beside a busy process).

Each estimator wraps its fit in :func:`blas_threads_for` with the flop count
of its dominant per-iteration product; the batched small solves of completion
use :func:`blas_threads` ``(1)``. A limit is only ever lowered: a caller's own
``threadpool_limits`` stays in force. Only the main thread sets limits
(threadpoolctl changes a process-wide setting; Dask workers set their own).
"""
from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["blas_threads", "blas_threads_for", "limit_blas", "threads_for", "torch_threads",
           "FLOPS_PER_THREAD"]

# A product needs about this many flops per thread before a further thread
# pays for its start-up and synchronisation (OpenBLAS dgemm on x86: ~1e8 flops
# take ~10 ms on one core; below that, thread hand-off dominates).
FLOPS_PER_THREAD = 1e8

_CONTROLLER = None
_LOCK = threading.Lock()


def _controller():
    global _CONTROLLER
    with _LOCK:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_for(flops: float) -> int:
    """BLAS threads worth using for a product of ``flops`` floating-point operations."""
    return max(1, min(_n_cpus(), int(flops // FLOPS_PER_THREAD)))


def blas_threads(n: int | None):
    """Context manager: at most ``n`` BLAS threads (None: unchanged).

    Never raises the current limit, and does nothing outside the main thread.
    """
    if n is None or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    controller = _controller().select(user_api="blas")
    current = [lib.num_threads for lib in controller.lib_controllers]
    if current and max(current) <= n:
        return contextlib.nullcontext()
    return controller.limit(limits=int(n))


def blas_threads_for(flops: float):
    """:func:`blas_threads` with :func:`threads_for` ``(flops)`` threads."""
    return blas_threads(threads_for(flops))


def limit_blas(n: int | None):
    """Context manager: exactly ``n`` BLAS threads for the block (None: unchanged).

    For user-facing settings (the CLI's ``--blas-threads``, the demo, the
    experiments' one-thread protocol), where the caller's number is meant
    as is; the library's own hot paths use :func:`blas_threads_for`.
    """
    if n is None:
        return contextlib.nullcontext()
    return _controller().limit(limits=int(n), user_api="blas")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Context manager: at most ``n`` threads in torch's intra-op pool (None: unchanged).

    torch's BLAS lives inside libtorch, out of threadpoolctl's reach, so its
    pool is limited with ``torch.set_num_threads`` and restored afterwards.
    Like :func:`blas_threads` it never raises the current setting and does
    nothing outside the main thread. Measured on the loaded 2-core machine
    (``benchmarks/bench_lowrank_torch.py``): the low-rank engine on torch-CPU
    took 70.7 s wall with torch's default 2 threads and 6.7 s with one, 2000^2.
    """
    if n is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before <= n:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
