"""Issue 12: property-based fuzzing of every entry point (hypothesis).

Every generated case must end in one of three outcomes:

* ``error``: a ``ValueError``/``TypeError`` with linrfm's own message (never
  numpy's "too many values to unpack" and the like);
* ``warning``: a linrfm or scikit-learn warning, with a finite result;
* ``finite``: a finite result and no warning.

Anything else fails the test: an internal exception (``IndexError``,
``ZeroDivisionError``, ``LinAlgError``, ``KeyError``, ``AttributeError`` ...),
a non-finite result (silent NaN), a NumPy ``RuntimeWarning`` (overflow,
invalid value) escaping to the user, a case running over the time limit
(hang), or a temporary file left behind by the CLI.

Cases are derandomized (the same ones every run) and small; set
``LINRFM_FUZZ_EXAMPLES`` to scale every budget (e.g. 10 for a long local run)
and ``LINRFM_FUZZ_REPORT=path.json`` to write the outcome counts.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import signal
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linrfm import LinRFMCompleter, LinRFMRegressor, LinRFMSensing
from linrfm import io as lio
from linrfm.baselines import BasisPursuit, IRLSCompleter, IRLSSensing, SoftImpute
from linrfm.cli import main as cli_main

HAS_TORCH = importlib.util.find_spec("torch") is not None
SCALE = float(os.environ.get("LINRFM_FUZZ_EXAMPLES", "1"))
OUTCOMES: Counter = Counter()
TIME_LIMIT_S = 30


def fuzz(n: int):
    """Hypothesis settings: ``n`` derandomized examples, no deadline, no database."""
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True,
                    database=None, suppress_health_check=list(HealthCheck))


# --------------------------------------------------------------------------- outcomes
INTERNAL = (IndexError, ZeroDivisionError, KeyError, AttributeError, FloatingPointError,
            OverflowError, RecursionError, AssertionError, NotImplementedError,
            np.linalg.LinAlgError, RuntimeError, MemoryError)
# Messages of errors raised by NumPy/SciPy/Python internals, not by our checks.
INTERNAL_MESSAGES = ("values to unpack", "zero-size array", "out of bounds for axis",
                     "too many indices", "could not broadcast", "operands could not",
                     "has no attribute", "unhashable", "unsupported operand",
                     "not supported between", "Singular matrix", "did not converge",
                     "object of type", "is not subscriptable", "invalid literal",
                     "could not convert", "must be real number, not", "'NoneType' object")


class Hang(Exception):
    """A case ran past TIME_LIMIT_S."""


@contextlib.contextmanager
def _time_limit(seconds):
    def handler(signum, frame):
        raise Hang(f"case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _arrays(result):
    if isinstance(result, (list, tuple)):
        for r in result:
            yield from _arrays(r)
    elif result is not None:
        yield np.asarray(result, dtype=np.float64)


def check(group: str, fn):
    """Run ``fn()``; classify its outcome or fail. Returns the result or None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _time_limit(TIME_LIMIT_S):
                result = fn()
        except INTERNAL as exc:
            raise AssertionError(f"{group}: internal {type(exc).__name__}: {exc}") from exc
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            assert msg, f"{group}: {type(exc).__name__} without a message"
            bad = [m for m in INTERNAL_MESSAGES if m in msg]
            assert not bad, f"{group}: internal message in {type(exc).__name__}: {msg}"
            OUTCOMES["error"] += 1
            OUTCOMES[f"{group}/error"] += 1
            if os.environ.get("LINRFM_FUZZ_VERBOSE"):
                print(f"{group}: {type(exc).__name__}: {msg[:160]}")
            return None
    for arr in _arrays(result):
        assert np.all(np.isfinite(arr)), f"{group}: silent non-finite result {arr}"
    numpy_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not numpy_warnings, f"{group}: NumPy warning escaped: {numpy_warnings[0].message}"
    kind = "warning" if caught else "finite"
    OUTCOMES[kind] += 1
    OUTCOMES[f"{group}/{kind}"] += 1
    return result


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    total = sum(v for k, v in OUTCOMES.items() if "/" not in k)
    summary = {"total": total, **{k: OUTCOMES[k] for k in sorted(OUTCOMES)}}
    print("\nfuzz outcomes:", json.dumps(summary))
    if os.environ.get("LINRFM_FUZZ_REPORT"):
        Path(os.environ["LINRFM_FUZZ_REPORT"]).write_text(json.dumps(summary, indent=1))


# --------------------------------------------------------------------------- data
VALUE_KINDS = ["normal", "lowrank", "constant", "zero", "huge", "tiny", "mixed_scale",
               "special", "int"]
DTYPES = ["float64"] * 8 + ["float32", "float16", "int8", "int64", "bool",
          "complex", "object", "str"]
SPARSE = ["csr_matrix", "csc_matrix", "coo_matrix", "lil_matrix", "dok_matrix",
          "bsr_matrix", "dia_matrix", "csr_array", "csc_array", "coo_array"]
SPECIAL = np.array([0.0, 1.0, -1.0, 1e300, -1e300, 1e-300, 1e154, 5e-324, np.nan, np.inf,
                    -np.inf])


def _values(rng, kind, shape):
    n = int(np.prod(shape))
    if kind == "lowrank" and len(shape) == 2:
        return rng.standard_normal((shape[0], 1)) @ rng.standard_normal((1, shape[1]))
    base = rng.standard_normal(n)
    if kind == "constant":
        base = np.full(n, 1.3)
    elif kind == "zero":
        base = np.zeros(n)
    elif kind == "huge":
        base = base * 1e300
    elif kind == "tiny":
        base = base * 1e-300
    elif kind == "mixed_scale":
        base = base * 10.0 ** rng.integers(-150, 150, n)
    elif kind == "special":
        base = np.where(rng.random(n) < 0.3, rng.choice(SPECIAL, n), base)
    elif kind == "int":
        base = rng.integers(-5, 6, n).astype(np.float64)
    return base.reshape(shape)


def _cast(arr, dtype, rng):
    with np.errstate(all="ignore"):
        if dtype == "object":
            out = arr.astype(object)
            if out.size and rng.random() < 0.5:
                out.flat[int(rng.integers(out.size))] = None
            return out
        if dtype == "str":
            return arr.astype(str)
        if dtype == "complex":
            return arr + 1j * (rng.random() < 0.5)
        if dtype in ("int8", "int64", "bool"):
            return np.nan_to_num(arr, posinf=0, neginf=0).clip(-100, 100).astype(dtype)
        return arr.astype(dtype)


def _sizes(largest):
    """0 .. largest with 0 rare (derandomized draws otherwise favour it)."""
    return st.sampled_from([0] + [k for k in range(1, largest + 1) for _ in range(3)])


@st.composite
def partial_matrices(draw, max_side=5, n_cols=None):
    """A partially observed matrix in any input form ``fit`` may receive."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d1, d2 = draw(_sizes(max_side)), draw(_sizes(max_side)) if n_cols is None else n_cols
    Z = _values(rng, draw(st.sampled_from(VALUE_KINDS)), (d1, d2))
    mask = rng.random((d1, d2)) < draw(st.sampled_from([0.0, 0.3, 0.6, 1.0]))
    if d1 and d2 and draw(st.booleans()):
        mask[int(rng.integers(d1))] = True          # an all-missing row
    if d1 and d2 and draw(st.booleans()):
        mask[:, int(rng.integers(d2))] = True       # an all-missing column
    form = draw(st.sampled_from(["dense"] * 6 + ["sparse", "sparse", "triplets", "triplets",
                                                  "frame", "list", "odd"]))
    if form == "dense":
        X = np.where(mask, np.nan, Z)
        return _cast(X, draw(st.sampled_from(DTYPES)), rng)
    if form == "list":
        return np.where(mask, np.nan, Z).tolist()
    if form == "sparse":
        fmt = draw(st.sampled_from(SPARSE))
        with np.errstate(all="ignore"):
            M = sp.coo_matrix(np.where(mask, 0.0, Z).astype(
                draw(st.sampled_from(["float64", "float32", "int8", "bool"]))))
        return getattr(sp, fmt)(M)
    rows, cols = np.nonzero(~mask)
    vals = Z[rows, cols]
    rows, cols, vals = _perturb_triplets(draw, rng, rows, cols, vals)
    if form == "frame":
        pd = pytest.importorskip("pandas")
        k = min(len(rows), len(cols), len(vals))
        frame = pd.DataFrame({"r": rows[:k], "c": cols[:k], "v": vals[:k]})
        extra = draw(st.sampled_from(["none", "str_col", "drop", "add", "cat"]))
        if extra == "str_col":
            frame["r"] = frame["r"].astype(str)
        elif extra == "drop":
            frame = frame[["r", "c"]]
        elif extra == "add":
            frame["w"] = 1.0
        elif extra == "cat":
            frame["v"] = frame["v"].astype("category")
        return frame
    if form == "odd":
        return draw(st.sampled_from([(rows, cols), (rows,), np.ravel(Z), Z[None],
                                     [], None, "abc", np.empty((0, 0)), 3.0]))
    return rows, cols, vals


def _perturb_triplets(draw, rng, rows, cols, vals):
    what = draw(st.sampled_from(["none", "none", "duplicate", "negative", "float", "out",
                                 "mismatch", "str", "nan_index", "bool_index"]))
    rows, cols, vals = list(rows), list(cols), list(vals)
    if not rows:
        return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals)
    if what == "duplicate":
        rows.append(rows[0])
        cols.append(cols[0])
        vals.append(1.0)
    elif what == "negative":
        rows[0] = -1
    elif what == "float":
        rows = [r + 0.5 if k == 0 else float(r) for k, r in enumerate(rows)]
    elif what == "out":
        cols[0] = 10**12
    elif what == "mismatch":
        vals = vals[:-1]
    elif what == "str":
        rows = [f"u{r}" for r in rows]
    elif what == "nan_index":
        rows = [float("nan")] + [float(r) for r in rows[1:]]
    elif what == "bool_index":
        rows = [bool(r % 2) for r in rows]
    return np.asarray(rows), np.asarray(cols), np.asarray(vals)


# --------------------------------------------------------------------------- completion
def _completers(draw):
    pick = draw(st.sampled_from(["linrfm", "linrfm", "linrfm", "irls", "soft", "dln"]))
    if pick == "linrfm":
        return LinRFMCompleter(
            max_iter=3, power=draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 100.0])),
            side=draw(st.sampled_from(["auto", "columns", "rows"])),
            dtype=draw(st.sampled_from(["float64", "float32"])),
            validation_fraction=draw(st.sampled_from([None, None, 0.3])), random_state=0,
            rank=draw(st.sampled_from([None, 1])), reg=draw(st.sampled_from(["auto", 1e-3])))
    if pick == "irls":
        return IRLSCompleter(max_iter=3, p=draw(st.sampled_from([0.0, 1.0])))
    if pick == "soft":
        return SoftImpute(n_shrinkages=2, max_iter=5)
    if not HAS_TORCH:
        return LinRFMCompleter(max_iter=3)
    from linrfm.baselines import DeepLinearCompleter

    return DeepLinearCompleter(max_iter=3)


@fuzz(260)
@given(data=st.data())
def test_fuzz_completion(data):
    est = _completers(data.draw)
    X = data.draw(partial_matrices())
    group = f"completion/{type(est).__name__}"
    fitted = check(group + ".fit", lambda: est.fit(X).completed_)
    if fitted is None:
        return
    d1, d2 = fitted.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = int(rng.integers(0, 4))
    idx_kind = data.draw(st.sampled_from(["ok", "ok", "neg", "out", "float", "mismatch"]))
    rows, cols = rng.integers(0, d1, n), rng.integers(0, d2, n)
    if idx_kind == "neg" and n:
        rows[0] = -1
    elif idx_kind == "out" and n:
        cols[0] = d2
    elif idx_kind == "float":
        rows = rows.astype(float)
    elif idx_kind == "mismatch":
        cols = cols[:-1] if n else np.arange(1)
    check(group + ".predict", lambda: est.predict(rows, cols))
    if hasattr(est, "transform"):
        new = data.draw(st.one_of(partial_matrices(n_cols=d2), partial_matrices()))
        check(group + ".transform", lambda: est.transform(new))


# --------------------------------------------------------------------------- sensing
@st.composite
def sensing_inputs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m, d1, d2 = draw(_sizes(8)), draw(_sizes(4)), draw(_sizes(4))
    A = _values(rng, draw(st.sampled_from(VALUE_KINDS)), (m, d1, d2))
    if m and draw(st.sampled_from([False, False, False, True])):
        A[int(rng.integers(m))] = 0.0               # a zero measurement
    y = _values(rng, draw(st.sampled_from(VALUE_KINDS)), (m,))
    form = draw(st.sampled_from(["3d"] * 5 + ["flat", "sparse", "odd"]))
    shape = None
    if form == "flat":
        A, shape = A.reshape(m, d1 * d2), draw(st.sampled_from([(d1, d2), (d2, d1), None,
                                                                 (0, 1), (1.5, 2)]))
    elif form == "sparse":
        A, shape = getattr(sp, draw(st.sampled_from(SPARSE)))(
            np.nan_to_num(A.reshape(m, d1 * d2))), (d1, d2)
    elif form == "odd":
        A = draw(st.sampled_from([A[0] if m else A, A.ravel(), A[..., None], None, "A"]))
    A = _cast(A, draw(st.sampled_from(DTYPES)), rng) if isinstance(A, np.ndarray) else A
    y_form = draw(st.sampled_from(["ok", "ok", "ok", "short", "2d", "dtype"]))
    if y_form == "short":
        y = y[:-1]
    elif y_form == "2d":
        y = y[:, None]
    elif y_form == "dtype":
        y = _cast(y, draw(st.sampled_from(DTYPES)), rng)
    return A, y, shape


def _sensors(draw):
    pick = draw(st.sampled_from(["linrfm", "linrfm", "linrfm", "irls", "dln"]))
    if pick == "linrfm":
        return LinRFMSensing(max_iter=3, solver=draw(st.sampled_from(["direct", "cg"])),
                             side=draw(st.sampled_from(["alternate", "columns", "auto"])),
                             power=draw(st.sampled_from([0.25, 0.5, 1.0])))
    if pick == "irls" or not HAS_TORCH:
        return IRLSSensing(max_iter=3)
    from linrfm.baselines import DeepLinearSensing

    return DeepLinearSensing(max_iter=3)


@fuzz(200)
@given(data=st.data())
def test_fuzz_sensing(data):
    est = _sensors(data.draw)
    A, y, shape = data.draw(sensing_inputs())
    group = f"sensing/{type(est).__name__}"
    Z = check(group + ".fit", lambda: est.fit(A, y, shape=shape).Z_)
    if Z is not None:
        A2, _, shape2 = data.draw(sensing_inputs())
        check(group + ".predict", lambda: est.predict(A2 if shape2 is None else A2))


# --------------------------------------------------------------------------- regression
@st.composite
def regression_inputs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, d = draw(_sizes(8)), draw(_sizes(6))
    X = _values(rng, draw(st.sampled_from(VALUE_KINDS)), (n, d))
    if d and draw(st.booleans()):
        X[:, int(rng.integers(d))] = 2.0             # a constant column
    y = _values(rng, draw(st.sampled_from(VALUE_KINDS)), (n,))
    if draw(st.booleans()) and n:
        y = np.column_stack([y, -y])
    form = draw(st.sampled_from(["dense", "dense", "sparse", "frame", "odd"]))
    if form == "dense":
        X = _cast(X, draw(st.sampled_from(DTYPES)), rng)
    elif form == "sparse":
        X = getattr(sp, draw(st.sampled_from(SPARSE)))(np.nan_to_num(X))
    elif form == "frame":
        pd = pytest.importorskip("pandas")
        X = pd.DataFrame(X, columns=[f"f{j}" for j in range(d)])
        if d and draw(st.booleans()):
            X["f0"] = X["f0"].astype(draw(st.sampled_from(["str", "category", "object"])))
    else:
        X = draw(st.sampled_from([X.ravel(), X[None], None, "X", []]))
    y_form = draw(st.sampled_from(["ok", "ok", "ok", "short", "dtype", "none_obj"]))
    if y_form == "short":
        y = y[:-1]
    elif y_form == "dtype":
        y = _cast(y, draw(st.sampled_from(DTYPES)), rng)
    elif y_form == "none_obj" and np.size(y):
        y = y.astype(object)
        y.flat[0] = None
    return X, y


def _regressors(draw):
    pick = draw(st.sampled_from(["linrfm", "linrfm", "linrfm", "bp", "diag"]))
    if pick == "linrfm":
        return LinRFMRegressor(max_iter=3, power=draw(st.sampled_from([0.25, 0.5, 1.0])),
                               feature_matrix=draw(st.sampled_from(["diagonal", "full"])),
                               ridge=draw(st.sampled_from([0.0, 0.1])),
                               fit_intercept=draw(st.booleans()))
    if pick == "bp" or not HAS_TORCH:
        return BasisPursuit()
    from linrfm.baselines import DiagonalNetworkRegressor

    return DiagonalNetworkRegressor(max_iter=3, optimizer=draw(st.sampled_from(["gd",
                                                                                "adam"])))


@fuzz(220)
@given(data=st.data())
def test_fuzz_regression(data):
    est = _regressors(data.draw)
    X, y = data.draw(regression_inputs())
    group = f"regression/{type(est).__name__}"
    coef = check(group + ".fit", lambda: est.fit(X, y).coef_)
    if coef is not None:
        check(group + ".predict", lambda: est.predict(X))
        X2, _ = data.draw(regression_inputs())
        check(group + ".predict_other", lambda: est.predict(X2))


# --------------------------------------------------------------------------- parameters
ABSURD = [-1, 0, 0.0, -0.5, 1e300, -1e300, float("nan"), float("inf"), "x", None, True,
          [], 1.5, 10**20, np.float32(2.0), "auto", object()]


def _estimator_classes():
    classes = [LinRFMCompleter, IRLSCompleter, SoftImpute, LinRFMSensing, IRLSSensing,
               LinRFMRegressor, BasisPursuit]
    if HAS_TORCH:
        from linrfm.baselines import (DeepLinearCompleter, DeepLinearSensing,
                                      DiagonalNetworkRegressor)

        classes += [DeepLinearCompleter, DeepLinearSensing, DiagonalNetworkRegressor]
    return classes


_RNG = np.random.default_rng(0)
_SMALL = {
    "completion": (np.where(_RNG.random((5, 4)) < 0.3, np.nan,
                            _RNG.standard_normal((5, 1)) @ _RNG.standard_normal((1, 4))),),
    "sensing": (_RNG.standard_normal((6, 3, 3)), _RNG.standard_normal(6)),
    "regression": (_RNG.standard_normal((6, 8)), _RNG.standard_normal(6)),
}


def _kind(cls):
    name = cls.__name__
    return ("completion" if "Complet" in name or name == "SoftImpute" else
            "sensing" if "Sensing" in name else "regression")


@fuzz(200)
@given(cls=st.sampled_from(_estimator_classes()), data=st.data())
def test_fuzz_parameters(cls, data):
    params = cls().get_params()
    name = data.draw(st.sampled_from(sorted(params)))
    value = data.draw(st.sampled_from(ABSURD))
    if name in ("max_iter", "n_shrinkages", "depth") and value == 10**20:
        value = 10**6  # legal: as long as asked; the fit would not be absurd, only long
        if name != "depth":
            return
    est = cls(**{**params, name: value})
    for key in ("max_iter", "n_shrinkages"):
        if key in params and name != key:
            est.set_params(**{key: 3})
    args = _SMALL[_kind(cls)]
    out = "completed_" if _kind(cls) == "completion" else "Z_" if _kind(cls) == "sensing" \
        else "coef_"
    check(f"params/{cls.__name__}", lambda: getattr(est.fit(*args), out))


# --------------------------------------------------------------------------- CLI readers
TOKENS = ["0", "1", "2", "-1", "3.5", "1e400", "1e-400", "nan", "inf", "", "a", "u1", "0x10",
          " ", "1,5", '"q"', "9999999999999999999999"]


@st.composite
def input_files(draw, tmp):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["csv", "csv", "tsv", "npy", "npz", "npz_bad", "mtx",
                                 "truncated", "empty", "pickle_npy", "parquet"]))
    path = tmp / f"in_{kind}.{ {'tsv': 'tsv', 'npy': 'npy', 'pickle_npy': 'npy', 'mtx': 'mtx', 'parquet': 'parquet'}.get(kind, 'npz' if 'npz' in kind or kind == 'truncated' else 'csv')}"
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        n_lines, n_fields = draw(st.integers(0, 8)), draw(st.sampled_from([3, 3, 3, 1, 2, 4]))
        labels = draw(st.booleans())
        lines = []
        for _ in range(n_lines):
            fields = [f"u{rng.integers(4)}" if labels else str(rng.integers(4)),
                      f"m{rng.integers(4)}" if labels else str(rng.integers(4)),
                      repr(float(_values(rng, draw(st.sampled_from(VALUE_KINDS)), (1,))[0]))]
            fields = (fields + ["1"] * n_fields)[:n_fields]
            if rng.random() < 0.2:
                fields[int(rng.integers(n_fields))] = str(rng.choice(TOKENS))
            lines.append(sep.join(fields))
        if draw(st.booleans()):
            lines.insert(0, sep.join(["row", "col", "value"][:n_fields]))
        path.write_text("\n".join(lines) + ("\n" if draw(st.booleans()) else ""))
    elif kind == "npy":
        np.save(path, _cast(_values(rng, draw(st.sampled_from(VALUE_KINDS)), (3, 2)),
                            draw(st.sampled_from(DTYPES[:-2])), rng))
    elif kind == "pickle_npy":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind in ("npz", "npz_bad", "truncated"):
        keys = draw(st.sampled_from([("rows", "cols", "values"),
                                     ("rows", "cols", "values", "shape"),
                                     ("a",), ("a", "b"), ("format", "shape", "data")]))
        arrays = {k: rng.integers(-1, 4, draw(st.integers(0, 4))) for k in keys}
        if "shape" in arrays and draw(st.booleans()):
            arrays["shape"] = np.array([3, 3, 3])
        np.savez(path, **arrays)
        if kind == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[:int(rng.integers(0, len(data)))])
    elif kind == "mtx":
        path.write_text(draw(st.sampled_from([
            "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n2 2 2.0\n",
            "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n",
            "%%MatrixMarket matrix coordinate real general\n0 0 0\n",
            "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n",
            "not a matrix\n"])))
    elif kind == "parquet":
        pd = pytest.importorskip("pandas")
        pytest.importorskip("pyarrow")
        n = draw(st.integers(0, 4))
        frame = pd.DataFrame({"r": rng.integers(0, 3, n), "c": rng.integers(0, 3, n),
                              "v": rng.standard_normal(n)})
        frame = frame.iloc[:, :draw(st.integers(1, 3))]
        frame.to_parquet(path)
    else:
        path.write_bytes(b"")
    return path


@fuzz(180)
@given(data=st.data())
def test_fuzz_cli_readers(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    path = data.draw(input_files(tmp))
    obs = check("cli/read_observations",
                lambda: lio.read_observations(path).observations.values)
    out = tmp / "out.npy"
    argv = ["complete", str(path), "-o", str(out), "--max-iter", "3"]
    stderr = io.StringIO()

    def run():
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(argv)
        assert code in (0, 2), stderr.getvalue()
        assert "Traceback" not in stderr.getvalue()
        if code == 2:  # classified (and its message checked) as an error
            raise ValueError(stderr.getvalue().strip().splitlines()[-1])
        return np.load(out, allow_pickle=False)

    code = 2 if check("cli/complete", run) is None else 0
    assert not [p.name for p in tmp.iterdir() if p.name.endswith(".tmp")], "partial file"
    if code == 0:
        assert obs is not None, "the CLI accepted a file the reader refuses"
