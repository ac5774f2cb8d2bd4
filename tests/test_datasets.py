"""The SPEC section 7 reference problems are drawn exactly as specified."""
import numpy as np
import pytest

from linrfm.datasets import REFERENCE_PROBLEMS, make_reference_problem, reference_problem


def test_reference_problem_matches_spec_check_values():
    prob = reference_problem("500_r5_10000")
    Y = prob.truth
    assert prob.observed.nnz == 10_000
    assert Y.sum() == pytest.approx(382.48720, abs=1e-5)
    assert Y[0, 0] == pytest.approx(-0.0777791, abs=1e-7)
    assert np.linalg.norm(Y) == pytest.approx(500.0)


def test_reference_problem_counts_and_conditioning():
    d1, d2, r, rho, _, cond, seed = REFERENCE_PROBLEMS["1000_r10_cond100_2x"]
    prob = make_reference_problem(120, 90, r, oversampling=rho, condition_number=cond,
                                  random_state=seed)
    assert prob.observed.nnz == int(np.floor(rho * r * (120 + 90 - r)))
    s = np.linalg.svd(prob.truth, compute_uv=False)[:r]
    assert s[0] / s[-1] == pytest.approx(cond, rel=1e-8)
    Y = prob.truth
    assert np.allclose(Y[prob.observed.rows, prob.observed.cols], prob.observed.values)


def test_factored_missing_error_equals_dense():
    prob = make_reference_problem(40, 30, 3, oversampling=2.0, random_state=0)
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((40, 4)), rng.standard_normal((30, 4))
    assert prob.missing_error_factored(A, B) == pytest.approx(prob.missing_error(A @ B.T),
                                                              rel=1e-10)
    assert prob.missing_error_factored(prob.left, prob.right) < 1e-7


def test_factored_missing_error_on_a_subset_of_rows_equals_dense():
    prob = make_reference_problem(40, 30, 3, oversampling=2.0, random_state=0)
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((40, 4)), rng.standard_normal((30, 4))
    rows = rng.random(40) < 0.6
    mask = np.ones(prob.shape, dtype=bool)
    mask[prob.observed.rows, prob.observed.cols] = False
    mask[~rows] = False
    Z = A @ B.T
    dense = np.linalg.norm((Z - prob.truth)[mask]) / np.linalg.norm(prob.truth[mask])
    assert prob.missing_error_factored(A, B, rows=rows) == pytest.approx(dense, rel=1e-10)
    assert prob.missing_error_factored(A, B, rows=np.ones(40, bool)) == pytest.approx(
        prob.missing_error_factored(A, B), rel=1e-12)
    with pytest.raises(ValueError, match="boolean mask of shape"):
        prob.missing_error_factored(A, B, rows=rows[:10])


def test_factored_missing_error_resolves_tiny_errors():
    # An estimate 1e-12 away from the truth: a Gram-based norm cannot see
    # below ~1e-8 (cancellation of squares), the QR-based one must.
    prob = make_reference_problem(40, 30, 3, oversampling=2.0, random_state=0)
    rng = np.random.default_rng(2)
    A = prob.left + 1e-12 * rng.standard_normal(prob.left.shape)
    dense = prob.missing_error(A @ prob.right.T)
    assert 1e-14 < dense < 1e-10
    assert prob.missing_error_factored(A, prob.right) == pytest.approx(dense, rel=1e-3)
    assert prob.missing_error_factored(prob.left, prob.right) < 1e-14


def test_reference_problem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        make_reference_problem(10, 10, 2, random_state=0)
    with pytest.raises(ValueError, match="unknown reference problem"):
        reference_problem("nope")
