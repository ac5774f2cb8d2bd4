"""Issue 12: memory estimated and refused before it is spent (linrfm._memory)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from linrfm import LinRFMRegressor, LinRFMSensing
from linrfm._memory import MemoryBudgetError, check_memory, format_bytes, memory_budget

ROOT = Path(__file__).resolve().parents[1]


def test_check_memory_names_cheaper_option():
    with pytest.raises(MemoryBudgetError, match=r"needs about 8\.0 GiB.*use float32"):
        check_memory(8 * 2**30, what="x", cheaper="use float32", max_memory=2**30)
    check_memory(10, what="x", cheaper="y", max_memory=100)  # within budget: no error
    assert issubclass(MemoryBudgetError, ValueError)
    assert format_bytes(74.5 * 2**30) == "74.5 GiB"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1GB", True])
def test_max_memory_validated(bad):
    with pytest.raises((TypeError, ValueError), match="max_memory"):
        memory_budget(bad)


def _sparse(n, d):
    rng = np.random.default_rng(0)
    return sp.csr_array((np.ones(n), (np.arange(n), rng.integers(0, d, n))), shape=(n, d))


def test_sparse_regression_dense_gram_refused():
    """n >= d sparse regression built a dense d x d Gram (74.5 GiB asked for)."""
    n, d = 120_000, 100_000
    X = _sparse(n, d)
    y = np.ones(n)
    t0 = time.perf_counter()
    with pytest.raises(MemoryBudgetError, match=r"d x d system.*fewer features"):
        LinRFMRegressor().fit(X, y)
    assert time.perf_counter() - t0 < 5.0


def test_regression_full_kernel_names_diagonal():
    X = np.zeros((10, 3000))
    X[np.arange(10), np.arange(10)] = 1.0
    with pytest.raises(MemoryBudgetError, match="feature_matrix='diagonal'"):
        LinRFMRegressor(feature_matrix="full", max_memory=50 * 2**20).fit(X, np.ones(10))
    LinRFMRegressor(max_iter=2, max_memory=50 * 2**20).fit(X, np.arange(10.0))  # diagonal: ok


def test_sensing_direct_refused_names_cg():
    m, d = 60_000, 300
    rng = np.random.default_rng(0)
    A = sp.csr_array((np.ones(m), (np.arange(m), rng.integers(0, d * d, m))), shape=(m, d * d))
    with pytest.raises(MemoryBudgetError, match='solver="cg"'):
        LinRFMSensing(solver="direct", max_memory=2**30).fit(A, np.ones(m), shape=(d, d))


def test_refused_in_under_a_second_under_capped_address_space():
    """The refusal needs no allocation: it works with `ulimit -v` of 2 GiB."""
    code = textwrap.dedent("""
        import resource, time, numpy as np, scipy.sparse as sp
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        from linrfm import LinRFMRegressor, LinRFMCompleter
        from linrfm._memory import MemoryBudgetError
        rng = np.random.default_rng(0)
        X = sp.csr_array((np.ones(300_000), (np.arange(300_000),
                                             rng.integers(0, 200_000, 300_000))))
        cases = [lambda: LinRFMRegressor().fit(X, np.ones(300_000)),
                 lambda: LinRFMCompleter().fit((np.array([0]), np.array([10**12]),
                                                np.array([1.0])))]
        for case in cases:
            t0 = time.perf_counter()
            try:
                case()
            except MemoryBudgetError as exc:
                assert time.perf_counter() - t0 < 1.0, time.perf_counter() - t0
                print("refused:", exc)
            else:
                raise SystemExit("not refused")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("refused:") == 2
    assert "MemoryError" not in proc.stderr


def test_dense_engine_on_200000_squared_refused_in_under_a_second():
    """Issue 12: a 200 000 x 200 000 request with the dense engine, under a capped
    address space: a clear error naming the low-rank engine, no MemoryError."""
    code = textwrap.dedent("""
        import resource, time, numpy as np
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        from linrfm import LinRFMCompleter
        rng = np.random.default_rng(0)
        lin = np.unique(rng.integers(0, 200_000 ** 2, 50_000))
        r, c = np.divmod(lin, 200_000)
        t0 = time.perf_counter()
        try:
            LinRFMCompleter(engine="dense").fit((r, c, np.ones(r.size)),
                                                shape=(200_000, 200_000))
        except ValueError as exc:
            assert time.perf_counter() - t0 < 1.0, time.perf_counter() - t0
            assert "engine='lowrank'" in str(exc), exc
            print("refused:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused:" in proc.stdout and "MemoryError" not in proc.stderr


def test_check_fits_against_a_given_memory():
    from linrfm.engines.lowrank import check_fits

    check_fits(4.0, "a thing", "try less", avail=8.0)  # half of 8 bytes: fits
    with pytest.raises(ValueError, match="of GPU memory are available; try less"):
        check_fits(5.0, "a thing", "try less", avail=8.0, where="GPU memory")


def test_dense_engine_on_cuda_checks_the_gpu_memory(monkeypatch):
    # the dense iterate would live on the GPU: its free memory decides, not the host's
    from linrfm.engines import lowrank

    monkeypatch.setattr(lowrank, "_dense_memory", lambda device, kind: 2.0**30)
    with pytest.raises(ValueError, match="GPU memory.*engine='lowrank'"):
        lowrank.choose_engine("dense", (20_000, 20_000), 8, "cuda")
    assert lowrank.choose_engine("dense", (100, 100), 8, "cuda") == "dense"
