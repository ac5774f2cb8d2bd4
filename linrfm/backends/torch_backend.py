"""PyTorch completion backend, on the CPU or a CUDA device.

Same step as :mod:`linrfm.backends.numpy_backend` (SPEC §2), laid out once in
:meth:`TorchBackend.prepare` so that an iteration launches a fixed, small
number of kernels: rows are grouped by their number of observed entries
``s``, and each group is cut into chunks whose gathered ``(c, s, s)`` kernel
blocks fit ``max_batch_bytes``. Each chunk is one batched Cholesky
(``torch.linalg.cholesky_ex``) and one ``torch.cholesky_solve``; the whole-row
predictions are one sparse (CSR) x dense product ``A @ K``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._observations import Observations
from . import numpy_backend
from ..core.namespace import require_torch
from .base import CompletionBackend, PreparedRows

__all__ = ["TorchBackend"]


@dataclass
class _Chunk:
    size: int          # s = |Omega_i| of every row in the chunk
    cols: object       # (c, s) long tensor: observed columns
    pos: object        # (c, s) long tensor: positions in the CSR arrays
    values: object     # (c, s, 1) tensor: observed values


@dataclass
class _TorchRows:
    crow: object       # (n_rows + 1,) long tensor
    col: object        # (nnz,) long tensor
    row: object        # (nnz,) long tensor, row of each entry
    values: object     # (nnz,) tensor
    chunks: list


class TorchBackend(CompletionBackend):
    """PyTorch backend (CPU or CUDA).

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64.
    max_batch_bytes : int
        Memory budget of one chunk of gathered kernel blocks (and of its
        Cholesky factors).
    device : str or torch.device, default="cpu"
        Where the iterate lives.
    """

    name = "torch"

    def __init__(self, dtype=np.float64, max_batch_bytes: int = numpy_backend.DEFAULT_BATCH_BYTES,
                 device="cpu"):
        super().__init__(dtype, max_batch_bytes)
        torch = require_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.tdtype = torch.float64 if self.dtype == np.float64 else torch.float32

    def _tensor(self, a, dtype=None):
        return self.torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

    def prepare(self, obs: Observations) -> PreparedRows:
        torch = self.torch
        indptr, indices, values_np = obs.csr_arrays()
        counts = np.diff(indptr)
        values = self._tensor(values_np, self.tdtype)
        itemsize = self.dtype.itemsize
        chunks = []
        for s in np.unique(counts):
            if s == 0:
                continue
            rows_s = np.flatnonzero(counts == s)
            size = max(1, int(self.max_batch_bytes // (itemsize * int(s) * int(s) * 2)))
            for start in range(0, rows_s.size, size):
                sel = rows_s[start:start + size]
                pos = indptr[sel][:, None] + np.arange(s)
                pos_t = self._tensor(pos, torch.long)
                chunks.append(_Chunk(int(s), self._tensor(indices[pos], torch.long), pos_t,
                                     values[pos_t].unsqueeze(-1)))
        data = _TorchRows(self._tensor(indptr, torch.long), self._tensor(indices, torch.long),
                          self._tensor(np.repeat(np.arange(obs.shape[0]), counts), torch.long),
                          values, chunks)
        return PreparedRows(obs.shape, data)

    def initial(self, rows: PreparedRows):
        data = rows.data
        Z = self.torch.zeros(rows.shape, dtype=self.tdtype, device=self.device)
        Z[data.row, data.col] = data.values
        return Z

    def gram(self, Z):
        return (Z.T @ Z) / Z.shape[0]

    def trace(self, G) -> float:
        return float(self.torch.trace(G))

    def eigvalsh(self, G) -> np.ndarray:
        return self.torch.linalg.eigvalsh(G).cpu().numpy()

    def _solve_chunk(self, K, chunk: _Chunk, reg: float):
        torch = self.torch
        idx = chunk.cols
        Ks = K[idx.unsqueeze(2), idx.unsqueeze(1)]
        Ks.diagonal(dim1=-2, dim2=-1).add_(reg)
        L, info = torch.linalg.cholesky_ex(Ks)
        a = torch.cholesky_solve(chunk.values, L)
        bad = info != 0
        if bool(bad.any()):
            # Numerically singular blocks (reg at its floor): LU is still accurate
            # for the prediction K[:, Omega] a.
            a[bad] = torch.linalg.solve(Ks[bad], chunk.values[bad])
        return a[..., 0]

    def step(self, rows: PreparedRows, K, reg: float, replace: bool = True):
        torch = self.torch
        data = rows.data
        coef = torch.empty_like(data.values)
        for chunk in data.chunks:
            coef[chunk.pos] = self._solve_chunk(K, chunk, reg)
        n_rows, d = rows.shape
        if data.values.shape[0] > numpy_backend.DENSE_PREDICT_DENSITY * n_rows * d \
                or self.device.type == "cpu" and not hasattr(torch, "sparse_csr_tensor"):
            A = torch.zeros((n_rows, d), dtype=self.tdtype, device=self.device)
            A[data.row, data.col] = coef
            Z = A @ K
        else:
            A = torch.sparse_csr_tensor(data.crow, data.col, coef, size=(n_rows, d))
            Z = A @ K
        if replace:
            Z[data.row, data.col] = data.values
        return Z

    def transpose(self, Z):
        return Z.T.contiguous()

    def sq_norms(self, Z_new, Z_old) -> tuple[float, float]:
        return float(((Z_new - Z_old) ** 2).sum()), float((Z_new ** 2).sum())

    def gather(self, Z, rows, cols) -> np.ndarray:
        torch = self.torch
        r = self._tensor(np.asarray(rows, dtype=np.int64), torch.long)
        c = self._tensor(np.asarray(cols, dtype=np.int64), torch.long)
        return Z[r, c].cpu().numpy()

    def to_numpy(self, Z) -> np.ndarray:
        return Z.detach().cpu().numpy()

    def from_numpy(self, Z: np.ndarray):
        return self._tensor(Z, self.tdtype)
