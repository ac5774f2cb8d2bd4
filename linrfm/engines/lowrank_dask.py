r"""The low-rank completion engine on Dask: row blocks on the workers, factors small.

Same iteration as :class:`linrfm.engines.lowrank.LowRankCompletionProblem`
(SPEC §7; read its module docstring for the maths), with the iterate
``Z = P Q^T + S`` split between the Dask workers and the client. In the
orientation ``o`` of a step, ``n`` is the decoupled side (rows for
``"columns"``, columns for ``"rows"``), ``d`` the kernel side, ``m`` the
width of the current factors, ``k`` the kept eigenpairs, ``b <= max_rank``
the eigen-solver's block, ``p = m + k`` and ``B`` the number of blocks.

**What lives where.**

* *Workers*, in row blocks of the decoupled side (``n_b`` rows each; for the
  ``"rows"`` orientation these are blocks of *columns* of the user's matrix):
  the observed entries of the block with their bucketed row plan (a
  :class:`~linrfm.engines.lowrank.LowRankSide` of the block, built on the
  worker), the sparse part's values on them, and the block's rows of the
  decoupled-side factor (``n_b x m``).
* *Client*: the kernel-side factor (``d x m``), the kernel's eigenvectors
  (``d x k``) and every ``b x b`` / ``p x p`` matrix; the smoothing schedules,
  the random warm-start padding (drawn as in process) and all decisions.

**One step** (``n_power`` = 2 block power steps):

1. eigenpairs of ``Z^T Z / n``: per power step the client broadcasts ``X``
   (``d x b``) and ``R^T X`` (``m x b``); each block returns
   ``[S_b^T Y_b; L_b^T Y_b]`` (``(d + m) x b``, ``Y_b = Z_b X``), summed by a
   tree reduction on the workers; the client adds ``R (L^T Y)`` and
   orthonormalises. Rayleigh-Ritz: each block returns the R factor of its
   ``Z_b X`` (``b x b``; TSQR), the client QRs the stacked factors and takes
   the SVD. For ``power = 1/2`` the same tasks return ``L_b^T L_b``
   (``m x m``) and two scalars for ``||Z||_F^2``;
2. the row step: ``V`` (``d x k``) and ``D`` broadcast, each block runs
   :func:`~linrfm.engines.lowrank.row_step` on its rows and a local thin QR
   of ``[L_b, C_b]`` (TSQR of the stacked old and new factors) and returns
   its ``p x p`` R factor;
3. relaxation and change norm: the client QRs the stacked R factors and
   ``[R, V]`` (``d x p``), forms the ``p x p`` cores and their SVD, and sends
   each block its ``p x p`` slice of the Q factor times the cores (plus the
   ``d x p`` Q factor of ``[R, V]``, broadcast); each block builds its rows
   of the relaxed factor and its relaxed sparse values and returns a few
   scalars and ``C_b^T C_b`` (``k x k``).

**What travels per iteration** (bytes for float64; "broadcast": one copy per
worker). Client to workers: ``n_power + 1`` times ``[X, R^T X]``
(``8 (d + m) b``); ``R`` (``8 d m``, power 1/2 only, for ``||Z||_F^2``);
``V`` and ``D`` (``8 d k``) and the Q factor of ``[R, V]`` (``8 d p``);
per block (not broadcast) two ``p x p``-sized slices (``<= 8 B p (p + k + 8)``
in all). Workers to client: ``n_power`` tree roots (``8 (d + m) b`` each; the
inner sums move between workers), the TSQR leaves (``<= 8 B (b^2 + p^2)``),
``B (m^2 + k^2 + 6)`` scalars' worth of partial sums. That is ``5 = n_power + 3``
round trips to the cluster; arrays under ``_INLINE_BYTES`` (256 KiB) ride
inside the tasks, larger ones add a scatter each. With held-out entries
(``reg="path"``, ``validation_fraction``) one more round trip brings back the
``8 |held-out|`` predictions. For scale: ``d = 20 000``, ``b = 80`` gives
12.8 MB per ``X``; ``k = 10``, ``m = 18`` a few hundred kB for the rest,
against ``8 |Ω| = 26`` MB of sparse values at 200 000 x 20 000, rank 5, 3x.
Nothing of size ``|Ω|`` and nothing ``n``-sized moves on a one-sided run
(``side="columns"`` or ``"rows"``).

**Alternating sides** (``side="alternate"``, the default) re-lays the iterate
out before each step: the new decoupled factor (``8 n m``) comes to the client
with the last step's partial sums (same round trip) and becomes the kernel
side, the old kernel-side factor (``8 d m``) goes out in blocks of the new
decoupled side, and the sparse values (``8 |Ω|``) are shuffled *between
workers* (every old block sends each new block its entries, by index plans
computed once per fit and kept on the workers), never through the client.

**Once per problem** the observed entries are scattered to the workers
(``24 |Ω|`` bytes per orientation used, plus ``16 |Ω|`` for the index plans
of the alternating shuffle). **Snapshots** of the iterate are references to
worker data (free); checkpoints (``state_dict``), ``iterate()`` (callbacks),
the final result and a snapshot restored into a problem on *other* entries
(the ``reg="path"`` phases, a few times per fit) gather ``P`` (``d1 x m``),
``Q`` (``d2 x m``) and the sparse values (``|Ω|``) to the client; nothing
``d1 x d2`` is ever formed.

Without a ``distributed.Client`` the same block tasks run on Dask's local
scheduler, as for :class:`~linrfm.backends.dask_backend.DaskBackend`, whose
client, block sizes (``block_rows``) and BLAS-thread settings are used.

Results equal the in-process engine's to rounding (sums over blocks and the
TSQR change only the order of floating-point operations).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.linalg as sla

from .._observations import Observations
from ..backends.dask_backend import _BLAS, DaskBackend, _add
from .lowrank import (
    _RELAXED_EXTRA_RANK,
    DELTA,
    MAX_RANK,
    N_POWER,
    LowRankCompletionProblem,
    LowRankSide,
    _change_core,
    _relaxed_core,
    _transfer_residual,
    _Where,
    row_step,
    rowdot,
)

__all__ = ["DaskLowRankCompletionProblem", "is_dask_device"]


def is_dask_device(device) -> bool:
    """True for ``device="dask"`` or a :class:`~linrfm.backends.dask_backend.DaskBackend`."""
    if isinstance(device, DaskBackend):
        return True
    return isinstance(device, str) and device.lower() == "dask"


# -- block tasks (run on the workers; module level so that they pickle) ---------

def _item(x, i):
    return x[i]


def _make_side(raw, max_batch_bytes, max_rank):
    """The block's :class:`LowRankSide` (its row plan is built where it lives)."""
    indptr, indices, values, shape = raw
    rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(indptr))
    return LowRankSide(Observations(rows, indices, values, shape), None, max_batch_bytes,
                       max_rank)


def _initial_block(side, dtype):
    # (decoupled-side factor rows, sparse values): Z_0 = the observations
    return np.zeros((side.shape[0], 0), dtype=dtype), side.y


def _apply_block(side, state, X, RtX):
    """``Z_b X`` for ``Z_b = L_b R^T + S_b`` (``R^T X`` given)."""
    L, vals = state[0], state[1]
    S = side.sparse(vals)
    out = np.asarray(S @ X)
    if L.shape[1]:
        out += L @ RtX
    return S, out


def _power_block(side, state, shared):
    """``[S_b^T Y_b; L_b^T Y_b]`` with ``Y_b = Z_b X``: the block's share of ``Z^T Z X``."""
    X, RtX, blas = shared
    with _BLAS.limit(blas):
        S, Y = _apply_block(side, state, X, RtX)
        L = state[0]
        return np.vstack([np.asarray(S.T @ Y), L.T @ Y])


def _ritz_block(side, state, shared, R):
    """R factor of ``Z_b X`` (TSQR leaf) and, with ``R`` given, the block's share of
    ``||Z||_F^2``: ``(L_b^T L_b, <L_b, S_b R>, ||s_b||^2)``."""
    X, RtX, blas = shared
    with _BLAS.limit(blas):
        S, Y = _apply_block(side, state, X, RtX)
        r = np.linalg.qr(Y, mode="r")
        norm = None
        if R is not None:
            L, vals = state[0], state[1]
            cross = float(np.sum(L * np.asarray(S @ R))) if L.shape[1] else 0.0
            norm = (L.T @ L, cross, float(vals @ vals))
        return r, norm


def _row_block(side, state, shared):
    """Row step of the block, then the TSQR leaf of ``[L_b, C_b]``."""
    V, D, reg, blas = shared
    with _BLAS.limit(blas):
        C, resid = row_step(side, side.y, V, D, reg)
        Q, Rf = sla.qr(np.hstack([state[0], C]), mode="economic")
        return C, resid, Q, Rf


def _combine_block(side, state, rq, mats, shared, row_shared):
    """Relaxed block of the new iterate and the block's share of the change and norm.

    ``mats = (Q2_b core, Q2_b W_keep sigma_keep or None)``, ``Q2_b`` the block's
    rows of the Q factor of the stacked TSQR leaves; ``row_shared`` is the row
    step's ``(V, D, reg, blas)`` (already on the workers).
    """
    Qb, omega, blas = shared
    V = row_shared[0]
    core_b, keep_b = mats
    C, resid, Q = rq[0], rq[1], rq[2]
    vals = state[1]
    with _BLAS.limit(blas):
        dvals = resid - vals
        cross = float(np.sum((Q @ core_b) * np.asarray(side.sparse(dvals) @ Qb)))
        cross_new = float(np.sum(C * np.asarray(side.sparse(resid) @ V)))
        parts = np.concatenate([[cross, float(dvals @ dvals), cross_new, float(resid @ resid)],
                                (C.T @ C).ravel()])
        if keep_b is None:
            return C, resid, parts
        return Q @ keep_b, (1.0 - omega) * vals + omega * resid, parts


def _split_values(state, takes):
    vals = state[1]
    return [vals[t] for t in takes]


def _assemble(dec, order, dtype, *pieces):
    vals = np.empty(order.shape[0], dtype=dtype)
    if pieces:
        vals[order] = np.concatenate(pieces)
    return dec, vals


def _rowdot_block(state, query, R):
    rows, cols = query
    return rowdot(state[0], R, rows, cols)


# -- the client side ------------------------------------------------------------

# Client arrays up to this size travel inside the tasks rather than by a scatter
# (a round trip: 5-20 ms on a LocalCluster of worker processes, a loaded 2-core
# machine); larger ones (X and the factors at scale, d x b) are broadcast.
_INLINE_BYTES = 1 << 18

def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(x) for x in obj)
    return 0


class _Runner:
    """Block tasks on a ``distributed.Client`` (futures), or, without one, on
    Dask's local scheduler (values, computed at once).

    Three ways for client data to reach the tasks: :meth:`place` (per block,
    kept on a worker: the iterate, index plans), :meth:`send` (per block, read
    by one task) and :meth:`share` (read by every block's task: broadcast).
    The last two pass objects under ``_INLINE_BYTES`` inside the tasks instead:
    a scatter is one more round trip to the cluster, dearer than a few copies
    of a ``k x k`` matrix.
    """

    def __init__(self, client):
        self.client = client
        self.inline_bytes = _INLINE_BYTES

    def place(self, objs) -> list:
        """One reference per object, each kept on one worker."""
        objs = list(objs)
        if self.client is None or not objs:
            return objs
        return self.client.scatter(objs, hash=False)

    def send(self, objs) -> list:
        """Per-block objects for one round of tasks."""
        objs = list(objs)
        if self.client is None or max(map(_nbytes, objs), default=0) <= self.inline_bytes:
            return objs
        return self.client.scatter(objs, hash=False)

    def share(self, obj):
        """``obj`` for every block's task: broadcast once to every worker."""
        if self.client is None or _nbytes(obj) <= self.inline_bytes:
            return obj
        return self.client.scatter(obj, broadcast=True, hash=False)

    def map(self, fn, columns, *shared) -> list:
        """``fn(*column_values, *shared)`` per block (``columns``: lists of refs)."""
        n = len(columns[0])
        args = [list(c) for c in columns] + [[s] * n for s in shared]
        if self.client is not None:
            return self.client.map(fn, *args, pure=False)
        import dask

        tasks = [dask.delayed(fn, pure=False)(*a) for a in zip(*args)]
        return list(dask.compute(*tasks))

    def submit(self, fn, *args):
        if self.client is not None:
            return self.client.submit(fn, *args, pure=False)
        return fn(*args)

    def items(self, refs, i) -> list:
        """Element ``i`` of each referenced tuple (without moving the rest)."""
        if self.client is None:
            return [r[i] for r in refs]
        return self.client.map(_item, refs, [i] * len(refs), pure=False)

    def split(self, ref, n: int) -> list:
        """The ``n`` elements of one referenced sequence, each left where it is."""
        if self.client is None:
            return list(ref)
        return self.client.map(_item, [ref] * n, range(n), pure=False)

    def gather(self, refs) -> list:
        return list(refs) if self.client is None else self.client.gather(list(refs))

    def tree_sum(self, refs):
        """Sum of the referenced arrays (a tree of additions on the workers)."""
        if self.client is None:
            return _add(*refs)
        return DaskBackend._tree_sum(self.client, list(refs))


class _DaskSide:
    """One orientation's observed entries in row blocks on the workers.

    ``refs[b]`` references block ``b``'s :class:`LowRankSide` (local row
    indices, its entries in this orientation's order). ``perm`` maps canonical
    (row-major) values to this order, as in :class:`LowRankSide`.
    """

    def __init__(self, runner: _Runner, obs: Observations, orient: str, perm, chunks,
                 max_batch_bytes: int, max_rank: int):
        self.orient, self.shape, self.perm = orient, obs.shape, perm
        self.chunks = tuple(int(c) for c in chunks)
        self.bounds = np.concatenate([[0], np.cumsum(self.chunks)]).astype(np.int64)
        indptr, indices, y = obs.csr_arrays()
        self.ebounds = indptr[self.bounds]
        d = obs.shape[1]
        raw = []
        for b, n_b in enumerate(self.chunks):
            r0, e0, e1 = self.bounds[b], self.ebounds[b], self.ebounds[b + 1]
            raw.append((indptr[r0:r0 + n_b + 1] - e0, indices[e0:e1].copy(), y[e0:e1].copy(),
                        (n_b, d)))
        self.refs = runner.map(_make_side, [runner.send(raw)], int(max_batch_bytes),
                               int(max_rank))

    @property
    def n_blocks(self) -> int:
        return len(self.chunks)

    def here(self, values: np.ndarray) -> np.ndarray:
        """Canonical-order values in this orientation's order."""
        return values if self.perm is None else values[self.perm]

    def canonical(self, values: np.ndarray) -> np.ndarray:
        """This orientation's values back in canonical order."""
        if self.perm is None:
            return values
        out = np.empty_like(values)
        out[self.perm] = values
        return out


@dataclasses.dataclass
class _Layout:
    """The iterate in one orientation: ``blocks[b]`` references the tuple
    ``(L_b, s_b, ...)`` (decoupled-side factor rows, sparse values) on a worker;
    ``ker`` is the kernel-side factor (NumPy, on the client)."""

    side: _DaskSide
    blocks: list
    ker: np.ndarray
    ker_ref: object = None
    dec: np.ndarray | None = None  # the decoupled factor, when already gathered

    @property
    def orient(self) -> str:
        return self.side.orient


class DaskLowRankCompletionProblem(LowRankCompletionProblem):
    """:class:`~linrfm.engines.lowrank.LowRankCompletionProblem` with row blocks on Dask.

    Same parameters, schedules, warm starts (the random padding draws the
    same numbers), ``k`` rule, block growth and relaxation as the in-process
    engine, plus ``backend``; see the module docstring for what lives where
    and what travels.

    Parameters
    ----------
    train, validation, power, sides, schedules, rank, reg_floor, relaxation, \
max_batch_bytes, max_rank, delta, n_power
        As :class:`~linrfm.engines.lowrank.LowRankCompletionProblem`.
    backend : DaskBackend
        Gives the client (``backend.client``, else the default
        ``distributed.Client``, else Dask's local scheduler), the block sizes
        (``block_rows``, else one block per worker thread) and the BLAS threads
        of each block task.
    """

    def __init__(self, train: Observations, validation, power, sides, schedules, rank,
                 reg_floor, relaxation, max_batch_bytes, max_rank=MAX_RANK, delta=DELTA,
                 n_power=N_POWER, *, backend: DaskBackend):
        self.train, self.validation = train, validation
        self.power, self.sides, self.schedules = power, tuple(sides), schedules
        self.rank, self.reg_floor, self.relaxation = rank, reg_floor, float(relaxation)
        self.max_batch_bytes = int(max_batch_bytes)
        self.max_rank, self.delta, self.n_power = int(max_rank), float(delta), int(n_power)
        self.backend = backend
        # the backend's dtype, as for the dense engine on a configured DaskBackend
        self.dtype = np.dtype(backend.dtype)
        # the client's share of the work (warm starts, small factorisations) is NumPy
        self.where = _Where(None, self.dtype)
        self.runner = _Runner(backend._client())
        self.blas = backend.blas_threads
        self.prepared = {}
        self._plans, self._queries = {}, {}
        for o in dict.fromkeys(self.sides):
            self.side(o)
        # the in-process engine's attributes; the iterate lives in self._lay
        self.P = self.Q = self.s = None
        self._lay = None
        self.t = 0
        self.block = {}
        self._rng = np.random.default_rng(0)

    # -- layout -----------------------------------------------------------------
    def _side(self, o: str) -> _DaskSide:
        t = self.train
        if o == "columns":
            obs, perm = t, None
        else:
            obs, perm = t.transpose(), np.lexsort((t.rows, t.cols))
        if obs.values.dtype != self.dtype:
            obs = Observations(obs.rows, obs.cols, obs.values.astype(self.dtype), obs.shape)
        width = 2 * self.max_rank + _RELAXED_EXTRA_RANK  # widest factor block: [L_b, C_b]
        chunks = self.backend.row_chunks(obs.shape[0], width)
        return _DaskSide(self.runner, obs, o, perm, chunks, self.max_batch_bytes, self.max_rank)

    def _layout(self, o: str) -> _Layout:
        """The current iterate laid out for orientation ``o`` (re-laid out if needed)."""
        lay = self._lay
        if lay.orient != o:
            self._lay = lay = self._reorient(lay, self.side(o))
        return lay

    def _reorient(self, lay: _Layout, dst: _DaskSide) -> _Layout:
        """``lay`` in ``dst``'s blocks: the factors swap roles (decoupled factor gathered,
        kernel factor scattered) and the sparse values are shuffled between workers."""
        run, src = self.runner, lay.side
        takes, orders = self._plan(src, dst)
        dec = [lay.ker[dst.bounds[b]:dst.bounds[b + 1]] for b in range(dst.n_blocks)]
        dec_refs = run.send(dec)
        ker = lay.dec if lay.dec is not None else \
            np.concatenate(run.gather(run.items(lay.blocks, 0)), axis=0)
        pieces = run.map(_split_values, [lay.blocks, takes])
        per_src = [run.split(pieces[s], dst.n_blocks) for s in range(src.n_blocks)]
        blocks = [run.submit(_assemble, dec_refs[b], orders[b], self.dtype,
                             *[per_src[s][b] for s in range(src.n_blocks)])
                  for b in range(dst.n_blocks)]
        return _Layout(dst, blocks, ker)

    def _plan(self, src: _DaskSide, dst: _DaskSide):
        """Index plans of the value shuffle ``src -> dst`` (computed once, kept on the
        workers): ``takes[s][b]`` are the positions in source block ``s`` of the
        entries of target block ``b``; ``orders[b]`` puts their concatenation in
        ``b``'s order."""
        key = (src.orient, dst.orient, src.chunks, dst.chunks)
        if key not in self._plans:
            canon_of_dst = np.arange(self.train.nnz) if dst.perm is None else dst.perm
            if src.perm is None:
                pos = canon_of_dst
            else:
                inv = np.empty_like(src.perm)
                inv[src.perm] = np.arange(src.perm.size)
                pos = inv[canon_of_dst]
            takes = [[] for _ in range(src.n_blocks)]
            orders = []
            for b in range(dst.n_blocks):
                p = pos[dst.ebounds[b]:dst.ebounds[b + 1]]
                owner = np.searchsorted(src.ebounds, p, side="right") - 1
                order = np.argsort(owner, kind="stable")
                p, owner = p[order], owner[order]
                cuts = np.searchsorted(owner, np.arange(src.n_blocks + 1))
                for s in range(src.n_blocks):
                    takes[s].append(p[cuts[s]:cuts[s + 1]] - src.ebounds[s])
                orders.append(order)
            self._plans[key] = (self.runner.place(takes), self.runner.place(orders))
        return self._plans[key]

    def _ker_ref(self, lay: _Layout):
        if lay.ker_ref is None:
            lay.ker_ref = self.runner.share(lay.ker)
        return lay.ker_ref

    def _gather(self, lay: _Layout):
        """``(P, Q, s)`` of a layout, NumPy, user orientation, ``s`` canonical."""
        run, n_b = self.runner, lay.side.n_blocks
        got = run.gather(run.items(lay.blocks, 1)
                         + (run.items(lay.blocks, 0) if lay.dec is None else []))
        vals = lay.side.canonical(np.concatenate(got[:n_b]))
        dec = lay.dec if lay.dec is not None else np.concatenate(got[n_b:], axis=0)
        return (dec, lay.ker, vals) if lay.orient == "columns" else (lay.ker, dec, vals)

    def _distribute(self, P, Q, s, o: str) -> _Layout:
        side = self.side(o)
        dec, ker = (P, Q) if o == "columns" else (Q, P)
        dec, ker = dec.astype(self.dtype, copy=False), ker.astype(self.dtype, copy=False)
        vals = side.here(np.asarray(s, dtype=self.dtype))
        parts = [(np.ascontiguousarray(dec[side.bounds[b]:side.bounds[b + 1]]),
                  vals[side.ebounds[b]:side.ebounds[b + 1]].copy())
                 for b in range(side.n_blocks)]
        return _Layout(side, self.runner.place(parts), np.ascontiguousarray(ker))

    def _next_orient(self) -> str:
        return self.sides[self.t % len(self.sides)]

    # -- LinRFMProblem ----------------------------------------------------------
    def initialize(self) -> None:
        d1, d2 = self.train.shape
        self.t = 0
        self.block = {"columns": min(self.max_rank, d2), "rows": min(self.max_rank, d1)}
        self._rng = np.random.default_rng(0)
        side = self.side(self.sides[0])
        dt = self.dtype
        blocks = self.runner.map(_initial_block, [side.refs], dt)
        d = side.shape[1]
        self._lay = _Layout(side, blocks, np.zeros((d, 0), dtype=dt))

    def oriented(self, o: str):
        """The iterate in orientation ``o`` as NumPy ``(L, R, values)`` (gathered)."""
        L, R, vals = self._gather(self._layout(o))
        return (L, R, vals) if o == "columns" else (R, L, self.side(o).here(vals))

    def _eigpairs(self, lay: _Layout, X0: np.ndarray, n_power: int, norm: bool):
        """Ritz pairs of ``Z^T Z / n`` (as :func:`lowrank.leading_eigpairs`) and, with
        ``norm``, ``||Z||_F^2``."""
        run, side, R = self.runner, lay.side, lay.ker
        n, d = side.shape
        X = sla.qr(X0, mode="economic")[0]
        for _ in range(n_power):
            shared = run.share((X, R.T @ X, self.blas))
            T = run.tree_sum(run.map(_power_block, [side.refs, lay.blocks], shared))
            ZtY = np.array(T[:d])
            if R.shape[1]:
                ZtY += R @ T[d:]
            X = sla.qr(ZtY, mode="economic")[0]
        R_ref = self._ker_ref(lay) if norm else None
        shared = run.share((X, R.T @ X, self.blas))
        leaves = run.gather(run.map(_ritz_block, [side.refs, lay.blocks], shared, R_ref))
        Ry = sla.qr(np.vstack([r for r, _ in leaves]), mode="r")[0]
        _, sig, Ht = np.linalg.svd(Ry[: X.shape[1]])
        sq = None
        if norm:
            vv = sum(p[2] for _, p in leaves)
            if R.shape[1] == 0:
                sq = vv
            else:
                LtL = _add(*[p[0] for _, p in leaves])
                cross = sum(p[1] for _, p in leaves)
                sq = float(np.sum(LtL * (R.T @ R))) + 2.0 * cross + vv
        return sig ** 2 / n, X @ Ht.T, sq

    def _kernel_scale(self, o: str, lay: _Layout, b: int, n_power: int):
        """Kernel eigenpairs ``(D, V)`` (all computed) and the scale ``trace(K)/d``."""
        half = abs(self.power - 0.5) < 1e-15  # trace(G) = ||Z||^2 / n, exact
        g, V, sq = self._eigpairs(lay, self._start(lay.ker, b), n_power, half)
        D = np.clip(g, 0.0, None) ** (2.0 * self.power)
        n, d = lay.side.shape
        scale = sq / n / d if half else float(np.sum(D)) / d
        return D, V, scale

    def _step(self) -> dict:
        run = self.runner
        o = self._next_orient()
        lay = self._layout(o)
        side, R = lay.side, lay.ker
        D, V, scale = self._kernel_scale(o, lay, self.block[o], self.n_power)
        sched, reg, tail, k, Dk, reg_k = self._smoothed_kernel(o, D, scale, side.shape[1])
        Vk = V[:, :k]
        row_shared = run.share((Vk, Dk, reg_k, self.blas))
        rq = run.map(_row_block, [side.refs, lay.blocks], row_shared)
        leaves = run.gather(run.items(rq, 3))
        # TSQR of [L, C]: Qa = blockdiag(Q_b) Q2, Ra from the stacked leaves
        Q2, Ra = sla.qr(np.vstack(leaves), mode="economic")
        cuts = np.cumsum([0] + [leaf.shape[0] for leaf in leaves])
        Qb, Rb = sla.qr(np.hstack([R, Vk]), mode="economic")
        m, w = R.shape[1], self.relaxation
        core = _change_core(Ra, Rb, m)
        keep_mat, B = None, Vk
        if w != 1.0:
            keep_mat, Ht = _relaxed_core(Ra, Rb, m, w, k + _RELAXED_EXTRA_RANK)
            B = Qb @ Ht.T
        mats = []
        for b in range(side.n_blocks):
            Q2_b = Q2[cuts[b]:cuts[b + 1]]
            mats.append((Q2_b @ core, None if keep_mat is None else Q2_b @ keep_mat))
        new = run.map(_combine_block, [side.refs, lay.blocks, rq, run.send(mats)],
                      run.share((Qb, w, self.blas)), row_shared)
        # the alternating scheme needs the new decoupled factor on the client for
        # the next step (kernel side there): fetched with the scalars, one round trip
        switch = self.sides[(self.t + 1) % len(self.sides)] != o
        got = run.gather(run.items(new, 2) + (run.items(new, 0) if switch else []))
        parts = _add(*got[:side.n_blocks])
        dec = np.concatenate(got[side.n_blocks:], axis=0) if switch else None
        cross, dd, cross_new, rr = (float(x) for x in parts[:4])
        CtC = parts[4:].reshape(k, k)
        diff2 = max(float(np.sum(core * core)) + 2.0 * cross + dd, 0.0)
        norm2 = float(np.sum(CtC * (Vk.T @ Vk))) + 2.0 * cross_new + rr
        rel = math.sqrt(diff2 / norm2) if norm2 > 0 else 0.0
        sched.update(rel, scale, tail_eig=tail)
        self._lay = _Layout(side, new, B, dec=dec)
        self.t += 1
        return {"rel_change": rel, "objective": math.nan, "reg": reg / sched.scale0, "side": o,
                "rank": k}

    def iterate(self):
        """The iterate as NumPy ``(P, Q, s)`` (gathered; see the in-process engine)."""
        return self._gather(self._lay)

    def predict_entries(self, rows, cols) -> np.ndarray:
        """Entries ``(rows, cols)`` of ``P Q^T``, float64, computed on the blocks.

        The entries are laid out once per orientation and per ``(rows, cols)``
        array pair (the held-out entries, asked for every iteration); each call
        then moves the kernel-side factor out and the predictions back.
        """
        lay = self._lay
        run, side = self.runner, lay.side
        hit = self._queries.get(lay.orient)
        if hit is None or hit[0] is not rows or hit[1] is not cols:
            rows_a, cols_a = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
            dec, ker = (rows_a, cols_a) if lay.orient == "columns" else (cols_a, rows_a)
            owner = np.searchsorted(side.bounds, dec, side="right") - 1
            order = np.argsort(owner, kind="stable")
            cuts = np.searchsorted(owner[order], np.arange(side.n_blocks + 1))
            parts = [(dec[order[cuts[b]:cuts[b + 1]]] - side.bounds[b],
                      ker[order[cuts[b]:cuts[b + 1]]]) for b in range(side.n_blocks)]
            hit = (rows, cols, order, run.place(parts))
            self._queries[lay.orient] = hit
        order, refs = hit[2], hit[3]
        pieces = run.gather(run.map(_rowdot_block, [lay.blocks, refs], self._ker_ref(lay)))
        out = np.empty(order.size, dtype=np.float64)
        if pieces:
            out[order] = np.concatenate(pieces)
        return out

    def state_dict(self) -> dict:
        P, Q, s = self.iterate()
        return {"P": P, "Q": Q, "s": s, "t": self.t, "block": dict(self.block),
                "schedules": {o: sc.state() for o, sc in self.schedules.items()},
                "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state) -> None:
        P, Q, s = (np.array(state[k]) for k in ("P", "Q", "s"))
        self.t, self.block = int(state["t"]), {o: int(b) for o, b in state["block"].items()}
        for o, sched in state["schedules"].items():
            self.schedules[o].set_state(sched)
        self._rng.bit_generator.state = state["rng"]
        self._lay = self._distribute(P, Q, s, self._next_orient())

    def snapshot(self):
        # references to worker data, in the in-process engine's snapshot layout
        # (model_selection reads it and re-targets it to other entries)
        core = (self._lay, dict(self.block), self.train)
        return (core, self.orient, self.t, {o: s.value for o, s in self.schedules.items()})

    def restore(self, snap) -> None:
        core, _, t, values = snap
        lay, block, source = core[0], core[-2], core[-1]
        if isinstance(lay, _Layout):
            own = self.prepared.get(lay.orient)
            if source is self.train and own is not None and own.chunks == lay.side.chunks:
                # same entries, same blocks: the worker data serve as they are
                self._lay = _Layout(own, lay.blocks, lay.ker, lay.ker_ref, lay.dec)
            else:
                P, Q, s = self._gather(lay)
                self._lay = None
        else:  # a snapshot of the in-process engine: (P, Q, s, block, source)
            P, Q, s = core[:3]
            self._lay = None
        self.t = t
        if self._lay is None:
            if source is not self.train:
                s = _transfer_residual(s, source, self.train)
            self._lay = self._distribute(np.asarray(P), np.asarray(Q), s, self._next_orient())
        self.block = dict(block)
        for o, value in values.items():
            self.schedules[o].value = value

    def result(self):
        """As the in-process engine's, with the factors gathered as NumPy arrays."""
        res = super().result()
        P, Q, _ = self.iterate()
        return dataclasses.replace(res, factors=(P, Q))

    def _column_kernel(self, reg, n_power):
        lay = self._layout("columns")
        b = min(self.max_rank, lay.side.shape[1],
                max(self.block.get("columns", 1), lay.ker.shape[1]))
        D, V, scale = self._kernel_scale("columns", lay, b, n_power)
        k = max(1, int(np.sum(D >= self.delta * reg)))
        return D[:k], V[:, :k], scale

    def row_scale(self) -> float:
        """``trace(K)/d1`` of the row kernel of the final iterate."""
        from ..backends._threads import blas_threads

        lay = self._layout("rows")
        with blas_threads(1):
            return self._kernel_scale("rows", lay, self.block["rows"], self.n_power)[2]
