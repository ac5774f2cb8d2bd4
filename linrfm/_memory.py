"""Memory estimates checked before large allocations (one place for every estimator).

An estimator computes what its largest arrays will need, in bytes, and calls
:func:`check_memory` before allocating them. A request over the budget is
refused with :class:`MemoryBudgetError` (a ``ValueError``) whose message names
a cheaper option, instead of NumPy's ``MemoryError`` or the kernel's OOM killer
after minutes of work.

The budget is the estimator's ``max_memory`` parameter: a number of bytes, or
None for :data:`DEFAULT_FRACTION` of the memory available now (``psutil``, else
``os.sysconf``), capped by the address-space limit (``ulimit -v``) if one is set.
"""
from __future__ import annotations

import math
import numbers
import os

__all__ = ["MemoryBudgetError", "DEFAULT_FRACTION", "available_bytes", "memory_budget",
           "check_memory", "format_bytes"]

# Fraction of the available memory a default fit may plan to use: the rest is
# left to temporaries we do not count, the caller's arrays and other processes.
DEFAULT_FRACTION = 0.8


class MemoryBudgetError(ValueError):
    """A computation would need more memory than ``max_memory`` allows."""


def format_bytes(n: float) -> str:
    """``n`` bytes in a human unit (``"74.5 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n:.1f} PiB"  # pragma: no cover


def _address_space_limit() -> float:
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        return math.inf
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return math.inf if soft == resource.RLIM_INFINITY else float(soft)


def available_bytes() -> float:
    """Memory available to this process now, in bytes (inf if unknown).

    psutil's ``available`` when installed, else Linux's ``MemAvailable``, else the
    free pages; capped by the address-space limit (``ulimit -v``).
    """
    try:
        import psutil

        avail = float(psutil.virtual_memory().available)
    except ImportError:
        avail = _meminfo_available()
    return min(avail, _address_space_limit())


def _meminfo_available() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return math.inf


def memory_budget(max_memory=None) -> float:
    """The budget in bytes for ``max_memory`` (None: the default fraction)."""
    if max_memory is None:
        return DEFAULT_FRACTION * available_bytes()
    if isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Real):
        raise TypeError(f"max_memory must be a number of bytes or None, got "
                        f"{type(max_memory).__name__}")
    if not (max_memory > 0):
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory}")
    return float(max_memory)


def check_memory(need_bytes: float, *, what: str, cheaper: str, max_memory=None) -> None:
    """Refuse ``need_bytes`` over the budget before anything is allocated.

    Parameters
    ----------
    need_bytes : float
        Estimated peak of the arrays about to be allocated.
    what : str
        What needs it, e.g. ``"the dense 200000 x 200000 result"``.
    cheaper : str
        The cheaper option(s) to suggest.
    max_memory : int, float or None
        The estimator's ``max_memory`` parameter.

    Raises
    ------
    MemoryBudgetError
    """
    budget = memory_budget(max_memory)
    if need_bytes > budget:
        source = ("max_memory" if max_memory is not None else
                  f"{DEFAULT_FRACTION:.0%} of the available memory")
        raise MemoryBudgetError(
            f"{what} needs about {format_bytes(need_bytes)}, more than {format_bytes(budget)} "
            f"({source}); {cheaper}, or raise max_memory if the memory is really there")
