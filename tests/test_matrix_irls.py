"""MatrixIRLSCompleter (issue 13): one step against a dense weighted least-squares
solve, the smoothing rule, recovery on the SPEC section 7 problem 500_r5_10000,
the estimator contract, bad input, determinism and Ctrl-C.
"""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import linrfm.baselines.matrix_irls as mi
from linrfm.baselines import MatrixIRLSCompleter
from linrfm.datasets import make_completion_problem, reference_problem
from linrfm.exceptions import ConvergenceWarning, InterruptedFitWarning, UnobservedWarning


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def tiny():
    # 12 x 10, rank 2, 2.5x the information limit 2 (12 + 10 - 2) = 40: 100 entries.
    return make_completion_problem(12, 10, 2, oversampling=2.5, random_state=0)


@pytest.fixture(scope="module")
def small():
    # 60 x 50, rank 3, 3x the information limit 3 (60 + 50 - 3) = 321.
    return make_completion_problem(60, 50, 3, oversampling=3, random_state=1)


def _problem(obs, rank, mean):
    # CG to its floor and a converged subspace iteration: the step must then be
    # the exact weighted least-squares solution (3 power iterations leave 2e-10
    # of subspace error on the zero-filled start, whose spectrum has no gap).
    return mi._MatrixIRLSProblem(obs, rank, 6, mean, cg_tol=1e-30, cg_max_iter=2000,
                                 svd_n_iter=50, rng=np.random.RandomState(0))


def _dense(state, obs):
    L, R, s = state[:3]
    X = L @ R.T
    X[obs.rows, obs.cols] += s
    return X


def _dense_weight_matrix(X, eps, mean):
    """``W`` of the paper as a (d1 d2) x (d1 d2) matrix, from a full SVD of ``X``."""
    d1, d2 = X.shape
    U, sig, Vt = np.linalg.svd(X, full_matrices=True)
    a = np.full(d1, eps)
    b = np.full(d2, eps)
    a[:sig.size] = np.maximum(sig, eps)
    b[:sig.size] = np.maximum(sig, eps)
    A, B = a[:, None], b[None, :]
    H = 2.0 / (A ** 2 + B ** 2) if mean == "harmonic" else 1.0 / (A * B)
    cols = []
    for k in range(d1 * d2):
        E = np.zeros(d1 * d2)
        E[k] = 1.0
        Z = E.reshape(d1, d2)
        cols.append((U @ (H * (U.T @ Z @ Vt.T)) @ Vt).ravel())
    return np.column_stack(cols)


def _dense_wls(W, obs):
    """``argmin <x, W x>`` subject to the observed entries, by a direct solve."""
    d1, d2 = obs.shape
    o = obs.rows * d2 + obs.cols
    u = np.setdiff1d(np.arange(d1 * d2), o)
    x = np.zeros(d1 * d2)
    x[o] = obs.values
    x[u] = -np.linalg.solve(W[np.ix_(u, u)], W[np.ix_(u, o)] @ obs.values)
    return x.reshape(d1, d2)


@pytest.mark.parametrize("mean", ["harmonic", "geometric"])
def test_steps_equal_dense_weighted_least_squares(tiny, mean):
    obs, r = tiny.observed, 2
    prob = _problem(obs, r, mean)
    prob.initialize()
    X = _dense(prob.state, obs)
    np.testing.assert_array_equal(X, obs.to_dense(0.0))  # W_0 = I: zero-filled data
    eps = np.inf
    for _ in range(3):
        eps = min(eps, np.linalg.svd(X, compute_uv=False)[r])  # eps_k = min(eps_{k-1}, s_{r+1})
        assert prob.state[6] == pytest.approx(eps, rel=1e-10)
        ref = _dense_wls(_dense_weight_matrix(X, eps, mean), obs)
        prob.step()
        X = _dense(prob.state, obs)
        assert np.linalg.norm(X - ref) <= 1e-10 * np.linalg.norm(ref)


def test_tangent_coordinates_are_an_isometry(small):
    rng = np.random.default_rng(0)
    obs = small.observed
    U = np.linalg.qr(rng.standard_normal((60, 3)))[0]
    V = np.linalg.qr(rng.standard_normal((50, 3)))[0]
    indptr = np.concatenate([[0], np.cumsum(obs.row_counts())])
    ts = mi.TangentSpace(U, V, obs.rows, obs.cols, indptr)
    g = ts.project_lowrank(rng.standard_normal((60, 4)), rng.standard_normal((50, 4)))
    L, R = ts.factors(g)
    assert np.linalg.norm(L @ R.T) == pytest.approx(np.linalg.norm(g), rel=1e-12)
    np.testing.assert_allclose(ts.project_lowrank(L, R), g, atol=1e-12)  # projection
    z = rng.standard_normal(obs.nnz)
    # <B g, z> = <g, B^* z>: sample and project_sparse are adjoint.
    assert ts.sample(g) @ z == pytest.approx(g @ ts.project_sparse(z), rel=1e-12)


def test_top_singular_matches_dense_svd(small):
    rng = np.random.default_rng(1)
    obs = small.observed
    L, R = rng.standard_normal((60, 4)), rng.standard_normal((50, 4))
    s = rng.standard_normal(obs.nnz)
    indptr = np.concatenate([[0], np.cumsum(obs.row_counts())])
    structure = (obs.cols, indptr, obs.shape)
    U, sig, V, n = mi.top_singular(L, R, s, structure, 50, np.zeros((50, 0)),
                                   np.random.RandomState(0), 2)
    X = L @ R.T
    X[obs.rows, obs.cols] += s
    np.testing.assert_allclose(sig, np.linalg.svd(X, compute_uv=False), rtol=1e-10)
    np.testing.assert_allclose(U @ np.diag(sig) @ V.T, X, atol=1e-10)
    # A block of 8 < 50 converges to the residual tolerance, warm-started or not.
    ref = np.linalg.svd(X, compute_uv=False)[:4]
    for V0 in (np.zeros((50, 0)), V[:, :4]):
        U, sig, V8, n = mi.top_singular(L, R, s, structure, 8, V0, np.random.RandomState(0),
                                        200, tol=1e-9, n_check=4)
        res = np.linalg.norm(X @ V8[:, :4] - U[:, :4] * sig[:4], axis=0)
        assert n < 200 and np.all(res <= 1e-9 * sig[0])
        np.testing.assert_allclose(sig[:4], ref, rtol=1e-8)
    assert n == 1  # started from the converged subspace


def test_rank_estimate_needs_a_clear_gap():
    sig = np.array([100.0, 90.0, 80.0, 1e-2, 9e-3, 8e-3, 7e-3])
    assert mi.largest_gap_rank(sig, 5) == 3
    # No ratio reaches the threshold: over-estimate (max_rank), never under-estimate.
    assert mi.largest_gap_rank(np.array([10.0, 5.0, 1.0, 0.9, 0.8]), 3) == 3
    assert mi.largest_gap_rank(np.array([10.0, 0.0]), 1) == 1
    assert mi.identifiable_rank(500, 500, 10_000) == 10  # 10 (1000 - 10) = 9900 <= 10 000


@pytest.fixture(scope="module")
def ref500():
    return reference_problem("500_r5_10000")


@pytest.mark.parametrize("rank", [5, None])
def test_recovers_reference_problem_500(ref500, rank):
    # SPEC section 7: MatrixIRLS (Octave, true rank) 19 outer iterations, 3e-14.
    # The MATLAB code counts the zero-filled start as an iteration: n_iter_ + 1.
    est = MatrixIRLSCompleter(rank=rank, random_state=0).fit(ref500.observed)
    assert est.stop_reason_ == "tol"
    assert est.n_iter_ + 1 <= 1.5 * 19
    assert ref500.missing_error_factored(est.left_, est.right_) <= 1e-10
    assert est.rank_ == 5
    h = est.history_
    assert len(h["cg_iterations"]) == est.n_iter_ and min(h["cg_iterations"][:-1]) > 0
    assert all(np.diff(h["reg"]) <= 0)  # the smoothing never increases


def test_geometric_mean_recovers(small):
    est = MatrixIRLSCompleter(rank=3, mean="geometric", random_state=0).fit(small.observed)
    assert small.missing_error(est.completed_) < 1e-9


def test_dense_and_factored_outputs_agree(small):
    est = MatrixIRLSCompleter(rank=3, random_state=0).fit(small.observed)
    Z = est.completed_
    obs = small.observed
    np.testing.assert_array_equal(Z[obs.rows, obs.cols], obs.values)
    rows, cols = np.divmod(np.arange(60 * 50), 50)
    np.testing.assert_allclose(est.predict(rows, cols), Z.ravel(), atol=1e-12)
    np.testing.assert_array_equal(est.predict(obs.rows[:5], obs.cols[:5]), obs.values[:5])
    assert est.predict(np.array([[1, 2]]), np.array([[3, 4]])).shape == (1, 2)
    with pytest.raises(ValueError, match="out of range"):
        est.predict([60], [0])
    with pytest.raises(TypeError):
        est.predict([0.5], [0])


def test_input_forms_agree_and_deterministic(small):
    obs = small.observed
    kw = dict(rank=3, max_iter=6, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MatrixIRLSCompleter(**kw).fit(obs.to_dense())
        b = MatrixIRLSCompleter(**kw).fit((obs.rows, obs.cols, obs.values), shape=obs.shape)
        c = MatrixIRLSCompleter(**kw).fit(obs.to_csr())
    np.testing.assert_array_equal(a.completed_, b.completed_)
    np.testing.assert_array_equal(a.completed_, c.completed_)
    assert a.history_["rel_change"] == b.history_["rel_change"]


def test_clone_and_params_round_trip():
    est = MatrixIRLSCompleter(rank=3, mean="geometric", max_iter=7)
    params = est.get_params()
    assert clone(est).get_params() == params
    assert not any(k.endswith("_") for k in vars(est))


@pytest.mark.parametrize("params, exc, match", [
    (dict(rank=0), ValueError, "rank"), (dict(rank=50), ValueError, "rank"),
    (dict(rank=2.5), TypeError, "rank"), (dict(max_rank="big"), ValueError, "max_rank"),
    (dict(max_rank=0), ValueError, "max_rank"), (dict(mean="median"), ValueError, "mean"),
    (dict(max_iter=0), ValueError, "max_iter"), (dict(tol=-1.0), ValueError, "tol"),
    (dict(cg_tol=0.0), ValueError, "cg_tol"), (dict(cg_max_iter=0), ValueError, "cg_max_iter"),
    (dict(svd_n_iter=-1), ValueError, "svd_n_iter"), (dict(callback=3), TypeError, "callback"),
])
def test_bad_parameters_raise_before_iterating(small, params, exc, match):
    est = MatrixIRLSCompleter(**params)
    with pytest.raises(exc, match=match):
        est.fit(small.observed)
    assert not hasattr(est, "n_iter_")


@pytest.mark.parametrize("X, shape, exc, match", [
    (np.full((4, 3), np.nan), None, ValueError, "no observed entry"),
    (np.array([[1.0, np.inf], [np.nan, 2.0]]), None, ValueError, "inf"),
    (([0, 0], [1, 1], [1.0, 2.0]), None, ValueError, "duplicate"),
    (([0, 5], [0, 1], [1.0, 2.0]), (3, 3), ValueError, "out of range"),
    (np.array([["a", "b"]]), None, TypeError, "numeric"),
])
def test_bad_input(X, shape, exc, match):
    with pytest.raises(exc, match=match):
        MatrixIRLSCompleter().fit(X, shape=shape)


def test_empty_row_warns_and_still_fits():
    prob = make_completion_problem(30, 25, 2, oversampling=4, random_state=2)
    keep = prob.observed.rows != 4
    with pytest.warns(UnobservedWarning):
        est = MatrixIRLSCompleter(rank=2, random_state=0).fit(prob.observed.subset(keep))
    assert np.all(np.isfinite(est.completed_))


def test_ctrl_c_keeps_last_complete_iterate(small, monkeypatch):
    kw = dict(rank=3, max_iter=50, tol=0, random_state=0)
    calls = [0]
    solve = mi.solve_tangent_system

    def interrupting(*args):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return solve(*args)

    monkeypatch.setattr(mi, "solve_tangent_system", interrupting)
    est = MatrixIRLSCompleter(**kw)
    with pytest.warns(InterruptedFitWarning):
        est.fit(small.observed)
    monkeypatch.undo()
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 2
    with pytest.warns(ConvergenceWarning):
        ref = MatrixIRLSCompleter(**{**kw, "max_iter": 2}).fit(small.observed)
    np.testing.assert_array_equal(est.completed_, ref.completed_)


def test_callback_stops(small):
    seen = []
    est = MatrixIRLSCompleter(rank=3, callback=lambda it, rec: seen.append(rec) or it == 2)
    est.fit(small.observed)
    assert est.stop_reason_ == "callback" and est.n_iter_ == 2
    assert {"cg_iterations", "rank", "reg", "rel_change", "time"} <= set(seen[0])


def _expected_failed_checks(estimator):
    predict = ("predict(rows, cols) returns entries of the fitted matrix at coordinates; "
               "scikit-learn calls predict(X) with a design matrix")
    failed = {name: predict for name in [
        "check_estimators_unfitted", "check_estimators_dtypes",
        "check_estimator_sparse_array", "check_estimator_sparse_matrix",
        "check_estimators_pickle", "check_estimators_pickle(readonly_memmap=True)",
        "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
        "check_fit2d_predict1d", "check_n_features_in_after_fitting"]}
    failed.update({
        "check_complex_data": "complex input is rejected by as_observations with a TypeError "
                              "('must be numeric') shared by every completion estimator",
        "check_estimators_empty_data_messages": "empty input is rejected by as_observations "
                                                "with its own message ('X is empty')",
        "check_dtype_object": "object arrays are rejected: observed values must be numeric",
    })
    return failed


@parametrize_with_checks([MatrixIRLSCompleter(max_iter=5, random_state=0)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedWarning)
        check(estimator)
