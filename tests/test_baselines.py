"""Baselines of issue 5: IRLS-p, Soft-Impute, deep linear and diagonal networks.

Tiny seeded problems; exact step equivalences at tight tolerance; invariants
(majorize-minimize descent, monotone shrinkage path); recovery checks; the
estimator contract and bad input.
"""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from linrfm.baselines import (DeepLinearCompleter, DeepLinearSensing, DiagonalNetworkRegressor,
                              IRLSCompleter, IRLSSensing, SoftImpute)
from linrfm.datasets import (make_completion_problem, make_sensing_problem,
                             make_sparse_regression)
from linrfm.exceptions import ConvergenceWarning, UnobservedWarning

try:
    import torch
except ImportError:  # the IRLS and Soft-Impute tests still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs PyTorch")
HAS_CUDA = torch is not None and torch.cuda.is_available()
TORCH_BASED = (DeepLinearCompleter, DeepLinearSensing, DiagonalNetworkRegressor)


def _p(cls, *rest):
    """``pytest.param`` that skips the torch-based estimators without PyTorch."""
    marks = [needs_torch] if cls in TORCH_BASED else []
    return pytest.param(cls, *rest, marks=marks, id=cls.__name__)


COMPLETERS = [_p(IRLSCompleter), _p(SoftImpute), _p(DeepLinearCompleter)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These problems are tiny: on a shared machine multi-threaded BLAS/torch only
    # oversubscribes the cores (a 200 x 200 eigh went from 11 ms to 1.1 s).
    from threadpoolctl import threadpool_limits

    if torch is None:
        with threadpool_limits(limits=1):
            yield
        return
    n_torch = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(n_torch)


@pytest.fixture(scope="module")
def irls_problem():
    # 60 x 50, rank 2, 3x the information limit r (d1 + d2 - r) = 216.
    return make_completion_problem(60, 50, 2, oversampling=3, random_state=0)


@pytest.fixture(scope="module")
def small_problem():
    # 40 x 30, rank 2, 4x the information limit (45 % of the entries).
    return make_completion_problem(40, 30, 2, oversampling=4, random_state=1)


@pytest.fixture(scope="module")
def sensing_problem():
    # 12 x 10, rank 2: information limit 40, 100 Gaussian measurements.
    return make_sensing_problem(12, 10, 2, 100, random_state=0)


def _quick(cls):
    """A cheap configuration of each estimator for contract tests."""
    return {IRLSCompleter: dict(max_iter=5), SoftImpute: dict(n_shrinkages=3, max_iter=5),
            DeepLinearCompleter: dict(max_iter=20), IRLSSensing: dict(max_iter=5),
            DeepLinearSensing: dict(max_iter=20),
            DiagonalNetworkRegressor: dict(max_iter=20)}[cls]


def _fit_quiet(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# ---------------------------------------------------------------- IRLS-p


def test_irls_completion_recovers(irls_problem):
    est = IRLSCompleter().fit(irls_problem.observed)
    assert irls_problem.missing_error(est.completed_) <= 1e-6
    obs = irls_problem.observed
    np.testing.assert_array_equal(est.completed_[obs.rows, obs.cols], obs.values)
    for key in ("iteration", "time", "rel_change", "objective", "gamma"):
        assert len(est.history_[key]) == est.n_iter_
    assert est.history_["rel_change"][-1] < est.tol


def _linrfm_power_half_step(Z, rows, cols, values, reg):
    """One lin-RFM power-1/2 step (ridge + replace), written row by row.

    K = G = Z^T Z / d1;  a_i = (K[O_i, O_i] + reg I)^{-1} y_i;  z_i = K[:, O_i] a_i;
    z_i[O_i] = y_i.
    """
    d1, d2 = Z.shape
    G = Z.T @ Z / d1
    out = np.zeros_like(Z)
    for i in range(d1):
        sel = rows == i
        om, y = cols[sel], values[sel]
        a = np.linalg.solve(G[np.ix_(om, om)] + reg * np.eye(om.size), y)
        out[i] = G[:, om] @ a
        out[i, om] = y
    return out


def test_irls0_step_equals_linrfm_power_half(irls_problem):
    obs = irls_problem.observed
    Z0 = obs.to_dense(0.0)  # W_0 = I: the minimum-norm interpolant is the zero fill
    est = _fit_quiet(IRLSCompleter(p=0.0, max_iter=1), obs)
    gamma = est.history_["gamma"][0]
    G0 = Z0.T @ Z0 / Z0.shape[0]
    assert gamma == pytest.approx(np.trace(G0) / G0.shape[0], rel=1e-12)  # gamma="auto"
    ref = _linrfm_power_half_step(Z0, obs.rows, obs.cols, obs.values, reg=gamma)
    np.testing.assert_allclose(est.completed_, ref, rtol=0, atol=1e-10)
    # Mohan-Fazel's unnormalised weights (Z^T Z + d1 gamma I)^{-1} give the same step.
    K_mf = Z0.T @ Z0 + Z0.shape[0] * gamma * np.eye(Z0.shape[1])
    mf = np.zeros_like(Z0)
    for i in range(Z0.shape[0]):
        om = obs.cols[obs.rows == i]
        mf[i] = K_mf[:, om] @ np.linalg.solve(K_mf[np.ix_(om, om)], obs.values[obs.rows == i])
    np.testing.assert_allclose(est.completed_, mf, rtol=0, atol=1e-10)


def test_irls0_iterations_equal_linrfm_completer_with_fixed_reg(irls_problem):
    # Claim 1 end to end: IRLS-0 with fixed gamma is lin-RFM power 1/2 with reg = gamma
    # (both relative to trace(G_0)/d), one-sided on the columns, without the
    # over-relaxation that LinRFMCompleter applies by default.
    from linrfm.problems.completion import LinRFMCompleter

    lin = _fit_quiet(LinRFMCompleter(power=0.5, reg=0.1, side="columns", max_iter=3,
                                     relaxation=1.0),
                     irls_problem.observed)
    irls = _fit_quiet(IRLSCompleter(p=0.0, gamma=0.1, gamma_decrease=1.0, max_iter=3),
                      irls_problem.observed)
    np.testing.assert_allclose(irls.completed_, lin.completed_, rtol=0, atol=1e-11)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_irls_objective_never_increases_at_fixed_gamma(irls_problem, p):
    # Majorize-minimize: at fixed gamma each step decreases sum_j h(lambda_j).
    est = _fit_quiet(IRLSCompleter(p=p, gamma=0.1, gamma_decrease=1.0, max_iter=15),
                     irls_problem.observed)
    obj = np.asarray(est.history_["objective"])
    assert np.all(np.diff(obj) <= 1e-10 * np.abs(obj[:-1]))
    assert obj[-1] < obj[0]


def test_irls_rank_hint_lowers_gamma(irls_problem):
    plain = _fit_quiet(IRLSCompleter(max_iter=10), irls_problem.observed)
    hinted = _fit_quiet(IRLSCompleter(max_iter=10, rank=2), irls_problem.observed)
    assert hinted.history_["gamma"][-1] < plain.history_["gamma"][-1]


def test_irls_p_changes_the_iterate(irls_problem):
    a = _fit_quiet(IRLSCompleter(p=0.0, max_iter=3), irls_problem.observed)
    b = _fit_quiet(IRLSCompleter(p=1.0, max_iter=3), irls_problem.observed)
    assert np.abs(a.completed_ - b.completed_).max() > 1e-3


def test_irls_wide_matrix_and_empty_row():
    prob = make_completion_problem(20, 30, 1, oversampling=4, random_state=3)
    obs = prob.observed
    keep = obs.rows != 0  # row 0 loses all its entries
    X = (obs.rows[keep], obs.cols[keep], obs.values[keep])
    with pytest.warns(UnobservedWarning):
        est = _fit_quiet(IRLSCompleter(max_iter=50), X, shape=(20, 30))
    assert est.completed_.shape == (20, 30)
    assert np.all(np.isfinite(est.completed_))


def test_irls_sensing_recovers(sensing_problem):
    A, y, Z = sensing_problem
    est = IRLSSensing().fit(A, y)
    assert np.linalg.norm(est.Z_ - Z) / np.linalg.norm(Z) <= 1e-6
    np.testing.assert_allclose(est.predict(A), y, atol=1e-8)
    flat = _fit_quiet(IRLSSensing(max_iter=3), A.reshape(len(y), -1), y, shape=Z.shape)
    full = _fit_quiet(IRLSSensing(max_iter=3), A, y)
    np.testing.assert_allclose(flat.Z_, full.Z_, atol=1e-12)


@pytest.mark.parametrize("cls", [_p(IRLSSensing), _p(DeepLinearSensing)])
def test_sensing_operator_forms_agree(cls, sensing_problem):
    import scipy.sparse as sp
    from scipy.sparse.linalg import aslinearoperator

    A, y, Z = sensing_problem
    M = A.reshape(len(y), -1)
    kw = dict(max_iter=3, **({"random_state": 0} if cls is DeepLinearSensing else {}))
    ref = _fit_quiet(cls(**kw), A, y)
    for op in (sp.csr_array(M), aslinearoperator(M)):
        est = _fit_quiet(cls(**kw), op, y, shape=Z.shape)
        np.testing.assert_allclose(est.Z_, ref.Z_, atol=1e-10)


def test_irls_sensing_transposed_orientation(sensing_problem):
    A, y, Z = sensing_problem
    At = A.transpose(0, 2, 1)  # 10 x 12: kernel goes on the other side
    a = _fit_quiet(IRLSSensing(max_iter=30), A, y)
    b = _fit_quiet(IRLSSensing(max_iter=30), At, y)
    np.testing.assert_allclose(b.Z_, a.Z_.T, atol=1e-8)


# ---------------------------------------------------------------- Soft-Impute


@pytest.fixture(scope="module")
def soft_impute_fit():
    # Well sampled: 6x the information limit (43 % of the entries).
    prob = make_completion_problem(60, 50, 2, oversampling=6, random_state=0)
    return prob, SoftImpute(svd="full", random_state=0).fit(prob.observed)


def test_soft_impute_recovers(soft_impute_fit):
    prob, est = soft_impute_fit
    assert prob.missing_error(est.completed_) <= 1e-3
    assert est.rank_ <= 3


def test_soft_impute_path_is_monotone(soft_impute_fit):
    _, est = soft_impute_fit
    path = est.shrinkage_path_
    assert np.all(np.diff(path) < 0)
    lam = np.asarray(est.history_["shrinkage"])
    assert np.all(np.diff(lam) <= 0)
    obj = np.asarray(est.history_["objective"])
    for value in np.unique(lam):  # descent at each fixed shrinkage (MHT Lemma 2)
        seq = obj[lam == value]
        assert np.all(np.diff(seq) <= 1e-9 * seq[:-1])


def test_soft_impute_validation_picks_on_the_path(small_problem):
    est = _fit_quiet(SoftImpute(n_shrinkages=6, validation_fraction=0.2, svd="full",
                                random_state=0), small_problem.observed)
    assert est.validation_errors_.shape == (6,)
    assert est.shrinkage_ == est.shrinkage_path_[-1]
    k = est.shrinkage_path_.size - 1
    assert est.validation_errors_[k] == est.validation_errors_.min()


def test_soft_impute_factors_and_history(small_problem):
    est = _fit_quiet(SoftImpute(n_shrinkages=6, validation_fraction=0.2, random_state=0),
                     small_problem.observed)
    U, s, V = est.factors_
    np.testing.assert_allclose((U * s) @ V.T, est.completed_, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(est.rank_), atol=1e-10)
    assert len(est.history_["iteration"]) == est.n_iter_
    assert np.all(np.diff(est.history_["iteration"]) == 1)
    val = np.asarray(est.history_["validation_error"])
    np.testing.assert_array_equal(val[np.isfinite(val)], est.validation_errors_)


def test_soft_impute_validation_path_stops_past_the_best_on_noisy_data():
    # Issue 11: noisy data, so the held-out error is U-shaped along the path and the
    # walk stops 3 values after its minimum instead of running to the end.
    prob = make_completion_problem(40, 30, 2, oversampling=4, random_state=1)
    obs = prob.observed
    noisy = (obs.rows, obs.cols, obs.values + np.random.default_rng(0).normal(
        0, 0.3 * obs.values.std(), obs.nnz))
    est = _fit_quiet(SoftImpute(n_shrinkages=30, validation_fraction=0.2, random_state=0),
                     noisy, shape=obs.shape)
    errors = est.validation_errors_
    assert errors.size < 30 and int(np.argmin(errors)) == errors.size - 4
    assert est.shrinkage_ == est.shrinkage_path_[-1]
    assert est.shrinkage_path_.size == errors.size - 3


def test_soft_impute_randomized_matches_full(small_problem):
    a = _fit_quiet(SoftImpute(n_shrinkages=5, svd="full", random_state=0),
                   small_problem.observed)
    b = _fit_quiet(SoftImpute(n_shrinkages=5, svd="randomized", random_state=0),
                   small_problem.observed)
    assert np.linalg.norm(a.completed_ - b.completed_) / np.linalg.norm(a.completed_) < 1e-4


def test_soft_impute_max_rank_caps_the_rank(small_problem):
    est = _fit_quiet(SoftImpute(n_shrinkages=5, max_rank=1, random_state=0),
                     small_problem.observed)
    assert est.rank_ <= 1
    assert np.linalg.matrix_rank(est.completed_, tol=1e-8) <= 1


def test_soft_impute_single_shrinkage_is_larger_bias(small_problem):
    est = _fit_quiet(SoftImpute(shrinkage=0.3, svd="full"), small_problem.observed)
    assert est.shrinkage_path_.shape == (1,)
    assert small_problem.missing_error(est.completed_) > 1e-2


# ---------------------------------------------------------------- deep linear networks


@needs_torch
@pytest.mark.parametrize("depth", [2, 3])
def test_deep_linear_completer_beats_zero_fill(small_problem, depth):
    est = _fit_quiet(DeepLinearCompleter(depth=depth, max_iter=800, random_state=0),
                     small_problem.observed)
    zero_fill = small_problem.missing_error(np.zeros(small_problem.truth.shape))
    assert small_problem.missing_error(est.completed_) < 0.2 * zero_fill
    assert len(est.factors_) == depth
    loss = np.asarray(est.history_["loss"])
    assert loss[-1] < 1e-3 * loss[0]
    for key in ("iteration", "time", "rel_change", "objective"):
        assert len(est.history_[key]) == len(loss)


@needs_torch
def test_deep_linear_gd_and_width(small_problem):
    est = _fit_quiet(DeepLinearCompleter(optimizer="gd", width=5, max_iter=300, random_state=0),
                     small_problem.observed)
    assert [W.shape for W in est.factors_] == [(5, 30), (40, 5)]
    np.testing.assert_allclose(est.factors_[1] @ est.factors_[0], est.completed_, atol=1e-10)
    assert est.history_["loss"][-1] < 0.1


@needs_torch
def test_deep_linear_sensing_fits(sensing_problem):
    A, y, Z = sensing_problem
    est = _fit_quiet(DeepLinearSensing(depth=2, max_iter=1500, random_state=0), A, y)
    assert est.history_["loss"][-1] < 1e-4
    assert np.linalg.norm(est.Z_ - Z) / np.linalg.norm(Z) < 0.3
    np.testing.assert_allclose(est.predict(A), A.reshape(len(y), -1) @ est.Z_.ravel())


@needs_torch
def test_diagonal_network_recovers_sparse_vector():
    X, y, coef = make_sparse_regression(30, 50, 3, random_state=0)
    est = DiagonalNetworkRegressor(tol=1e-5).fit(X, y)
    assert np.linalg.norm(est.coef_ - coef) / np.linalg.norm(coef) <= 1e-2
    assert np.any(coef < 0)  # negative coefficients are reached (u^L - v^L)
    np.testing.assert_allclose(est.predict(X), X @ est.coef_)


@needs_torch
def test_diagonal_network_depth_changes_the_fit():
    X, y, _ = make_sparse_regression(30, 50, 3, random_state=0)
    a = _fit_quiet(DiagonalNetworkRegressor(depth=1, max_iter=50), X, y)
    b = _fit_quiet(DiagonalNetworkRegressor(depth=2, max_iter=50), X, y)
    assert np.abs(a.coef_ - b.coef_).max() > 1e-3
    c = _fit_quiet(DiagonalNetworkRegressor(learning_rate=1e-3, max_iter=5), X, y)
    assert c.learning_rate_ == 1e-3


@needs_torch
def test_deep_linear_divergence_is_reported(small_problem):
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est = DeepLinearCompleter(optimizer="gd", learning_rate=10.0, init_scale=0.5,
                                  max_iter=200, random_state=0).fit(small_problem.observed)
    assert np.all(np.isfinite(est.completed_))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_deep_linear_cuda_matches_cpu(small_problem):
    kw = dict(depth=2, max_iter=50, random_state=0)
    cpu = _fit_quiet(DeepLinearCompleter(**kw), small_problem.observed)
    gpu = _fit_quiet(DeepLinearCompleter(device="cuda", **kw), small_problem.observed)
    np.testing.assert_allclose(gpu.completed_, cpu.completed_, rtol=1e-6, atol=1e-8)


@needs_torch
@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available")
def test_cuda_without_device_is_a_clear_error(small_problem):
    with pytest.raises(ValueError, match="cuda"):
        DeepLinearCompleter(device="cuda").fit(small_problem.observed)


# ---------------------------------------------------------------- contract


ALL = [_p(cls) for cls in (IRLSCompleter, SoftImpute, DeepLinearCompleter, IRLSSensing,
                           DeepLinearSensing, DiagonalNetworkRegressor)]


def _fit_any(est, small_problem, sensing_problem):
    if isinstance(est, (IRLSSensing, DeepLinearSensing)):
        A, y, _ = sensing_problem
        return _fit_quiet(est, A, y)
    if isinstance(est, DiagonalNetworkRegressor):
        X, y, _ = make_sparse_regression(20, 30, 2, random_state=0)
        return _fit_quiet(est, X, y)
    return _fit_quiet(est, small_problem.observed)


def _result(est):
    for name in ("completed_", "Z_", "coef_"):
        if hasattr(est, name):
            return getattr(est, name)
    raise AssertionError("no fitted result")


@pytest.mark.parametrize("cls", ALL)
def test_clone_and_params_round_trip(cls):
    est = cls(**_quick(cls), verbose=0)
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params
    assert cls(**params).get_params() == params
    assert not any(k.endswith("_") for k in vars(est))  # __init__ stores params only


@pytest.mark.parametrize("cls", ALL)
def test_deterministic_given_random_state(cls, small_problem, sensing_problem):
    kw = _quick(cls)
    if "random_state" in cls().get_params():
        kw["random_state"] = 3
    a = _fit_any(cls(**kw), small_problem, sensing_problem)
    b = _fit_any(cls(**kw), small_problem, sensing_problem)
    np.testing.assert_array_equal(_result(a), _result(b))
    assert a.n_iter_ == b.n_iter_ and len(a.history_["time"]) == len(b.history_["time"])


@pytest.mark.parametrize("cls", [_p(DeepLinearCompleter), _p(DeepLinearSensing)])
def test_random_state_changes_the_initialisation(cls, small_problem, sensing_problem):
    a = _fit_any(cls(max_iter=5, random_state=0), small_problem, sensing_problem)
    b = _fit_any(cls(max_iter=5, random_state=1), small_problem, sensing_problem)
    assert np.abs(_result(a) - _result(b)).max() > 0


@pytest.mark.parametrize("cls", COMPLETERS)
def test_completion_input_forms_agree(cls, small_problem):
    obs = small_problem.observed
    kw = dict(_quick(cls))
    if "random_state" in cls().get_params():
        kw["random_state"] = 0
    dense = _fit_quiet(cls(**kw), obs.to_dense())
    trip = _fit_quiet(cls(**kw), (obs.rows, obs.cols, obs.values), shape=obs.shape)
    sparse = _fit_quiet(cls(**kw), obs.to_csr())
    np.testing.assert_allclose(trip.completed_, dense.completed_, atol=1e-12)
    np.testing.assert_allclose(sparse.completed_, dense.completed_, atol=1e-12)
    rows, cols = np.array([0, 5, 39]), np.array([1, 2, 29])
    np.testing.assert_array_equal(dense.predict(rows, cols), dense.completed_[rows, cols])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        np.testing.assert_array_equal(cls(**kw).fit_transform(obs.to_dense()), dense.completed_)
    with pytest.raises(ValueError, match="out of range"):
        dense.predict([40], [0])
    with pytest.raises(TypeError):
        dense.predict([0.5], [0])


BAD_COMPLETION_INPUT = {
    "all NaN": (np.full((4, 3), np.nan), None, ValueError, "no observed entry"),
    "inf": (np.array([[1.0, np.inf], [np.nan, 2.0]]), None, ValueError, "inf"),
    "negative index": (([0, -1], [0, 1], [1.0, 2.0]), None, ValueError, "non-negative"),
    "duplicates": (([0, 0], [1, 1], [1.0, 2.0]), None, ValueError, "duplicate"),
    "out of range": (([0, 5], [0, 1], [1.0, 2.0]), (3, 3), ValueError, "out of range"),
    "strings": (np.array([["a", "b"]]), None, TypeError, "numeric"),
}


@pytest.mark.parametrize("cls", COMPLETERS)
@pytest.mark.parametrize("case", sorted(BAD_COMPLETION_INPUT))
def test_bad_completion_input(cls, case):
    X, shape, exc, match = BAD_COMPLETION_INPUT[case]
    with pytest.raises(exc, match=match):
        cls().fit(X, shape=shape)


BAD_PARAMS = [
    (IRLSCompleter, dict(p=2.0), ValueError, "p"),
    (IRLSCompleter, dict(gamma="big"), ValueError, "gamma"),
    (IRLSCompleter, dict(gamma_decrease=0.5), ValueError, "gamma_decrease"),
    (IRLSCompleter, dict(rank=0), ValueError, "rank"),
    (IRLSCompleter, dict(rank=30), ValueError, "rank"),
    (IRLSCompleter, dict(max_iter=0), ValueError, "max_iter"),
    (IRLSSensing, dict(tol=-1.0), ValueError, "tol"),
    (SoftImpute, dict(shrinkage=2.0), ValueError, "shrinkage"),
    (SoftImpute, dict(shrinkage="small"), ValueError, "shrinkage"),
    (SoftImpute, dict(svd="qr"), ValueError, "svd"),
    (SoftImpute, dict(validation_fraction=1.5), ValueError, "validation_fraction"),
    (SoftImpute, dict(shrinkage=0.1, validation_fraction=0.1), ValueError, "validation"),
    (SoftImpute, dict(max_rank=0), ValueError, "max_rank"),
    (DeepLinearCompleter, dict(depth=0), ValueError, "depth"),
    (DeepLinearCompleter, dict(optimizer="sgd"), ValueError, "optimizer"),
    (DeepLinearCompleter, dict(device="tpu"), ValueError, "device"),
    (DeepLinearCompleter, dict(learning_rate=-1.0), ValueError, "learning_rate"),
    (DeepLinearCompleter, dict(init_scale="auto"), TypeError, "init_scale"),
    (DeepLinearSensing, dict(width=0), ValueError, "width"),
    (DiagonalNetworkRegressor, dict(init_scale=0.0), ValueError, "init_scale"),
    (DiagonalNetworkRegressor, dict(learning_rate="fast"), ValueError, "learning_rate"),
]


@pytest.mark.parametrize("cls, params, exc, match", [_p(*case) for case in BAD_PARAMS])
def test_bad_parameters_raise_before_iterating(cls, params, exc, match, small_problem,
                                               sensing_problem):
    est = cls(**params)
    with pytest.raises(exc, match=match):
        _fit_any(est, small_problem, sensing_problem)
    assert not hasattr(est, "n_iter_")


@pytest.mark.parametrize("cls", [_p(IRLSSensing), _p(DeepLinearSensing)])
def test_bad_sensing_input(cls, sensing_problem):
    A, y, _ = sensing_problem
    with pytest.raises(ValueError, match="measurements"):
        cls().fit(A, y[:-1])
    with pytest.raises(ValueError, match="shape"):
        cls().fit(A.reshape(len(y), -1), y)
    with pytest.raises(ValueError, match="NaN"):
        cls().fit(A, np.where(np.arange(len(y)) == 0, np.nan, y))
    with pytest.raises(ValueError):
        cls().fit(A, y.reshape(-1, 1))


@needs_torch
def test_diagonal_network_bad_input():
    X, y, _ = make_sparse_regression(10, 5, 2, random_state=0)
    with pytest.raises(ValueError):
        DiagonalNetworkRegressor().fit(X, y[:-1])
    with pytest.raises(ValueError):
        DiagonalNetworkRegressor().fit(np.where(X > 1, np.nan, X), y)


@needs_torch
@parametrize_with_checks([DiagonalNetworkRegressor(max_iter=200)])
def test_diagonal_network_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
