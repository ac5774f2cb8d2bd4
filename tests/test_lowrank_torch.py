"""The low-rank engine on PyTorch (CPU and CUDA) against the same engine on NumPy.

Named problems (seeded): ``small`` (50 x 40, rank 2, 3x the information
limit), ``held`` (130 x 120, rank 3, 3x: 2 200 entries, so the default
``reg="path"`` holds out more than 100 of them). GPU cases skip when
``torch.cuda.is_available()`` is False.

torch's intra-op pool is set to one thread for this module: on a loaded
2-core machine its OpenMP threads wait for each other on every small kernel
(40 iterations of ``small`` took 1.7-30 s with two threads, 0.1-0.4 s with
one); the library leaves that setting to the caller.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from linrfm import LinRFMCompleter  # noqa: E402
from linrfm._observations import Observations  # noqa: E402
from linrfm.backends.registry import get_backend  # noqa: E402
from linrfm.core.smoothing import SmoothingSchedule  # noqa: E402
from linrfm.datasets import make_reference_problem  # noqa: E402
from linrfm.engines import lowrank  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = ["torch", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")])]


def test_step_runs_with_one_torch_thread_and_restores_the_pool(small):
    """The engine limits torch's CPU pool to one thread per step (as NumPy's BLAS)."""
    from linrfm.backends._threads import torch_threads

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        problem = lowrank.LowRankCompletionProblem(
            small.observed, None, 0.5, ("columns",), {"columns": SmoothingSchedule()}, None,
            1e-13, 1.5, 1 << 24, device="torch")
        problem.initialize()
        with problem.where.threads():  # the context every step runs in
            seen.append(torch.get_num_threads())
        problem.step()
        assert seen == [1] and torch.get_num_threads() == 2
        with torch_threads(4):  # never raises the setting
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def small():
    return make_reference_problem(50, 40, 2, oversampling=3.0, random_state=0)


@pytest.fixture(scope="module")
def held():
    return make_reference_problem(130, 120, 3, oversampling=3.0, random_state=1)


def _dense_of(problem):
    """The iterate ``P Q^T + s`` as a dense NumPy array (tests only)."""
    P, Q, s = problem.iterate()
    Z = P @ Q.T
    t = problem.train
    Z[t.rows, t.cols] += s
    return Z


def _problem(obs, sides, power, reg, device, rank=None):
    schedules = {o: SmoothingSchedule(reg, decrease=0.1 if len(sides) == 2 else 3.0)
                 for o in sides}
    return lowrank.LowRankCompletionProblem(obs, None, power, sides, schedules, rank, 1e-13,
                                            1.5, 1 << 24, device=device)


def _fit(device, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinRFMCompleter(engine="lowrank", device=device, **kw).fit(X)


def _rel(a, b, mask=None):
    if mask is not None:
        a, b = a[mask], b[mask]
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sides", [("columns",), ("rows",), ("columns", "rows")],
                         ids=["columns", "rows", "alternate"])
@pytest.mark.parametrize("power", [0.5, 0.25])
@pytest.mark.parametrize("reg", ["auto", 0.01])
def test_iterates_equal_numpy(small, device, sides, power, reg):
    """Step by step, relaxation 1.5: same k, smoothing, change and iterate as NumPy."""
    ref = _problem(small.observed, sides, power, reg, None)
    got = _problem(small.observed, sides, power, reg, device)
    ref.initialize()
    got.initialize()
    for _ in range(8):
        r_ref, r_got = ref.step(), got.step()
        assert r_got["rank"] == r_ref["rank"]
        assert r_got["reg"] == pytest.approx(r_ref["reg"], rel=1e-9)
        assert r_got["rel_change"] == pytest.approx(r_ref["rel_change"], rel=1e-7)
        assert _rel(_dense_of(got), _dense_of(ref)) < 1e-10
    assert isinstance(got.P, torch.Tensor) and got.P.device.type == torch.device(
        "cuda" if device == "cuda" else "cpu").type


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("side", ["columns", "alternate"])
@pytest.mark.parametrize("reg", ["auto", 0.01])
def test_fit_equals_numpy_on_missing_entries(small, device, side, reg):
    X = small.observed.to_dense()
    mask = np.isnan(X)
    kw = {"side": side, "reg": reg, "max_iter": 60, "tol": 1e-12}
    ref, got = _fit("cpu", X, **kw), _fit(device, X, **kw)
    assert got.engine_ == "lowrank" and got.n_iter_ == ref.n_iter_
    assert _rel(got.completed_, ref.completed_, mask) < 1e-8
    A, B = got.factors_
    assert isinstance(A, np.ndarray) and A.dtype == np.float64
    assert _rel(A @ B.T, ref.factors_[0] @ ref.factors_[1].T, mask) < 1e-8
    D, V = got.column_kernel_factors_
    assert isinstance(V, np.ndarray)
    np.testing.assert_allclose(D, ref.column_kernel_factors_[0], rtol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_default_path_equals_numpy(held, device):
    """reg="path" (the default): held-out split, snapshots and the warm-started refit."""
    X = held.observed.to_dense()
    mask = np.isnan(X)
    ref, got = _fit("cpu", X, random_state=0), _fit(device, X, random_state=0)
    assert got.selection_ == ref.selection_ == "interpolate" and got.n_iter_ == ref.n_iter_
    assert got.validation_error_ == pytest.approx(ref.validation_error_, rel=1e-6, abs=1e-12)
    assert _rel(got.completed_, ref.completed_, mask) < 1e-8
    assert held.missing_error(got.completed_) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_fixed_grid_path_equals_numpy(held, device):
    """The fixed-smoothing stages of the path and their refit (restore across entry sets)."""
    X = held.observed.to_dense()
    mask = np.isnan(X)
    kw = {"random_state": 0, "path_regs": [1e-1, 1e-2], "max_iter": 40}
    ref, got = _fit("cpu", X, **kw), _fit(device, X, **kw)
    assert got.selection_ == ref.selection_ == "path"
    assert got.selected_reg_ == ref.selected_reg_ and got.n_iter_ == ref.n_iter_
    assert _rel(got.completed_, ref.completed_, mask) < 1e-8


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_resume(small, device, tmp_path):
    X = small.observed.to_dense()
    path = tmp_path / "lowrank.npz"
    kw = {"reg": "auto", "max_iter": 30, "tol": 0}
    whole = _fit(device, X, **kw)
    _fit(device, X, checkpoint_path=path, checkpoint_every=4,
         callback=lambda state: state.iteration >= 9, **kw)
    with np.load(path) as saved:
        assert all(saved[k].dtype == np.float64 for k in saved.files if k.endswith(("P", "Q")))
    resumed = _fit(device, X, checkpoint_path=path, checkpoint_every=4, **kw)
    assert resumed.n_iter_ == whole.n_iter_
    np.testing.assert_array_equal(resumed.factors_[0], whole.factors_[0])
    np.testing.assert_array_equal(resumed.factors_[1], whole.factors_[1])


@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_is_numpy_and_device_independent(small, device):
    """A NumPy problem's state continues on the device (and back) as the NumPy run does."""
    sides = ("columns", "rows")
    ref = _problem(small.observed, sides, 0.5, "auto", None)
    ref.initialize()
    for _ in range(5):
        ref.step()
    state = ref.state_dict()
    moved = _problem(small.observed, sides, 0.5, "auto", device)
    moved.initialize()
    moved.load_state_dict(state)
    for _ in range(5):
        ref.step()
        moved.step()
    assert _rel(_dense_of(moved), _dense_of(ref)) < 1e-10
    back = moved.state_dict()
    assert all(isinstance(back[k], np.ndarray) for k in ("P", "Q", "s"))
    # snapshot/restore (the smoothing path's warm starts) keep the device iterate
    before, snap = _dense_of(moved), moved.snapshot()
    moved.step()
    moved.restore(snap)
    assert isinstance(moved.P, torch.Tensor)
    np.testing.assert_array_equal(_dense_of(moved), before)


@pytest.mark.parametrize("device", DEVICES)
def test_float32(small, device):
    X = small.observed.to_dense()
    mask = np.isnan(X)
    ref, got = _fit("cpu", X, dtype="float32"), _fit(device, X, dtype="float32")
    assert got.factors_[0].dtype == np.float32
    assert got.column_kernel_factors_[1].dtype == np.float32
    assert small.missing_error(got.completed_) < 1e-3
    assert _rel(got.completed_.astype(np.float64), ref.completed_.astype(np.float64), mask) < 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_predict_transform_fold_in(small, device):
    X = small.observed.to_dense()
    ref, got = _fit("cpu", X, reg="auto", tol=1e-10), _fit(device, X, reg="auto", tol=1e-10)
    rows, cols = np.array([0, 3, 49, 10]), np.array([0, 39, 7, 10])
    np.testing.assert_allclose(got.predict(rows, cols), ref.predict(rows, cols),
                               rtol=0, atol=1e-8)
    new = X[:12]
    T = got.transform(new)
    assert isinstance(T, np.ndarray)
    np.testing.assert_allclose(T, ref.transform(new), rtol=0, atol=1e-8)
    truth = small.left[:12] @ small.right.T
    assert _rel(T, truth) < 1e-6
    # fold_in itself on device tensors gives the NumPy result
    D, V = got.column_kernel_factors_
    be = get_backend(device)
    obs = Observations(*np.nonzero(~np.isnan(new)), new[~np.isnan(new)], new.shape)
    Z = lowrank.fold_in(obs, be.from_numpy(V), be.from_numpy(D), got.column_reg_, 1 << 20)
    assert isinstance(Z, torch.Tensor)
    np.testing.assert_allclose(Z.cpu().numpy(), lowrank.fold_in(obs, V, D, got.column_reg_,
                                                                1 << 20), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_transposed_product_and_rowdot(small, device):
    obs = small.observed
    side = lowrank.LowRankSide(obs, None, 1 << 20, 10, device=torch.device(
        "cuda" if device == "cuda" else "cpu"))
    ref = lowrank.LowRankSide(obs, None, 1 << 20, 10)
    vals = np.random.default_rng(0).standard_normal(obs.nnz)
    Y = np.random.default_rng(1).standard_normal((obs.shape[0], 3))
    S, S_ref = side.sparse(side.where.values(vals)), ref.sparse(vals)
    got = (S.T.tocsr() @ side.where.values(Y)).cpu().numpy()
    np.testing.assert_allclose(got, S_ref.T @ Y, rtol=1e-13, atol=1e-13)
    A, B = np.random.default_rng(2).standard_normal((2, 50, 3))
    rows, cols = np.array([1, 2, 49]), np.array([0, 5, 39])
    out = lowrank.rowdot(side.where.values(A), side.where.values(B[:40]), rows, cols)
    np.testing.assert_allclose(out.cpu().numpy(), lowrank.rowdot(A, B[:40], rows, cols),
                               rtol=1e-14)


def test_choose_engine_on_torch_devices():
    assert lowrank.choose_engine("lowrank", (10, 10), 8, "torch") == "lowrank"
    # "auto" on torch: the CPU rule (size threshold, memory, fixed smoothing stays dense)
    assert lowrank.choose_engine("auto", (100, 100), 8, "torch") == "dense"
    assert lowrank.choose_engine("auto", (1000, 1000), 8, "torch") == "lowrank"
    assert lowrank.choose_engine("auto", (1000, 1000), 8, "torch", fixed_reg=True) == "dense"
    assert lowrank.choose_engine("auto", (10**6, 10**6), 8, "torch") == "lowrank"
    assert lowrank.choose_engine("auto", (1000, 1000), 8, get_backend("torch")) == "lowrank"
    assert lowrank.choose_engine("auto", (1000, 1000), 8, get_backend("cpu")) == "lowrank"
    assert lowrank.choose_engine("lowrank", (10, 10), 8, "dask") == "lowrank"


@pytest.mark.skipif(CUDA, reason="checks the message without a CUDA device")
def test_cuda_without_gpu_is_a_clear_error(small):
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        LinRFMCompleter(engine="lowrank", device="cuda").fit(small.observed.to_dense())
