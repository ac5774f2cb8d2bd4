"""LinRFMRegressor: the maths (IRLS-p equivalence, descent, recovery), the estimator contract."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from linrfm.core.kernel import irls_objective
from linrfm.datasets import make_sparse_regression
from linrfm.exceptions import ConvergenceWarning, InterruptedFitWarning
from linrfm.problems.regression import ContinuationSchedule, LinRFMRegressor, _Design, _RegressionProblem

POWERS = [0.25, 1.0 / 3.0, 0.5, 1.0]


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# -- scikit-learn contract ---------------------------------------------------------
@parametrize_with_checks([LinRFMRegressor(),
                          LinRFMRegressor(feature_matrix="full", power=0.25, ridge=0.1)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- one step = one IRLS-p step ---------------------------------------------------------
def _irls_step(X, y, beta, p, eps):
    """Independent IRLS-p step: argmin sum_j w_j b_j^2 s.t. X b = y, w = (beta^2+eps)^(p/2-1)."""
    w_inv = (beta ** 2 + eps) ** (1.0 - p / 2.0)
    return w_inv * (X.T @ np.linalg.solve((X * w_inv) @ X.T, y))


@pytest.mark.parametrize("power", POWERS)
def test_one_step_equals_irls_p(power):
    X, y, _ = make_sparse_regression(20, 50, 4, random_state=0)
    beta0 = np.linalg.pinv(X) @ y  # lin-RFM's first iterate (M_0 = I): minimum norm
    reg = 1e-9
    eps = reg * np.mean(beta0 ** 2)
    est = _quiet_fit(LinRFMRegressor(power=power, reg=reg, fit_intercept=False, max_iter=1),
                     X, y)
    expected = _irls_step(X, y, beta0, 2.0 - 4.0 * power, eps)
    assert est.n_iter_ == 1
    assert np.max(np.abs(est.coef_ - expected)) <= 1e-8


# -- descent ----------------------------------------------------------------------------
@pytest.mark.parametrize("power", POWERS)
@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_objective_never_increases_at_fixed_reg(power, ridge):
    X, y, _ = make_sparse_regression(30, 80, 6, noise=0.1, random_state=1)
    est = _quiet_fit(LinRFMRegressor(power=power, reg=1e-3, ridge=ridge, max_iter=40, tol=0.0),
                     X, y)
    F = np.asarray(est.history_["objective"])
    assert len(F) == 40
    assert np.all(np.diff(F) <= 1e-8 * np.abs(F[:-1]))  # rounding once converged
    assert F[-1] < F[0]


def test_objective_is_the_irls_objective_of_the_iterate():
    X, y, _ = make_sparse_regression(30, 80, 6, random_state=2)
    est = _quiet_fit(LinRFMRegressor(power=0.5, reg=1e-2, fit_intercept=False, max_iter=5), X, y)
    beta0 = np.linalg.pinv(X) @ y
    scale0 = np.mean(beta0 ** 2)
    expected = irls_objective(est.coef_ ** 2 / scale0, 0.5, 1e-2)
    assert est.history_["objective"][-1] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("full", [False, True])
def test_dual_and_primal_solves_agree(full):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((12, 20)), rng.standard_normal((12, 3))
    design = _Design(X, X.mean(axis=0))
    kw = dict(power=0.5, schedule=ContinuationSchedule(1e-2), ridge=0.3, full=full)
    dual = _RegressionProblem(design, Y - Y.mean(0), **kw)
    primal = _RegressionProblem(design, Y - Y.mean(0), **kw)
    primal.dual = False
    primal._A, primal._b = design.gram(), design.rmatmul(Y - Y.mean(0))
    B = rng.standard_normal((20, 3))
    G = B @ B.T + 0.1 * np.eye(20) if full else np.sum(B * B, axis=1) + 0.1
    assert dual.dual
    np.testing.assert_allclose(dual.solve(G), primal.solve(G), rtol=1e-9, atol=1e-12)


# -- recovery ---------------------------------------------------------------------------
def test_sparse_recovery_default_parameters():
    """Noiseless 10-sparse, d = 200, n = 50 (l1 is at its phase transition here)."""
    successes = 0
    for seed in range(20):
        X, y, coef = make_sparse_regression(50, 200, 10, random_state=seed)
        est = _quiet_fit(LinRFMRegressor(), X, y)
        err = np.linalg.norm(est.coef_ - coef) / np.linalg.norm(coef)
        successes += err <= 1e-4
    assert successes >= 18


def test_recovered_support_and_reg_path():
    X, y, coef = make_sparse_regression(50, 200, 10, random_state=0)
    est = LinRFMRegressor().fit(X, y)
    np.testing.assert_array_equal(est.support_, coef != 0)
    reg = np.asarray(est.history_["reg"])
    assert reg[0] == 1.0 and np.all(np.diff(reg) <= 0) and est.reg_ < 1e-8
    assert est.stop_reason_ == "tol"
    np.testing.assert_allclose(est.feature_matrix_, np.abs(est.coef_))  # |beta|^(2*power)


def test_group_sparse_multi_output_recovery():
    rng = np.random.default_rng(4)
    n, d, k, s = 40, 120, 3, 6
    X = rng.standard_normal((n, d))
    B = np.zeros((d, k))
    B[rng.choice(d, s, replace=False)] = rng.standard_normal((s, k))
    est = LinRFMRegressor(fit_intercept=False).fit(X, X @ B)
    assert est.coef_.shape == (k, d)
    assert np.linalg.norm(est.coef_.T - B) <= 1e-6 * np.linalg.norm(B)


def test_full_feature_matrix_recovers_low_rank_coefficients():
    rng = np.random.default_rng(0)
    n, d, k, r = 60, 20, 15, 2
    X = rng.standard_normal((n, d))
    B = rng.standard_normal((d, r)) @ rng.standard_normal((r, k))
    Y = X @ B + rng.standard_normal((n, k))
    ols = np.linalg.lstsq(X, Y, rcond=None)[0]
    est = LinRFMRegressor(feature_matrix="full", ridge=0.1, fit_intercept=False).fit(X, Y)
    sv = np.linalg.svd(est.coef_, compute_uv=False)
    assert sv[r] <= 1e-6 * sv[0]  # rank r exactly; OLS is full rank
    assert np.linalg.svd(ols, compute_uv=False)[r] > 1e-2 * sv[0]
    err = np.linalg.norm(est.coef_.T - B)
    assert err < 0.6 * np.linalg.norm(ols - B)
    assert est.feature_matrix_.shape == (d, d)
    np.testing.assert_allclose(est.feature_matrix_ @ est.feature_matrix_,
                               est.coef_.T @ est.coef_, atol=1e-8 * sv[0] ** 2)


@pytest.mark.parametrize("power", [0.5, 0.25])
def test_full_feature_matrix_interpolates_when_underdetermined(power):
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((15, 30)), rng.standard_normal((15, 4))
    est = _quiet_fit(LinRFMRegressor(feature_matrix="full", power=power, max_iter=50), X, Y)
    np.testing.assert_allclose(est.predict(X), Y, atol=1e-8)


def test_ridge_zero_interpolates_noisy_data():
    X, y, _ = make_sparse_regression(30, 80, 5, noise=0.5, random_state=10)
    est = LinRFMRegressor(ridge=0.0).fit(X, y)
    np.testing.assert_allclose(est.predict(X), y, atol=1e-8)
    noisy = LinRFMRegressor(ridge=0.1).fit(X, y)
    assert np.abs(noisy.predict(X) - y).max() > 1e-2


@pytest.mark.parametrize("shape", [(30, 60), (60, 20)], ids=["dual", "primal"])
def test_first_iterate_is_sklearn_ridge(shape):
    """M_0 = I: the first iterate is Ridge(alpha = ridge * ||Xc||_F^2 / n)."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(12)
    X, y = rng.standard_normal(shape), rng.standard_normal(shape[0])
    problem = _RegressionProblem(_Design(X, X.mean(axis=0)), (y - y.mean())[:, None],
                                 power=0.5, schedule=ContinuationSchedule(), ridge=0.3,
                                 full=False)
    problem.initialize()
    alpha = 0.3 * np.sum((X - X.mean(axis=0)) ** 2) / shape[0]
    np.testing.assert_allclose(problem.B[:, 0], Ridge(alpha=alpha).fit(X, y).coef_,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("params", [{"reg": 1e-3, "ridge": 0.1, "max_iter": 20},
                                    {"ridge": 0.1}, {"feature_matrix": "full", "ridge": 0.05}])
def test_scale_free(params):
    """reg and ridge are relative: rescaling X and y rescales the coefficients, nothing else."""
    X, y, _ = make_sparse_regression(30, 80, 5, noise=0.1, random_state=11)
    a = _quiet_fit(LinRFMRegressor(**params), X, y)
    b = _quiet_fit(LinRFMRegressor(**params), 10.0 * X, 3.0 * y + 5.0)
    np.testing.assert_allclose(b.coef_, 0.3 * a.coef_, rtol=1e-6, atol=1e-9 * np.abs(a.coef_).max())
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_array_equal(a.support_, b.support_)


# -- sparse input, determinism, parameters ----------------------------------------------
@pytest.mark.parametrize("shape", [(30, 60), (60, 20)], ids=["dual", "primal"])
@pytest.mark.parametrize("feature_matrix", ["diagonal", "full"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_X_equals_dense_X(shape, feature_matrix, fit_intercept):
    rng = np.random.default_rng(6)
    Xs = sp.random(*shape, density=0.3, random_state=6, format="csr") * 3.0 + 0.0
    y = Xs @ rng.standard_normal(shape[1]) + 0.5
    kw = dict(feature_matrix=feature_matrix, fit_intercept=fit_intercept, ridge=0.05,
              max_iter=15)
    dense = _quiet_fit(LinRFMRegressor(**kw), Xs.toarray(), y)
    sparse = _quiet_fit(LinRFMRegressor(**kw), Xs, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-7, atol=1e-9)
    assert sparse.intercept_ == pytest.approx(dense.intercept_, rel=1e-7, abs=1e-9)
    np.testing.assert_allclose(sparse.predict(Xs), dense.predict(Xs.toarray()), atol=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_X_is_not_densified(monkeypatch, fit_intercept):
    X = sp.random(20, 5000, density=0.01, random_state=0, format="csr")
    y = np.asarray(X.sum(axis=1)).ravel()
    for cls in (sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array):
        for name in ("toarray", "todense"):
            original = getattr(cls, name)

            def guarded(self, *args, _original=original, **kwargs):
                # only the n x n weighted Gram may become dense
                assert max(self.shape) < 5000, "X was densified"
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, name, guarded)
    est = _quiet_fit(LinRFMRegressor(fit_intercept=fit_intercept, max_iter=3), X, y)
    assert est.coef_.shape == (5000,)


def test_deterministic_and_random_state_unused():
    X, y, _ = make_sparse_regression(30, 60, 5, noise=0.1, random_state=7)
    a = _quiet_fit(LinRFMRegressor(random_state=0, max_iter=20), X, y)
    b = _quiet_fit(LinRFMRegressor(random_state=123, max_iter=20), X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.history_["objective"] == b.history_["objective"]


def _base_fit(**params):
    X, y, _ = make_sparse_regression(30, 60, 5, noise=0.05, random_state=8)
    y = y + 2.0
    return _quiet_fit(LinRFMRegressor(**{"max_iter": 30, **params}), X, y)


@pytest.mark.parametrize("param, value", [
    ("power", 0.25), ("power", 1.0), ("reg", 1e-2), ("ridge", 0.1),
    ("feature_matrix", "full"), ("fit_intercept", False), ("max_iter", 2), ("tol", 1e-1),
    ("callback", lambda it, record: it >= 3),
])
def test_every_parameter_changes_something(param, value):
    base = _base_fit()
    other = _base_fit(**{param: value})
    changed = (other.n_iter_ != base.n_iter_ or other.intercept_ != base.intercept_
               or not np.allclose(other.coef_, base.coef_, rtol=1e-6, atol=1e-10))
    assert changed


def test_verbose_prints(capsys):
    _base_fit(verbose=2)
    assert "iter 1:" in capsys.readouterr().err


def test_interrupt_keeps_last_iterate(monkeypatch):
    X, y, _ = make_sparse_regression(30, 60, 5, random_state=9)
    reference = _quiet_fit(LinRFMRegressor(max_iter=2), X, y)
    original = _RegressionProblem.step
    calls = []

    def step(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(_RegressionProblem, "step", step)
    with pytest.warns(InterruptedFitWarning):
        est = LinRFMRegressor(max_iter=50).fit(X, y)
    assert est.n_iter_ == 2 and est.stop_reason_ == "interrupted"
    np.testing.assert_array_equal(est.coef_, reference.coef_)


def test_max_iter_warns():
    X, y, _ = make_sparse_regression(30, 60, 5, random_state=9)
    with pytest.warns(ConvergenceWarning):
        LinRFMRegressor(max_iter=2).fit(X, y)


def test_clone_and_params_roundtrip():
    est = LinRFMRegressor(power=0.3, reg=1e-3, ridge=0.2, feature_matrix="full")
    assert clone(est).get_params() == est.get_params()


# -- bad input --------------------------------------------------------------------------
_X = np.random.default_rng(0).standard_normal((10, 4))
_y = np.arange(10.0)


@pytest.mark.parametrize("params, error, match", [
    ({"power": 0.0}, ValueError, "power"),
    ({"power": -1.0}, ValueError, "power"),
    ({"power": "half"}, TypeError, "power"),
    ({"reg": -1.0}, ValueError, "reg"),
    ({"reg": 0.0}, ValueError, "reg"),
    ({"reg": "fast"}, ValueError, "reg"),
    ({"ridge": -0.1}, ValueError, "ridge"),
    ({"feature_matrix": "low_rank"}, ValueError, "feature_matrix"),
    ({"fit_intercept": "yes"}, TypeError, "fit_intercept"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"max_iter": 2.5}, TypeError, "max_iter"),
    ({"tol": -1e-3}, ValueError, "tol"),
    ({"callback": 3}, TypeError, "callback"),
])
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        LinRFMRegressor(**params).fit(_X, _y)


def _with(a, idx, value):
    a = np.array(a, dtype=float)
    a[idx] = value
    return a


@pytest.mark.parametrize("X, y, match", [
    (_with(_X, (0, 0), np.nan), _y, "X contains NaN"),
    (_with(_X, (1, 2), np.inf), _y, "X contains infinity"),
    (_X, _with(_y, 3, np.nan), "y contains NaN"),
    (_X, _with(_y, 3, -np.inf), "y contains infinity"),
    (_X, _y[:7], "inconsistent numbers of samples"),
    (np.empty((0, 4)), np.empty(0), "0 sample"),
    (np.array([["a", "b"], ["c", "d"]]), [1.0, 2.0], "X must be numeric"),
    (_X[:2], ["a", "b"], "y must be numeric"),
])
def test_bad_data(X, y, match):
    with pytest.raises(ValueError, match=match):
        LinRFMRegressor().fit(X, y)


def test_bad_input_raises_before_any_iteration(monkeypatch):
    def boom(self):
        raise AssertionError("iteration started")

    monkeypatch.setattr(_RegressionProblem, "initialize", boom)
    with pytest.raises(ValueError, match="X contains NaN"):
        LinRFMRegressor().fit(_with(_X, (0, 0), np.nan), _y)
    with pytest.raises(ValueError, match="power"):
        LinRFMRegressor(power=0).fit(_X, _y)


def test_predict_checks_features():
    est = LinRFMRegressor().fit(_X, _y)
    with pytest.raises(ValueError, match="features"):
        est.predict(_X[:, :3])
