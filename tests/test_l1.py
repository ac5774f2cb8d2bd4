"""BasisPursuit: exact l1 minimisation as a linear program."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from linrfm.baselines import BasisPursuit
from linrfm.datasets import make_sparse_regression


def test_recovers_sparse_vector_above_phase_transition():
    X, y, coef = make_sparse_regression(60, 200, 10, random_state=0)
    est = BasisPursuit().fit(X, y)
    assert np.linalg.norm(est.coef_ - coef) <= 1e-6 * np.linalg.norm(coef)
    assert est.intercept_ == 0.0
    np.testing.assert_allclose(est.predict(X), y, atol=1e-7)


def test_solution_is_feasible_and_l1_minimal():
    """Below the phase transition the l1 minimiser is not the truth, but still
    interpolates and has an l1 norm no larger than any other interpolant's."""
    X, y, coef = make_sparse_regression(20, 60, 10, random_state=1)
    est = BasisPursuit().fit(X, y)
    np.testing.assert_allclose(X @ est.coef_, y, atol=1e-7)
    rng = np.random.default_rng(1)
    null = np.linalg.svd(X)[2][20:].T  # basis of the null space of X
    l1 = np.abs(est.coef_).sum()
    assert l1 <= np.abs(coef).sum() + 1e-7
    for _ in range(50):
        other = est.coef_ + null @ rng.standard_normal(40) * 1e-2
        assert l1 <= np.abs(other).sum() + 1e-9


def test_small_problem_by_hand():
    # an invertible system has one solution
    X = np.array([[1.0, 1.0], [1.0, 2.0]])
    est = BasisPursuit().fit(X, [1.0, 2.0])
    np.testing.assert_allclose(est.coef_, [0.0, 1.0], atol=1e-9)
    # one equation: the l1 minimiser puts everything on the largest coefficient
    X = np.array([[1.0, 2.0, 0.5]])
    np.testing.assert_allclose(BasisPursuit().fit(X, [4.0]).coef_, [0.0, 2.0, 0.0], atol=1e-9)


def test_sparse_X_equals_dense_X():
    Xs = sp.random(30, 80, density=0.3, random_state=2, format="csr")
    coef = np.zeros(80)
    coef[[3, 17, 40]] = [1.0, -2.0, 0.5]
    y = Xs @ coef
    a = BasisPursuit().fit(Xs, y)
    b = BasisPursuit().fit(Xs.toarray(), y)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-7)


def test_infeasible_raises():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((30, 5)), rng.standard_normal(30)
    with pytest.raises(ValueError, match="no solution"):
        BasisPursuit().fit(X, y)


@pytest.mark.parametrize("tol, error", [(0.0, ValueError), (-1.0, ValueError), ("a", TypeError)])
def test_bad_tol(tol, error):
    X, y, _ = make_sparse_regression(10, 20, 2, random_state=0)
    with pytest.raises(error, match="tol"):
        BasisPursuit(tol=tol).fit(X, y)


@pytest.mark.parametrize("X, y, match", [
    (np.full((3, 4), np.nan), np.ones(3), "NaN"),
    (np.ones((3, 4)), np.ones(2), "inconsistent"),
    (np.empty((0, 4)), np.empty(0), "0 sample"),
])
def test_bad_data(X, y, match):
    with pytest.raises(ValueError, match=match):
        BasisPursuit().fit(X, y)


def test_estimator_contract():
    est = BasisPursuit(tol=1e-8)
    assert clone(est).get_params() == {"tol": 1e-8}
    X, y, _ = make_sparse_regression(20, 40, 3, random_state=4)
    est.fit(X, y)
    assert est.n_features_in_ == 40
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :10])
