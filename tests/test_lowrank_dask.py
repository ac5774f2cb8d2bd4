"""The low-rank completion engine on Dask (linrfm.engines.lowrank_dask) against the in-process one.

Cluster cases run on a ``distributed.LocalCluster`` of 2 worker *processes* x 1
thread, so blocks, factors and index plans really are pickled between
processes; the cases that need many iterations run on Dask's threaded
scheduler (no client), which executes the same block tasks.
"""
import gc
import pickle
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from linrfm import LinRFMCompleter  # noqa: E402
from linrfm.backends.dask_backend import DaskBackend  # noqa: E402
from linrfm.datasets import make_reference_problem  # noqa: E402
from linrfm.engines import lowrank, lowrank_dask  # noqa: E402
from linrfm.exceptions import ConvergenceWarning, UnobservedWarning  # noqa: E402

PARITY = 1e-8        # relative, on the missing entries (the bound)
BLOCK = 16           # 60 rows -> 16, 16, 16, 12; 45 columns -> 16, 16, 13


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def small():
    """60 x 45, rank 2, 3x the information limit (as tests/test_lowrank.py)."""
    return make_reference_problem(60, 45, 2, oversampling=3.0, random_state=0)


@pytest.fixture(scope="module")
def holdout():
    """100 x 80, rank 3, 4x: 2124 entries, so reg='path' holds 106 of them out."""
    return make_reference_problem(100, 80, 3, oversampling=4.0, random_state=0)


def _missing(prob):
    return np.nonzero(np.isnan(prob.observed.to_dense()))


def _fit(device, X, **kw):
    params = {"engine": "lowrank", "random_state": 0}
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedWarning)
        return LinRFMCompleter(device=device, **params).fit(X)


def _assert_same_fit(est, ref, prob, tol=PARITY):
    """Same iterations, same ranks, same completion of the missing entries."""
    assert est.engine_ == ref.engine_ == "lowrank"
    assert est.n_iter_ == ref.n_iter_ and est.stop_reason_ == ref.stop_reason_
    assert est.history_["rank"] == ref.history_["rank"]
    np.testing.assert_allclose(est.history_["rel_change"], ref.history_["rel_change"],
                               rtol=1e-6, atol=1e-13)
    r, c = _missing(prob)
    got, want = est.predict(r, c), ref.predict(r, c)
    assert np.linalg.norm(got - want) <= tol * np.linalg.norm(want)
    assert isinstance(est.factors_[0], np.ndarray) and est.factors_[0].shape[0] == prob.shape[0]
    assert est.factors_[1].shape[0] == prob.shape[1]


def _ran_on(cluster) -> bool:
    # task keys are "<function>-<uuid>"; the scheduler's prefix drops the leading "_"
    return "row_block" in cluster.scheduler.task_prefixes


# -- the parity test: default estimator, device="dask", worker processes ---

def test_default_fit_on_cluster_equals_in_process(cluster, holdout):
    """LinRFMCompleter(engine="lowrank", device="dask") with every other parameter at
    its default (reg="path": 5 % held out, snapshot and restore onto all entries,
    alternating sides) equals the in-process engine to 1e-8 on the missing entries."""
    X = holdout.observed
    ref = LinRFMCompleter(engine="lowrank", random_state=0).fit(X)
    with distributed.Client(cluster):                 # the default client: device="dask"
        est = LinRFMCompleter(engine="lowrank", device="dask", random_state=0).fit(X)
        assert _ran_on(cluster)
        assert est.selection_ == ref.selection_ == "interpolate"
        _assert_same_fit(est, ref, holdout)
        assert holdout.missing_error_factored(*est.factors_) < 1e-6
        assert est.validation_rmse_ == pytest.approx(ref.validation_rmse_, rel=1e-6)
        # fold-in, predictions and the dense completion, all from NumPy attributes
        D, _ = est.column_kernel_factors_
        D_ref, _ = ref.column_kernel_factors_
        np.testing.assert_allclose(D, D_ref, rtol=1e-8)
        new = X.to_dense()[:12]
        np.testing.assert_allclose(est.transform(new), ref.transform(new), rtol=0,
                                   atol=1e-8 * np.abs(ref.transform(new)).max())
        np.testing.assert_array_equal(est.completed_[X.rows, X.cols], X.values)
        loaded = pickle.loads(pickle.dumps(est))       # no futures in the fitted model
        np.testing.assert_array_equal(loaded.predict([0, 5], [1, 7]), est.predict([0, 5], [1, 7]))
        # nothing of the fit is left on the workers
        del est
        gc.collect()
        deadline = time.monotonic() + 10
        while cluster.scheduler.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cluster.scheduler.tasks


# -- cases on the cluster: sides, powers, fixed reg, uneven blocks, broadcasts ---

CASES = {
    # one-sided: no shuffle, the kernel-side factor never leaves the client
    "columns": {"side": "columns"},
    "rows": {"side": "rows"},
    # alternate at power 1/4 (every power is free: D = g**(2 power))
    "alternate-power-1/4": {"side": "alternate", "power": 0.25},
    # a fixed smoothing (noisy-data mode) and the rank hint capping reg
    "fixed-reg": {"side": "alternate", "reg": 0.05},
    "rank-hint": {"side": "alternate", "rank": 2, "relaxation": 1.0},
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_cases_on_cluster_equal_in_process(client, small, case):
    kw = {"reg": "auto", "max_iter": 6, "tol": 0.0, **CASES[case]}
    X = small.observed
    ref = _fit("cpu", X, **kw)
    est = _fit(DaskBackend(client=client, block_rows=BLOCK), X, **kw)
    _assert_same_fit(est, ref, small)
    assert est.side_ == ref.side_


def test_large_arrays_are_broadcast(client, small, monkeypatch):
    """With the inline limit at 0 every client array goes by scatter/broadcast (the
    path taken at scale, where X and the factors are d x b): same numbers."""
    monkeypatch.setattr(lowrank_dask, "_INLINE_BYTES", 0)
    kw = {"reg": "auto", "side": "alternate", "max_iter": 6, "tol": 0.0}
    ref = _fit("cpu", small.observed, **kw)
    est = _fit(DaskBackend(client=client, block_rows=BLOCK), small.observed, **kw)
    _assert_same_fit(est, ref, small)


def test_checkpoint_resume_on_cluster(client, small, tmp_path):
    """A fit stopped after 5 iterations and resumed to 10 equals 10 uninterrupted
    in-process iterations (the checkpoint holds gathered NumPy factors)."""
    path = tmp_path / "fit.npz"
    kw = {"reg": "auto", "side": "columns", "tol": 0.0, "checkpoint_path": str(path),
          "checkpoint_every": 2}
    backend = DaskBackend(client=client, block_rows=BLOCK)
    first = _fit(backend, small.observed, max_iter=5, **kw)
    assert first.n_iter_ == 5 and path.exists()
    resumed = _fit(backend, small.observed, max_iter=10, **kw)
    assert resumed.n_iter_ == 10 and len(resumed.history_["rank"]) == 10
    ref = _fit("cpu", small.observed, reg="auto", side="columns", tol=0.0, max_iter=10)
    _assert_same_fit(resumed, ref, small, tol=1e-10)


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            yield from _arrays(x)


@pytest.mark.parametrize("side", ["columns", "alternate"])
def test_what_travels_through_the_client(client, side, monkeypatch):
    """Per iteration only d x b / n x m / small arrays pass through the client: on a
    one-sided run nothing with n rows (the decoupled side) and, on any run, nothing
    |Omega|-sized (the alternating shuffle stays on the workers)."""
    prob = make_reference_problem(150, 40, 2, oversampling=3.0, random_state=3)
    nnz, n = prob.observed.nnz, prob.shape[0]
    seen, stepping = [], []
    runner = lowrank_dask._Runner

    def spy(name):
        method = getattr(runner, name)

        def wrapped(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            if stepping:
                data = out if name == "gather" else args[0]
                seen.extend((name, a.shape) for a in _arrays(data))
            return out
        return wrapped

    for name in ("gather", "place", "send", "share"):
        monkeypatch.setattr(runner, name, spy(name))
    step = lowrank_dask.DaskLowRankCompletionProblem._step

    def counted_step(self):
        stepping.append(1)
        try:
            return step(self)
        finally:
            stepping.pop()

    monkeypatch.setattr(lowrank_dask.DaskLowRankCompletionProblem, "_step", counted_step)
    _fit(DaskBackend(client=client), prob.observed, reg="auto", side=side, max_iter=4, tol=0.0)
    assert seen, "the spy saw no transfer"
    assert not [s for s in seen if nnz in s], "an |Omega|-sized array went through the client"
    if side == "columns":
        assert not [s for s in seen if n in s], "an n-sized array went through the client"


# -- the same block tasks on Dask's threaded scheduler: runs to convergence -------

@pytest.fixture
def threads():
    with dask.config.set(scheduler="threads"):
        yield DaskBackend(block_rows=BLOCK)


def test_converged_fit_equals_in_process(threads, small):
    """reg='auto', alternating: both engines converge (48 iterations, 2e-10 error)."""
    kw = {"reg": "auto", "side": "alternate", "tol": 1e-10}
    ref = _fit("cpu", small.observed, **kw)
    est = _fit(threads, small.observed, **kw)
    assert ref.stop_reason_ == "tol"
    _assert_same_fit(est, ref, small)
    assert small.missing_error_factored(*est.factors_) < 1e-8


# Long runs: rounding differences (block sums, TSQR) must not grow over many
# iterations. One-sided runs need ~300 iterations to converge at this size and
# power 1/4 stalls near 0.09 on both engines (k stays 45), so they run 50.
@pytest.mark.parametrize("kw", [
    {"reg": "auto", "side": "alternate", "power": 0.25},
    {"reg": "auto", "side": "columns"},
    {"reg": "auto", "side": "rows"},
    {"reg": 1e-3, "side": "alternate"},
], ids=["power-1/4", "columns", "rows", "fixed-reg"])
def test_long_runs_equal_in_process(threads, small, kw):
    kw = {**kw, "tol": 0.0, "max_iter": 50}
    ref = _fit("cpu", small.observed, **kw)
    est = _fit(threads, small.observed, **kw)
    _assert_same_fit(est, ref, small)


def test_path_on_noisy_data_equals_in_process(threads):
    """reg='path' on noisy data: the 'auto' path, the warm-started fixed grid (stage
    problems restored from snapshots) and the refit on all entries (a snapshot
    re-targeted to other entries)."""
    prob = make_reference_problem(60, 45, 2, oversampling=3.0, random_state=1)
    obs = prob.observed
    noisy = (obs.rows, obs.cols,
             obs.values + 0.1 * np.random.default_rng(0).standard_normal(obs.nnz))
    kw = {"engine": "lowrank", "random_state": 0, "validation_fraction": 0.25}  # 157 held out
    ref = LinRFMCompleter(**kw).fit(noisy, shape=obs.shape)
    est = LinRFMCompleter(device=threads, **kw).fit(noisy, shape=obs.shape)
    assert len(ref.path_) >= 3
    assert ref.selection_ == est.selection_ == "path"
    assert est.selected_reg_ == pytest.approx(ref.selected_reg_, rel=1e-9)
    _assert_same_fit(est, ref, prob)


def test_empty_rows_and_columns(threads, small):
    X = small.observed.to_dense()
    X[4] = np.nan
    X[:, 7] = np.nan
    kw = {"reg": "auto", "tol": 1e-9}
    ref, est = _fit("cpu", X, **kw), _fit(threads, X, **kw)
    assert est.n_unobserved_rows_ == 1 and est.n_unobserved_cols_ == 1
    np.testing.assert_allclose(est.completed_[4], ref.completed_[4], rtol=1e-8)
    np.testing.assert_allclose(est.completed_[:, 7], ref.completed_[:, 7], rtol=1e-8)


def test_restore_in_process_snapshot(threads, small):
    """A snapshot of the in-process engine (NumPy factors) restores into the Dask
    problem, and the two continue identically."""
    from linrfm.core.smoothing import SmoothingSchedule
    from linrfm.engines.lowrank import LowRankCompletionProblem

    sides = ("columns", "rows")

    def sched():
        return {o: SmoothingSchedule("auto", decrease=0.1) for o in sides}

    obs = small.observed
    a = LowRankCompletionProblem(obs, None, 0.5, sides, sched(), None, 1e-13, 1.5, 1 << 24)
    b = lowrank_dask.DaskLowRankCompletionProblem(obs, None, 0.5, sides, sched(), None, 1e-13,
                                                  1.5, 1 << 24, backend=threads)
    a.initialize()
    b.initialize()
    for _ in range(5):
        a.step()
    b.restore(a.snapshot())
    b._rng.bit_generator.state = a._rng.bit_generator.state
    for _ in range(3):
        ra, rb = a.step(), b.step()
        assert rb["rank"] == ra["rank"]
        assert rb["rel_change"] == pytest.approx(ra["rel_change"], rel=1e-8)
    P, Q, s = b.iterate()
    np.testing.assert_allclose(P @ Q.T, a.P @ a.Q.T, atol=1e-10 * np.abs(a.P @ a.Q.T).max())
    np.testing.assert_allclose(s, a.s, atol=1e-10)



def test_tail_model_followed(threads):
    """On a side >= 50 x max_rank with a full block the in-process engine models the
    unresolved spectrum by its bound (lowrank._kernel_model): the Dask engine too.
    max_rank=10 makes the 600-row side qualify (600 >= 500)."""
    from linrfm.core.smoothing import SmoothingSchedule
    from linrfm.engines.lowrank import LowRankCompletionProblem

    obs = make_reference_problem(600, 60, 3, oversampling=3.0, random_state=0).observed
    sides = ("columns", "rows")

    def sched():
        return {o: SmoothingSchedule("auto", decrease=0.1) for o in sides}

    args = (obs, None, 0.5, sides, sched(), None, 1e-13, 1.5, 1 << 24)
    a = LowRankCompletionProblem(*args, max_rank=10)
    b = lowrank_dask.DaskLowRankCompletionProblem(*args[:4], sched(), *args[5:], max_rank=10,
                                                  backend=DaskBackend(block_rows=150))
    a.initialize()
    b.initialize()
    modelled = 0
    for _ in range(20):
        ra, rb = a.step(), b.step()
        assert rb["rank"] == ra["rank"]
        assert rb["rel_change"] == pytest.approx(ra["rel_change"], rel=1e-8)
        modelled += ra["side"] == "rows" and ra["rank"] == 9   # the block of 10, less one
    assert modelled > 0
    P, Q, _ = b.iterate()
    Z = a.P @ a.Q.T
    np.testing.assert_allclose(P @ Q.T, Z, rtol=0, atol=1e-10 * np.abs(Z).max())

# -- choosing the engine, refusing what cannot run --------------------------------

def test_choose_engine_on_dask():
    choose = lowrank.choose_engine
    for device in ("dask", "DASK", DaskBackend()):
        assert choose("lowrank", (10, 10), 8, device) == "lowrank"
        assert choose("auto", (10**6, 10**6), 8, device) == "lowrank"      # dense cannot fit
        assert choose("auto", (1000, 1000), 8, device) == "lowrank"        # >= 250 000 entries
        assert choose("auto", (1000, 1000), 8, device, fixed_reg=True) == "dense"
        assert choose("auto", (100, 100), 8, device) == "dense"
        assert choose("dense", (100, 100), 8, device) == "dense"
    assert choose("auto", (1000, 1000), 8, "cpu") == "lowrank"


class _OtherBackend:
    """A backend of another library (the device kind no low-rank engine serves)."""

    name = "other"


@pytest.mark.parametrize("device", ["tpu", _OtherBackend()], ids=["unknown-name", "backend"])
def test_lowrank_refused_on_other_devices(small, device):
    with pytest.raises(ValueError, match=r"does not run on device=.*'dask'"):
        lowrank.choose_engine("lowrank", (10, 10), 8, device)
    with pytest.raises(ValueError, match=r"does not run on device=.*'dask'"):
        LinRFMCompleter(engine="lowrank", device=device).fit(small.observed)
    assert lowrank.choose_engine("auto", (10**6, 10**6), 8, device) == "dense"


def test_track_objective_refused_on_dask(small):
    with dask.config.set(scheduler="threads"), pytest.raises(ValueError, match="track_objective"):
        LinRFMCompleter(engine="lowrank", device="dask", track_objective=True).fit(small.observed)


def test_float32(small):
    with dask.config.set(scheduler="threads"):
        est = _fit("dask", small.observed, dtype="float32")
    ref = _fit("cpu", small.observed, dtype="float32")
    assert est.factors_[0].dtype == np.float32
    assert abs(est.n_iter_ - ref.n_iter_) <= 3
    assert small.missing_error_factored(*est.factors_) < 1e-3
    # a configured backend keeps its own dtype, as with the dense engine
    with dask.config.set(scheduler="threads"):
        est64 = _fit(DaskBackend(), small.observed, dtype="float32")
    assert est64.factors_[0].dtype == np.float64
