"""Tests of LinRFMCompleter and the batched completion engine (issue 3).

Named problems (all seeded):

* ``rect``: 13 x 9, rows with 0 to 9 observed entries (one empty row), for
  exact engine equivalences.
* ``small``: 40 x 30, rank 2, 3x the information limit, for quick fits.
* ``paper``: 500 x 500, rank 5, 10 000 entries (2.0x, the paper's demo).
* ``wide``: 300 x 800, rank 5, 2.5x.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from linrfm._observations import Observations, as_observations
from linrfm.backends.base import NumpyBackend
from linrfm.backends.numpy_backend import solve_rows, solve_rows_reference
from linrfm.backends.registry import get_backend
from linrfm.problems.completion import LinRFMCompleter
from linrfm.core.kernel import kernel_from_agop
from linrfm.datasets import make_completion_problem
from linrfm.exceptions import (ConvergenceWarning, InterruptedFitWarning,
                               UnobservedWarning)


def _rect_problem(random_state=0):
    """13 x 9 observations with 0..9 entries per row (row 4 empty)."""
    rng = np.random.default_rng(random_state)
    d1, d2 = 13, 9
    rows, cols = [], []
    for i in range(d1):
        k = 0 if i == 4 else int(rng.integers(1, d2 + 1))
        c = np.sort(rng.choice(d2, size=k, replace=False))
        rows += [i] * k
        cols += list(c)
    values = rng.standard_normal(len(rows))
    return as_observations((np.array(rows), np.array(cols), values), shape=(d1, d2))


def _csr(obs):
    csr = obs.to_csr()
    csr.sort_indices()
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data


def _gram_of_random(d1, d2, random_state=0):
    Z = np.random.default_rng(random_state).standard_normal((d1, d2))
    return Z, Z.T @ Z / d1


@pytest.fixture(scope="module")
def small():
    return make_completion_problem(40, 30, 2, oversampling=3.0, random_state=0)


# --------------------------------------------------------------------------- engine
@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("max_batch_bytes", [2**28, 200])  # one batch / many tiny chunks
def test_batched_engine_matches_reference(replace, max_batch_bytes):
    obs = _rect_problem()
    _, K = _gram_of_random(20, obs.shape[1], random_state=1)
    indptr, indices, values = _csr(obs)
    assert 0 in np.diff(indptr) and len(np.unique(np.diff(indptr))) > 4
    Z = solve_rows(K, indptr, indices, values, 0.05, replace=replace,
                   max_batch_bytes=max_batch_bytes)
    Z_ref = solve_rows_reference(K, indptr, indices, values, 0.05, replace=replace)
    np.testing.assert_allclose(Z, Z_ref, rtol=0, atol=1e-10)
    assert np.all(Z[4] == 0)  # empty row: minimum-norm prediction 0


def test_backend_step_matches_reference_on_transpose():
    obs = _rect_problem(3).transpose()
    be = NumpyBackend()
    rows = be.prepare(obs)
    _, K = _gram_of_random(11, obs.shape[1], random_state=2)
    np.testing.assert_allclose(be.step(rows, K, 1e-3),
                               solve_rows_reference(K, *_csr(obs), 1e-3), atol=1e-10, rtol=0)


def _irls_step(Z_prev, obs, p, eps):
    """Independent IRLS-p step (Mohan & Fazel): W = (Z^T Z / d1 + eps I)^(p/2 - 1),
    minimise tr(Z W Z^T) subject to the observed entries. Row by row, the
    unobserved part U solves W[U, U] z_U = -W[U, O] y."""
    d1, d2 = obs.shape
    G = Z_prev.T @ Z_prev / d1
    w, V = np.linalg.eigh(G + eps * np.eye(d2))
    W = (V * w ** (p / 2.0 - 1.0)) @ V.T
    Z = np.zeros((d1, d2))
    for i in range(d1):
        mask = obs.rows == i
        O, y = obs.cols[mask], obs.values[mask]
        U = np.setdiff1d(np.arange(d2), O)
        Z[i, O] = y
        if U.size:
            Z[i, U] = -np.linalg.solve(W[np.ix_(U, U)], W[np.ix_(U, O)] @ y)
    return Z


def test_power_half_ridge_replace_is_irls0():
    """power 1/2 + ridge + replace == Mohan-Fazel IRLS-0 with gamma = reg (SPEC §2)."""
    obs = make_completion_problem(25, 15, 2, oversampling=2.5, random_state=4).observed
    Z_prev = np.random.default_rng(5).standard_normal((25, 2)) @ \
        np.random.default_rng(6).standard_normal((2, 15))
    be = NumpyBackend()
    rows = be.prepare(obs)
    for gamma in [1e-1, 1e-3]:
        K = kernel_from_agop(be.gram(Z_prev), 0.5)
        Z = be.step(rows, K, gamma)
        np.testing.assert_allclose(Z, _irls_step(Z_prev, obs, 0.0, gamma), atol=1e-10, rtol=0)


def test_first_estimator_iteration_is_irls0():
    obs = make_completion_problem(25, 15, 2, oversampling=2.5, random_state=4).observed
    est = LinRFMCompleter(reg=0.3, side="columns", max_iter=1, tol=0, relaxation=1.0)
    with pytest.warns(ConvergenceWarning):
        est.fit(obs)
    gamma = est.kernel_reg_  # absolute smoothing of the (only) step
    np.testing.assert_allclose(est.completed_, _irls_step(obs.to_dense(0.0), obs, 0.0, gamma),
                               atol=1e-10, rtol=0)


@pytest.mark.parametrize("power", [0.25, 0.5, 1.0])
def test_lin_rfm_step_with_vanishing_reg_is_irls_p(power):
    """One lin-RFM(power) step with reg -> 0 == one IRLS-p step, p = 2 - 4 power."""
    obs = make_completion_problem(30, 12, 2, oversampling=2.0, random_state=7).observed
    Z_prev, G = _gram_of_random(30, 12, random_state=8)  # full-rank AGOP
    be = NumpyBackend()
    K = kernel_from_agop(G, power)
    Z = be.step(be.prepare(obs), K, 1e-13)
    np.testing.assert_allclose(Z, _irls_step(Z_prev, obs, 2.0 - 4.0 * power, 1e-13),
                               atol=1e-8, rtol=0)


def test_replace_changes_only_observed_entries(small):
    be = NumpyBackend()
    rows = be.prepare(small.observed)
    K = be.gram(small.truth + 0.1)
    Z_rep = be.step(rows, K, 1e-2, replace=True)
    Z_raw = be.step(rows, K, 1e-2, replace=False)
    mask = np.zeros(small.truth.shape, dtype=bool)
    mask[small.observed.rows, small.observed.cols] = True
    np.testing.assert_array_equal(Z_rep[~mask], Z_raw[~mask])
    np.testing.assert_array_equal(Z_rep[mask], small.observed.to_dense()[mask])
    assert np.abs(Z_raw[mask] - Z_rep[mask]).max() > 1e-3


@pytest.mark.parametrize("power", [0.25, 0.5, 0.75, 1.0])
def test_objective_never_increases_at_fixed_reg(small, power):
    est = LinRFMCompleter(power=power, reg=0.05, side="columns", max_iter=25, tol=0,
                          track_objective=True, relaxation=1.0)
    with pytest.warns(ConvergenceWarning):
        est.fit(small.observed)
    obj = np.asarray(est.history_["objective"])
    assert np.all(np.isfinite(obj))
    assert np.all(np.diff(obj) <= 1e-10 * np.abs(obj[:-1]))
    assert obj[-1] < obj[0]


# --------------------------------------------------------------------------- recovery
@pytest.mark.slow
def test_recovers_paper_setup_without_rank_or_hidden_entries():
    """500 x 500, rank 5, 10 000 entries (2.0x), no rank hint, default settings."""
    prob = make_completion_problem(500, 500, 5, n_observed=10000, random_state=0)
    est = LinRFMCompleter().fit(prob.observed)
    assert est.stop_reason_ == "tol"
    assert prob.missing_error(est.completed_) <= 1e-4


@pytest.mark.slow
def test_recovers_rectangular_300x800():
    prob = make_completion_problem(300, 800, 5, oversampling=2.5, random_state=0)
    est = LinRFMCompleter().fit(prob.observed)
    assert prob.missing_error(est.completed_) <= 1e-4


@pytest.mark.parametrize("side", ["columns", "rows", "alternate"])
def test_sides_on_rectangular_input(side):
    prob = make_completion_problem(40, 25, 2, oversampling=4.0, random_state=1)
    est = LinRFMCompleter(side=side, max_iter=400, tol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(prob.observed)
    assert est.side_ == side
    assert est.completed_.shape == (40, 25)
    assert est.column_kernel_.shape == (25, 25)
    assert prob.missing_error(est.completed_) < 0.5
    if side == "alternate":
        assert set(est.history_["side"]) == {"columns", "rows"}
        assert prob.missing_error(est.completed_) < 1e-6


def test_auto_side_means_alternate(small):
    est = LinRFMCompleter(max_iter=5, tol=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(small.observed)
    assert est.side_ == "alternate"
    assert est.history_["side"][:4] == ["columns", "rows", "columns", "rows"]


def test_rank_hint_caps_reg_by_tail_eigenvalue(small):
    def regs(**kw):
        est = LinRFMCompleter(max_iter=20, tol=0, **kw)
        with pytest.warns(ConvergenceWarning):
            est.fit(small.observed)
        return np.array(est.history_["reg"])

    hint, free = regs(rank=2), regs()
    differ = np.flatnonzero(hint != free)
    assert differ.size  # the tail eigenvalue binds once the iterate is nearly rank 2
    assert hint[differ[0]] < free[differ[0]]
    # the rule itself: the first iteration's cap is lambda_3 of the first AGOP
    Z0 = small.observed.to_dense(0.0)
    lam3 = np.linalg.eigvalsh(Z0.T @ Z0 / Z0.shape[0])[-3]
    from linrfm.core.smoothing import SmoothingSchedule
    sched = SmoothingSchedule("auto")
    sched.start(1.0)
    assert sched.update(1.0, 1.0, tail_eig=lam3 * 1e-3) == pytest.approx(lam3 * 1e-3)


def test_float32_is_accurate_to_about_1e4():
    prob = make_completion_problem(120, 100, 3, oversampling=3.0, random_state=2)
    e64 = LinRFMCompleter(tol=1e-9).fit(prob.observed)
    e32 = LinRFMCompleter(dtype="float32").fit(prob.observed)  # tol raised to 5e-6
    assert e32.completed_.dtype == np.float32 and e32.column_kernel_.dtype == np.float32
    err64, err32 = prob.missing_error(e64.completed_), prob.missing_error(e32.completed_)
    assert err64 <= 1e-8
    assert err32 <= 1e-4
    assert e32.stop_reason_ == "tol"


# --------------------------------------------------------------------------- API
def test_fit_transform_predict_and_attributes(small):
    est = LinRFMCompleter(max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Z = est.fit_transform(small.observed.to_dense())
    np.testing.assert_array_equal(Z, est.completed_)
    obs = small.observed
    np.testing.assert_array_equal(est.predict(obs.rows, obs.cols), obs.values)
    np.testing.assert_array_equal(est.predict([0, 3], [1, 2]), Z[[0, 3], [1, 2]])
    assert est.shape_ == (40, 30) and est.n_features_in_ == 30
    assert est.n_unobserved_rows_ == 0 and est.n_unobserved_cols_ == 0
    assert est.validation_error_ is None
    assert len(est.history_["rel_change"]) == est.n_iter_
    assert np.all(np.isnan(est.history_["objective"]))
    with pytest.raises(ValueError, match="out of range"):
        est.predict([40], [0])


def test_every_input_format_gives_the_same_fit(small):
    pd = pytest.importorskip("pandas")
    obs = small.observed
    dense = obs.to_dense()
    formats = {
        "dense": (dense, None),
        "csr": (sp.csr_matrix((obs.values, (obs.rows, obs.cols)), shape=obs.shape), None),
        "coo_array": (sp.coo_array((obs.values, (obs.rows, obs.cols)), shape=obs.shape), None),
        "triplets": ((obs.rows, obs.cols, obs.values), obs.shape),
        "shuffled": ((obs.rows[::-1], obs.cols[::-1], obs.values[::-1]), obs.shape),
        "dataframe": (pd.DataFrame({"u": obs.rows, "i": obs.cols, "r": obs.values}), obs.shape),
        "observations": (obs, None),
    }
    fits = {}
    for name, (X, shape) in formats.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits[name] = LinRFMCompleter(max_iter=20).fit(X, shape=shape).completed_
    for name, Z in fits.items():
        np.testing.assert_array_equal(Z, fits["dense"], err_msg=name)


def test_fold_in_equals_rows_of_a_refit_step(small):
    est = LinRFMCompleter(max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(small.observed)
    obs = small.observed
    Z_step = solve_rows(est.column_kernel_, *_csr(obs), est.column_reg_)
    keep = np.isin(obs.rows, [3, 7, 8, 21])
    new = obs.subset(keep)
    dense_new = new.to_dense()[[3, 7, 8, 21]]
    out = est.transform(dense_new)
    np.testing.assert_allclose(out, Z_step[[3, 7, 8, 21]], atol=1e-12, rtol=0)
    # triplets with the column count taken from the model; sparse input
    r = np.searchsorted([3, 7, 8, 21], new.rows)
    np.testing.assert_allclose(est.transform((r, new.cols, new.values)), out, atol=1e-12)
    X_sparse = sp.csr_array((new.values, (r, new.cols)), shape=(4, obs.shape[1]))
    np.testing.assert_allclose(est.transform(X_sparse), out, atol=1e-12)


def test_fold_in_completes_unseen_rows():
    prob = make_completion_problem(150, 60, 2, oversampling=3.0, random_state=3)
    truth = prob.truth
    train = Observations(*[a[prob.observed.rows < 130] for a in
                           (prob.observed.rows, prob.observed.cols, prob.observed.values)],
                         (130, 60))
    est = LinRFMCompleter(tol=1e-10).fit(train)
    rng = np.random.default_rng(0)
    new = np.full((20, 60), np.nan)
    for i in range(20):
        c = rng.choice(60, size=15, replace=False)
        new[i, c] = truth[130 + i, c]
    out = est.transform(new)
    assert out.shape == (20, 60)
    err = np.linalg.norm(out - truth[130:]) / np.linalg.norm(truth[130:])
    assert err < 1e-5
    with pytest.raises(ValueError, match="columns"):
        est.transform(np.ones((2, 61)))


def test_unobserved_rows_and_columns_warn_and_fall_back():
    prob = make_completion_problem(30, 20, 2, oversampling=4.0, random_state=5)
    obs = prob.observed
    keep = (obs.rows != 7) & (obs.cols != 11) & (obs.cols != 12)
    dense = obs.subset(keep).to_dense()
    est = LinRFMCompleter(max_iter=50)
    with pytest.warns(UnobservedWarning, match="1 row.*2 column"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(dense)
    assert est.n_unobserved_rows_ == 1 and est.n_unobserved_cols_ == 2
    Z = est.completed_
    assert np.all(np.isfinite(Z))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of the empty slices
        col_means = np.nanmean(dense, axis=0)
        row_means = np.nanmean(dense, axis=1)
    other = np.setdiff1d(np.arange(20), [11, 12])
    np.testing.assert_allclose(Z[7, other], col_means[other])
    np.testing.assert_allclose(Z[np.arange(30) != 7][:, 11], row_means[np.arange(30) != 7])
    np.testing.assert_allclose(Z[7, [11, 12]], np.nanmean(dense))


def test_validation_stopping_uses_observed_entries_only():
    prob = make_completion_problem(60, 50, 2, oversampling=3.0, noise=0.1, random_state=6)
    est = LinRFMCompleter(reg=0.05, validation_fraction=0.15, n_iter_no_change=5,
                          random_state=0, max_iter=300)
    est.fit(prob.observed)
    assert est.stop_reason_ in ("validation", "tol")
    assert est.validation_error_ is not None and 0 < est.validation_error_ < 0.5
    assert len(est.history_["validation_error"]) == est.n_iter_
    # held-out observed entries come back as data in completed_
    np.testing.assert_array_equal(est.predict(prob.observed.rows, prob.observed.cols),
                                  prob.observed.values)


def test_deterministic(small):
    kw = dict(validation_fraction=0.1, random_state=3, max_iter=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LinRFMCompleter(**kw).fit(small.observed)
        b = LinRFMCompleter(**kw).fit(small.observed)
        c = LinRFMCompleter(**{**kw, "random_state": 4}).fit(small.observed)
    np.testing.assert_array_equal(a.completed_, b.completed_)
    assert a.history_["rel_change"] == b.history_["rel_change"]
    assert not np.array_equal(a.completed_, c.completed_)


class _InterruptingBackend(NumpyBackend):
    def __init__(self, at_call):
        super().__init__()
        self.calls, self.at_call = 0, at_call

    def step(self, rows, K, reg, replace=True):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return super().step(rows, K, reg, replace=replace)


def test_ctrl_c_keeps_last_complete_iterate(small):
    est = LinRFMCompleter(device=_InterruptingBackend(3), max_iter=50, tol=0)
    with pytest.warns(InterruptedFitWarning):
        est.fit(small.observed)
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 2
    ref = LinRFMCompleter(max_iter=2, tol=0)
    with pytest.warns(ConvergenceWarning):
        ref.fit(small.observed)
    np.testing.assert_array_equal(est.completed_, ref.completed_)


@pytest.mark.parametrize("params", [{"power": 0.25}, {"power": 1.0}, {"reg": 0.1},
                                    {"side": "columns"}, {"side": "rows"}, {"rank": 2},
                                    {"max_iter": 3}, {"dtype": "float32"}])
def test_every_parameter_changes_the_fit(small, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = LinRFMCompleter(max_iter=20, tol=0).fit(small.observed).completed_
        other = LinRFMCompleter(**{"max_iter": 20, "tol": 0, **params}).fit(
            small.observed).completed_
    assert np.abs(other - base).max() > 1e-6


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("X, shape, match", [
    (np.empty((0, 3)), None, "empty"),
    (np.full((3, 4), np.nan), None, "no observed"),
    (np.array([[1.0, np.inf], [np.nan, 2.0]]), None, "inf"),
    ((np.array([0, 1]), np.array([0, 1]), np.array([1.0, np.nan])), None, "finite"),
    ((np.array([0, 5]), np.array([0, 1]), np.array([1.0, 2.0])), (3, 3), "out of range"),
    ((np.array([0, -1]), np.array([0, 1]), np.array([1.0, 2.0])), None, "non-negative"),
    ((np.array([0, 1.5]), np.array([0, 1]), np.array([1.0, 2.0])), None, "integer"),
    ((np.array([0, 0]), np.array([1, 1]), np.array([1.0, 2.0])), None, "duplicate"),
    (np.ones((3, 3)), (4, 4), "does not match"),
])
def test_bad_input_raises_before_iterating(X, shape, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LinRFMCompleter().fit(X, shape=shape)


@pytest.mark.parametrize("params, match", [
    ({"power": 0}, "power"), ({"power": -1}, "power"), ({"power": "1/2"}, "power"),
    ({"side": "both"}, "side"), ({"reg": -1.0}, "reg"), ({"reg": "fixed"}, "reg"),
    ({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol"), ({"rank": 0}, "rank"),
    ({"validation_fraction": 1.0}, "validation_fraction"), ({"n_iter_no_change": 0},
                                                            "n_iter_no_change"),
    ({"dtype": "float16"}, "dtype"), ({"dtype": "int64"}, "dtype"),
    ({"device": "tpu"}, "device"), ({"device": "cuda:x"}, "device|cuda"),
    ({"max_batch_bytes": 0}, "max_batch_bytes"),
])
def test_bad_parameters_raise_in_fit(small, params, match):
    est = LinRFMCompleter(**params)  # __init__ never validates
    with pytest.raises((ValueError, TypeError, ImportError), match=match):
        est.fit(small.observed)


def test_cuda_without_gpu_is_a_clear_error(small):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    with pytest.raises(ValueError, match="cuda.is_available"):
        LinRFMCompleter(device="cuda").fit(small.observed)


def test_get_backend_names():
    assert get_backend("cpu").name == "numpy"
    assert get_backend("numpy", "float32").dtype == np.float32
    be = NumpyBackend()
    assert get_backend(be) is be


def test_clone_and_pickle(small):
    import pickle

    est = LinRFMCompleter(power=0.25, side="rows", device="cuda")
    assert clone(est).get_params() == est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = LinRFMCompleter(max_iter=5).fit(small.observed)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.completed_, fitted.completed_)


# --------------------------------------------------------------------------- sklearn
def _expected_failed_checks(estimator):
    predict = ("predict(rows, cols) returns entries of the fitted matrix at coordinates; "
               "scikit-learn calls predict(X) with a design matrix")
    failed = {name: predict for name in [
        "check_estimators_unfitted", "check_estimators_dtypes",
        "check_estimator_sparse_array", "check_estimator_sparse_matrix",
        "check_estimators_pickle", "check_estimators_pickle(readonly_memmap=True)",
        "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
        "check_fit2d_predict1d"]}
    failed.update({
        "check_complex_data": "complex input is rejected by as_observations with a TypeError "
                              "('must be numeric') shared by every completion estimator",
        "check_estimators_empty_data_messages": "empty input is rejected by as_observations "
                                                "with its own message ('X is empty')",
        "check_n_features_in_after_fitting": "transform accepts triplets and sparse rows too; "
                                             "its column-count error has its own message",
        "check_dtype_object": "object arrays are rejected: observed values must be numeric",
    })
    return failed


@parametrize_with_checks([LinRFMCompleter(max_iter=20)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedWarning)  # random sparse test data
        check(estimator)


def test_dask_device_matches_numpy(small):
    pytest.importorskip("distributed")
    kw = dict(max_iter=10, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LinRFMCompleter(**kw).fit(small.observed)
        est = LinRFMCompleter(device="dask", **kw).fit(small.observed)
    np.testing.assert_allclose(est.completed_, ref.completed_, atol=1e-10, rtol=0)


def test_verbose_reports_progress(small, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        LinRFMCompleter(max_iter=3, tol=0, verbose=2).fit(small.observed)
    err = capsys.readouterr().err
    assert "iter 3" in err and "rel_change" in err


@pytest.mark.parametrize("power", [0.5, 1.0, 0.3])
def test_scale_free(small, power):
    """reg is relative to the kernel's scale: scaling the data scales the fit."""
    obs = small.observed
    scaled = Observations(obs.rows, obs.cols, obs.values * 1e3, obs.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LinRFMCompleter(power=power, max_iter=15, tol=0).fit(obs)
        b = LinRFMCompleter(power=power, max_iter=15, tol=0).fit(scaled)
    # power 0.3 takes an eigh of a nearly rank-deficient Gram, which amplifies
    # rounding: the two fits agree to ~2e-7 relative, not to 1e-7.
    np.testing.assert_allclose(b.completed_, 1e3 * a.completed_, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- over-relaxation
def test_relaxed_first_step_extrapolates_the_plain_step():
    """relaxation=omega gives Z_0 + omega (F(Z_0) - Z_0) after one iteration."""
    obs = make_completion_problem(25, 15, 2, oversampling=2.5, random_state=4).observed
    kw = dict(reg=0.3, side="columns", max_iter=1, tol=0)
    with pytest.warns(ConvergenceWarning):
        plain = LinRFMCompleter(relaxation=1.0, **kw).fit(obs).completed_
    with pytest.warns(ConvergenceWarning):
        relaxed = LinRFMCompleter(relaxation=1.5, **kw).fit(obs).completed_
    Z0 = obs.to_dense(0.0)
    np.testing.assert_allclose(relaxed, Z0 + 1.5 * (plain - Z0), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(relaxed[obs.rows, obs.cols], obs.values)


def test_relaxation_needs_fewer_iterations():
    """Over-relaxation (default 1.5) reaches the same tolerance in fewer iterations."""
    prob = make_completion_problem(120, 100, 3, oversampling=3.0, random_state=11)
    plain = LinRFMCompleter(relaxation=1.0, tol=1e-8, max_iter=600).fit(prob.observed)
    fast = LinRFMCompleter(tol=1e-8, max_iter=600).fit(prob.observed)
    assert prob.missing_error(fast.completed_) < 1e-6
    assert prob.missing_error(plain.completed_) < 1e-6
    assert fast.n_iter_ < plain.n_iter_


@pytest.mark.parametrize("bad", [0.5, 2.0, float("nan"), "fast"])
def test_bad_relaxation(small, bad):
    with pytest.raises((ValueError, TypeError), match="relaxation"):
        LinRFMCompleter(relaxation=bad).fit(small.observed)


def test_callback_sees_each_iteration_and_can_stop(small):
    seen = []

    def callback(iteration, record):
        seen.append((iteration, record["rel_change"]))
        return iteration == 4

    est = LinRFMCompleter(callback=callback, tol=0).fit(small.observed)
    assert [it for it, _ in seen] == [1, 2, 3, 4]
    assert est.n_iter_ == 4 and est.stop_reason_ == "callback"
    np.testing.assert_allclose([r for _, r in seen], est.history_["rel_change"])
    with pytest.raises(TypeError, match="callback"):
        LinRFMCompleter(callback="print").fit(small.observed)


def test_one_sided_auto_reg_does_not_collapse():
    """Regression test (benchmark finding): with side="columns" and reg="auto" the
    smoothing used to collapse after two steps, freezing the error near 0.5."""
    prob = make_completion_problem(200, 200, 5, oversampling=3.0, random_state=0)
    est = LinRFMCompleter(side="columns", max_iter=1500).fit(prob.observed)
    assert prob.missing_error(est.completed_) < 1e-4
