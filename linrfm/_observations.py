"""The observed entries of a partially known matrix, whatever form they came in.

Every completion estimator (ours and the baselines) and the CLI turn their
input into one :class:`Observations` with :func:`as_observations`, which
performs all the checks, so a bad input fails the same way everywhere and
before any iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

from ._memory import check_memory

__all__ = ["Observations", "as_observations", "value_scale"]


def value_scale(values) -> float:
    """Power of two nearest the root mean square of ``values`` (1.0 if all zero).

    Dividing by it brings data of any magnitude (1e-300 to 1e300) to order one
    before squares and Grams are formed, which over- or underflow otherwise.
    A power of two divides exactly: data of moderate size give the same
    iterates, bit for bit, with or without the rescaling.
    """
    v = np.abs(np.asarray(values, dtype=np.float64))
    top = float(v.max(initial=0.0))
    if not (top > 0 and np.isfinite(top)):
        return 1.0
    rms = top * math.sqrt(float(np.mean((v / top) ** 2)))
    return math.ldexp(1.0, int(round(math.log2(rms))))


@dataclass(frozen=True)
class Observations:
    """Observed entries ``Z[rows[k], cols[k]] = values[k]`` of a ``shape`` matrix.

    Attributes
    ----------
    rows, cols : ndarray of int64, shape (nnz,)
        Entry coordinates, sorted row-major, no duplicates.
    values : ndarray of float, shape (nnz,)
        Finite observed values.
    shape : tuple of int
        ``(d1, d2)``.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        """Number of observed entries."""
        return int(self.values.shape[0])

    @property
    def dtype(self):
        """Floating dtype of the values."""
        return self.values.dtype

    def row_counts(self) -> np.ndarray:
        """Number of observed entries in each row, shape (d1,)."""
        return np.bincount(self.rows, minlength=self.shape[0])

    def col_counts(self) -> np.ndarray:
        """Number of observed entries in each column, shape (d2,)."""
        return np.bincount(self.cols, minlength=self.shape[1])

    def transpose(self) -> "Observations":
        """The same entries of the transposed matrix (re-sorted row-major)."""
        order = np.lexsort((self.rows, self.cols))
        return Observations(self.cols[order], self.rows[order], self.values[order],
                            (self.shape[1], self.shape[0]))

    def csr_arrays(self, dtype=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The CSR layout as plain arrays (the one place every engine gets it from).

        The entries are sorted row-major without duplicates, so no sort is needed.

        Returns
        -------
        indptr : ndarray of int64, shape (d1 + 1,)
        indices : ndarray of int64, shape (nnz,)
            Column of each entry.
        values : ndarray, shape (nnz,)
            As ``dtype`` (default: the values' own dtype).
        """
        indptr = np.zeros(self.shape[0] + 1, dtype=np.int64)
        np.cumsum(self.row_counts(), out=indptr[1:])
        values = self.values if dtype is None else self.values.astype(dtype, copy=False)
        return indptr, self.cols.astype(np.int64, copy=False), values

    def to_csr(self) -> sp.csr_array:
        """CSR array holding the observed values (explicit zeros kept)."""
        return sp.csr_array((self.values, (self.rows, self.cols)), shape=self.shape)

    def to_dense(self, fill=np.nan) -> np.ndarray:
        """Dense ``shape`` array with ``fill`` at unobserved positions."""
        out = np.full(self.shape, fill, dtype=self.values.dtype)
        out[self.rows, self.cols] = self.values
        return out

    def scaled(self, factor: float) -> "Observations":
        """The same entries with values divided by ``factor``."""
        values = (self.values.astype(np.float64) / factor).astype(self.values.dtype)
        return Observations(self.rows, self.cols, values, self.shape)

    def subset(self, mask: np.ndarray) -> "Observations":
        """The entries where boolean ``mask`` (shape (nnz,)) is True."""
        return Observations(self.rows[mask], self.cols[mask], self.values[mask], self.shape)

    def split(self, fraction: float, random_state=None) -> tuple["Observations", "Observations"]:
        """Hold out about ``fraction`` of the entries for validation.

        An entry is only held out when its row and its column keep at least
        one other training entry, so validation never empties a row or column.

        Returns
        -------
        train, validation : Observations
        """
        rng = check_random_state(random_state)
        n_val = int(round(fraction * self.nnz))
        row_left = self.row_counts().copy()
        col_left = self.col_counts().copy()
        held = np.zeros(self.nnz, dtype=bool)
        for k in rng.permutation(self.nnz):
            if n_val == 0:
                break
            i, j = self.rows[k], self.cols[k]
            if row_left[i] > 1 and col_left[j] > 1:
                held[k] = True
                row_left[i] -= 1
                col_left[j] -= 1
                n_val -= 1
        return self.subset(~held), self.subset(held)


def _check_shape(shape) -> tuple[int, int]:
    try:
        d1, d2 = (int(s) for s in shape)
        ok = all(float(s) == int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair of positive integers, got {shape!r}") from None
    if not ok or d1 < 1 or d2 < 1:
        raise ValueError(f"shape must be a pair of positive integers, got {shape!r}")
    return d1, d2


def _check_index(idx, name: str) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1:
        raise ValueError(f"{name} indices must be one-dimensional, got shape {idx.shape}")
    if idx.dtype.kind in "iu":
        return idx.astype(np.int64)
    if idx.dtype.kind == "f":
        if not np.all(np.isfinite(idx)) or np.any(idx != np.round(idx)):
            raise ValueError(f"{name} indices must be integers; found non-integer values")
        return idx.astype(np.int64)
    if idx.dtype.kind == "b":
        raise TypeError(f"{name} indices must be integers, got booleans")
    raise TypeError(
        f"{name} indices must be integers, got dtype {idx.dtype}; map string ids to "
        "integers first (e.g. pandas.factorize) or use the `linrfm complete` command")


def _from_triplets(rows, cols, values, shape, dtype) -> Observations:
    rows = _check_index(rows, "row")
    cols = _check_index(cols, "column")
    values = np.asarray(values)
    if values.dtype.kind not in "iufb":
        raise TypeError(f"observed values must be numeric, got dtype {values.dtype}")
    values = values.astype(dtype)
    if not (rows.shape == cols.shape == values.shape):
        raise ValueError(f"rows, cols and values must have the same length, got "
                         f"{rows.shape[0]}, {cols.shape[0]} and {values.shape[0]}")
    if rows.size == 0:
        raise ValueError("no observed entries: the input is empty")
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"observed values must be finite; found {int(bad.sum())} NaN/inf, "
                         f"first at (row {rows[k]}, column {cols[k]})")
    if rows.min() < 0 or cols.min() < 0:
        raise ValueError("row and column indices must be non-negative")
    if shape is None:
        shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    d1, d2 = _check_shape(shape)
    # every consumer counts the entries of each row and column
    check_memory(8.0 * (d1 + d2), what=f"the row and column counts of a {d1} x {d2} matrix",
                 cheaper="map the row and column ids to 0..n-1 first (e.g. pandas.factorize, "
                         "or `linrfm complete` with label ids)")
    if rows.max() >= d1 or cols.max() >= d2:
        raise ValueError(f"indices out of range for shape {(d1, d2)}: largest row index "
                         f"{rows.max()}, largest column index {cols.max()}")
    order = np.lexsort((cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    dup = (np.diff(rows) == 0) & (np.diff(cols) == 0)
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise ValueError(f"duplicate entries: {int(dup.sum())} (row, column) pairs appear more "
                         f"than once, first ({rows[k]}, {cols[k]}); aggregate them first "
                         "(e.g. average the duplicates)")
    return Observations(rows, cols, values, (d1, d2))


def as_observations(X, shape=None, dtype=np.float64) -> Observations:
    """Validate a partially observed matrix and return its :class:`Observations`.

    Parameters
    ----------
    X : ndarray, sparse matrix, (rows, cols, values) tuple, DataFrame or Observations
        * dense 2-D array: NaN marks a missing entry;
        * ``scipy.sparse`` matrix/array: stored entries are the observed ones,
          explicit zeros included;
        * ``(rows, cols, values)``: integer coordinates and values;
        * ``pandas.DataFrame`` with three columns (row, column, value).
    shape : tuple of int, optional
        ``(d1, d2)`` for triplet and DataFrame input; inferred as the largest
        index + 1 when omitted. Must match the array's shape otherwise.
    dtype : numpy dtype, default=float64
        Floating type of the values (float32 or float64).

    Returns
    -------
    Observations

    Raises
    ------
    ValueError, TypeError
        Empty or all-missing input, non-finite observed values, negative or
        out-of-range indices, non-integer indices, duplicate pairs, a
        ``shape`` smaller than the indices.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if isinstance(X, Observations):
        if shape is not None and tuple(shape) != X.shape:
            raise ValueError(f"shape {tuple(shape)} does not match the observations' {X.shape}")
        return Observations(X.rows, X.cols, X.values.astype(dtype), X.shape)
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"sparse input must be 2-D, got {X.ndim}-D")
        if shape is not None and tuple(shape) != X.shape:
            raise ValueError(f"shape {tuple(shape)} does not match the sparse input's {X.shape}")
        coo = X.tocoo()
        return _from_triplets(coo.row, coo.col, coo.data, X.shape, dtype)
    if type(X).__name__ == "DataFrame":
        if X.shape[1] != 3:
            raise ValueError("a DataFrame must have exactly three columns (row, column, value), "
                             f"got {X.shape[1]}")
        return _from_triplets(X.iloc[:, 0].to_numpy(), X.iloc[:, 1].to_numpy(),
                              X.iloc[:, 2].to_numpy(), shape, dtype)
    if isinstance(X, tuple):
        if len(X) != 3:
            raise ValueError(f"a tuple input must be (rows, cols, values), got a tuple of "
                             f"{len(X)} item(s); pass a 2-D array for a dense matrix")
        return _from_triplets(*X, shape, dtype)
    arr = np.asarray(X)
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"X must be numeric with NaN for missing entries, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"X must be a 2-D array with NaN for missing entries, got {arr.ndim}-D "
                         "(for triplets pass a (rows, cols, values) tuple)")
    if arr.size == 0:
        raise ValueError(f"X is empty (shape {arr.shape})")
    if shape is not None and tuple(shape) != arr.shape:
        raise ValueError(f"shape {tuple(shape)} does not match X's {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if np.isinf(arr).any():
        raise ValueError("X contains inf; only NaN may mark missing entries")
    observed = ~np.isnan(arr)
    if not observed.any():
        raise ValueError("X has no observed entry: every value is NaN")
    rows, cols = np.nonzero(observed)
    return Observations(rows.astype(np.int64), cols.astype(np.int64), arr[rows, cols], arr.shape)
