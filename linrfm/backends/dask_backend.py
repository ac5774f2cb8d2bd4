"""Dask backend for matrix completion: rows in blocks, the kernel whole.

The completion step decouples over rows (SPEC §2), so the iterate ``Z``
(``n_rows x d``) is a :class:`dask.array.Array` chunked by rows only: row
blocks, all ``d`` columns in one chunk. One iteration is

1. ``G = sum_b Z_b^T Z_b / n_rows``: one small ``(d, d)`` partial Gram per row
   block, summed by a tree reduction and brought back as a NumPy array;
2. ``K = G**(2 power)`` on the client (NumPy, :func:`kernel_from_agop`);
3. ``K`` shipped to the workers once (``client.scatter(K, broadcast=True)``
   with a distributed client, one graph key otherwise) and
   :func:`linrfm.backends.numpy_backend.solve_rows` mapped over the row blocks,
   each task reading only its own block of observed entries;
4. the new ``Z`` is persisted, so the graph never grows with the iterations.

Everything ``n``-sized stays on the workers; only ``d x d`` matrices and
scalars travel to the client. The alternating scheme needs
:meth:`DaskBackend.transpose`, which is a full shuffle of ``Z`` (every block
talks to every block) and makes the kernel ``n_rows x n_rows`` on the other
side: on Dask, prefer one-sided iterations with the kernel on the small side.

Input checks follow dask-ml's ``check_array``: :func:`check_row_chunks`
refuses column-chunked arrays and says which ``rechunk`` call fixes them.
"""
from __future__ import annotations

import math
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .._observations import Observations
from .._validation import check_int
from . import numpy_backend
from ..core.namespace import HAS_DASK, require_dask
from .base import CompletionBackend, PreparedRows

if HAS_DASK:
    import dask
    import dask.array as da

__all__ = ["DaskBackend", "check_row_chunks", "dask_to_observations"]


def check_row_chunks(arr, name: str = "X"):
    """Check that a dask array is 2-D and chunked by rows only.

    Row blocks are independent in the completion step and the kernel is
    broadcast whole, so each block must hold complete rows.

    Parameters
    ----------
    arr : dask.array.Array, shape (n_rows, n_cols)
    name : str, default="X"
        Argument name used in the error messages.

    Returns
    -------
    arr : dask.array.Array
        The input, unchanged.

    Raises
    ------
    ValueError
        If ``arr`` is not 2-D, has unknown chunk sizes (hint:
        ``arr.compute_chunk_sizes()``) or more than one chunk along the
        columns (hint: ``arr.rechunk({1: -1})``).
    """
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D dask array, got ndim={arr.ndim}")
    if any(math.isnan(c) for axis in arr.chunks for c in axis):
        raise ValueError(f"{name} has unknown chunk sizes; call "
                         f"`{name} = {name}.compute_chunk_sizes()` first")
    if len(arr.chunks[1]) > 1:
        raise ValueError(
            f"{name} is chunked along its columns (chunks={arr.chunksize}, "
            f"{len(arr.chunks[1])} column blocks). Row blocks must hold whole rows: "
            f"call `{name} = {name}.rechunk({{1: -1}})` first.")
    return arr


def _block_entries(block, row_offset):
    # NaN marks a missing entry, as for dense NumPy input.
    block = np.asarray(block)
    r, c = np.nonzero(~np.isnan(block))
    return r + row_offset, c, block[r, c]


def dask_to_observations(arr, dtype=np.float64) -> Observations:
    """Observed entries of a row-chunked dask array with NaN for missing.

    Each row block is scanned on the workers and only the observed triples
    come back, so the dense array is never materialised on the client.

    Parameters
    ----------
    arr : dask.array.Array, shape (d1, d2)
        Row-chunked (see :func:`check_row_chunks`); NaN marks missing entries.
    dtype : numpy dtype, default=float64

    Returns
    -------
    Observations
        Passed through :func:`linrfm._observations.as_observations`, so the
        usual checks (no observed entry, inf values) apply.
    """
    from .._observations import as_observations

    require_dask()
    check_row_chunks(arr)
    offsets = np.concatenate([[0], np.cumsum(arr.chunks[0])[:-1]])
    blocks = arr.to_delayed().ravel()
    parts = dask.compute(*[dask.delayed(_block_entries)(b, int(o))
                           for b, o in zip(blocks, offsets)])
    rows = np.concatenate([p[0] for p in parts]).astype(np.int64)
    cols = np.concatenate([p[1] for p in parts]).astype(np.int64)
    values = np.concatenate([p[2] for p in parts])
    return as_observations((rows, cols, values), shape=arr.shape, dtype=dtype)


def _release_blas_control():
    # threadpoolctl >= 3.8 lets only one "controlling" thread change a
    # process-wide OpenBLAS pool and silently ignores the others; the task that
    # restores the limit is not always the one that set it.
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


class _BlasThreads:
    """Process-wide BLAS thread limit shared by concurrent block tasks.

    ``threadpool_limits`` changes a process-global setting; two tasks that
    each save and restore it would race (the last one out could leave the
    process at the wrong limit). A counter makes the first task in set the
    limit and the last task out restore it, whichever threads they run on.
    BLAS builds whose limit is per thread (OpenBLAS on OpenMP) only limit
    the first task's thread.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0
        self._limiter = None
        self._controller = None

    @contextmanager
    def limit(self, n_threads):
        if n_threads is None:
            yield
            return
        with self._lock:
            if self._count == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                _release_blas_control()
                self._limiter = self._controller.limit(limits=n_threads, user_api="blas")
                _release_blas_control()
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    _release_blas_control()
                    self._limiter.restore_original_limits()
                    _release_blas_control()
                    self._limiter = None


_BLAS = _BlasThreads()


def _initial_block(block, d, dtype):
    indptr, indices, values = block
    Z = np.zeros((indptr.shape[0] - 1, d), dtype=dtype)
    Z[np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr)), indices] = values
    return Z


def _solve_block(K, block, reg, replace, max_batch_bytes, blas_threads):
    indptr, indices, values = block
    with _BLAS.limit(blas_threads):
        return numpy_backend.solve_rows(K, indptr, indices, values, reg, replace=replace,
                                        max_batch_bytes=max_batch_bytes)


def _block_gram(Z_b, blas_threads):
    with _BLAS.limit(blas_threads):
        return (Z_b.T @ Z_b)[None]


def _add(*parts):
    out = parts[0].copy()
    for part in parts[1:]:
        out += part
    return out


def _block_sq_norms(Z_new, Z_old):
    return np.array([[np.sum((Z_new - Z_old) ** 2), np.sum(Z_new ** 2)]], dtype=np.float64)


@dataclass
class _RowBlocks:
    """Observed entries of one orientation split into row blocks.

    ``refs[b]`` is a Delayed (local schedulers) or a Future already on a
    worker (distributed) holding ``(indptr, indices, values)`` of block ``b``
    with ``indptr`` rebased at 0.
    """

    chunks: tuple[int, ...]
    refs: list


class DaskBackend(CompletionBackend):
    """Completion backend holding the iterate as a row-chunked dask array.

    Same results as :class:`~linrfm.backends.base.NumpyBackend` (to rounding),
    with every ``n``-sized array kept in row blocks on the Dask workers and
    only ``d x d`` matrices on the client.

    Parameters
    ----------
    dtype : numpy dtype, default=float64
        float32 or float64.
    max_batch_bytes : int
        Memory budget of one batch of gathered kernel blocks inside a block
        task (see :func:`~linrfm.backends.numpy_backend.solve_rows`).
    client : distributed.Client or None, default=None
        Cluster to run on. ``None`` uses the current default scheduler: the
        active ``distributed.Client`` if there is one (it is then used for
        scatter and persist), else Dask's local threaded scheduler. No cluster
        is ever started here: create one yourself, e.g.
        ``Client(LocalCluster(n_workers=4, threads_per_worker=1))``. Copies
        of the backend share the client; pickles drop it (they use the
        default scheduler of the process that loads them).
    block_rows : int or None, default=None
        Rows per block (the last block may be smaller). ``None`` picks
        ``min(rows fitting dask's "array.chunk-size", ceil(n_rows / n_threads))``
        with ``n_threads`` the cluster's worker threads (the CPU count without
        a client), so every thread gets a block.
    blas_threads : int or None, default=1
        BLAS threads inside each block task (``threadpoolctl``). Parallelism
        comes from Dask's workers and threads; letting each task also start
        one BLAS thread per core oversubscribes the machine. ``None`` leaves
        BLAS alone (right for one worker with one thread).

    Notes
    -----
    Per iteration the client sends one ``d x d`` kernel (broadcast once to
    every worker with a distributed client) and receives one ``d x d`` Gram
    and a few scalars; the observed entries are scattered once in
    :meth:`prepare` and stay where their row block is computed.

    :meth:`transpose` is a full shuffle (``Z.T.rechunk``): the alternating
    scheme moves all of ``Z`` across the cluster twice per cycle and needs an
    ``n_rows x n_rows`` kernel on the other side. On Dask the one-sided scheme
    with the kernel on the small side is the scalable choice.
    """

    name = "dask"

    def __init__(self, dtype=np.float64, max_batch_bytes: int = numpy_backend.DEFAULT_BATCH_BYTES,
                 client=None, block_rows: int | None = None, blas_threads: int | None = 1):
        require_dask()
        super().__init__(dtype=dtype, max_batch_bytes=max_batch_bytes)
        self.client = client
        self.block_rows = None if block_rows is None else check_int(block_rows, "block_rows", low=1)
        self.blas_threads = (None if blas_threads is None
                             else check_int(blas_threads, "blas_threads", low=1))
        self._chunk_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        self._kernel_ref = None

    def __repr__(self):
        return (f"DaskBackend(dtype={self.dtype.name}, block_rows={self.block_rows}, "
                f"blas_threads={self.blas_threads}, client={self.client!r})")

    # A backend is configuration: copies (sklearn.clone deep-copies estimator
    # parameters) share the client, and pickles drop it and fall back to the
    # default scheduler where they are loaded. Cached futures never travel.
    def __deepcopy__(self, memo):
        return DaskBackend(self.dtype, self.max_batch_bytes, client=self.client,
                           block_rows=self.block_rows, blas_threads=self.blas_threads)

    def __getstate__(self):
        state = dict(self.__dict__, client=None, _kernel_ref=None)
        state["_chunk_cache"] = {}
        return state

    # -- scheduling helpers -------------------------------------------------
    def _client(self):
        if self.client is not None:
            return self.client
        owner = getattr(dask.base.get_scheduler(), "__self__", None)
        if owner is not None and type(owner).__name__ == "Client":
            return owner
        return None

    def _n_threads(self) -> int:
        client = self._client()
        if client is not None:
            return max(1, sum(client.nthreads().values()))
        return os.cpu_count() or 1

    def row_chunks(self, n_rows: int, d: int) -> tuple[int, ...]:
        """Row block sizes used for an ``n_rows x d`` iterate (cached per shape,
        so :meth:`transpose` lands on the blocks :meth:`prepare` laid out)."""
        key = (int(n_rows), int(d))
        if key not in self._chunk_cache:
            if self.block_rows is not None:
                b = self.block_rows
            else:
                limit = dask.utils.parse_bytes(dask.config.get("array.chunk-size"))
                by_memory = max(1, limit // (d * self.dtype.itemsize))
                b = max(1, min(by_memory, math.ceil(n_rows / self._n_threads())))
            b = min(b, n_rows)
            chunks = (b,) * (n_rows // b) + ((n_rows % b,) if n_rows % b else ())
            self._chunk_cache[key] = chunks
        return self._chunk_cache[key]

    def _compute(self, *xs):
        client = self._client()
        return dask.compute(*xs, scheduler=client) if client is not None else dask.compute(*xs)

    def _persist(self, x):
        client = self._client()
        return client.persist(x) if client is not None else x.persist()

    def _block_futures(self, client, *arrays):
        """The persisted row blocks of ``arrays`` as futures in block order, or
        None when they are not all persisted on ``client`` with equal chunks."""
        if client is None or any(a.chunks != arrays[0].chunks or a.numblocks[1] != 1
                                 for a in arrays):
            return None
        from distributed import futures_of

        out = []
        for a in arrays:
            futures = {f.key: f for f in futures_of(a)}
            keys = [k[0] for k in a.__dask_keys__()]
            if not all(k in futures for k in keys):
                return None
            out.append([futures[k] for k in keys])
        return out

    @staticmethod
    def _tree_sum(client, parts, split_every=8):
        # Submitting is asynchronous: the whole tree is one round trip.
        while len(parts) > 1:
            parts = [client.submit(_add, *parts[i:i + split_every], pure=False)
                     for i in range(0, len(parts), split_every)]
        return parts[0].result()

    def _concat(self, parts, chunks, d):
        arrays = [da.from_delayed(p, shape=(n, d), dtype=self.dtype) for p, n in zip(parts, chunks)]
        return da.concatenate(arrays, axis=0)

    # -- CompletionBackend ---------------------------------------------------
    def prepare(self, obs: Observations) -> PreparedRows:
        indptr, indices, values = obs.csr_arrays(self.dtype)
        chunks = self.row_chunks(*obs.shape)
        bounds = np.concatenate([[0], np.cumsum(chunks)])
        blocks = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            lo, hi = indptr[start], indptr[stop]
            blocks.append((indptr[start:stop + 1] - lo, indices[lo:hi].copy(),
                           values[lo:hi].copy()))
        client = self._client()
        if client is not None:
            refs = client.scatter(blocks, hash=False)
        else:
            tag = uuid.uuid4().hex
            refs = [dask.delayed(blk, name=f"linrfm-rows-{tag}-{b}", traverse=False)
                    for b, blk in enumerate(blocks)]
        return PreparedRows(obs.shape, _RowBlocks(chunks, list(refs)))

    def initial(self, rows: PreparedRows):
        blocks: _RowBlocks = rows.data
        d = rows.shape[1]
        parts = [dask.delayed(_initial_block, pure=False)(ref, d, self.dtype) for ref in blocks.refs]
        return self._persist(self._concat(parts, blocks.chunks, d))

    def gram(self, Z):
        """Column AGOP ``Z^T Z / n_rows`` as a NumPy (d, d) array.

        One partial Gram per row block, summed by a tree reduction; only
        ``d x d`` arrays travel.
        """
        client = self._client()
        blocks = self._block_futures(client, Z)
        if blocks is not None:
            # Persisted iterate on a cluster: futures skip the array-graph
            # machinery, which halves the per-iteration overhead.
            parts = client.map(_block_gram, blocks[0], blas_threads=self.blas_threads,
                               pure=False)
            return np.asarray(self._tree_sum(client, parts)[0]) / Z.shape[0]
        if Z.numblocks[1] != 1:
            Z = Z.rechunk({1: -1})
        d = Z.shape[1]
        partial = da.blockwise(_block_gram, "bij", Z, "bk", self.blas_threads, None,
                               new_axes={"i": d, "j": d}, adjust_chunks={"b": 1},
                               concatenate=True, dtype=Z.dtype,
                               meta=np.empty((0, 0, 0), dtype=Z.dtype))
        (G,) = self._compute(partial.sum(axis=0, split_every=8))
        return np.asarray(G) / Z.shape[0]

    def trace(self, G) -> float:
        return float(np.trace(G))

    def eigvalsh(self, G) -> np.ndarray:
        return np.linalg.eigvalsh(G)

    def _broadcast(self, K):
        client = self._client()
        if client is not None:
            return client.scatter(np.asarray(K), broadcast=True, hash=False)
        return dask.delayed(np.asarray(K), name=f"linrfm-kernel-{uuid.uuid4().hex}",
                            traverse=False)

    def _step_lazy(self, rows: PreparedRows, K, reg: float, replace: bool = True):
        """The step as an unpersisted dask array (one task per row block, all
        reading the same kernel key)."""
        blocks: _RowBlocks = rows.data
        self._kernel_ref = K_ref = self._broadcast(K)
        solve = dask.delayed(_solve_block, pure=False)
        parts = [solve(K_ref, ref, float(reg), bool(replace), self.max_batch_bytes,
                       self.blas_threads) for ref in blocks.refs]
        return self._concat(parts, blocks.chunks, rows.shape[1])

    def step(self, rows: PreparedRows, K, reg: float, replace: bool = True):
        """One lin-RFM step, every row block solved by one task.

        ``K`` is shipped once (broadcast scatter, or one graph key) and the
        result is persisted, so the returned array's graph holds one key per
        row block whatever the iteration number.
        """
        return self._persist(self._step_lazy(rows, K, reg, replace))

    def transpose(self, Z):
        """``Z.T`` re-blocked by rows of the other side (persisted).

        This is a full shuffle: every output block gathers a slice of every
        input block. The one-sided scheme never calls it.
        """
        chunks = self.row_chunks(Z.shape[1], Z.shape[0])
        return self._persist(Z.T.rechunk({0: chunks, 1: -1}))

    def relax(self, Z_old, Z_new, omega: float):
        """Over-relaxed iterate, persisted so the graph does not grow."""
        return self._persist(Z_old + omega * (Z_new - Z_old))

    def sq_norms(self, Z_new, Z_old) -> tuple[float, float]:
        """Both squared norms from one task per row block and one compute."""
        client = self._client()
        blocks = self._block_futures(client, Z_new, Z_old)
        if blocks is not None:
            sums = self._tree_sum(client, client.map(_block_sq_norms, *blocks, pure=False))[0]
            return float(sums[0]), float(sums[1])
        partial = da.blockwise(_block_sq_norms, "bk", Z_new, "bj", Z_old, "bj",
                               new_axes={"k": 2}, adjust_chunks={"b": 1}, concatenate=True,
                               dtype=np.float64, meta=np.empty((0, 0)))
        (sums,) = self._compute(partial.sum(axis=0, split_every=8))
        return float(sums[0]), float(sums[1])

    def gather(self, Z, rows, cols) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.size == 0:
            return np.empty(0, dtype=Z.dtype)
        (out,) = self._compute(Z.vindex[rows, cols])
        return np.asarray(out)

    def to_numpy(self, Z) -> np.ndarray:
        if not isinstance(Z, da.Array):
            return np.asarray(Z)
        (out,) = self._compute(Z)
        return np.asarray(out)
