"""Issue 12: models saved and loaded without pickle (linrfm.persistence)."""
from __future__ import annotations

import dataclasses

import importlib.util
import io
import json
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import linrfm
from linrfm import LinRFMCompleter, LinRFMRegressor, LinRFMSensing
from linrfm.baselines import (BasisPursuit, DeepLinearCompleter, DeepLinearSensing,
                              DiagonalNetworkRegressor, IRLSCompleter, IRLSSensing, SoftImpute)
from linrfm.datasets import make_completion_problem, make_sensing_problem, make_sparse_regression
from linrfm.persistence import FORMAT_VERSION, _digest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _data():
    prob = make_completion_problem(12, 10, 2, oversampling=3.0, random_state=0)
    A, y, _ = make_sensing_problem(6, 6, 1, 30, random_state=0)
    X, yr, _ = make_sparse_regression(20, 30, 3, random_state=0)
    return prob.observed.to_dense(), (A, y), (X, yr)


# (name, estimator, kind): kind picks the data and the predictions compared
CASES = [
    ("completer", LinRFMCompleter(max_iter=8), "completion"),
    ("completer_val", LinRFMCompleter(max_iter=8, validation_fraction=0.2, random_state=0),
     "completion"),
    ("irls_completer", IRLSCompleter(max_iter=5), "completion"),
    ("soft_impute", SoftImpute(n_shrinkages=3, max_iter=20), "completion"),
    ("sensing", LinRFMSensing(max_iter=5), "sensing"),
    ("irls_sensing", IRLSSensing(max_iter=5), "sensing"),
    ("regressor", LinRFMRegressor(max_iter=5), "regression"),
    ("regressor_full", LinRFMRegressor(max_iter=5, feature_matrix="full"), "regression"),
    ("basis_pursuit", BasisPursuit(), "regression"),
]
if HAS_TORCH:
    CASES += [
        ("dln_completer", DeepLinearCompleter(max_iter=5), "completion"),
        ("dln_sensing", DeepLinearSensing(max_iter=5), "sensing"),
        ("diag_net", DiagonalNetworkRegressor(max_iter=5), "regression"),
    ]

# Run in a fresh interpreter: load every file, write every prediction.
_LOADER = """
import sys, numpy as np, linrfm
from pathlib import Path
d = Path(sys.argv[1]); data = np.load(d / "data.npz")
out = {}
for f in sorted(d.glob("*.linrfm")):
    est = linrfm.load(f)
    kind = f.stem.split("__")[1]
    if kind == "completion":
        out[f.stem] = est.predict(data["rows"], data["cols"])
        if hasattr(est, "transform") and type(est).__name__ == "LinRFMCompleter":
            out[f.stem + "_t"] = est.transform(data["Xnew"])
    elif kind == "sensing":
        out[f.stem] = est.predict(data["A"])
    else:
        out[f.stem] = est.predict(data["X"])
np.savez(d / "pred.npz", **out)
"""


def _predict(est, kind, data):
    if kind == "completion":
        out = {"": est.predict(data["rows"], data["cols"])}
        if isinstance(est, LinRFMCompleter):
            out["_t"] = est.transform(data["Xnew"])
        return out
    return {"": est.predict(data["A"] if kind == "sensing" else data["X"])}


def test_save_load_fresh_process_identical_predictions(tmp_path):
    Xc, (A, y), (X, yr) = _data()
    fits = {"completion": (Xc,), "sensing": (A, y), "regression": (X, yr)}
    rng = np.random.default_rng(0)
    Xnew = np.where(rng.random((4, 10)) < 0.5, rng.standard_normal((4, 10)), np.nan)
    Xnew[:, 0] = 1.0
    data = {"rows": np.arange(12) % 12, "cols": np.arange(12) % 10, "Xnew": Xnew,
            "A": A[:7], "X": X[:9]}
    np.savez(tmp_path / "data.npz", **data)
    expected = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, est, kind in CASES:
            est = clone(est).fit(*fits[kind])
            stem = f"{name}__{kind}"
            assert est.save(tmp_path / f"{stem}.linrfm") == tmp_path / f"{stem}.linrfm"
            for suffix, pred in _predict(est, kind, data).items():
                expected[stem + suffix] = pred
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "pred.npz")
    assert set(got.files) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_loaded_state_equals_fitted_state(tmp_path):
    est = LinRFMCompleter(max_iter=6, track_objective=True).fit(_data()[0])
    loaded = LinRFMCompleter.load(est.save(tmp_path / "m.linrfm"))
    assert loaded.get_params() == est.get_params()
    for key, value in vars(est).items():
        other = getattr(loaded, key)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape
            np.testing.assert_array_equal(other, value)
        elif dataclasses.is_dataclass(value):  # offsets_ (centring model)
            assert type(other) is type(value), key
            for f in dataclasses.fields(value):
                np.testing.assert_array_equal(getattr(other, f.name), getattr(value, f.name))
        elif key == "history_":
            assert other.keys() == value.keys()
            for col in value:
                np.testing.assert_array_equal(np.asarray(other[col], dtype=object),
                                              np.asarray(value[col], dtype=object))
        else:
            assert other == value or (other is None and value is None), key
            assert type(other) is type(value), key


def test_dataframe_feature_names_roundtrip(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y, _ = make_sparse_regression(15, 6, 2, random_state=1)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    est = LinRFMRegressor(max_iter=5).fit(frame, y)
    loaded = linrfm.load(est.save(tmp_path / "r.linrfm"))
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.predict(frame), est.predict(frame))


def test_unfitted_and_callback_not_saved(tmp_path):
    est = LinRFMRegressor(callback=lambda it, rec: False, max_iter=3)
    with pytest.warns(UserWarning, match="callback"):
        path = est.save(tmp_path / "u.linrfm")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert "callback" in manifest["unsaved_params"]
    loaded = LinRFMRegressor.load(path)
    assert loaded.callback is None and loaded.max_iter == 3
    assert not hasattr(loaded, "coef_")


def test_pickle_and_clone_still_work():
    est = LinRFMSensing(max_iter=3).fit(*_data()[1])
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.Z_, est.Z_)
    assert clone(est).get_params() == est.get_params()


# --------------------------------------------------------------------------- refusals
class _Evil:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"estimator": _Evil(marker)}))
    with pytest.raises(ValueError, match="pickle"):
        linrfm.load(evil)
    with pytest.raises(ValueError, match="pickle"):
        LinRFMCompleter.load(evil)
    proc = subprocess.run([sys.executable, "-m", "linrfm", "complete", "--load-model",
                           str(evil), "--predict", str(evil)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "pickle" in proc.stderr
    assert not marker.exists()


@pytest.fixture
def saved(tmp_path):
    est = LinRFMCompleter(max_iter=4).fit(_data()[0])
    return est.save(tmp_path / "m.linrfm")


def _rewrite(path, edit_manifest, fix_checksum):
    """Rewrite ``path`` with an edited manifest (checksum recomputed or not)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    edit_manifest(manifest)
    if fix_checksum:
        manifest["checksum"] = _digest(manifest, members)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, data in members.items():
            zf.writestr(n, data)


@pytest.mark.parametrize("cut", [0, 3, 30, 200, -200, -1])
def test_truncated_file_is_clear_error(saved, cut):
    data = saved.read_bytes()
    saved.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(ValueError, match=r"m\.linrfm: (truncated|not a linrfm)"):
        linrfm.load(saved)


def test_tampered_array_bytes(saved):
    data = bytearray(saved.read_bytes())
    k = data.rindex(b"\x93NUMPY") + 200     # inside the last array's data
    data[k] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted|checksum"):
        linrfm.load(saved)


@pytest.mark.parametrize("edit, fix, message", [
    (lambda m: m["params"].update(max_iter=999), False, "checksum mismatch"),
    (lambda m: m["attributes"].update(n_iter_=-1), False, "checksum mismatch"),
    (lambda m: m.update(format_version=FORMAT_VERSION + 1), True, "format version"),
    (lambda m: m.update(format_version=None), True, "format version"),
    (lambda m: m.update(format="something-else"), True, "not a linrfm model file"),
    (lambda m: m.update({"class": "os.system"}), True, "unknown estimator class"),
    (lambda m: m.update({"class": "Popen"}), True, "unknown estimator class"),
    (lambda m: m.pop("attributes"), True, "malformed manifest"),
    (lambda m: m["attributes"].update(x={"__array__": "nope"}), True, "malformed manifest"),
])
def test_edited_manifest_refused(saved, edit, fix, message):
    _rewrite(saved, edit, fix)
    with pytest.raises(ValueError, match=message):
        linrfm.load(saved)


def test_foreign_files_refused(tmp_path, saved):
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.arange(3))
    text = tmp_path / "a.txt"
    text.write_text("hello")
    for path, msg in ((npz, "no manifest"), (text, "not a linrfm model file"),
                      (tmp_path, "cannot read")):
        with pytest.raises(ValueError, match=msg):
            linrfm.load(path)
    with pytest.raises(ValueError, match="holds a LinRFMCompleter, not a LinRFMSensing"):
        LinRFMSensing.load(saved)
    with pytest.raises(TypeError, match="only linrfm"):
        linrfm.persistence.save(tmp_path / "x", object())


def test_save_is_atomic_on_failure(tmp_path):
    est = LinRFMRegressor(max_iter=3).fit(*_data()[2])
    target = tmp_path / "m.linrfm"
    est.save(target)
    before = target.read_bytes()
    est.history_["bad"] = [object()]        # not representable: save fails
    with pytest.raises(TypeError, match="history_"):
        est.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.linrfm"]


def test_format_is_plain_zip_with_npy(saved):
    with zipfile.ZipFile(saved) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        # completed_ is a property of LinRFMCompleter (lazy with the low-rank engine),
        # stored as _completed
        arr = np.load(io.BytesIO(zf.read(manifest["attributes"]["_completed"]["__array__"])),
                      allow_pickle=False)
    assert names[0] == "manifest.json" and all(n.endswith(".npy") for n in names[1:])
    assert manifest["class"] == "LinRFMCompleter" and manifest["format_version"] == 1
    assert manifest["linrfm_version"] == linrfm.__version__
    assert arr.shape == (12, 10)


def test_lowrank_engine_model_round_trips(tmp_path):
    from linrfm.datasets import make_reference_problem

    prob = make_reference_problem(60, 45, 2, oversampling=3.0, random_state=0)
    est = LinRFMCompleter(engine="lowrank", max_iter=30).fit(prob.observed)
    path = est.save(tmp_path / "low.linrfm")
    back = LinRFMCompleter.load(path)
    rows, cols = np.array([0, 5, 59]), np.array([1, 44, 3])
    np.testing.assert_array_equal(back.predict(rows, cols), est.predict(rows, cols))
    np.testing.assert_array_equal(back.completed_, est.completed_)
    np.testing.assert_array_equal(back.transform(prob.observed.to_dense()[:4]),
                                  est.transform(prob.observed.to_dense()[:4]))
