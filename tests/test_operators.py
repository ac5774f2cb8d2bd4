"""Measurement operators: every input format, adjoints (dot test), bad input."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from linrfm.datasets import make_sensing_problem
from linrfm.operators import (
    DenseMeasurementOperator,
    FunctionMeasurementOperator,
    SparseMeasurementOperator,
    as_measurement_operator,
    dottest,
)

D1, D2, M = 6, 5, 20


@pytest.fixture(scope="module")
def problem():
    return make_sensing_problem(D1, D2, 2, M, random_state=0)


def _function_op(A2):
    """A LinearOperator from plain functions (no stored matrix)."""
    return LinearOperator(A2.shape, matvec=lambda x: A2 @ x, rmatvec=lambda y: A2.T @ y,
                          dtype=np.float64)


# name -> (builder(A3) -> (A, shape), expected class)
FORMATS = {
    "dense3d": (lambda A: (A, None), DenseMeasurementOperator),
    "dense3d+shape": (lambda A: (A, (D1, D2)), DenseMeasurementOperator),
    "dense2d": (lambda A: (A.reshape(M, -1), (D1, D2)), DenseMeasurementOperator),
    "list": (lambda A: (A.tolist(), None), DenseMeasurementOperator),
    "csr_matrix": (lambda A: (sp.csr_matrix(A.reshape(M, -1)), (D1, D2)),
                   SparseMeasurementOperator),
    "csc_array": (lambda A: (sp.csc_array(A.reshape(M, -1)), (D1, D2)),
                  SparseMeasurementOperator),
    "coo_array": (lambda A: (sp.coo_array(A.reshape(M, -1)), (D1, D2)),
                  SparseMeasurementOperator),
    "aslinearoperator": (lambda A: (aslinearoperator(A.reshape(M, -1)), (D1, D2)),
                         FunctionMeasurementOperator),
    "function": (lambda A: (_function_op(A.reshape(M, -1)), (D1, D2)),
                 FunctionMeasurementOperator),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_dot_test_and_values(problem, fmt):
    A3, y, Z = problem
    build, cls = FORMATS[fmt]
    op = as_measurement_operator(*build(A3), random_state=0)
    assert isinstance(op, cls)
    assert op.shape == (M, D1 * D2) and op.matrix_shape == (D1, D2)
    rng = np.random.default_rng(1)
    assert dottest(op, rng, rtol=1e-12)
    # the operator of the transposed matrices measures Z^T and is an adjoint pair too
    opt = op.swap_sides()
    assert opt.matrix_shape == (D2, D1)
    assert dottest(opt, rng, rtol=1e-12)
    np.testing.assert_allclose(op.forward(Z), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(opt.forward(Z.T), y, rtol=1e-12, atol=1e-12)

    # Gram, its diagonal, row norms, dense copy: same numbers for every format
    K = rng.standard_normal((D2, D2))
    K = K @ K.T
    S_ref = np.einsum("kij,lij->kl", A3, A3 @ K)
    np.testing.assert_allclose(op.gram(K), S_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.gram_diagonal(K), np.diag(S_ref), rtol=1e-12, atol=1e-12)
    # kernel on the rows: S_kl = <A_k, K A_l>, the column Gram of the transposed operator
    L = rng.standard_normal((D1, D1))
    L = L @ L.T
    S_rows = np.einsum("kij,lij->kl", A3, np.matmul(L, A3))
    np.testing.assert_allclose(op.gram(L, "rows"), S_rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(opt.gram(L), S_rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.gram_diagonal(L, "rows"), np.diag(S_rows), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(op.row_norms_sq(), np.sum(A3 ** 2, axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(op.to_dense(), A3.reshape(M, -1), rtol=0, atol=0)
    np.testing.assert_allclose(opt.to_dense(), A3.transpose(0, 2, 1).reshape(M, -1), atol=0)
    c = rng.standard_normal(M)
    np.testing.assert_allclose(op.adjoint(c), np.einsum("k,kij->ij", c, A3), atol=1e-12)


@pytest.mark.parametrize("fmt", ["dense2d", "csr_matrix", "function"])
def test_blocked_gram_equals_one_block(problem, fmt):
    A3 = problem[0]
    A, shape = FORMATS[fmt][0](A3)
    K = np.diag(np.arange(1.0, D2 + 1))
    whole = as_measurement_operator(A, shape, random_state=0)
    # 3 measurements per block: several blocks and a ragged last one
    blocked = as_measurement_operator(A, shape, random_state=0, block_bytes=3 * 8 * D1 * D2)
    L = np.diag(np.arange(1.0, D1 + 1))
    for side, kern in (("columns", K), ("rows", L)):
        np.testing.assert_allclose(blocked.gram(kern, side), whole.gram(kern, side), rtol=1e-13)
        np.testing.assert_allclose(blocked.gram_diagonal(kern, side),
                                   whole.gram_diagonal(kern, side), rtol=1e-13)
    with pytest.raises(ValueError, match="side"):
        whole.gram(K, "left")


def test_materialize_and_passthrough(problem):
    A3 = problem[0]
    op = as_measurement_operator(_function_op(A3.reshape(M, -1)), (D1, D2), random_state=0)
    dense = op.materialize()
    assert isinstance(dense, DenseMeasurementOperator)
    np.testing.assert_array_equal(dense.matrix, A3.reshape(M, -1))
    assert as_measurement_operator(dense) is dense
    with pytest.raises(ValueError, match="matrix_shape"):
        as_measurement_operator(dense, shape=(D2, D1))


def test_dottest_detects_wrong_adjoint(problem):
    A2 = problem[0].reshape(M, -1)
    bad = LinearOperator(A2.shape, matvec=lambda x: A2 @ x, rmatvec=lambda y: 2.0 * (A2.T @ y),
                         dtype=np.float64)
    assert not dottest(bad, 0, raise_error=False)
    with pytest.raises(ValueError, match="dot test failed"):
        dottest(bad, 0)
    with pytest.raises(ValueError, match="not the adjoint"):
        as_measurement_operator(bad, (D1, D2))
    # an adjoint that forgets the row-major convention (column-major vec) fails too
    perm = np.arange(D1 * D2).reshape(D1, D2).T.ravel()
    shuffled = LinearOperator(A2.shape, matvec=lambda x: A2 @ x,
                              rmatvec=lambda y: (A2.T @ y)[perm], dtype=np.float64)
    with pytest.raises(ValueError, match="not the adjoint"):
        as_measurement_operator(shuffled, (D1, D2))


def test_linear_operator_without_rmatvec(problem):
    A2 = problem[0].reshape(M, -1)
    op = LinearOperator(A2.shape, matvec=lambda x: A2 @ x, dtype=np.float64)
    with pytest.raises(TypeError, match="no working rmatvec"):
        as_measurement_operator(op, (D1, D2))


def test_linear_operator_wrong_output_sizes(problem):
    A2 = problem[0].reshape(M, -1)
    short = LinearOperator(A2.shape, matvec=lambda x: A2 @ x, rmatvec=lambda y: (A2.T @ y)[:-1],
                           dtype=np.float64)
    with pytest.raises(ValueError, match="rmatvec failed .* d1\\*d2 = 30"):
        as_measurement_operator(short, (D1, D2))
    nan = LinearOperator(A2.shape, matvec=lambda x: np.full(M, np.nan), rmatvec=lambda y: A2.T @ y,
                         dtype=np.float64)
    with pytest.raises(ValueError, match="NaN"):
        as_measurement_operator(nan, (D1, D2))


def _poison(A3, value):
    out = A3.copy()
    out[3, 2, 1] = value
    return out


BAD = {
    # each case: (A, shape) -> exception type, message fragment
    "2d without shape": (lambda A3: (A3.reshape(M, -1), None), ValueError, "shape=.* required"),
    "sparse without shape": (lambda A3: (sp.csr_matrix(A3.reshape(M, -1)), None), ValueError,
                             "shape=.* required"),
    "linop without shape": (lambda A3: (aslinearoperator(A3.reshape(M, -1)), None), ValueError,
                            "shape=.* required"),
    "3d wrong shape": (lambda A3: (A3, (D2, D1)), ValueError, "does not match"),
    "2d wrong columns": (lambda A3: (A3.reshape(M, -1), (D1, D2 + 1)), ValueError, "columns"),
    "sparse wrong columns": (lambda A3: (sp.csr_matrix(A3.reshape(M, -1)), (D1 + 1, D2)),
                             ValueError, "columns"),
    "linop wrong columns": (lambda A3: (aslinearoperator(A3.reshape(M, -1)), (D1, D1)),
                            ValueError, "LinearOperator has shape"),
    "1d": (lambda A3: (A3.ravel(), None), ValueError, "3-D .* or 2-D"),
    "4d": (lambda A3: (A3[None], None), ValueError, "3-D .* or 2-D"),
    "no measurements": (lambda A3: (A3[:0], None), ValueError, "no measurements"),
    "nan dense": (lambda A3: (_poison(A3, np.nan), None), ValueError, "NaN"),
    "inf sparse": (lambda A3: (sp.csr_matrix(_poison(A3, np.inf).reshape(M, -1)), (D1, D2)),
                   ValueError, "NaN or infinite"),
    "complex": (lambda A3: (A3 + 1j, None), TypeError, "real"),
    "strings": (lambda A3: (np.full((2, 2, 2), "a"), None), TypeError, "real"),
    "bad type": (lambda A3: ("A", None), TypeError, "must be an array"),
    "shape not pair": (lambda A3: (A3.reshape(M, -1), (D1 * D2,)), TypeError, "tuple"),
    "shape float": (lambda A3: (A3.reshape(M, -1), (6.0, 5.0)), TypeError, "integers"),
    "shape negative": (lambda A3: (A3.reshape(M, -1), (-6, -5)), ValueError, "positive"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(problem, case):
    build, exc, match = BAD[case]
    A, shape = build(problem[0])
    with pytest.raises(exc, match=match):
        as_measurement_operator(A, shape)
