"""Checkpoint and resume (linrfm.core.checkpoint): bit-identical resumes, clear refusals."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from linrfm import LinRFMCompleter, LinRFMRegressor
from linrfm.datasets import make_completion_problem, make_sparse_regression


@pytest.fixture(scope="module")
def prob():
    return make_completion_problem(40, 30, 2, oversampling=2.5, random_state=0)


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def _stop_at(n):
    return lambda state: state.iteration == n


@pytest.mark.parametrize("params", [{}, {"side": "columns", "power": 1.0, "max_iter": 60},
                                    {"reg": "auto", "validation_fraction": 0.1, "random_state": 0},
                                    {"engine": "lowrank"}])
def test_completion_stopped_at_17_resumes_bit_identical(prob, tmp_path, params):
    path = tmp_path / "fit.npz"
    full = _fit(LinRFMCompleter(**params), prob.observed)
    stopped = _fit(LinRFMCompleter(callback=_stop_at(17), checkpoint_path=path,
                                   checkpoint_every=5, **params), prob.observed)
    assert stopped.stop_reason_ == "callback" and stopped.n_iter_ == 17 and path.exists()
    resumed = _fit(LinRFMCompleter(checkpoint_path=path, checkpoint_every=5, **params),
                   prob.observed)
    np.testing.assert_array_equal(resumed.completed_, full.completed_)
    assert resumed.n_iter_ == full.n_iter_ and resumed.stop_reason_ == full.stop_reason_
    assert resumed.history_["rel_change"] == full.history_["rel_change"]
    assert resumed.reg_ == full.reg_


def test_finished_checkpoint_gives_the_result_again(prob, tmp_path):
    path = tmp_path / "fit.npz"
    first = _fit(LinRFMCompleter(checkpoint_path=path), prob.observed)
    calls = []
    again = _fit(LinRFMCompleter(checkpoint_path=path, callback=calls.append), prob.observed)
    assert calls == [] and again.n_iter_ == first.n_iter_
    np.testing.assert_array_equal(again.completed_, first.completed_)


def test_larger_max_iter_continues_a_fit(prob, tmp_path):
    path = tmp_path / "fit.npz"
    full = _fit(LinRFMCompleter(max_iter=30), prob.observed)
    _fit(LinRFMCompleter(max_iter=12, checkpoint_path=path, checkpoint_every=4), prob.observed)
    more = _fit(LinRFMCompleter(max_iter=30, checkpoint_path=path, checkpoint_every=4),
                prob.observed)
    np.testing.assert_array_equal(more.completed_, full.completed_)


def test_ctrl_c_leaves_a_valid_checkpoint(prob, tmp_path):
    path = tmp_path / "fit.npz"

    def interrupt(state):
        if state.iteration == 12:
            raise KeyboardInterrupt

    full = _fit(LinRFMCompleter(), prob.observed)
    est = _fit(LinRFMCompleter(callback=interrupt, checkpoint_path=path, checkpoint_every=100),
               prob.observed)
    assert est.stop_reason_ == "interrupted"
    resumed = _fit(LinRFMCompleter(checkpoint_path=path), prob.observed)
    np.testing.assert_array_equal(resumed.completed_, full.completed_)


def test_killed_process_leaves_a_valid_checkpoint(prob, tmp_path):
    path = tmp_path / "fit.npz"
    script = textwrap.dedent(f"""
        import os, signal
        from linrfm import LinRFMCompleter
        from linrfm.datasets import make_completion_problem
        prob = make_completion_problem(40, 30, 2, oversampling=2.5, random_state=0)
        def kill(state):
            if state.iteration == 9:
                os.kill(os.getpid(), signal.SIGKILL)
        LinRFMCompleter(callback=kill, checkpoint_path={str(path)!r},
                        checkpoint_every=2).fit(prob.observed)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir()] == ["fit.npz"]  # no temporary file left
    full = _fit(LinRFMCompleter(), prob.observed)
    resumed = _fit(LinRFMCompleter(checkpoint_path=path, checkpoint_every=2), prob.observed)
    np.testing.assert_array_equal(resumed.completed_, full.completed_)


def test_regression_resumes_bit_identical(tmp_path):
    X, y = make_sparse_regression(40, 80, 5, random_state=0)[:2]
    path = tmp_path / "reg.npz"
    full = LinRFMRegressor().fit(X, y)
    LinRFMRegressor(callback=_stop_at(5), checkpoint_path=path, checkpoint_every=2).fit(X, y)
    resumed = LinRFMRegressor(checkpoint_path=path).fit(X, y)
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    assert resumed.n_iter_ == full.n_iter_


def test_checkpoint_for_other_data_or_parameters_is_refused(prob, tmp_path):
    path = tmp_path / "fit.npz"
    _fit(LinRFMCompleter(max_iter=3, checkpoint_path=path), prob.observed)
    other = make_completion_problem(40, 30, 2, oversampling=2.5, random_state=1)
    with pytest.raises(ValueError, match="other data or parameters"):
        LinRFMCompleter(checkpoint_path=path).fit(other.observed)
    with pytest.raises(ValueError, match="other data or parameters"):
        LinRFMCompleter(power=1.0, checkpoint_path=path).fit(prob.observed)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a checkpoint"])
def test_damaged_checkpoint_is_a_clear_error(prob, tmp_path, content):
    path = tmp_path / "fit.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable linrfm checkpoint"):
        LinRFMCompleter(checkpoint_path=path).fit(prob.observed)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_checkpoint_is_refused_without_running_it(prob, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "fit.npz"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="not a readable linrfm checkpoint"):
        LinRFMCompleter(checkpoint_path=path).fit(prob.observed)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("kwargs, err", [({"checkpoint_every": 0}, ValueError),
                                         ({"checkpoint_path": 3}, TypeError)])
def test_bad_checkpoint_parameters(prob, tmp_path, kwargs, err):
    params = {"checkpoint_path": tmp_path / "x.npz", **kwargs}
    with pytest.raises(err):
        LinRFMCompleter(**params).fit(prob.observed)


def test_missing_directory_is_refused_before_fitting(prob, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        LinRFMCompleter(checkpoint_path=tmp_path / "no" / "fit.npz").fit(prob.observed)


def test_sensing_resumes_bit_identical(tmp_path):
    from linrfm import LinRFMSensing
    from linrfm.datasets import make_sensing_problem

    A, y = make_sensing_problem(12, 10, 2, 90, random_state=0)[:2]
    path = tmp_path / "sensing.npz"
    full = LinRFMSensing().fit(A, y)
    LinRFMSensing(callback=_stop_at(7), checkpoint_path=path, checkpoint_every=3).fit(A, y)
    resumed = LinRFMSensing(checkpoint_path=path).fit(A, y)
    np.testing.assert_array_equal(resumed.Z_, full.Z_)
    assert resumed.n_iter_ == full.n_iter_


def test_sensing_checkpoint_needs_an_explicit_operator(tmp_path):
    from scipy.sparse.linalg import aslinearoperator

    from linrfm import LinRFMSensing
    from linrfm.datasets import make_sensing_problem

    A, y = make_sensing_problem(6, 5, 1, 20, random_state=0)[:2]
    op = aslinearoperator(A.reshape(20, -1))
    with pytest.raises(ValueError, match="explicit sensing operator"):
        LinRFMSensing(solver="cg", checkpoint_path=tmp_path / "s.npz").fit(op, y, shape=(6, 5))
