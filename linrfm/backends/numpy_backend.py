"""NumPy/SciPy primitives of one lin-RFM step on rows over their observed entries.

The completion step decouples over rows (SPEC §2). For row ``i`` with observed
columns ``Ω_i`` and values ``y_i``, and the current ``d x d`` kernel ``K``::

    a_i = (K[Ω_i, Ω_i] + reg I)^{-1} y_i       # |Ω_i| x |Ω_i| SPD solve
    z_i = K[:, Ω_i] a_i                        # whole-row prediction
    z_i[Ω_i] = y_i                             # replace

Rows are grouped by ``|Ω_i|`` and each group is solved as one batched system,
in chunks whose gathered kernel blocks stay under a memory budget. The
predictions of all rows are then one product ``A @ K`` where ``A`` holds the
coefficients ``a_i`` at the observed positions (sparse when the block is sparse,
dense otherwise, whichever is cheaper).
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp

from ._threads import blas_threads

__all__ = ["solve_rows", "solve_rows_reference", "gram", "DEFAULT_BATCH_BYTES"]

DEFAULT_BATCH_BYTES = 256 * 2**20
# Above this fraction of observed entries a dense A @ K (multi-threaded BLAS)
# beats scipy's single-threaded sparse @ dense.
DENSE_PREDICT_DENSITY = 0.05


def gram(Z: np.ndarray) -> np.ndarray:
    """``Z^T Z / n_rows``, the column AGOP of a linear predictor, shape (d, d).

    NumPy dispatches ``Z.T @ Z`` to a symmetric rank-k update (half the flops
    of a general product).
    """
    return (Z.T @ Z) / Z.shape[0]


class _RowPlan:
    """Bucketing of a CSR block by ``|Omega_i|``, computed once per block.

    Attributes
    ----------
    chunks : list of (s, pos, idx)
        ``pos`` (c, s): positions in the CSR arrays of ``c`` rows with ``s``
        observed entries; ``idx`` (c, s): their columns.
    entry_rows : ndarray, shape (nnz,)
        Row of each stored entry.
    """

    def __init__(self, indptr, indices, itemsize, max_batch_bytes, row_bytes=None):
        # row_bytes(s): working memory of one row with s entries (default: its
        # s x s kernel block and a copy); other engines size chunks their way.
        row_bytes = row_bytes or (lambda s: itemsize * s * s * 2)
        self.max_batch_bytes = max_batch_bytes
        self._flat = {}
        counts = np.diff(indptr)
        self.entry_rows = np.repeat(np.arange(counts.size), counts)
        self.chunks = []
        for s in np.unique(counts):
            if s == 0:
                continue
            rows_s = np.flatnonzero(counts == s)
            size = max(1, int(max_batch_bytes // max(1, row_bytes(int(s)))))
            for start in range(0, rows_s.size, size):
                pos = indptr[rows_s[start:start + size]][:, None] + np.arange(s)
                self.chunks.append((int(s), pos, indices[pos]))

    def flat_index(self, k: int, d: int) -> np.ndarray:
        """Flat positions ``(c, s, s)`` of chunk ``k``'s kernel blocks in a ``d x d``
        kernel, cached while the cache stays within ``max_batch_bytes``: building
        them was ~17 % of an iteration at 2000 x 2000."""
        key = (k, d)
        flat = self._flat.get(key)
        if flat is None:
            idx = self.chunks[k][2]
            if d * d < 2**31:
                idx = idx.astype(np.int32)
            flat = (idx * d)[:, :, None] + idx[:, None, :]
            used = sum(a.nbytes for a in self._flat.values())
            if used + flat.nbytes <= self.max_batch_bytes:
                self._flat[key] = flat
        return flat


# Plans of the last few CSR blocks seen, keyed by the identity of their index
# arrays: the loop calls solve_rows on the same block every iteration. Entries
# hold only weak references to the arrays and vanish with them, so a finished
# fit does not keep its plans alive.
_PLANS: OrderedDict = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_MAX = 8


def _forget(key) -> None:
    with _PLANS_LOCK:
        _PLANS.pop(key, None)


def _plan(indptr, indices, itemsize, max_batch_bytes) -> _RowPlan:
    key = (id(indptr), id(indices), indptr.shape[0], indices.shape[0], itemsize,
           max_batch_bytes)
    with _PLANS_LOCK:
        hit = _PLANS.get(key)
        if hit is not None and hit[0]() is indptr and hit[1]() is indices:
            _PLANS.move_to_end(key)
            return hit[2]
    plan = _RowPlan(indptr, indices, itemsize, max_batch_bytes)
    try:
        refs = (weakref.ref(indptr), weakref.ref(indices))
    except TypeError:  # not weak-referenceable: do not cache
        return plan
    with _PLANS_LOCK:
        _PLANS[key] = (*refs, plan)
        while len(_PLANS) > _PLANS_MAX:
            _PLANS.popitem(last=False)
    weakref.finalize(indptr, _forget, key)
    return plan


def _row_coefficients(K, plan: _RowPlan, values, reg):
    # LAPACK gains nothing from threads on many tiny systems, and OpenBLAS's
    # thread hand-off made them 4-10x slower on a loaded 2-core machine.
    with blas_threads(1):
        return _row_coefficients_unguarded(K, plan, values, reg)


def _row_coefficients_unguarded(K, plan: _RowPlan, values, reg):
    coef = np.empty_like(values, dtype=K.dtype)
    d = K.shape[0]
    Kflat = K.reshape(-1)
    for k, (s, pos, _) in enumerate(plan.chunks):
        # one flat take is several times faster than K[idx[:, :, None], idx[:, None, :]]
        Ks = Kflat[plan.flat_index(k, d)]
        Ks.reshape(Ks.shape[0], s * s)[:, ::s + 1] += reg
        coef[pos] = _batched_solve(Ks, values[pos])
    return coef


def _batched_solve(Ks: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the SPD systems ``Ks[c] x = rhs[c]``; a singular batch is retried.

    Rounding can leave a block of a PSD kernel singular (a tiny ``reg``,
    float32, exactly repeated columns). The batch is then solved again with a
    jitter ``eps * 10**k * max diagonal`` (k = 0..6) added to the diagonal,
    and the jitter used is reported in a :class:`~linrfm.exceptions.NumericalWarning`.
    """
    try:
        return np.linalg.solve(Ks, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        pass
    import warnings

    from ..exceptions import NumericalWarning

    s = Ks.shape[-1]
    diag = Ks.reshape(Ks.shape[0], s * s)[:, ::s + 1]
    top = float(np.max(np.abs(diag), initial=0.0)) or 1.0
    eps = float(np.finfo(Ks.dtype).eps)
    for k in range(7):
        jitter = eps * 10.0 ** k * top
        J = Ks.copy()
        J.reshape(J.shape[0], s * s)[:, ::s + 1] += jitter
        try:
            out = np.linalg.solve(J, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            continue
        warnings.warn(f"singular kernel blocks of size {s}: solved with a jitter of "
                      f"{jitter:.3g} added to the diagonal", NumericalWarning, stacklevel=6)
        return out
    raise FloatingPointError(f"kernel blocks of size {s} stay singular with a jitter of "
                             f"{jitter:.3g}; the kernel is not finite or not PSD")


def solve_rows(K: np.ndarray, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
               reg: float, *, replace: bool = True,
               max_batch_bytes: int = DEFAULT_BATCH_BYTES) -> np.ndarray:
    """One lin-RFM completion step for a block of rows (batched engine).

    Parameters
    ----------
    K : ndarray, shape (d, d)
        Symmetric PSD kernel.
    indptr : ndarray of int, shape (n_rows + 1,)
    indices : ndarray of int, shape (nnz,)
    values : ndarray, shape (nnz,)
        CSR structure of the block's observed entries (column indices sorted
        or not; no duplicates). The bucketing of the rows is cached for the
        last few ``(indptr, indices)`` array objects, so the arrays must not
        be modified in place between calls.
    reg : float
        Ridge added to each ``K[Ω_i, Ω_i]`` (> 0 unless every block is PD).
    replace : bool, default=True
        Overwrite the observed entries of each row with the observations.
    max_batch_bytes : int
        Memory budget of one gathered batch of kernel blocks.

    Returns
    -------
    Z : ndarray, shape (n_rows, d)
        Predicted rows. Rows without observations are 0 (the minimum-norm
        prediction); the estimator decides what to report for them.
    """
    K = np.ascontiguousarray(K)
    n_rows, d = indptr.shape[0] - 1, K.shape[0]
    plan = _plan(indptr, indices, np.dtype(K.dtype).itemsize, int(max_batch_bytes))
    coef = _row_coefficients(K, plan, values, reg)
    nnz = values.shape[0]
    if nnz > DENSE_PREDICT_DENSITY * n_rows * d:
        A = np.zeros((n_rows, d), dtype=K.dtype)
        A[plan.entry_rows, indices] = coef
        Z = A @ K
    else:
        Z = np.asarray(sp.csr_array((coef, indices, indptr), shape=(n_rows, d)) @ K)
    if replace:
        Z[plan.entry_rows, indices] = values
    return Z


def solve_rows_reference(K: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                         values: np.ndarray, reg: float, *, replace: bool = True) -> np.ndarray:
    """Slow per-row loop of :func:`solve_rows`, kept as the reference for tests
    and benchmarks (it is what the research code does)."""
    n_rows, d = indptr.shape[0] - 1, K.shape[0]
    Z = np.zeros((n_rows, d), dtype=K.dtype)
    for i in range(n_rows):
        om = indices[indptr[i]:indptr[i + 1]]
        if om.size == 0:
            continue
        y = values[indptr[i]:indptr[i + 1]]
        a = np.linalg.solve(K[np.ix_(om, om)] + reg * np.eye(om.size), y)
        Z[i] = K[:, om] @ a
        if replace:
            Z[i, om] = y
    return Z
