"""TorchBackend: same results as the NumPy backend on the CPU, and on CUDA when present.

Named problems (seeded): ``rect`` (13 x 9, 0..9 entries per row, an empty
row), ``small`` (40 x 30, rank 2, 3x the information limit).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from linrfm.backends.base import NumpyBackend  # noqa: E402
from linrfm.backends.numpy_backend import solve_rows_reference  # noqa: E402
from linrfm.backends.registry import get_backend  # noqa: E402
from linrfm.backends.torch_backend import TorchBackend  # noqa: E402
from linrfm.problems.completion import LinRFMCompleter  # noqa: E402
from linrfm.core.kernel import kernel_from_agop  # noqa: E402
from linrfm.datasets import make_completion_problem  # noqa: E402
from linrfm.exceptions import ConvergenceWarning  # noqa: E402

from test_completion import _csr, _rect_problem  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")])]


@pytest.fixture(scope="module")
def small():
    return make_completion_problem(40, 30, 2, oversampling=3.0, random_state=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_batch_bytes", [2**28, 300])
def test_step_matches_reference(device, max_batch_bytes):
    obs = _rect_problem()
    Z = np.random.default_rng(1).standard_normal((20, obs.shape[1]))
    K = Z.T @ Z / 20
    be = TorchBackend(np.float64, max_batch_bytes, device=device)
    rows = be.prepare(obs)
    out = be.step(rows, torch.as_tensor(K, device=device), 0.05)
    ref = solve_rows_reference(K, *_csr(obs), 0.05)
    np.testing.assert_allclose(be.to_numpy(out), ref, atol=1e-10, rtol=0)
    raw = be.to_numpy(be.step(rows, torch.as_tensor(K, device=device), 0.05, replace=False))
    mask = np.zeros(obs.shape, dtype=bool)
    mask[obs.rows, obs.cols] = True
    np.testing.assert_array_equal(raw[~mask], be.to_numpy(out)[~mask])


@pytest.mark.parametrize("device", DEVICES)
def test_primitives_match_numpy(device, small):
    tb, nb = TorchBackend(np.float64, device=device), NumpyBackend()
    tr, nr = tb.prepare(small.observed), nb.prepare(small.observed)
    Zt, Zn = tb.initial(tr), nb.initial(nr)
    np.testing.assert_array_equal(tb.to_numpy(Zt), Zn)
    Gt, Gn = tb.gram(Zt), nb.gram(Zn)
    np.testing.assert_allclose(tb.to_numpy(Gt), Gn, atol=1e-12, rtol=0)
    assert tb.trace(Gt) == pytest.approx(nb.trace(Gn), rel=1e-12)
    np.testing.assert_allclose(tb.eigvalsh(Gt), nb.eigvalsh(Gn), atol=1e-10)
    for power in (0.25, 0.5, 1.0):
        np.testing.assert_allclose(tb.to_numpy(tb.kernel(Gt, power)), nb.kernel(Gn, power),
                                   atol=1e-10, rtol=0)
    np.testing.assert_array_equal(tb.to_numpy(tb.transpose(Zt)), nb.transpose(Zn))
    Z2t, Z2n = tb.step(tr, Gt, 0.1), nb.step(nr, Gn, 0.1)
    np.testing.assert_allclose(tb.to_numpy(Z2t), Z2n, atol=1e-10, rtol=0)
    assert tb.sq_norms(Z2t, Zt) == pytest.approx(nb.sq_norms(Z2n, Zn), rel=1e-10)
    r, c = np.array([0, 5, 39]), np.array([1, 2, 29])
    np.testing.assert_allclose(tb.gather(Z2t, r, c), nb.gather(Z2n, r, c), atol=1e-12)


def test_blocks_where_cholesky_fails_fall_back_to_lu():
    obs = _rect_problem(2)
    d = obs.shape[1]
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.linspace(0.5, 2.0, d)
    eig[2] = -1.0                      # indefinite: most blocks are not SPD
    K = (Q * eig) @ Q.T
    be = TorchBackend(np.float64)
    out = be.to_numpy(be.step(be.prepare(obs), torch.as_tensor(K), 1e-3))
    np.testing.assert_allclose(out, solve_rows_reference(K, *_csr(obs), 1e-3),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("side", ["columns", "rows", "alternate"])
@pytest.mark.parametrize("power", [0.5, 1.0])
def test_fit_matches_numpy(device, side, power, small):
    kw = dict(side=side, power=power, max_iter=25, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LinRFMCompleter(**kw).fit(small.observed)
        est = LinRFMCompleter(device="torch" if device == "cpu" else device, **kw).fit(
            small.observed)
    np.testing.assert_allclose(est.completed_, ref.completed_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(est.column_kernel_, ref.column_kernel_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(est.history_["reg"], ref.history_["reg"], rtol=1e-8)
    assert isinstance(est.completed_, np.ndarray)


def test_fit_with_validation_matches_numpy(small):
    kw = dict(validation_fraction=0.1, random_state=0, max_iter=30, reg=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LinRFMCompleter(**kw).fit(small.observed)
        est = LinRFMCompleter(device="torch", **kw).fit(small.observed)
    np.testing.assert_allclose(est.completed_, ref.completed_, atol=1e-10, rtol=0)
    assert est.validation_error_ == pytest.approx(ref.validation_error_, rel=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_recovers(device):
    prob = make_completion_problem(120, 100, 3, oversampling=3.0, random_state=2)
    est = LinRFMCompleter(device="torch" if device == "cpu" else device,
                          dtype="float32").fit(prob.observed)
    assert est.completed_.dtype == np.float32
    assert prob.missing_error(est.completed_) <= 1e-4


def test_registry_builds_torch_backends():
    be = get_backend("torch", "float32", 1024)
    assert isinstance(be, TorchBackend) and be.tdtype == torch.float32
    assert be.device.type == "cpu" and be.max_batch_bytes == 1024
    if not CUDA:
        with pytest.raises(ValueError, match="cuda"):
            get_backend("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_recovers_paper_setup():
    prob = make_completion_problem(500, 500, 5, n_observed=10000, random_state=0)
    est = LinRFMCompleter(device="cuda").fit(prob.observed)
    assert prob.missing_error(est.completed_) <= 1e-4


def test_kernel_general_power_on_torch():
    G = np.random.default_rng(0).standard_normal((6, 6))
    G = G @ G.T
    out = kernel_from_agop(torch.as_tensor(G), 0.3)
    np.testing.assert_allclose(out.numpy(), kernel_from_agop(G, 0.3), atol=1e-10)
