"""Issue 12: every reproducer listed under "Why" is a named regression test."""
from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from linrfm import LinRFMCompleter, LinRFMRegressor, LinRFMSensing
from linrfm.exceptions import NumericalWarning

HAS_TORCH = importlib.util.find_spec("torch") is not None
ROOT = Path(__file__).resolve().parents[1]
X3 = np.array([[1, 2, np.nan], [2, np.nan, 6], [np.nan, 4, 6.]])


def _low_rank(d1, d2, frac, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((d1, 2)) @ rng.standard_normal((2, d2)) * scale
    X = Z.copy()
    X[rng.random(Z.shape) < frac] = np.nan
    X[np.arange(d1), np.arange(d1) % d2] = Z[np.arange(d1), np.arange(d1) % d2]
    return X, Z


@pytest.mark.parametrize("scale", [1e154, 1e-300, 1e150, 1e-150])
def test_issue12_extreme_scales_complete_like_unit_scale(scale):
    """1e154 overflowed the Gram (NaN, stop_reason 'tol'); 1e-300 gave zeros."""
    ref = LinRFMCompleter(max_iter=200).fit(X3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        est = LinRFMCompleter(max_iter=200).fit(X3 * scale)
    assert np.all(np.isfinite(est.completed_))
    np.testing.assert_allclose(est.completed_ / scale, ref.completed_, rtol=1e-12)
    assert est.n_iter_ == ref.n_iter_ and est.stop_reason_ == ref.stop_reason_


def test_issue12_rescaling_is_bit_exact_for_ordinary_data():
    X, _ = _low_rank(20, 15, 0.5, 0)
    a = LinRFMCompleter(max_iter=30).fit(X)
    b = LinRFMCompleter(max_iter=30).fit(X * 2.0**40)
    np.testing.assert_array_equal(b.completed_, a.completed_ * 2.0**40)


def test_issue12_validation_without_improvement_has_finite_reg():
    """reg_/column_reg_ were NaN and transform returned NaN."""
    rng = np.random.default_rng(0)
    X = np.full((70, 20), 1.3)
    X[rng.random(X.shape) < 0.95] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinRFMCompleter(validation_fraction=0.3, random_state=0).fit(X)
    assert np.isfinite(est.reg_) and np.isfinite(est.column_reg_) and est.column_reg_ > 0
    assert np.all(np.isfinite(est.transform(X)))


def test_issue12_power_100_is_finite():
    X, _ = _low_rank(20, 15, 0.5, 0, scale=50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinRFMCompleter(power=100, max_iter=20).fit(X)
    assert np.all(np.isfinite(est.completed_))


def test_issue12_nonfinite_iterate_is_rejected_with_warning():
    """power=1e3 overflows the kernel: the fit stops, warns and keeps a finite iterate."""
    X, _ = _low_rank(12, 10, 0.4, 1, scale=10.0)
    with pytest.warns(NumericalWarning, match="non-finite iterate"):
        est = LinRFMCompleter(power=1e3, max_iter=20, side="columns").fit(X)
    assert est.stop_reason_ == "nonfinite"
    assert np.all(np.isfinite(est.completed_))


def test_issue12_cg_sensing_on_3x1x1():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinRFMSensing(solver="cg", max_iter=5).fit(A, 2.0 * A[:, 0, 0])
    np.testing.assert_allclose(est.Z_, [[2.0]])


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_issue12_all_zero_measurements_refused(solver):
    with pytest.raises(ValueError, match="all-zero A_k"):
        LinRFMSensing(solver=solver).fit(np.zeros((5, 3, 3)), np.ones(5))


@pytest.mark.parametrize("kw", [{"dtype": "float32"}, {"power": 1}])
def test_issue12_transform_uses_fit_floor(kw):
    """transform raised LinAlgError: column_reg_ was not floored like reg in fit."""
    rng = np.random.default_rng(1)
    U = rng.standard_normal((30, 2)) @ rng.standard_normal((2, 20))
    U[rng.random(U.shape) < 0.5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinRFMCompleter(max_iter=300, **kw).fit(U)
    K = est.column_kernel_
    floor = {"float32": 1e-5, "float64": 1e-13}[str(K.dtype)] * np.trace(K) / K.shape[0]
    assert est.column_reg_ >= floor * (1 - 1e-6)
    assert np.all(np.isfinite(est.transform(U)))


def test_issue12_singular_blocks_retried_with_jitter():
    from linrfm.backends.numpy_backend import solve_rows

    K = np.ones((3, 3))
    with pytest.warns(NumericalWarning, match="jitter"):
        Z = solve_rows(K, np.array([0, 3]), np.array([0, 1, 2]), np.array([1., 2., 3.]), 0.0)
    np.testing.assert_array_equal(Z, [[1., 2., 3.]])


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_issue12_deep_networks_on_zero_and_huge_data():
    from linrfm.baselines import DeepLinearCompleter, DiagonalNetworkRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = DeepLinearCompleter(max_iter=5).fit(np.array([[0, np.nan], [0, 0.]])).completed_
        assert np.all(np.isfinite(Z))
        Z = DeepLinearCompleter(max_iter=5).fit(
            np.array([[1e200, np.nan], [np.nan, 1e200], [1., 1.]])).completed_
        assert np.all(np.isfinite(Z))
        coef = DiagonalNetworkRegressor(max_iter=5).fit(np.zeros((5, 3)), np.zeros(5)).coef_
    np.testing.assert_array_equal(coef, 0.0)


def test_issue12_object_y_with_none_refused():
    with pytest.raises(ValueError, match="None, NaN or infinity"):
        LinRFMRegressor().fit(np.ones((3, 2)), np.array([1, None, 2], dtype=object))


def test_issue12_sensing_verbose_checked_before_fit():
    with pytest.raises(ValueError, match="verbose"):
        LinRFMSensing(verbose="x").fit(np.random.default_rng(0).random((5, 2, 2)), np.ones(5))


def test_issue12_two_tuple_refused():
    """fit((rows, cols)) completed the 2 x n matrix of the indices themselves."""
    with pytest.raises(ValueError, match=r"\(rows, cols, values\)"):
        LinRFMCompleter().fit((np.array([0, 1]), np.array([1, 0])))


def test_issue12_huge_inferred_shape_refused_quickly():
    """A 1e12 column index used to end in numpy's MemoryError."""
    from linrfm._memory import MemoryBudgetError

    with pytest.raises(MemoryBudgetError, match="pandas.factorize"):
        LinRFMCompleter().fit((np.array([0]), np.array([10**12]), np.array([1.0])))


def test_issue12_cli_truncated_npz_and_bad_shape(tmp_path):
    from linrfm.cli import main

    good = tmp_path / "t.npz"
    np.savez(good, rows=np.array([0, 1]), cols=np.array([1, 0]), values=np.ones(2),
             shape=np.array([2, 2, 2]))
    trunc = tmp_path / "u.npz"
    trunc.write_bytes(good.read_bytes()[:100])
    for path, msg in ((good, "'shape' must hold two integers"),
                      (trunc, "truncated or corrupted")):
        proc = subprocess.run([sys.executable, "-m", "linrfm", "complete", str(path), "-o",
                               str(tmp_path / "o.npy")], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert msg in proc.stderr
    assert main(["complete", str(trunc), "-o", str(tmp_path / "o.npy")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz", "u.npz"]


def test_issue12_cli_empty_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from linrfm import io as lio

    path = tmp_path / "e.parquet"
    pd.DataFrame({"r": [], "c": [], "v": []}).astype(float).to_parquet(path)
    with pytest.raises(lio.ReadError, match="no observed entries"):
        lio.read_observations(path)


def test_issue12_malicious_pickle_model_not_executed(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "m.pkl"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil.write_bytes(pickle.dumps(Evil()))
    from linrfm import io as lio

    with pytest.raises(lio.ReadError, match="pickle"):
        lio.load_model(evil)
    assert not marker.exists()


def test_issue12_cli_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM left .out.csv.*.tmp files: now it exits through the atomic writer."""
    import signal
    import time

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 300))
    rows, cols = np.nonzero(rng.random(Z.shape) < 0.3)
    data = tmp_path / "t.npz"
    np.savez(data, rows=rows, cols=cols, values=Z[rows, cols])
    out = tmp_path / "out.csv"
    # with -o, --json events go to stderr (stdout is for data)
    proc = subprocess.Popen([sys.executable, "-m", "linrfm", "complete", str(data), "-o",
                             str(out), "--max-iter", "100000", "--tol", "0", "--json"],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while '"iteration"' not in proc.stderr.readline():  # wait until the fit runs
            assert time.monotonic() < deadline and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]
