"""DaskBackend: same numbers as NumpyBackend, rows in blocks, kernel shipped once.

Every case runs on two schedulers: an in-process ``distributed.LocalCluster``
(2 workers x 1 thread, passed as ``client=``) and Dask's local threaded
scheduler (no client).
"""
import time

import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402

from linrfm._observations import as_observations  # noqa: E402
from linrfm.backends.base import NumpyBackend  # noqa: E402
from linrfm.backends.dask_backend import (  # noqa: E402
    _BLAS,
    DaskBackend,
    check_row_chunks,
    dask_to_observations,
)
from linrfm.datasets import make_completion_problem  # noqa: E402

TOL = 1e-12
BLOCK = 16           # 70 rows -> blocks 16, 16, 16, 16, 6 (uneven)
EMPTY_ROW = 5


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(params=["distributed", "threads"])
def make_backend(request, client):
    """Factory of DaskBackend on one scheduler; the threaded one runs with no client."""
    if request.param == "distributed":
        yield lambda **kw: DaskBackend(client=client, **kw)
    else:
        with dask.config.set(scheduler="threads"):
            yield lambda **kw: DaskBackend(**kw)


@pytest.fixture(scope="module")
def obs():
    """70 x 40, rank 3, 3x oversampling, row 5 left without observations."""
    full = make_completion_problem(70, 40, 3, oversampling=3.0, random_state=0).observed
    return full.subset(full.rows != EMPTY_ROW)


def _kernel_dependents(arr, kernel_key):
    graph = dict(arr.__dask_graph__())
    return [k for k, v in graph.items() if kernel_key in (getattr(v, "dependencies", None) or ())]


# -- every method equals NumpyBackend ------------------------------------------

def test_prepare_blocks_align_with_iterate(make_backend, obs):
    be = make_backend(block_rows=BLOCK)
    rows = be.prepare(obs)
    assert rows.shape == obs.shape
    assert rows.data.chunks == (16, 16, 16, 16, 6)
    Z0 = be.initial(rows)
    assert isinstance(Z0, da.Array)
    assert Z0.chunks == ((16, 16, 16, 16, 6), (40,))
    np.testing.assert_array_equal(be.to_numpy(Z0), NumpyBackend().initial(NumpyBackend().prepare(obs)))
    assert not be.to_numpy(Z0)[EMPTY_ROW].any()


def test_each_task_gets_only_its_block(client, obs):
    be = DaskBackend(client=client, block_rows=BLOCK)
    blocks = client.gather(be.prepare(obs).data.refs)
    csr = obs.to_csr()
    start = 0
    for (indptr, indices, values), n in zip(blocks, (16, 16, 16, 16, 6)):
        assert indptr.shape == (n + 1,) and indptr[0] == 0
        ref = csr[start:start + n]
        np.testing.assert_array_equal(indptr, ref.indptr)
        np.testing.assert_array_equal(indices, ref.indices)
        np.testing.assert_array_equal(values, ref.data)
        start += n


@pytest.mark.parametrize("power", [0.5, 0.25, 1.0])
def test_gram_kernel_trace_eigvalsh(make_backend, obs, power):
    nb, be = NumpyBackend(), make_backend(block_rows=BLOCK)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal(obs.shape)
    G_ref = nb.gram(Z)
    G = be.gram(da.from_array(Z, chunks=(BLOCK, -1)))
    assert isinstance(G, np.ndarray) and G.shape == (40, 40)
    np.testing.assert_allclose(G, G_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(be.kernel(G, power), nb.kernel(G_ref, power), rtol=0, atol=TOL)
    assert abs(be.trace(G) - nb.trace(G_ref)) <= TOL
    np.testing.assert_allclose(be.eigvalsh(G), nb.eigvalsh(G_ref), rtol=0, atol=TOL)


def test_gram_accepts_column_chunks(make_backend):
    Z = np.random.default_rng(2).standard_normal((30, 12))
    G = make_backend().gram(da.from_array(Z, chunks=(7, 5)))
    np.testing.assert_allclose(G, NumpyBackend().gram(Z), rtol=0, atol=TOL)


@pytest.mark.parametrize("replace", [True, False])
def test_step_matches_numpy(make_backend, obs, replace):
    nb, be = NumpyBackend(), make_backend(block_rows=BLOCK)
    Z0 = nb.initial(nb.prepare(obs))
    K = nb.kernel(nb.gram(Z0), 0.5)
    reg = 1e-2 * nb.trace(nb.gram(Z0))
    ref = nb.step(nb.prepare(obs), K, reg, replace=replace)
    Z = be.step(be.prepare(obs), K, reg, replace=replace)
    assert isinstance(Z, da.Array) and Z.chunks == ((16, 16, 16, 16, 6), (40,))
    out = be.to_numpy(Z)
    np.testing.assert_allclose(out, ref, rtol=0, atol=TOL)
    assert not out[EMPTY_ROW].any()


def test_transpose_sq_norms_gather_to_numpy(make_backend, obs):
    nb, be = NumpyBackend(), make_backend(block_rows=BLOCK)
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal(obs.shape), rng.standard_normal(obs.shape)
    dA, dB = (da.from_array(M, chunks=(BLOCK, -1)) for M in (A, B))

    At = be.transpose(dA)
    assert At.chunks == ((16, 16, 8), (70,))          # row blocks of the other side
    np.testing.assert_array_equal(be.to_numpy(At), nb.transpose(A))
    # the transposed blocks are the ones prepare() lays out for the transpose
    assert be.prepare(obs.transpose()).data.chunks == At.chunks[0]

    got, ref = be.sq_norms(dA, dB), nb.sq_norms(A, B)
    assert all(isinstance(v, float) for v in got)
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)

    r, c = rng.integers(0, 70, 50), rng.integers(0, 40, 50)
    np.testing.assert_array_equal(be.gather(dA, r, c), nb.gather(A, r, c))
    assert be.gather(dA, np.array([], int), np.array([], int)).shape == (0,)
    assert isinstance(be.to_numpy(dA), np.ndarray)


def _raw_loop(be, obs, n_iter=20, power=0.5):
    """The estimator's use of the contract: alternating sides, shrinking reg."""
    rows, other = be.prepare(obs), be.prepare(obs.transpose())
    Z = be.initial(rows)
    reg = None
    changes = []
    for _ in range(n_iter):
        G = be.gram(Z)
        reg = be.trace(G) / G.shape[0] if reg is None else 0.7 * reg
        Z_new = be.step(rows, be.kernel(G, power), reg)
        diff, norm = be.sq_norms(Z_new, Z)
        changes.append(diff / norm)
        Z, rows, other = be.transpose(Z_new), other, rows
    return be.to_numpy(Z), np.array(changes)


def test_twenty_iterations_match_numpy(make_backend, obs):
    Z_ref, ch_ref = _raw_loop(NumpyBackend(), obs)
    Z, ch = _raw_loop(make_backend(block_rows=BLOCK), obs)
    assert Z.shape == (70, 40)                        # 20 transposes: back to the start
    np.testing.assert_allclose(Z, Z_ref, rtol=0, atol=TOL * np.abs(Z_ref).max())
    np.testing.assert_allclose(ch, ch_ref, rtol=1e-9, atol=0)


# -- the kernel travels once, the graph does not grow --------------------------

def test_kernel_is_one_key_shared_by_all_block_tasks(make_backend, obs):
    be = make_backend(block_rows=BLOCK)
    rows = be.prepare(obs)
    K = NumpyBackend().kernel(be.gram(be.initial(rows)), 0.5)
    lazy = be._step_lazy(rows, K, 0.1)
    key = be._kernel_ref.key
    dependents = _kernel_dependents(lazy, key)
    assert len(dependents) == 5                      # one solve task per row block
    graph = dict(lazy.__dask_graph__())
    # no task carries its own copy of K
    copies = [k for k, v in graph.items() if k != key and K.shape in
              [getattr(a, "shape", None) for a in getattr(v, "args", ())]]
    assert copies == []


def test_kernel_is_broadcast_not_fetched(client, obs):
    be = DaskBackend(client=client, block_rows=BLOCK)
    rows = be.prepare(obs)
    Z = be.initial(rows)
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    kernel_keys = []
    for _ in range(3):
        Z = be.step(rows, be.kernel(be.gram(Z), 0.5), 0.1)
        kernel_keys.append(be._kernel_ref.key)
        # the scheduler's replica bookkeeping can lag the broadcast by a moment
        deadline = time.monotonic() + 10
        while (len(client.who_has(be._kernel_ref)[be._kernel_ref.key]) < 2
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert len(client.who_has(be._kernel_ref)[be._kernel_ref.key]) == 2
    be.to_numpy(Z)
    fetched = client.run(lambda dask_worker: [k for log in dask_worker.transfer_incoming_log
                                              for k in log.get("keys", ())])
    assert not set(kernel_keys) & {k for keys in fetched.values() for k in keys}


def test_graph_size_constant_over_iterations(make_backend, obs):
    be = make_backend(block_rows=BLOCK)
    rows = be.prepare(obs)
    Z = be.initial(rows)
    sizes = []
    for _ in range(4):
        Z = be.step(rows, be.kernel(be.gram(Z), 0.5), 0.1)
        sizes.append(len(Z.__dask_graph__()))
    assert sizes == [5] * 4


def test_persisted_blocks_reduce_through_futures(client, obs):
    be = DaskBackend(client=client, block_rows=BLOCK)
    rows = be.prepare(obs)
    Z0 = be.initial(rows)
    Z1 = be.step(rows, np.eye(40), 0.1)
    blocks = be._block_futures(client, Z1, Z0)          # the fast path is taken...
    assert blocks is not None and [len(b) for b in blocks] == [5, 5]
    lazy = da.from_array(be.to_numpy(Z1), chunks=(BLOCK, -1))
    assert be._block_futures(client, lazy) is None       # ...and never for lazy arrays
    np.testing.assert_allclose(be.gram(Z1), be.gram(lazy), rtol=0, atol=TOL)
    np.testing.assert_allclose(be.sq_norms(Z1, Z0), be.sq_norms(lazy, Z0), rtol=1e-14)


# -- scheduler choice, block sizes, BLAS threads --------------------------------

def test_uses_the_default_client_and_never_starts_one(cluster, obs):
    with dask.config.set(scheduler="threads"):
        be = DaskBackend()
        assert be._client() is None
        be.to_numpy(be.step(be.prepare(obs), np.eye(40), 0.1))
    with pytest.raises(ValueError):                   # no Client was created behind our back
        distributed.default_client()
    with distributed.Client(cluster) as c:             # becomes the default scheduler
        be = DaskBackend(block_rows=BLOCK)
        assert be._client() is c
        refs = be.prepare(obs).data.refs
        assert all(isinstance(r, distributed.Future) for r in refs)


def test_default_block_rows_gives_every_thread_a_block(client):
    be = DaskBackend(client=client)
    assert be.row_chunks(70, 40) == (35, 35)
    with dask.config.set({"array.chunk-size": "1KiB"}):
        chunks = DaskBackend(client=client).row_chunks(70, 40)   # 1 KiB / (40 * 8 B) = 3 rows
    assert chunks == (3,) * 23 + (1,)
    assert DaskBackend(client=client, block_rows=500).row_chunks(70, 40) == (70,)


def test_bad_parameters():
    with pytest.raises(ValueError, match="block_rows"):
        DaskBackend(block_rows=0)
    with pytest.raises(TypeError, match="block_rows"):
        DaskBackend(block_rows=2.5)
    with pytest.raises(ValueError, match="blas_threads"):
        DaskBackend(blas_threads=0)


def test_blas_threads_limited_inside_tasks_and_restored(make_backend, obs, monkeypatch):
    from threadpoolctl import threadpool_info

    from linrfm.backends import numpy_backend

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library visible to threadpoolctl")
    with _BLAS.limit(1):
        with _BLAS.limit(1):                          # a concurrent second task
            assert blas_threads() == {1}
        assert blas_threads() == {1}                  # still limited: one task running
    assert blas_threads() == before

    seen = []
    solve = numpy_backend.solve_rows

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return solve(*args, **kwargs)

    monkeypatch.setattr(numpy_backend, "solve_rows", spy)
    be = make_backend(block_rows=BLOCK)
    rows = be.prepare(obs)
    be.to_numpy(be.step(rows, np.eye(40), 0.1))
    assert seen == [{1}] * 5
    assert blas_threads() == before
    seen.clear()
    be = make_backend(block_rows=BLOCK, blas_threads=None)
    be.to_numpy(be.step(be.prepare(obs), np.eye(40), 0.1))
    assert seen == [before] * 5


# -- input checks (dask-ml check_array spirit) ---------------------------------

def test_check_row_chunks_refuses_column_chunks():
    X = da.zeros((10, 6), chunks=(5, 3))
    with pytest.raises(ValueError, match=r"X = X\.rechunk\(\{1: -1\}\)"):
        check_row_chunks(X)
    with pytest.raises(ValueError, match=r"Y\.rechunk"):
        check_row_chunks(X, name="Y")
    ok = X.rechunk({1: -1})
    assert check_row_chunks(ok) is ok


def test_check_row_chunks_refuses_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        check_row_chunks(da.zeros(5, chunks=2))
    X = da.zeros((10, 4), chunks=(5, -1))
    unknown = X[X[:, 0] > -1]                       # boolean mask: NaN row chunks
    with pytest.raises(ValueError, match=r"compute_chunk_sizes\(\)"):
        check_row_chunks(unknown)


def test_dask_to_observations_matches_dense_input(make_backend, obs):
    dense = obs.to_dense()
    ref = as_observations(dense)
    got = dask_to_observations(da.from_array(dense, chunks=(BLOCK, -1)))
    for name in ("rows", "cols", "values"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert got.shape == ref.shape
    with pytest.raises(ValueError, match="rechunk"):
        dask_to_observations(da.from_array(dense, chunks=(BLOCK, 10)))


def test_float32(make_backend, obs):
    nb, be = NumpyBackend(dtype=np.float32), make_backend(dtype=np.float32, block_rows=BLOCK)
    Z0 = nb.initial(nb.prepare(obs))
    K = nb.kernel(nb.gram(Z0), 0.5)
    out = be.to_numpy(be.step(be.prepare(obs), K, 0.1))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, nb.step(nb.prepare(obs), K, 0.1), rtol=0, atol=1e-5)


# -- the estimator on Dask (LinRFMCompleter goes through the registry) -----------

completion = pytest.importorskip("linrfm.problems.completion")


@pytest.fixture(scope="module")
def dense_problem():
    prob = make_completion_problem(60, 36, 2, oversampling=3.0, random_state=1)
    X = prob.observed.to_dense()
    X[7] = np.nan                                     # one unobserved row: the fallback path
    return prob, X


def _fit(device, X, **kw):
    import warnings

    from linrfm.exceptions import ConvergenceWarning, UnobservedWarning

    params = dict(max_iter=12, tol=0.0, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedWarning)
        return completion.LinRFMCompleter(device=device, **params).fit(X)


@pytest.mark.parametrize("kw, atol", [
    (dict(side="columns"), 1e-10),                    # one-sided: no shuffle
    (dict(side="alternate", track_objective=True), 1e-10),  # transpose + extra Gram
    (dict(validation_fraction=0.1, n_iter_no_change=3), 1e-10),  # gather on held-out entries
    (dict(rank=2), 1e-10),                            # eigvalsh tail caps reg
    # power 1/4 takes G**0.5 by eigh: the rank-2 Gram's 34 zero eigenvalues sit at
    # rounding level (1e-17) and their square roots (3e-9) differ with the
    # summation order of the Gram, on any two backends.
    (dict(power=0.25), 1e-5),
], ids=["columns", "alternate", "validation", "rank", "power-1/4"])
def test_completer_dask_matches_cpu(dense_problem, kw, atol):
    _, X = dense_problem
    ref = _fit("cpu", X, **kw)
    with dask.config.set(scheduler="threads"):
        est = _fit("dask", X, **kw)
    assert est.n_iter_ == ref.n_iter_ and est.stop_reason_ == ref.stop_reason_
    np.testing.assert_allclose(est.completed_, ref.completed_, rtol=0, atol=atol)
    np.testing.assert_allclose(est.column_kernel_, ref.column_kernel_, rtol=0,
                               atol=atol * np.abs(ref.column_kernel_).max())
    np.testing.assert_allclose(est.history_["rel_change"], ref.history_["rel_change"],
                               rtol=1e3 * atol, atol=1e-14)
    if ref.validation_error_ is not None:
        assert est.validation_error_ == pytest.approx(ref.validation_error_, rel=1e-9)
    assert isinstance(est.completed_, np.ndarray)


def test_completer_with_configured_backend_on_cluster(dense_problem, client):
    import pickle

    from sklearn.base import clone

    prob, X = dense_problem
    ref = _fit("cpu", X, max_iter=8)
    backend = DaskBackend(client=client, block_rows=16)
    est = _fit(backend, X, max_iter=8)
    np.testing.assert_allclose(est.completed_, ref.completed_, rtol=0, atol=1e-10)
    twin = clone(est)                                 # deep-copies the backend, shares the client
    assert twin.device is not backend and twin.device.client is client
    loaded = pickle.loads(pickle.dumps(est))          # the client does not travel
    assert loaded.device.client is None and loaded.device.block_rows == 16
    np.testing.assert_array_equal(loaded.completed_, est.completed_)
