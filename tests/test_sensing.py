"""LinRFMSensing: recovery, direct = CG, formats, IRLS-p equivalence, descent,
reduced-rank regression as a special case, estimator contract, bad input."""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

import linrfm.problems.sensing as sensing_module
from linrfm.datasets import information_limit, make_sensing_problem
from linrfm.exceptions import ConvergenceWarning, LinRFMWarning
from linrfm.problems.sensing import LinRFMSensing


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # tiny GEMMs: threads only add contention on a shared 2-core CI machine
    with threadpool_limits(1):
        yield


def rel_err(Z, Z0):
    return float(np.linalg.norm(Z - Z0) / np.linalg.norm(Z0))


# --------------------------------------------------------------------------- recovery
@pytest.fixture(scope="module")
def gaussian_40():
    """40 x 40, rank 2, m = 3 r (d1 + d2 - r) = 468 Gaussian measurements."""
    m = 3 * information_limit(40, 40, 2)
    return make_sensing_problem(40, 40, 2, m, random_state=0)


@pytest.fixture(scope="module")
def direct_fit_40(gaussian_40):
    A, y, _ = gaussian_40
    return LinRFMSensing(solver="direct").fit(A, y)


def test_gaussian_recovery_direct(gaussian_40, direct_fit_40):
    est = direct_fit_40
    assert est.solver_ == "direct"
    assert est.stop_reason_ == "tol" and est.converged_
    assert rel_err(est.Z_, gaussian_40[2]) <= 1e-6
    h = est.history_
    assert len(h["objective"]) == est.n_iter_ and h["residual"][-1] < 1e-10
    assert "cg_iterations" not in h


def test_cg_equals_direct(gaussian_40, direct_fit_40):
    A, y, _ = gaussian_40
    est = LinRFMSensing(solver="cg", cg_tol=1e-11).fit(A, y)
    assert est.solver_ == "cg" and est.n_iter_ == direct_fit_40.n_iter_
    assert rel_err(est.Z_, direct_fit_40.Z_) <= 1e-8
    h = est.history_
    assert len(h["cg_iterations"]) == len(h["cg_residual"]) == est.n_iter_
    assert all(k > 0 for k in h["cg_iterations"])
    assert max(h["cg_residual"]) <= 1e-10


def test_auto_solver_is_direct_for_small_m(gaussian_40):
    A, y, _ = gaussian_40
    assert LinRFMSensing(max_iter=1, tol=1.0).fit(A, y).solver_ == "direct"


def test_auto_solver_picks_cg_when_m_is_large(small, monkeypatch):
    A3, y, _ = small
    monkeypatch.setattr(sensing_module, "_DIRECT_MAX_M", len(y) - 1)
    est = LinRFMSensing(max_iter=2, tol=1.0).fit(A3, y)
    assert est.solver_ == "cg" and "cg_iterations" in est.history_
    monkeypatch.setattr(sensing_module, "_DIRECT_MAX_M", len(y))
    monkeypatch.setattr(sensing_module, "_DIRECT_MAX_BYTES", 16 * len(y) ** 2 - 1)
    assert LinRFMSensing(max_iter=2, tol=1.0).fit(A3, y).solver_ == "cg"


def test_verbose_prints_one_line_per_iteration(small, capsys):
    A3, y, _ = small
    est = LinRFMSensing(verbose=2, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(A3, y)
    err = capsys.readouterr().err
    assert err.count("iter ") == 3 and "residual=" in err


def test_public_namespace():
    import linrfm

    assert linrfm.LinRFMSensing is LinRFMSensing


@pytest.mark.filterwarnings("ignore:lin-RFM sensing. reached max_iter")
def test_cg_with_tiny_maxiter_warns():
    A, y, _ = make_sensing_problem(8, 8, 1, 40, random_state=0)
    with pytest.warns(ConvergenceWarning, match="CG reached cg_maxiter"):
        est = LinRFMSensing(solver="cg", cg_maxiter=2, max_iter=3, tol=0).fit(A, y)
    assert all(k == 2 for k in est.history_["cg_iterations"])


# --------------------------------------------------------------------------- formats
D1, D2, R = 10, 8, 1
M_SMALL = 3 * information_limit(D1, D2, R)


@pytest.fixture(scope="module")
def small():
    return make_sensing_problem(D1, D2, R, M_SMALL, random_state=1)


def _formats(A3):
    A2 = A3.reshape(A3.shape[0], -1)
    fn = LinearOperator(A2.shape, matvec=lambda x: A2 @ x, rmatvec=lambda v: A2.T @ v,
                        dtype=np.float64)
    return {
        "dense3d": (A3, None),
        "dense2d": (A2, (D1, D2)),
        "csr": (sp.csr_array(A2), (D1, D2)),
        "linop": (aslinearoperator(A2), (D1, D2)),
        "function": (fn, (D1, D2)),
    }


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_all_formats_give_the_same_fit(small, solver):
    A3, y, Z = small
    fits = {name: LinRFMSensing(solver=solver, cg_tol=1e-13).fit(A, y, shape=shape)
            for name, (A, shape) in _formats(A3).items()}
    ref = fits["dense3d"]
    assert rel_err(ref.Z_, Z) <= 1e-6
    for name, est in fits.items():
        assert est.n_iter_ == ref.n_iter_, name
        assert rel_err(est.Z_, ref.Z_) <= 1e-9, name


@pytest.mark.parametrize("d1,d2,side", [(12, 8, "columns"), (8, 12, "rows")])
def test_rectangular_and_auto_side(d1, d2, side):
    m = 3 * information_limit(d1, d2, 1)
    A, y, Z = make_sensing_problem(d1, d2, 1, m, random_state=2)
    est = LinRFMSensing(side="auto").fit(A, y)
    assert est.side_ == side
    d = min(d1, d2)
    assert est.kernel_.shape == est.feature_matrix_.shape == est.agop_.shape == (d, d)
    assert rel_err(est.Z_, Z) <= 1e-6
    alt = LinRFMSensing(side="alternate").fit(A, y)
    assert alt.Z_.shape == (d1, d2) and rel_err(alt.Z_, Z) <= 1e-6


def test_fitted_matrices_are_powers_of_the_agop(small):
    A3, y, _ = small
    est = LinRFMSensing(power=0.75, side="columns", max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(A3, y)
    G = est.Z_.T @ est.Z_ / D1
    np.testing.assert_allclose(est.agop_, G, rtol=1e-12, atol=1e-14)
    w, V = np.linalg.eigh(G)
    w = np.clip(w, 0, None)
    np.testing.assert_allclose(est.feature_matrix_, (V * w ** 0.75) @ V.T, atol=1e-12)
    np.testing.assert_allclose(est.kernel_, (V * w ** 1.5) @ V.T, atol=1e-12)
    np.testing.assert_allclose(est.predict(A3), y, atol=1e-10)


# --------------------------------------------------------------- IRLS-p equivalence, descent
def _irls_step_independent(A3, y, Z, power, eps):
    """One IRLS-p step, p = 2 - 4 power: argmin tr(Z W Z^T) s.t. A(Z) = y with
    W = (Z^T Z / d1 + eps I)^(p/2 - 1), by the primal KKT system."""
    m, d1, d2 = A3.shape
    p = 2.0 - 4.0 * power
    w, V = np.linalg.eigh(Z.T @ Z / d1 + eps * np.eye(d2))
    W = (V * w ** (p / 2.0 - 1.0)) @ V.T
    A2 = A3.reshape(m, -1)
    n = d1 * d2
    kkt = np.block([[2.0 * np.kron(np.eye(d1), W), A2.T], [A2, np.zeros((m, m))]])
    sol = np.linalg.solve(kkt, np.concatenate([np.zeros(n), y]))
    return sol[:n].reshape(d1, d2)


@pytest.mark.parametrize("power", [0.25, 0.5, 1.0])
def test_one_step_equals_irls_p(small, power):
    A3, y, _ = small
    A2 = A3.reshape(A3.shape[0], -1)
    Z0 = (np.linalg.pinv(A2) @ y).reshape(D1, D2)  # minimum Frobenius norm, M_0 = I
    scale0 = np.trace(Z0.T @ Z0 / D1) / D2
    gaps = []
    for reg in (1e-3, 1e-11):
        est = LinRFMSensing(power=power, reg=reg, side="columns", max_iter=1, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(A3, y)
        # reg_ and history_["reg"] are in the units of the reg parameter; the
        # absolute smoothing is relative to the scale in kernel units
        assert est.history_["reg"][0] == pytest.approx(reg, rel=1e-12)
        assert est.kernel_reg_ == pytest.approx(reg * scale0 ** (2 * power), rel=1e-12)
        Z1 = _irls_step_independent(A3, y, Z0, power, reg * scale0)
        gaps.append(rel_err(est.Z_, Z1))
    assert gaps[1] <= 1e-8
    if power == 0.5:
        # G + reg I = (G + eps I)^1: the same step at every smoothing
        assert gaps[0] <= 1e-10
    else:
        assert gaps[1] < 1e-3 * gaps[0]  # the gap closes as reg -> 0


@pytest.mark.parametrize("side", ["columns", "rows", "alternate"])
@pytest.mark.parametrize("power", [0.25, 0.5, 1.0])
def test_objective_never_increases_at_fixed_reg(power, side):
    A, y, _ = make_sensing_problem(9, 9, 1, 40, random_state=3)
    est = LinRFMSensing(power=power, reg=1e-2, side=side, max_iter=25, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(A, y)
    F = np.asarray(est.history_["objective"])
    assert len(set(est.history_["reg"])) == 1
    assert np.all(np.diff(F) <= 1e-10 * np.abs(F[:-1]))
    assert F[-1] < F[0]


@pytest.mark.parametrize("reg", ["auto", 0.05])
@pytest.mark.parametrize("power", [0.25, 0.5, 1.0])
def test_scale_equivariance(small, power, reg):
    """Measurements scaled by s give the matrix scaled by s, for every power."""
    A3, y, _ = small
    kw = dict(power=power, reg=reg, max_iter=15, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LinRFMSensing(**kw).fit(A3, y)
        b = LinRFMSensing(**kw).fit(A3, 1e3 * y)
    assert rel_err(b.Z_, 1e3 * a.Z_) <= 1e-7  # rounding, amplified by eigh for power 1/4
    np.testing.assert_allclose(b.history_["rel_change"], a.history_["rel_change"], rtol=1e-6,
                               atol=1e-12)


# ---------------------------------------------------------- reduced-rank regression
def _reduced_rank_problem(n=12, d=20, k=6, r=2, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    B = rng.standard_normal((d, r)) @ rng.standard_normal((r, k))
    return X, B, X @ B


def _regression_measurements(X, k):
    """A_(i,j) = x_i e_j^T (d x k), measurement (i, j) at row i*k + j, so y = Y.ravel()."""
    n, d = X.shape
    rows = np.repeat(np.arange(n * k), d)  # measurement of each stored entry
    feat = np.tile(np.arange(d), n * k)
    i, j = np.divmod(rows, k)
    return sp.csr_array((X[i, feat], (rows, feat * k + j)), shape=(n * k, d * k))


def test_regression_measurements_are_x_i_e_j():
    X, B, Y = _reduced_rank_problem()
    A = _regression_measurements(X, B.shape[1]).toarray().reshape(-1, X.shape[1], B.shape[1])
    i, j = 5, 3
    np.testing.assert_array_equal(A[i * B.shape[1] + j], np.outer(X[i], np.eye(B.shape[1])[j]))
    np.testing.assert_allclose(np.einsum("kab,ab->k", A, B), Y.ravel(), rtol=1e-12)


def test_reduced_rank_regression_is_sensing():
    """Y = X B: LinRFMSensing(side="rows") on A_(i,j) = x_i e_j^T follows the same
    iterates as LinRFMRegressor(feature_matrix="full") (AGOP B B^T).

    Conventions: the sensing row AGOP is B B^T / k, kernel (B B^T/k)^(2 power)
    + reg s I with s = trace(G_0)/d = ||B_0||^2/(d k); the regressor's kernel is
    ((B B^T + eps I)/s_r)^(2 power) with eps = reg s_r, s_r = ||B_0||^2/d. For
    power 1/2 and equal ``reg`` the kernels are proportional (B B^T/k + reg s I
    = (B B^T + reg s_r I)/k), so the iterates agree exactly.
    """
    regression = pytest.importorskip("linrfm.problems.regression")
    X, B, Y = _reduced_rank_problem()
    n, d = X.shape
    k = B.shape[1]
    A = _regression_measurements(X, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg_fit = regression.LinRFMRegressor(power=0.5, reg=1e-3, feature_matrix="full",
                                             fit_intercept=False, max_iter=8, tol=0).fit(X, Y)
        sen_fit = LinRFMSensing(power=0.5, reg=1e-3, side="rows", max_iter=8, tol=0).fit(
            A, Y.ravel(), shape=(d, k))
    assert reg_fit.n_iter_ == sen_fit.n_iter_ == 8
    assert rel_err(sen_fit.Z_, reg_fit.coef_.T) <= 1e-9
    # feature matrices: (B B^T)^power versus (B B^T / k)^power; the square root of
    # the near-zero eigenvalues of a rank-2 20 x 20 matrix is only sqrt(eps)-accurate
    np.testing.assert_allclose(sen_fit.feature_matrix_ * k ** 0.5, reg_fit.feature_matrix_,
                               rtol=0, atol=1e-6 * np.abs(reg_fit.feature_matrix_).max())
    # (no recovery claim: with n < d, B + N W^T, N in null(X), has the same rank and fit)
    np.testing.assert_allclose(X @ sen_fit.Z_, Y, atol=1e-9 * np.abs(Y).max())


# --------------------------------------------------------------- estimator contract
# sklearn's parametrize_with_checks feeds design matrices X (n, d) with targets; this
# estimator takes (A, y) with A of shape (m, d1, d2), so none of those checks applies as
# written. The contract (clone, get_params, pickle, fitted attributes, errors before
# work, every parameter matters) is tested explicitly below.
def test_clone_get_params_pickle(small):
    A3, y, Z = small
    est = LinRFMSensing(power=0.25, reg=0.1, side="rows", max_iter=7, tol=1e-3, solver="cg",
                        cg_tol=1e-9, cg_maxiter=50, random_state=3, verbose=0)
    params = est.get_params()
    assert params["power"] == 0.25 and params["side"] == "rows" and params["cg_maxiter"] == 50
    c = clone(est)
    assert c.get_params() == params and not hasattr(c, "Z_")
    with pytest.raises(NotFittedError):
        est.predict(A3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(A3, y)
    assert est.get_params() == params  # fit leaves the parameters untouched
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.Z_, est.Z_)
    np.testing.assert_array_equal(back.predict(A3), est.predict(A3))
    assert isinstance(est.Z_, np.ndarray) and est.shape_ == (D1, D2)
    assert est.n_measurements_ == M_SMALL and est.reg_ > 0


def test_predict_other_formats_and_shape_check(small):
    A3, y, _ = small
    est = LinRFMSensing().fit(A3, y)
    A2 = A3.reshape(len(y), -1)
    np.testing.assert_allclose(est.predict(sp.csr_array(A2)), est.predict(A3), rtol=1e-12)
    np.testing.assert_allclose(est.predict(A2), y, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        est.predict(np.zeros((3, D2, D1)))


@pytest.mark.parametrize("param,value", [
    ("power", 0.25), ("reg", 0.3), ("side", "columns"), ("max_iter", 2), ("tol", 0.5),
    ("solver", "cg"), ("cg_tol", 1e-2), ("cg_maxiter", 1),
])
def test_every_parameter_changes_something(small, param, value):
    A3, y, _ = small
    base = dict(max_iter=6, tol=0, solver="direct", cg_tol=1e-12)
    if param in ("cg_tol", "cg_maxiter"):
        base["solver"] = "cg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LinRFMSensing(**base).fit(A3, y)
        b = LinRFMSensing(**{**base, param: value}).fit(A3, y)
    same = (a.n_iter_ == b.n_iter_ and np.array_equal(a.history_["reg"], b.history_["reg"])
            and np.allclose(a.Z_, b.Z_, rtol=1e-14, atol=0))
    assert not same


def test_zero_measurements_give_zero():
    A, _, _ = make_sensing_problem(6, 6, 1, 20, random_state=0)
    est = LinRFMSensing().fit(A, np.zeros(20))
    assert np.all(est.Z_ == 0) and est.stop_reason_ == "tol"


def test_overdetermined_warns_and_fits():
    A, y, Z = make_sensing_problem(3, 3, 1, 12, random_state=0)
    with pytest.warns(LinRFMWarning, match="overdetermined"):
        est = LinRFMSensing(max_iter=5, tol=1e-6).fit(A, y)
    assert rel_err(est.Z_, Z) <= 1e-8


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if the lin-RFM loop starts."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the input was rejected")
    monkeypatch.setattr(sensing_module, "run_loop", boom)


def _no_rmatvec(A3):
    A2 = A3.reshape(A3.shape[0], -1)
    return LinearOperator(A2.shape, matvec=lambda x: A2 @ x, dtype=np.float64), A3.shape[1:]


BAD_FIT = {
    "y too short": (lambda A3, y: (A3, y[:-1], None), ValueError, "measurements but y has"),
    "y too long": (lambda A3, y: (A3, np.append(y, 1.0), None), ValueError,
                   "measurements but y has"),
    "y 2-D": (lambda A3, y: (A3, y[:, None], None), ValueError, "1-D"),
    "y nan": (lambda A3, y: (A3, np.where(np.arange(len(y)) == 3, np.nan, y), None), ValueError,
              "NaN"),
    "y inf": (lambda A3, y: (A3, np.where(np.arange(len(y)) == 3, np.inf, y), None), ValueError,
              "infinite"),
    "y complex": (lambda A3, y: (A3, y + 1j, None), TypeError, "real"),
    "y strings": (lambda A3, y: (A3, y.astype(str), None), TypeError, "numeric"),
    "A nan": (lambda A3, y: (np.where(A3 == A3.max(), np.nan, A3), y, None), ValueError, "NaN"),
    "A inf sparse": (lambda A3, y: (sp.csr_array(np.where(A3 == A3.max(), np.inf, A3).reshape(
        len(y), -1)), y, (D1, D2)), ValueError, "infinite"),
    "no rmatvec": (lambda A3, y: (*_no_rmatvec(A3)[:1], y, _no_rmatvec(A3)[1]), TypeError,
                   "rmatvec"),
    "shape mismatch": (lambda A3, y: (A3, y, (D2, D1)), ValueError, "does not match"),
    "flat without shape": (lambda A3, y: (A3.reshape(len(y), -1), y, None), ValueError,
                           "shape=.* required"),
    "flat wrong shape": (lambda A3, y: (A3.reshape(len(y), -1), y, (D1, D2 - 1)), ValueError,
                         "columns"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIT))
def test_bad_input_raises_before_work(small, no_work, case):
    A3, y, _ = small
    build, exc, match = BAD_FIT[case]
    A, yy, shape = build(A3, y)
    with pytest.raises(exc, match=match):
        LinRFMSensing().fit(A, yy, shape=shape)


@pytest.mark.parametrize("param,value,exc", [
    ("power", 0.0, ValueError), ("power", "half", TypeError), ("reg", -1.0, ValueError),
    ("reg", "fixed", ValueError), ("side", "left", ValueError), ("solver", "lu", ValueError),
    ("max_iter", 0, ValueError), ("max_iter", 2.5, TypeError), ("tol", -1.0, ValueError),
    ("cg_tol", 0.0, ValueError), ("cg_maxiter", 0, ValueError),
])
def test_bad_parameters_raise_before_work(small, no_work, param, value, exc):
    A3, y, _ = small
    with pytest.raises(exc, match=param):
        LinRFMSensing(**{param: value}).fit(A3, y)
