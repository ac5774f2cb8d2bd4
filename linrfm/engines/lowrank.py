r"""Low-rank completion engine: cost per iteration O(|Ω| k + (d1 + d2) k²) (SPEC §7).

The dense engine forms the ``d1 x d2`` iterate and its ``d x d`` Gram every
iteration. This engine runs the same lin-RFM iteration without either:

* **Iterate** ``Z = P Q^T + S``: a low-rank part (``P`` is ``d1 x m``, ``Q``
  is ``d2 x m``) plus a sparse part ``S`` on the observed positions Ω (the
  interpolation residual). The representation is symmetric under
  transposition (``Z^T = Q P^T + S^T``), so both sides and the alternating
  scheme use it unchanged.
* **Kernel** ``K ≈ V diag(g**(2 power)) V^T`` from the ``k`` leading
  eigenpairs ``(g, V)`` of the implicit Gram ``Z^T Z / n``: block subspace
  iteration (``n_power`` block power steps, then Rayleigh-Ritz through a QR
  and an SVD of ``Z X``) warm-started from the previous iterate's factor on
  the kernel side; ``Z X`` and ``Z^T Y`` cost ``O(|Ω| b + (n + d) m b)``.
  Every power is free once the eigenpairs are known.
* **k is adaptive**: eigenpairs with ``g**(2 power) < delta * reg`` are
  dropped (they change ``K + reg I`` by at most a factor ``1 + delta`` in
  those directions); when every computed pair is kept the block grows, up to
  ``max_rank``. The user's ``rank`` is only a hint for the smoothing.
* **Row step without 1/reg** (Woodbury): with ``W = V[Ω_i] diag(sqrt(D))``,
  ``c_i = sqrt(D) (W^T W + reg I)^{-1} W^T y_i`` (or, when ``|Ω_i| < k``, the
  ``|Ω_i| x |Ω_i|`` form ``sqrt(D) W^T (W W^T + reg I)^{-1} y_i``); the new
  row is ``V c_i`` on every column plus ``y_i - V[Ω_i] c_i`` on the observed
  ones. Rows are bucketed by ``|Ω_i|`` and each bucket is one batched solve.
  With ``k = d`` this is exactly the dense step.
* **Over-relaxation** ``Z <- (1 - w) Z_old + w Z_new`` combines the two
  low-rank parts (rank ``m + k``) and the two sparse parts (same pattern),
  then re-compresses the low-rank part by two thin QRs and an SVD of the
  ``(m+k) x (m+k)`` core, dropping singular values below
  ``1e-14 sigma_1`` and beyond ``k + 8`` (the extra directions carry the
  step, which vanishes at convergence).

Nothing of size ``d1 x d2`` or ``d x d`` is ever formed. Memory is
``O(|Ω| + (d1 + d2) max_rank)`` plus one bucket of row systems bounded by
``max_batch_bytes``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._memory import available_bytes as available_memory
from .._observations import Observations
from ..backends._threads import blas_threads
from ..backends.numpy_backend import _RowPlan
from ..core.loop import LinRFMProblem
from ..core.smoothing import final_smoothing
from .result import CompletionResult, fallback_values

__all__ = ["LowRankCompletionProblem", "FactoredCompletion", "LowRankSide", "leading_eigpairs", "fold_in",
           "rowdot", "available_memory", "check_fits", "choose_engine", "DELTA", "MAX_RANK"]

# Keep the eigenpairs of K above DELTA * reg (SPEC §7 prototype: 1e-3).
DELTA = 1e-3
# Largest block of the subspace iteration (SPEC §7 prototype: 80).
MAX_RANK = 80
# Block power steps per iteration (SPEC §7 prototype: 2, warm-started).
N_POWER = 2
# Singular values of the re-compressed relaxed low-rank part kept above this
# fraction of the largest (below it they are rounding noise).
_RECOMPRESS_RTOL = 1e-14
# Rank kept when re-compressing the relaxed iterate: k + this. Measured with
# the SPEC section 7 problems against 2k + 2: same iterations and errors
# (2000^2 r10 3x 43/43, 1000^2 r5 1.5x 412/410, 2x 51/51, r10 cond 100 66/66)
# and 12-33 % less CPU time (the first iterations run at k = 80).
_RELAXED_EXTRA_RANK = 8
# Entries per chunk when evaluating row-wise dot products on Ω (bounds memory).
_DOT_CHUNK = 1 << 18


def rowdot(A: np.ndarray, B: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(A B^T)[rows, cols]`` without forming ``A B^T``, in chunks of entries.

    Parameters
    ----------
    A : ndarray, shape (d1, m)
    B : ndarray, shape (d2, m)
    rows, cols : ndarray of int, shape (n,)

    Returns
    -------
    ndarray, shape (n,)
    """
    out = np.empty(rows.shape[0], dtype=np.result_type(A, B))
    if A.shape[1] == 0:
        out[:] = 0
        return out
    for start in range(0, rows.shape[0], _DOT_CHUNK):
        sl = slice(start, start + _DOT_CHUNK)
        out[sl] = np.einsum("ij,ij->i", A[rows[sl]], B[cols[sl]])
    return out


def check_fits(nbytes: float, what: str, hint: str) -> None:
    """Raise ValueError naming ``hint`` when ``nbytes`` exceed half the available memory.

    Called *before* allocating, so the user gets a clear message instead of a
    MemoryError deep in NumPy or a killed process.
    """
    avail = available_memory()
    if nbytes > 0.5 * avail:
        raise ValueError(f"{what} needs about {nbytes / 2**30:.1f} GiB but only "
                          f"{avail / 2**30:.1f} GiB of memory are available; {hint}")


def dense_engine_bytes(shape, itemsize: int) -> float:
    """Working memory of the dense engine: a few copies of the iterate and both Grams."""
    d1, d2 = shape
    return itemsize * (5.0 * d1 * d2 + 2.0 * (d1 * d1 + d2 * d2))


# engine="auto": the low-rank engine from this many entries d1*d2. Measured
# with benchmarks/bench_completion_scale.py on the SPEC section 7 problems
# (loaded 2-core machine, CPU seconds dense/low-rank): 500^2 1.63/0.91,
# 1000^2 4.03/1.45; 300^2 1.31/0.64 (same iterations, same error).
AUTO_LOWRANK_ENTRIES = 250_000


def choose_engine(engine: str, shape, itemsize: int, device, fixed_reg: bool = False) -> str:
    """Resolve ``engine`` in {"auto", "dense", "lowrank"} for a problem of ``shape``.

    ``"auto"`` picks the low-rank engine on the NumPy device when the dense
    engine's working memory would not fit, or from ``AUTO_LOWRANK_ENTRIES``
    entries unless ``fixed_reg`` (a fixed smoothing, for noisy data, or the
    objective tracked: the iterate need not become low rank, and the dense
    engine keeps the whole spectrum). Otherwise the dense engine.

    Raises
    ------
    ValueError
        ``engine="dense"`` on a shape whose dense iterate would not fit (the
        message names the low-rank engine), or ``engine="lowrank"`` on a
        device other than the CPU.
    """
    numpy_device = isinstance(device, str) and device.lower() in ("cpu", "numpy")
    if engine == "lowrank":
        if not numpy_device:
            raise ValueError(f"engine='lowrank' runs on device='cpu' only for now, got "
                             f"device={device!r}; use engine='dense' on other devices")
        return "lowrank"
    need = dense_engine_bytes(shape, itemsize)
    if engine == "dense":
        check_fits(need, f"the dense engine on a {shape[0]} x {shape[1]} matrix",
                   "use engine='lowrank' (memory O(|observed| + (d1 + d2) k)).")
        return "dense"
    if not numpy_device:
        return "dense"
    if need > 0.5 * available_memory():
        return "lowrank"
    big = float(shape[0]) * shape[1] >= AUTO_LOWRANK_ENTRIES
    return "lowrank" if big and not fixed_reg else "dense"


class LowRankSide:
    """Observed entries of one orientation, laid out for the low-rank engine.

    Parameters
    ----------
    obs : Observations
        Entries in this orientation (rows = decoupled side), sorted row-major.
    perm : ndarray of int or None
        ``values_here = values_canonical[perm]`` (None: this is the canonical
        orientation).
    max_batch_bytes : int
        Memory budget of one bucket of row systems.
    max_rank : int
        Largest ``k`` the buckets are sized for.
    """

    def __init__(self, obs: Observations, perm, max_batch_bytes: int, max_rank: int):
        self.shape = obs.shape
        self.indptr, self.indices, _ = obs.csr_arrays()
        self.y = np.asarray(obs.values)
        self.perm = perm
        item = self.y.dtype.itemsize
        k = int(max_rank)
        self.plan = _RowPlan(self.indptr, self.indices, item, int(max_batch_bytes),
                             row_bytes=lambda s: item * (2 * s * k + 2 * min(s, k) ** 2 + 2 * k))
        self.rows = self.plan.entry_rows

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

    def sparse(self, values: np.ndarray) -> sp.csr_matrix:
        """CSR matrix of this orientation with ``values`` (this orientation's order)."""
        return sp.csr_matrix((values, self.indices, self.indptr), shape=self.shape)


def _apply(L, R, S, X):
    """``(L R^T + S) X``."""
    out = np.asarray(S @ X)
    if L.shape[1]:
        out += L @ (R.T @ X)
    return out


def leading_eigpairs(L, R, S, X0, n_power: int = N_POWER):
    """Leading eigenpairs of ``Z^T Z / n`` for ``Z = L R^T + S`` (``n x d``).

    Parameters
    ----------
    L : ndarray, shape (n, m)
    R : ndarray, shape (d, m)
    S : sparse matrix, shape (n, d)
    X0 : ndarray, shape (d, b)
        Start block (orthonormalised here).
    n_power : int
        Block power steps before the Rayleigh-Ritz step.

    Returns
    -------
    g : ndarray, shape (b,)
        Ritz values, descending, >= 0.
    V : ndarray, shape (d, b)
        Orthonormal Ritz vectors.
    """
    n = S.shape[0]
    St = S.T.tocsr()
    X = sla.qr(X0, mode="economic")[0]
    for _ in range(n_power):
        Y = _apply(L, R, S, X)
        X = sla.qr(_apply(R, L, St, Y), mode="economic")[0]
    # Singular values of Z X from its R factor: eigenvalues of the Gram are
    # resolved down to (eps sigma_1)^2, not eps sigma_1^2 as eigh(Y^T Y) would.
    Ry = sla.qr(_apply(L, R, S, X), mode="r")[0]
    _, sig, Ht = np.linalg.svd(Ry[: X.shape[1]])
    return sig ** 2 / n, X @ Ht.T


def _bucket_coefficients(W, y, reg):
    """``e = W^T (W W^T + reg I)^{-1} y = (W^T W + reg I)^{-1} W^T y`` for a bucket.

    ``W`` is (c, s, k), ``y`` (c, s); the smaller of the two systems is solved.
    Returns ``e`` (c, k) and the residual ``y - W e`` (c, s), which is the new
    iterate's sparse part (``W e = V[Ω] c``).
    """
    c, s, k = W.shape
    Wt = W.transpose(0, 2, 1)
    if s >= k:
        M = Wt @ W
        M.reshape(c, k * k)[:, :: k + 1] += reg
        e = np.linalg.solve(M, Wt @ y[..., None])
    else:
        M = W @ Wt
        M.reshape(c, s * s)[:, :: s + 1] += reg
        e = Wt @ np.linalg.solve(M, y[..., None])
    return e[..., 0], y - (W @ e)[..., 0]


def row_step(side: LowRankSide, y: np.ndarray, V: np.ndarray, D: np.ndarray, reg: float):
    """One lin-RFM row step with kernel ``V diag(D) V^T + reg I`` (Woodbury form).

    Parameters
    ----------
    side : LowRankSide
    y : ndarray, shape (nnz,)
        Observed values in this orientation's order.
    V : ndarray, shape (d, k)
        Orthonormal kernel eigenvectors.
    D : ndarray, shape (k,)
        Kernel eigenvalues (>= 0).
    reg : float

    Returns
    -------
    C : ndarray, shape (n, k)
        New low-rank factor: the new iterate is ``C V^T`` plus, on the
        observed entries, ``resid``.
    resid : ndarray, shape (nnz,)
        ``y - (C V^T)[Ω]``: the iterate interpolates the data.
    """
    sq = np.sqrt(np.clip(D, 0.0, None))
    Vs = V * sq
    C = np.zeros((side.shape[0], V.shape[1]), dtype=V.dtype)
    resid = np.empty_like(y)
    for _, pos, idx in side.plan.chunks:
        e, resid[pos] = _bucket_coefficients(Vs[idx], y[pos], reg)
        C[side.rows[pos[:, 0]]] = e * sq
    return C, resid


def _combine(old, new, dvals, side: LowRankSide, omega: float, max_rank: int):
    """Change ``||Z_new - Z_old||_F^2`` and the relaxed iterate's low-rank factors.

    ``old = (L, R)`` and ``new = (C, V)`` are the low-rank parts; ``dvals``
    the change of the sparse part. One thin QR per side of the stacked factors
    serves both: the change of the low-rank part is ``Qa Ra E Rb^T Qb^T`` with
    ``E = diag(-1, ..., 1, ...)``, so its norm is that of a small core and is
    accurate down to rounding (expanding ``||Z_new||^2 - 2 <.,.> + ||Z_old||^2``
    would stall the relative change near 1e-8). The relaxed low-rank part
    ``(1 - omega) L R^T + omega C V^T`` is re-compressed by an SVD of its core.

    Returns
    -------
    diff2 : float
    A, B : ndarray
        Relaxed low-rank factors, ``B`` orthonormal, columns by decreasing
        singular value (``None`` when ``omega == 1``).
    """
    (L, R), (C, V) = old, new
    m = L.shape[1]
    Qa, Ra = sla.qr(np.hstack([L, C]), mode="economic")
    Qb, Rb = sla.qr(np.hstack([R, V]), mode="economic")
    sign = np.r_[-np.ones(m), np.ones(C.shape[1])].astype(Ra.dtype)
    core = (Ra * sign) @ Rb.T
    cross = float(np.sum((Qa @ core) * np.asarray(side.sparse(dvals) @ Qb)))
    diff2 = max(float(np.sum(core * core)) + 2.0 * cross + float(dvals @ dvals), 0.0)
    if omega == 1.0:
        return diff2, None, None
    weight = np.r_[np.full(m, 1.0 - omega), np.full(C.shape[1], omega)].astype(Ra.dtype)
    W, sig, Ht = np.linalg.svd((Ra * weight) @ Rb.T)
    keep = int(np.sum(sig > _RECOMPRESS_RTOL * sig[0])) if sig[0] > 0 else 0
    keep = max(1, min(keep, max_rank))
    return diff2, Qa @ (W[:, :keep] * sig[:keep]), Qb @ Ht[:keep].T


def _sq_norm(L, R, S_vals, side: LowRankSide) -> float:
    """``||L R^T + S||_F^2`` from ``m x m`` products and one sparse product.

    The cross term ``<S, L R^T> = sum(L * (S R))``: a sparse-dense product is
    several times faster than gathering ``L`` and ``R`` on every entry.
    """
    if L.shape[1] == 0:
        return float(S_vals @ S_vals)
    low = float(np.sum((L.T @ L) * (R.T @ R)))
    cross = float(np.sum(L * np.asarray(side.sparse(S_vals) @ R)))
    return low + 2.0 * cross + float(S_vals @ S_vals)


def _transfer_residual(s: np.ndarray, source: Observations, target: Observations) -> np.ndarray:
    """The sparse part ``s`` on ``source``'s entries, carried to ``target``'s (0 where new)."""
    d2 = source.shape[1]
    lin_src = source.rows.astype(np.int64) * d2 + source.cols
    lin_tgt = target.rows.astype(np.int64) * d2 + target.cols
    out = np.zeros(lin_tgt.shape[0], dtype=s.dtype)
    pos = np.clip(np.searchsorted(lin_tgt, lin_src), 0, max(lin_tgt.size - 1, 0))
    hit = lin_tgt[pos] == lin_src if lin_tgt.size else np.zeros(0, bool)
    out[pos[hit]] = s[hit]
    return out


class LowRankCompletionProblem(LinRFMProblem):
    """One completion fit on the low-rank engine, as a :class:`~linrfm.core.loop.LinRFMProblem`.

    The iterate is held in the user's orientation as ``(P, Q, s)``:
    ``Z = P Q^T`` plus ``s`` on the observed entries (canonical row-major
    order). The smoothing, sides, stopping and relaxation follow the dense
    ``_CompletionProblem`` step for step, so the two engines produce the same
    iterates when ``k`` is the full dimension.

    Parameters
    ----------
    train : Observations
    validation : Observations or None
    power : float
    sides : tuple of str
        ``("columns",)``, ``("rows",)`` or ``("columns", "rows")``.
    schedules : dict of str to SmoothingSchedule
    rank : int or None
        Rank hint: ``g_{rank+1}**(2 power)`` caps ``reg`` (as in the dense engine).
    reg_floor : float
        Smallest ``reg`` relative to the current kernel scale.
    relaxation : float
        Over-relaxation ``w`` in ``[1, 2)``.
    max_batch_bytes : int
    max_rank : int
        Largest block of the eigen-solver (the cap on ``k``).
    delta : float
        Eigenvalues of ``K`` below ``delta * reg`` are dropped (0 keeps all).
    n_power : int
        Block power steps per iteration.
    """

    def __init__(self, train: Observations, validation, power, sides, schedules, rank,
                 reg_floor, relaxation, max_batch_bytes, max_rank=MAX_RANK, delta=DELTA,
                 n_power=N_POWER):
        self.train, self.validation = train, validation
        self.power, self.sides, self.schedules = power, tuple(sides), schedules
        self.rank, self.reg_floor, self.relaxation = rank, reg_floor, float(relaxation)
        self.max_batch_bytes = int(max_batch_bytes)
        self.max_rank, self.delta, self.n_power = int(max_rank), float(delta), int(n_power)
        self.prepared = {o: self._side(o) for o in set(self.sides)}
        self.P = self.Q = self.s = None
        self.t = 0
        self.block = {}
        # Fixed seed: the iteration is deterministic, as the dense engine's.
        self._rng = np.random.default_rng(0)

    def _side(self, o: str) -> LowRankSide:
        if o == "columns":
            return LowRankSide(self.train, None, self.max_batch_bytes, self.max_rank)
        t = self.train
        perm = np.lexsort((t.rows, t.cols))
        return LowRankSide(t.transpose(), perm, self.max_batch_bytes, self.max_rank)

    def side(self, o: str) -> LowRankSide:
        """The layout of orientation ``o`` (built on first use)."""
        if o not in self.prepared:
            self.prepared[o] = self._side(o)
        return self.prepared[o]

    def initialize(self) -> None:
        d1, d2 = self.train.shape
        dt = self.train.values.dtype
        self.P, self.Q = np.zeros((d1, 0), dt), np.zeros((d2, 0), dt)
        self.s = np.array(self.train.values, copy=True)
        self.t = 0
        self.block = {"columns": min(self.max_rank, d2), "rows": min(self.max_rank, d1)}
        # Fixed seed: the iteration is deterministic, as the dense engine's.
        self._rng = np.random.default_rng(0)

    @property
    def orient(self) -> str:
        """Side of the last step (the first side before any step)."""
        return self.sides[(self.t - 1) % len(self.sides)] if self.t else self.sides[0]

    def oriented(self, o: str):
        """``(L, R, values)`` with the iterate in orientation ``o`` equal to ``L R^T + S``."""
        side = self.side(o)
        if o == "columns":
            return self.P, self.Q, side.here(self.s)
        return self.Q, self.P, side.here(self.s)

    def _start(self, R: np.ndarray, b: int) -> np.ndarray:
        """Warm start: the leading columns of the kernel-side factor, padded at random."""
        X = R[:, :b]
        if X.shape[1] < b:
            extra = self._rng.standard_normal((R.shape[0], b - X.shape[1])).astype(R.dtype)
            X = np.hstack([X, extra])
        return X

    def _kernel(self, o, L, R, vals):
        """Eigenpairs ``(D, V)`` of the kernel of the current iterate, all computed ones."""
        side = self.side(o)
        g, V = leading_eigpairs(L, R, side.sparse(vals), self._start(R, self.block[o]),
                                self.n_power)
        return np.clip(g, 0.0, None) ** (2.0 * self.power), V

    def _scale(self, D, L, R, vals, side) -> float:
        n, d = side.shape
        if abs(self.power - 0.5) < 1e-15:  # trace(G) = ||Z||^2 / n, exact
            return _sq_norm(L, R, vals, side) / n / d
        return float(np.sum(D)) / d

    def _next_block(self, o: str, k: int, b: int, d: int) -> int:
        cap = min(self.max_rank, d)
        grow = min(cap, 2 * b) if k >= b else min(cap, k + max(8, k // 2))
        if self.rank is not None:
            grow = max(grow, min(cap, self.rank + 2))
        return grow

    def step(self) -> dict:
        # Thin factors and k x k systems: BLAS threads only add hand-off cost
        # (a 200 x 80 QR took 1.4 s with 2 OpenBLAS threads on a loaded 2-core
        # machine, 2 ms with one).
        with blas_threads(1):
            return self._step()

    def _step(self) -> dict:
        o = self.sides[self.t % len(self.sides)]
        side = self.side(o)
        L, R, vals = self.oriented(o)
        D, V = self._kernel(o, L, R, vals)
        scale = self._scale(D, L, R, vals, side)
        sched = self.schedules[o]
        if math.isnan(sched.value):
            sched.start(scale)
        reg = max(sched.value, self.reg_floor * scale)
        tail = None
        if self.rank is not None and self.rank < side.shape[1] and self.rank < D.size:
            tail = float(D[self.rank])
        k = max(1, int(np.sum(D >= self.delta * reg)))
        self.block[o] = self._next_block(o, k, D.size, side.shape[1])
        Vk = V[:, :k]
        C, resid = row_step(side, side.y, Vk, D[:k], reg)
        w = self.relaxation
        diff2, A, B = _combine((L, R), (C, Vk), resid - vals, side, w,
                               k + _RELAXED_EXTRA_RANK)
        norm2 = _sq_norm(C, Vk, resid, side)
        rel = math.sqrt(diff2 / norm2) if norm2 > 0 else 0.0
        if w == 1.0:
            A, B, new_vals = C, Vk, resid
        else:
            new_vals = (1.0 - w) * vals + w * resid
        sched.update(rel, scale, tail_eig=tail)
        s_new = side.canonical(new_vals)
        self.P, self.Q = (A, B) if o == "columns" else (B, A)
        self.s = s_new
        self.t += 1
        return {"rel_change": rel, "objective": math.nan, "reg": reg / sched.scale0, "side": o,
                "rank": k}

    def iterate(self):
        """The iterate as ``(P, Q, s)``: ``P @ Q.T`` plus ``s`` on the observed entries
        (canonical row-major order), in the user's orientation. Never densified."""
        return self.P, self.Q, self.s

    def validation_error(self):
        if self.validation is None:
            return None
        v = self.validation
        pred = rowdot(self.P, self.Q, v.rows, v.cols)
        ref = v.values.astype(np.float64)
        return float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), np.finfo(float).tiny))

    def state_dict(self) -> dict:
        return {"P": self.P, "Q": self.Q, "s": self.s, "t": self.t, "block": dict(self.block),
                "schedules": {o: sc.state() for o, sc in self.schedules.items()},
                "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state) -> None:
        self.P, self.Q, self.s = (np.array(state[k]) for k in ("P", "Q", "s"))
        self.t, self.block = int(state["t"]), {o: int(b) for o, b in state["block"].items()}
        for o, sched in state["schedules"].items():
            self.schedules[o].set_state(sched)
        self._rng.bit_generator.state = state["rng"]

    def snapshot(self):
        # (iterate, orientation, step count, schedule values): the layout of the
        # dense engine's snapshot, which the smoothing path (model_selection)
        # reads and re-targets to other observation sets.
        core = (self.P, self.Q, self.s, dict(self.block), self.train)
        return (core, self.orient, self.t,
                {o: s.value for o, s in self.schedules.items()})

    def restore(self, snap) -> None:
        (P, Q, s, block, source), _, self.t, values = snap
        if source is not self.train:
            # a snapshot of the same matrix fitted on other entries (the path's
            # held-out split): the sparse part lives on those entries; on ours
            # the iterate is P Q^T there plus the old residual where both observe
            s = _transfer_residual(s, source, self.train)
        self.P, self.Q, self.s, self.block = P, Q, s, dict(block)
        for o, value in values.items():
            self.schedules[o].value = value

    def predict_entries(self, rows, cols) -> np.ndarray:
        """Entries ``(rows, cols)`` of the current iterate off the training entries
        (the held-out ones), float64."""
        return np.asarray(rowdot(self.P, self.Q, rows, cols), dtype=np.float64)

    def result(self) -> CompletionResult:
        """Factors of the final iterate, fold-in eigenpairs and the smoothings."""
        # The column reg truncates the fold-in kernel and the column scale converts a
        # row-side reg: truncating at the schedule's value on the column side (or the
        # row side when only it ran) avoids a second pass.
        first = self.schedules["columns" if "columns" in self.schedules else "rows"].value
        D, V, col_scale = self.column_kernel(first if math.isfinite(first) else 0.0)
        row_scale = math.nan if "columns" in self.schedules else self.row_scale()
        column_reg, reg, kernel_reg = final_smoothing(self.schedules, self.orient, col_scale,
                                                      row_scale, self.reg_floor)
        return CompletionResult(column_reg, reg, kernel_reg, self.orient,
                                factors=(self.P, self.Q), kernel_factors=(D, V))

    def column_kernel(self, reg: float, n_power: int = 4):
        """Column-kernel eigenpairs of the final iterate, for fold-in.

        Returns
        -------
        D : ndarray, shape (k,)
            Eigenvalues ``g**(2 power)`` kept above ``delta * reg``.
        V : ndarray, shape (d2, k)
        scale : float
            ``trace(K) / d2`` (exact for power 1/2).
        """
        with blas_threads(1):
            return self._column_kernel(reg, n_power)

    def _column_kernel(self, reg, n_power):
        side = self.side("columns")
        L, R, vals = self.oriented("columns")
        b = min(self.max_rank, side.shape[1], max(self.block.get("columns", 1), R.shape[1]))
        g, V = leading_eigpairs(L, R, side.sparse(vals), self._start(R, b), n_power)
        D = np.clip(g, 0.0, None) ** (2.0 * self.power)
        scale = self._scale(D, L, R, vals, side)
        k = max(1, int(np.sum(D >= self.delta * reg)))
        return D[:k], V[:, :k], scale

    def row_scale(self) -> float:
        """``trace(K)/d1`` of the row kernel of the final iterate."""
        side = self.side("rows")
        L, R, vals = self.oriented("rows")
        with blas_threads(1):
            D, _ = self._kernel("rows", L, R, vals)
        return self._scale(D, L, R, vals, side)


def fold_in(obs: Observations, V: np.ndarray, D: np.ndarray, reg: float,
            max_batch_bytes: int) -> np.ndarray:
    """Complete new rows with the kernel ``V diag(D) V^T + reg I`` (one Woodbury row step).

    Parameters
    ----------
    obs : Observations
        New rows' observed entries, shape ``(n_new, d2)``.
    V : ndarray, shape (d2, k)
    D : ndarray, shape (k,)
    reg : float
    max_batch_bytes : int

    Returns
    -------
    ndarray, shape (n_new, d2)
        Observed entries equal the data; rows without observations are 0.
    """
    n, d = obs.shape
    check_fits(float(n) * d * V.dtype.itemsize, f"transform of {n} rows x {d} columns",
               "pass fewer rows at a time.")
    side = LowRankSide(obs, None, max_batch_bytes, V.shape[1])
    with blas_threads(1):
        C, resid = row_step(side, side.y, V, D, reg)
    Z = C @ V.T
    Z[side.rows, side.indices] += resid
    return Z


def append_fill(A: np.ndarray, B: np.ndarray, fill) -> tuple[np.ndarray, np.ndarray]:
    """Factors with the fallback for empty rows/columns appended as rank-one terms.

    ``fill = (empty_rows, empty_cols, row_means, col_means, global_mean)`` as in
    the dense engine: empty rows get the column means (global mean where the
    column is empty too), empty columns the row means. The iterate is exactly 0
    on empty rows and columns, so the terms add the fallback there only.
    """
    empty_rows, empty_cols = fill[:2]
    for_rows, for_cols = fallback_values(*fill[2:])
    extra_a, extra_b = [], []
    if empty_rows.any():
        extra_a.append(empty_rows.astype(A.dtype))
        extra_b.append(for_rows)
    if empty_cols.any():
        extra_a.append(np.where(empty_rows, 0.0, for_cols))
        extra_b.append(empty_cols.astype(B.dtype))
    if extra_a:
        A = np.hstack([A, np.column_stack(extra_a).astype(A.dtype)])
        B = np.hstack([B, np.column_stack(extra_b).astype(B.dtype)])
    return A, B


class FactoredCompletion:
    """A completed matrix kept as ``A B^T`` off the observed entries, the data on them.

    Parameters
    ----------
    A : ndarray, shape (d1, m)
    B : ndarray, shape (d2, m)
    obs : Observations
        The observed entries (all of them, validation included), sorted row-major.
    """

    def __init__(self, A: np.ndarray, B: np.ndarray, obs: Observations):
        self.A, self.B, self.obs = A, B, obs
        self.shape = obs.shape
        self._linear = obs.rows * obs.shape[1] + obs.cols

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Entries ``[rows, cols]``: the data where observed, ``A B^T`` elsewhere."""
        out = rowdot(self.A, self.B, rows, cols).astype(self.obs.values.dtype)
        lin = rows.astype(np.int64) * self.shape[1] + cols
        at = np.clip(np.searchsorted(self._linear, lin), 0, self._linear.size - 1)
        hit = self._linear[at] == lin
        out[hit] = self.obs.values[at[hit]]
        return out

    def to_dense(self) -> np.ndarray:
        """The dense ``(d1, d2)`` matrix, after checking that it fits in memory."""
        d1, d2 = self.shape
        check_fits(float(d1) * d2 * self.obs.values.dtype.itemsize,
                   f"the dense {d1} x {d2} completed matrix",
                   "use predict(rows, cols) or factors_ (the estimate is A @ B.T off the "
                   "observed entries) instead of completed_ / fit_transform.")
        Z = (self.A @ self.B.T).astype(self.obs.values.dtype, copy=False)
        Z[self.obs.rows, self.obs.cols] = self.obs.values
        return Z
