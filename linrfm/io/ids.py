"""Ids of rows and columns, and the parsed input a reader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._observations import Observations, as_observations

__all__ = ["ReadError", "IdMap", "InputData"]


def _tok(x):
    return x.item() if isinstance(x, np.generic) else x


class ReadError(ValueError):
    """An input file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class IdMap:
    """Translation between the ids of one axis in a file and matrix indices.

    Attributes
    ----------
    size : int
        Number of rows (or columns) of the matrix.
    labels : ndarray of shape (size,) or None
        ``labels[k]`` is the id of index ``k``: int64 or str, sorted. None
        means the ids are the indices themselves.
    """

    size: int
    labels: np.ndarray | None = None

    @property
    def is_identity(self) -> bool:
        """True when id ``k`` is index ``k`` for every ``k``."""
        if self.labels is None:
            return True
        return (self.labels.dtype.kind == "i"
                and np.array_equal(self.labels, np.arange(self.size)))

    def decode(self, index: np.ndarray) -> np.ndarray:
        """Ids of the matrix indices ``index``."""
        index = np.asarray(index, dtype=np.int64)
        return index if self.labels is None else self.labels[index]

    def ids(self) -> np.ndarray:
        """Id of every index, shape (size,)."""
        return self.decode(np.arange(self.size))

    def encode(self, tokens: Sequence[str], lines: Sequence[int] | None = None, *,
               axis: str = "row", source: str = "", missing: int | None = None) -> np.ndarray:
        """Matrix indices of the id strings ``tokens``.

        Parameters
        ----------
        tokens : sequence of str, length n
        lines : sequence of int, optional
            Line number of each token, for error messages.
        axis, source : str
            Named in error messages.
        missing : int, optional
            Index returned for unknown ids instead of raising.

        Returns
        -------
        ndarray of int64, shape (n,)

        Raises
        ------
        ReadError
            An id that is unknown (or out of range), naming its line, unless
            ``missing`` is given.
        """
        tokens = np.asarray(tokens, dtype=str)
        index, bad_mask = self._lookup(tokens)
        if not bad_mask.any():
            return index
        if missing is not None:
            return np.where(bad_mask, missing, index).astype(np.int64)
        bad = int(np.flatnonzero(bad_mask)[0])
        where = f"line {lines[bad]}: " if lines is not None else ""
        what = (f"not an index in [0, {self.size})" if self.labels is None
                else "not among the ids of the fitted matrix")
        raise ReadError(f"{source}{': ' if source else ''}{where}{axis} id "
                        f"{str(tokens[bad])!r} is {what}")

    def _lookup(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices, mask of unknown ids); unknown positions hold arbitrary indices."""
        if self.labels is not None and self.labels.dtype.kind != "i":
            index = np.minimum(np.searchsorted(self.labels, tokens), self.size - 1)
            return index.astype(np.int64), self.labels[index] != tokens
        values, bad = _parse_ints(tokens)
        unparsable = np.zeros(tokens.shape, dtype=bool)
        if bad is not None:
            unparsable = np.array([not _is_int(t) for t in tokens], dtype=bool)
            values = np.where(unparsable, "-1", tokens).astype(np.int64)
        if self.labels is None:
            bad_mask = unparsable | (values < 0) | (values >= self.size)
            return np.where(bad_mask, 0, values).astype(np.int64), bad_mask
        index = np.minimum(np.searchsorted(self.labels, values), self.size - 1)
        return index.astype(np.int64), unparsable | (self.labels[index] != values)

    def to_dict(self) -> dict:
        """JSON-friendly description (no labels, only their kind and count)."""
        kind = "index" if self.labels is None else (
            "integer" if self.labels.dtype.kind == "i" else "string")
        return {"size": self.size, "ids": kind}


@dataclass
class InputData:
    """What :func:`read_observations` returns.

    Attributes
    ----------
    observations : Observations
        The observed entries, validated by :func:`~linrfm._observations.as_observations`.
    row_ids, col_ids : IdMap
    format : str
    header : list of str or None
        Column names of a CSV/Parquet input.
    path : str
    """

    observations: Observations
    row_ids: IdMap
    col_ids: IdMap
    format: str
    header: list[str] | None = None
    path: str = ""
    info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """Small JSON-friendly summary of the input."""
        d1, d2 = self.observations.shape
        return {"path": self.path, "format": self.format, "shape": [d1, d2],
                "n_observed": self.observations.nnz,
                "fraction_observed": self.observations.nnz / (d1 * d2),
                "header": self.header, "row_ids": self.row_ids.to_dict(),
                "col_ids": self.col_ids.to_dict()}


# --------------------------------------------------------------------------- helpers
def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _parse_ints(tokens: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Parse integer strings; return (values, None) or (_, first bad position)."""
    try:
        return tokens.astype(np.int64), None
    except (ValueError, OverflowError):
        pass
    for k, tok in enumerate(tokens):
        try:
            int(tok)
        except ValueError:
            return np.empty(0, np.int64), k
    return np.empty(0, np.int64), 0  # pragma: no cover - astype failed for another reason



def _axis_ids(ids: np.ndarray, mode: str, axis: str, source: str,
              lines: np.ndarray | None) -> tuple[np.ndarray, IdMap]:
    """Turn the ids of one axis (str or int array) into indices and an IdMap."""
    if ids.dtype.kind in "US":
        values, bad = _parse_ints(ids)
        if bad is None:
            ids = values
        elif mode == "index":
            where = f"line {lines[bad]}: " if lines is not None else ""
            raise ReadError(f"{source}: {where}{axis} id {str(ids[bad])!r} is not an integer "
                            "(string ids need --ids label)")
    elif ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise ReadError(f"{source}: {axis} ids must be integers or strings, found "
                            "non-integer numbers")
        ids = ids.astype(np.int64)
    elif ids.dtype.kind == "O":
        ids = ids.astype(str)
        return _axis_ids(ids, mode, axis, source, lines)
    elif ids.dtype.kind not in "iu":
        raise ReadError(f"{source}: {axis} ids must be integers or strings, got {ids.dtype}")
    if mode == "index":
        ids = ids.astype(np.int64)
        if ids.min() < 0:
            k = int(np.argmin(ids))
            where = f"line {lines[k]}: " if lines is not None else ""
            raise ReadError(f"{source}: {where}negative {axis} index {ids[k]}")
        return ids, IdMap(int(ids.max()) + 1)
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
        low, high = int(ids.min()), int(ids.max())
        if low >= 0 and high < 4 * ids.size + 1024:
            # Dense non-negative ids: a counting pass instead of a sort.
            present = np.bincount(ids, minlength=high + 1) > 0
            labels = np.flatnonzero(present).astype(np.int64)
            index = (np.cumsum(present) - 1)[ids]
            return index.astype(np.int64), IdMap(int(labels.size), labels)
    labels, index = np.unique(ids, return_inverse=True)
    return index.astype(np.int64), IdMap(int(labels.size), labels)


def _triplets_to_input(row_tok, col_tok, values, *, ids: str, shape, dtype, source: str,
                       fmt: str, header=None, lines=None) -> InputData:
    parts = [np.asarray(a) for a in (row_tok, col_tok, values)]
    if any(a.ndim != 1 for a in parts) or len({a.shape[0] for a in parts}) != 1:
        raise ReadError(f"{source}: rows, cols and values must be one-dimensional and of the "
                        f"same length, got shapes {[a.shape for a in parts]}")
    if parts[0].size == 0:
        raise ReadError(f"{source}: no observed entries")
    rows, row_map = _axis_ids(parts[0], ids, "row", source, lines)
    cols, col_map = _axis_ids(parts[1], ids, "column", source, lines)
    if shape is not None:
        if ids != "index":
            raise ReadError("--shape only applies with --ids index")
        if len(shape) != 2 or min(shape) < 1:
            raise ReadError(f"{source}: the shape must be two positive integers, got "
                            f"{list(shape)}")
        d1, d2 = shape
        if rows.max() >= d1 or cols.max() >= d2:
            raise ReadError(f"{source}: indices up to ({rows.max()}, {cols.max()}) do not fit "
                            f"the given shape {d1} x {d2}")
        row_map, col_map = IdMap(int(d1)), IdMap(int(d2))
    try:
        obs = as_observations((rows, cols, values), shape=(row_map.size, col_map.size),
                              dtype=dtype)
    except (ValueError, TypeError) as exc:
        # Say which lines hold the first duplicate (as_observations sees indices only).
        order = np.lexsort((cols, rows))
        dup = np.flatnonzero((np.diff(rows[order]) == 0) & (np.diff(cols[order]) == 0))
        if dup.size:
            a, b = sorted((order[dup[0]], order[dup[0] + 1]))
            where = f" (lines {lines[a]} and {lines[b]})" if lines is not None else ""
            raise ReadError(f"{source}: duplicate entry for row {_tok(row_tok[a])!r}, column "
                            f"{_tok(col_tok[a])!r}{where}; aggregate duplicates first") from None
        raise ReadError(f"{source}: {exc}") from None
    return InputData(obs, row_map, col_map, fmt, header, source)


# --------------------------------------------------------------------------- CSV
