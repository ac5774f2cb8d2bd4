r"""Linear measurement operators for matrix sensing.

A measurement operator maps a matrix :math:`Z \in \mathbb{R}^{d_1 \times d_2}`
to :math:`m` measurements :math:`y_k = \langle A_k, Z \rangle =
\operatorname{tr}(A_k^T Z)`. Every operator here is a
:class:`scipy.sparse.linalg.LinearOperator` of shape ``(m, d1 * d2)`` acting on
the **row-major** vectorisation ``vec(Z) = Z.ravel()``:

* ``matvec``: ``vec(Z) -> y``, shape ``(d1*d2,) -> (m,)``;
* ``rmatvec`` (the adjoint): ``y -> vec(sum_k y_k A_k)``, ``(m,) -> (d1*d2,)``.

:func:`as_measurement_operator` turns the accepted input formats into one of
three classes that share this interface:

=========================================  ==================================
input                                      class
=========================================  ==================================
dense array ``(m, d1, d2)``                :class:`DenseMeasurementOperator`
dense array ``(m, d1*d2)`` + ``shape``     :class:`DenseMeasurementOperator`
``scipy.sparse`` ``(m, d1*d2)`` + ``shape``  :class:`SparseMeasurementOperator`
``LinearOperator`` + ``shape``             :class:`FunctionMeasurementOperator`
=========================================  ==================================

Besides ``matvec``/``rmatvec`` they provide what the lin-RFM sensing solver
needs: the ``m x m`` kernel Gram matrix ``S_kl = <A_k, A_l K>`` (kernel on the
columns) or ``<A_k, K A_l>`` (on the rows) for the direct solver, and its
diagonal (Jacobi preconditioner for conjugate gradients), both computed in
memory-bounded blocks without copying ``A``; also the operator of the
transposed matrices ``A_k^T`` (:meth:`MeasurementOperator.swap_sides`).
:func:`dottest` checks that ``rmatvec`` is the adjoint of ``matvec``.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator
from sklearn.utils import check_random_state

__all__ = [
    "MeasurementOperator",
    "DenseMeasurementOperator",
    "SparseMeasurementOperator",
    "FunctionMeasurementOperator",
    "as_measurement_operator",
    "check_measurement_norms",
    "dottest",
]

DEFAULT_BLOCK_BYTES = 64 * 2**20


def _check_matrix_shape(shape) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)):
        raise TypeError(f"shape must be a tuple (d1, d2) of two integers, got {shape!r}")
    d1, d2 = int(shape[0]), int(shape[1])
    if d1 < 1 or d2 < 1:
        raise ValueError(f"shape must contain positive integers, got {shape!r}")
    return d1, d2


def _as_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return check_random_state(rng)


class MeasurementOperator(LinearOperator):
    r"""Base class: ``Z -> (<A_1, Z>, ..., <A_m, Z>)`` on row-major ``vec(Z)``.

    Parameters
    ----------
    n_measurements : int
        ``m``.
    matrix_shape : tuple of int
        ``(d1, d2)``, the shape of ``Z`` and of each ``A_k``.

    Attributes
    ----------
    shape : tuple of int
        ``(m, d1 * d2)`` (the :class:`LinearOperator` shape).
    matrix_shape : tuple of int
        ``(d1, d2)``.
    explicit : bool
        True when the ``A_k`` are stored (dense or sparse), so that the Gram
        matrix and its diagonal are computed exactly and cheaply.
    """

    explicit = True

    def __init__(self, n_measurements: int, matrix_shape: tuple[int, int],
                 block_bytes: int = DEFAULT_BLOCK_BYTES):
        d1, d2 = matrix_shape
        super().__init__(dtype=np.dtype(np.float64), shape=(int(n_measurements), d1 * d2))
        self.matrix_shape = (int(d1), int(d2))
        self.block_bytes = int(block_bytes)

    @property
    def n_measurements(self) -> int:
        """Number of measurements ``m``."""
        return self.shape[0]

    def forward(self, Z: np.ndarray) -> np.ndarray:
        """Measurements of a matrix: ``Z (d1, d2) -> y (m,)``."""
        return self.matvec(np.ascontiguousarray(Z, dtype=np.float64).ravel())

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``sum_k y_k A_k`` as a ``(d1, d2)`` matrix."""
        return self.rmatvec(np.asarray(y, dtype=np.float64)).reshape(self.matrix_shape)

    # -- what the sensing solver needs -------------------------------------------
    def _blocks(self):
        d1, d2 = self.matrix_shape
        m = self.shape[0]
        step = max(1, self.block_bytes // (8 * d1 * d2))
        for start in range(0, m, step):
            yield slice(start, min(start + step, m))

    def _rows(self, blk: slice) -> np.ndarray | sp.csr_array:
        """Stored ``A_k`` for ``k`` in ``blk`` as rows ``(nb, d1*d2)``."""
        raise NotImplementedError

    def _rows_times_kernel(self, blk: slice, K: np.ndarray, side: str) -> np.ndarray:
        """Dense ``vec(A_k K)`` (columns) or ``vec(K A_k)`` (rows), ``k`` in ``blk``."""
        d1, d2 = self.matrix_shape
        R = self._rows(blk)
        nb = blk.stop - blk.start
        if side == "columns":
            return np.asarray(R.reshape(nb * d1, d2) @ K).reshape(nb, d1 * d2)
        if side != "rows":
            raise ValueError(f"side must be 'columns' or 'rows', got {side!r}")
        R3 = (R.toarray() if sp.issparse(R) else np.asarray(R)).reshape(nb, d1, d2)
        # one GEMM K @ [A_k1 ... A_knb] instead of nb small ones
        P = K @ R3.transpose(1, 0, 2).reshape(d1, nb * d2)
        return P.reshape(d1, nb, d2).transpose(1, 0, 2).reshape(nb, d1 * d2)

    def gram(self, K: np.ndarray, side: str = "columns") -> np.ndarray:
        r"""Kernel Gram matrix, shape ``(m, m)``.

        ``S_kl = <A_k, A_l K>`` for ``side="columns"`` (``K`` is ``d2 x d2``,
        ``S = A (I_{d1} \otimes K) A^T`` in row-major vectorisation) and
        ``S_kl = <A_k, K A_l>`` for ``side="rows"`` (``K`` is ``d1 x d1``).
        Symmetric positive semi-definite when ``K`` is. Built in blocks of
        measurements whose dense ``A_l K`` take at most ``block_bytes``.
        """
        m = self.shape[0]
        S = np.empty((m, m))
        for blk in self._blocks():
            B = self._rows_times_kernel(blk, K, side)
            S[:, blk] = np.asarray(self._matmat(B.T))
        return 0.5 * (S + S.T)

    def gram_diagonal(self, K: np.ndarray, side: str = "columns") -> np.ndarray:
        """Diagonal of :meth:`gram` (``<A_k, A_k K>`` or ``<A_k, K A_k>``), shape ``(m,)``."""
        out = np.empty(self.shape[0])
        for blk in self._blocks():
            B = self._rows_times_kernel(blk, K, side)
            R = self._rows(blk)
            if sp.issparse(R):
                out[blk] = np.asarray(sp.csr_array(R).multiply(B).sum(axis=1)).ravel()
            else:
                out[blk] = np.einsum("ij,ij->i", R, B)
        return out

    def row_norms_sq(self) -> np.ndarray:
        """``||A_k||_F^2`` for every measurement, shape ``(m,)``."""
        out = np.empty(self.shape[0])
        for blk in self._blocks():
            R = self._rows(blk)
            out[blk] = (np.asarray(sp.csr_array(R).multiply(R).sum(axis=1)).ravel()
                        if sp.issparse(R) else np.einsum("ij,ij->i", R, R))
        return out

    def to_dense(self) -> np.ndarray:
        """All ``A_k`` as rows of a dense ``(m, d1*d2)`` array."""
        return np.vstack([np.asarray(sp.csr_array(R).toarray() if sp.issparse(R) else R)
                          for R in (self._rows(blk) for blk in self._blocks())])

    def swap_sides(self) -> "MeasurementOperator":
        """Operator of the transposed matrices ``A_k^T`` (it measures ``Z^T``)."""
        raise NotImplementedError


class DenseMeasurementOperator(MeasurementOperator):
    """Measurement operator stored as a dense ``(m, d1*d2)`` array.

    Parameters
    ----------
    matrix : ndarray, shape (m, d1*d2)
        Row ``k`` is the row-major ``vec(A_k)``; assumed validated.
    matrix_shape : tuple of int
        ``(d1, d2)``.
    """

    def __init__(self, matrix: np.ndarray, matrix_shape, block_bytes: int = DEFAULT_BLOCK_BYTES):
        super().__init__(matrix.shape[0], matrix_shape, block_bytes)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float64)

    def _matvec(self, x):
        return self.matrix @ np.ravel(x)

    def _rmatvec(self, y):
        return self.matrix.T @ np.ravel(y)

    def _matmat(self, X):
        return self.matrix @ X

    def _rmatmat(self, Y):
        return self.matrix.T @ Y

    def _rows(self, blk):
        return self.matrix[blk]

    def to_dense(self):
        return self.matrix

    def swap_sides(self):
        d1, d2 = self.matrix_shape
        m = self.shape[0]
        At = self.matrix.reshape(m, d1, d2).transpose(0, 2, 1).reshape(m, d2 * d1)
        return DenseMeasurementOperator(At, (d2, d1), self.block_bytes)


class SparseMeasurementOperator(MeasurementOperator):
    """Measurement operator stored as a sparse CSR ``(m, d1*d2)`` array.

    Parameters
    ----------
    matrix : scipy.sparse array or matrix, shape (m, d1*d2)
        Row ``k`` is the row-major ``vec(A_k)``; assumed validated.
    matrix_shape : tuple of int
        ``(d1, d2)``.
    """

    def __init__(self, matrix, matrix_shape, block_bytes: int = DEFAULT_BLOCK_BYTES):
        super().__init__(matrix.shape[0], matrix_shape, block_bytes)
        self.matrix = sp.csr_array(matrix, dtype=np.float64)
        self._matrix_t = self.matrix.T.tocsr()

    def _matvec(self, x):
        return self.matrix @ np.ravel(x)

    def _rmatvec(self, y):
        return self._matrix_t @ np.ravel(y)

    def _matmat(self, X):
        return self.matrix @ X

    def _rmatmat(self, Y):
        return self._matrix_t @ Y

    def _rows(self, blk):
        return self.matrix[blk]

    def row_norms_sq(self):
        return np.asarray(self.matrix.multiply(self.matrix).sum(axis=1)).ravel()

    def swap_sides(self):
        d1, d2 = self.matrix_shape
        coo = self.matrix.tocoo()
        i, j = np.divmod(coo.col, d2)
        At = sp.csr_array((coo.data, (coo.row, j * d1 + i)), shape=self.shape)
        return SparseMeasurementOperator(At, (d2, d1), self.block_bytes)


class FunctionMeasurementOperator(MeasurementOperator):
    """Matrix-free measurement operator wrapping a user ``LinearOperator``.

    The ``A_k`` are not stored. :meth:`gram` and :meth:`gram_diagonal` build
    the needed rows with the adjoint (``m`` adjoint applications), so the
    conjugate-gradient solver, which needs only ``matvec`` and ``rmatvec``,
    is the natural one here; :meth:`row_norms_sq` is computed once and cached.

    Parameters
    ----------
    op : LinearOperator, shape (m, d1*d2)
        Must implement ``matvec`` and ``rmatvec`` (assumed checked).
    matrix_shape : tuple of int
        ``(d1, d2)``.
    """

    explicit = False

    def __init__(self, op: LinearOperator, matrix_shape, block_bytes: int = DEFAULT_BLOCK_BYTES):
        super().__init__(op.shape[0], matrix_shape, block_bytes)
        self.op = op
        self._row_norms = None

    def _matvec(self, x):
        return np.asarray(self.op.matvec(np.ravel(x)), dtype=np.float64).ravel()

    def _rmatvec(self, y):
        return np.asarray(self.op.rmatvec(np.ravel(y)), dtype=np.float64).ravel()

    def _matmat(self, X):
        return np.column_stack([self._matvec(X[:, j]) for j in range(X.shape[1])])

    def _rmatmat(self, Y):
        return np.column_stack([self._rmatvec(Y[:, j]) for j in range(Y.shape[1])])

    def _rows(self, blk):
        E = np.zeros((self.shape[0], blk.stop - blk.start))
        E[np.arange(blk.start, blk.stop), np.arange(blk.stop - blk.start)] = 1.0
        return self._rmatmat(E).T

    def row_norms_sq(self):
        if self._row_norms is None:
            self._row_norms = super().row_norms_sq()
        return self._row_norms

    def materialize(self) -> DenseMeasurementOperator:
        """Dense copy (``m`` adjoint applications, ``8 m d1 d2`` bytes)."""
        return DenseMeasurementOperator(self.to_dense(), self.matrix_shape, self.block_bytes)

    def swap_sides(self):
        d1, d2 = self.matrix_shape
        op = self.op

        def matvec(x):
            return op.matvec(np.ravel(x).reshape(d2, d1).T.ravel())

        def rmatvec(y):
            return np.asarray(op.rmatvec(np.ravel(y))).reshape(d1, d2).T.ravel()

        return FunctionMeasurementOperator(
            LinearOperator(self.shape, matvec=matvec, rmatvec=rmatvec, dtype=np.float64),
            (d2, d1), self.block_bytes)


def _check_finite(values, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or infinite values")


def _check_real(dtype, what: str) -> None:
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"{what} must be real-valued, got dtype {dtype}")


def check_measurement_norms(op: MeasurementOperator) -> None:
    """Refuse an all-zero ``A_k`` or norms that overflow or underflow float64.

    A zero measurement carries no information and makes the ``m x m`` system
    singular (CG's Lanczos estimate then fails); norms beyond ``1e+-100``
    overflow that system's entries (``||A_k||^2`` squared again by the kernel).

    Raises
    ------
    ValueError
    """
    norms = op.row_norms_sq()
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{zero.size} measurement(s) have an all-zero A_k (first: k = "
                         f"{int(zero[0])}); they carry no information: drop them")
    big = float(np.max(norms))
    small = float(np.min(norms))
    if not (big <= 1e200 and small >= 1e-200):
        raise ValueError(f"the squared norms ||A_k||^2 range from {small:.3g} to {big:.3g}, "
                         "outside [1e-200, 1e200] where the m x m system over- or "
                         "underflows float64: rescale A (and y) before fitting")


def as_measurement_operator(A, shape=None, *, random_state=None,
                            block_bytes: int = DEFAULT_BLOCK_BYTES) -> MeasurementOperator:
    """Validate measurements ``A`` and wrap them in a :class:`MeasurementOperator`.

    Parameters
    ----------
    A : ndarray of shape (m, d1, d2) or (m, d1*d2), scipy.sparse (m, d1*d2), \
or LinearOperator (m, d1*d2)
        The sensing matrices ``A_k``; flattened forms use row-major
        ``vec(A_k)``. A :class:`MeasurementOperator` is returned unchanged.
    shape : tuple (d1, d2), optional
        Shape of the unknown matrix. Required for every flattened form (2-D
        array, sparse, LinearOperator); checked against ``A`` when given with
        a 3-D array.
    random_state : int, RandomState or Generator, optional
        Random vectors of the adjoint check run on a ``LinearOperator``.
    block_bytes : int
        Memory budget of one block of dense ``A_k K`` products.

    Returns
    -------
    MeasurementOperator

    Raises
    ------
    TypeError
        Unsupported type, complex values, or a ``LinearOperator`` without a
        working ``rmatvec``.
    ValueError
        Missing or inconsistent ``shape``, no measurements, non-finite
        values, or a ``LinearOperator`` whose ``rmatvec`` fails the dot test.
    """
    if isinstance(A, MeasurementOperator):
        if shape is not None and _check_matrix_shape(shape) != A.matrix_shape:
            raise ValueError(f"shape={tuple(shape)} does not match the operator's "
                             f"matrix_shape={A.matrix_shape}")
        return A
    if isinstance(A, LinearOperator):
        return _from_linear_operator(A, shape, random_state, block_bytes)
    if sp.issparse(A):
        if shape is None:
            raise ValueError("shape=(d1, d2) is required when A is a sparse (m, d1*d2) matrix")
        d1, d2 = _check_matrix_shape(shape)
        if A.ndim != 2:
            raise ValueError(f"sparse A must be 2-D (m, d1*d2), got ndim={A.ndim}")
        _check_real(A.dtype, "A")
        if A.shape[1] != d1 * d2:
            raise ValueError(f"A has {A.shape[1]} columns but shape={(d1, d2)} needs "
                             f"d1*d2 = {d1 * d2}")
        if A.shape[0] < 1:
            raise ValueError("A has no measurements (m = 0)")
        A = sp.csr_array(A, dtype=np.float64)
        _check_finite(A.data, "A")
        return SparseMeasurementOperator(A, (d1, d2), block_bytes)
    if isinstance(A, (np.ndarray, list, tuple)) or hasattr(A, "__array__"):
        arr = np.asarray(A)
        _check_real(arr.dtype, "A")
        if arr.ndim == 3:
            m, d1, d2 = arr.shape
            if shape is not None and _check_matrix_shape(shape) != (d1, d2):
                raise ValueError(f"shape={tuple(shape)} does not match A.shape[1:]={(d1, d2)}")
            if d1 < 1 or d2 < 1:
                raise ValueError(f"A has an empty matrix shape {(d1, d2)}")
        elif arr.ndim == 2:
            if shape is None:
                raise ValueError("shape=(d1, d2) is required when A is a 2-D (m, d1*d2) array; "
                                 "or pass A as a 3-D (m, d1, d2) array")
            d1, d2 = _check_matrix_shape(shape)
            m = arr.shape[0]
            if arr.shape[1] != d1 * d2:
                raise ValueError(f"A has {arr.shape[1]} columns but shape={(d1, d2)} needs "
                                 f"d1*d2 = {d1 * d2}")
        else:
            raise ValueError("A must be a 3-D (m, d1, d2) or 2-D (m, d1*d2) array, "
                             f"got ndim={arr.ndim}")
        if m < 1:
            raise ValueError("A has no measurements (m = 0)")
        arr = np.asarray(arr, dtype=np.float64)
        _check_finite(arr, "A")
        return DenseMeasurementOperator(arr.reshape(m, d1 * d2), (d1, d2), block_bytes)
    raise TypeError("A must be an array (m, d1, d2) or (m, d1*d2), a scipy.sparse matrix or a "
                    f"scipy LinearOperator, got {type(A).__name__}")


def _from_linear_operator(op, shape, random_state, block_bytes):
    if shape is None:
        raise ValueError("shape=(d1, d2) is required when A is a LinearOperator")
    d1, d2 = _check_matrix_shape(shape)
    if len(op.shape) != 2 or op.shape[1] != d1 * d2:
        raise ValueError(f"the LinearOperator has shape {op.shape}; shape={(d1, d2)} needs "
                         f"(m, {d1 * d2})")
    if op.shape[0] < 1:
        raise ValueError("the LinearOperator has no measurements (m = 0)")
    if op.dtype is not None and np.issubdtype(op.dtype, np.complexfloating):
        raise TypeError(f"the LinearOperator must be real, got dtype {op.dtype}")
    wrapped = FunctionMeasurementOperator(op, (d1, d2), block_bytes)
    rng = _as_rng(random_state)
    m, n = op.shape
    try:
        y = np.asarray(op.rmatvec(rng.standard_normal(m)))
    except (NotImplementedError, TypeError, RecursionError) as exc:
        raise TypeError("the LinearOperator A has no working rmatvec (the adjoint "
                        "y -> vec(sum_k y_k A_k)); build it with "
                        "LinearOperator(shape, matvec=..., rmatvec=...)") from exc
    except ValueError as exc:
        raise ValueError(f"A.rmatvec failed on a vector of length m = {m} (it must return "
                         f"d1*d2 = {n} values): {exc}") from exc
    if y.size != n:
        raise ValueError(f"A.rmatvec returned {y.size} values, expected d1*d2 = {n}")
    try:
        x = np.asarray(op.matvec(rng.standard_normal(n)))
    except ValueError as exc:
        raise ValueError(f"A.matvec failed on a vector of length d1*d2 = {n} (it must return "
                         f"m = {m} values): {exc}") from exc
    if x.size != m:
        raise ValueError(f"A.matvec returned {x.size} values, expected m = {m}")
    _check_finite(x, "A.matvec(x) for a random x")
    _check_finite(y, "A.rmatvec(y) for a random y")
    if not dottest(wrapped, rng, rtol=1e-8, raise_error=False):
        raise ValueError("A.rmatvec is not the adjoint of A.matvec (dot test "
                         "<A x, y> = <x, A^T y> failed)")
    return wrapped


def dottest(op: LinearOperator, rng=None, *, rtol: float = 1e-10,
            raise_error: bool = True) -> bool:
    r"""Dot test: check ``<A x, y> = <x, A^T y>`` for random ``x`` and ``y``.

    Parameters
    ----------
    op : LinearOperator, shape (m, n)
        Real operator with ``matvec`` and ``rmatvec``.
    rng : int, RandomState or Generator, optional
        Source of the random vectors.
    rtol : float
        Relative tolerance on ``|<A x, y> - <x, A^T y>|``, relative to the
        mean of their absolute values.
    raise_error : bool
        Raise ``ValueError`` on failure instead of returning False.

    Returns
    -------
    bool
        True when the test passes.

    Notes
    -----
    The test from PyLops ``pylops/utils/dottest.py``: an adjoint that is off
    by a transpose, a scaling or an index shuffle fails it with probability 1.
    """
    rng = _as_rng(rng)
    m, n = op.shape
    x = rng.standard_normal(n)
    y = rng.standard_normal(m)
    lhs = float(np.dot(np.ravel(op.matvec(x)), y))
    rhs = float(np.dot(x, np.ravel(op.rmatvec(y))))
    err = abs(lhs - rhs) / max(0.5 * (abs(lhs) + abs(rhs)), np.finfo(float).tiny)
    ok = err <= rtol
    if not ok and raise_error:
        raise ValueError(f"dot test failed: <A x, y> = {lhs:.16e}, <x, A^T y> = {rhs:.16e}, "
                         f"relative error {err:.2e} > rtol={rtol:g}")
    return ok
