"""Saving and loading fitted estimators without pickle.

A model file is a ZIP archive (format ``linrfm-model``, version
:data:`FORMAT_VERSION`; see ``docs/persistence.md``) holding

* ``manifest.json``: format name and version, library version, the
  estimator's class, its parameters (``get_params``) as JSON, its fitted
  attributes (scalars, strings, lists, dicts, tuples inline; arrays by
  reference), caller metadata, and a SHA-256 checksum;
* ``arrays/<n>.npy``: one ``.npy`` file per array (numeric, bool or str
  dtype; never object).

Loading checks, in this order and before any object is built, that the file
is a ZIP archive (a pickle is named as such and refused), that it holds a
manifest of this format and version, that the checksum matches, and that the
class is one of linrfm's own (:data:`_CLASSES`, never an import path from the
file). Arrays are read with ``np.load(allow_pickle=False)``. Every failure is
a :class:`ValueError` naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .core.centering import Offsets

__all__ = ["FORMAT", "FORMAT_VERSION", "PersistenceMixin", "save", "load",
           "load_with_metadata"]

FORMAT = "linrfm-model"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
# Manifests are small (parameters, history); refuse to decompress a huge one.
_MAX_MANIFEST_BYTES = 64 * 2**20

# Allow-list: the only classes a model file may name (name -> module).
_CLASSES = {
    "LinRFMCompleter": "linrfm.problems.completion",
    "LinRFMRegressor": "linrfm.problems.regression",
    "LinRFMSensing": "linrfm.problems.sensing",
    "IRLSCompleter": "linrfm.baselines.irls",
    "IRLSSensing": "linrfm.baselines.irls",
    "MatrixIRLSCompleter": "linrfm.baselines.matrix_irls",
    "SoftImpute": "linrfm.baselines.soft_impute",
    "DeepLinearCompleter": "linrfm.baselines.deep_linear",
    "DeepLinearSensing": "linrfm.baselines.deep_linear",
    "DiagonalNetworkRegressor": "linrfm.baselines.deep_linear",
    "BasisPursuit": "linrfm.baselines.l1",
}


class _Unsaveable(TypeError):
    """A value the format cannot represent (a callable, an object)."""


# --------------------------------------------------------------------------- encode
class _Encoder:
    """Turn nested Python/NumPy values into JSON, collecting the arrays."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, arr: np.ndarray) -> dict:
        spec = {}
        if arr.dtype == object:
            # feature_names_in_ and similar: object arrays of str only
            if not all(isinstance(v, str) for v in arr.ravel()):
                raise _Unsaveable("an object array holding non-strings")
            arr, spec["object"] = arr.astype(str), True
        elif arr.dtype.kind not in "biufcU":
            raise _Unsaveable(f"an array of dtype {arr.dtype}")
        key = f"arrays/{len(self.arrays)}.npy"
        self.arrays[key] = np.ascontiguousarray(arr)
        spec["__array__"] = key
        return spec

    def __call__(self, value):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, (np.ndarray, np.generic)):
            spec = self.array(np.asarray(value))
            if isinstance(value, np.generic):
                spec["scalar"] = True
            return spec
        if isinstance(value, tuple):
            return {"__tuple__": [self(v) for v in value]}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, Offsets):  # the completer's centring model (a known dataclass)
            return {"__offsets__": {f.name: self(getattr(value, f.name))
                                    for f in dataclasses.fields(value)}}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise _Unsaveable("a dict with non-string keys")
            return {"__dict__": {k: self(v) for k, v in value.items()}}
        raise _Unsaveable(f"a {type(value).__name__}")


def _decode(value, arrays: dict):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__offsets__" in value:
        return Offsets(**{k: _decode(v, arrays) for k, v in value["__offsets__"].items()})
    if "__array__" in value:
        arr = arrays[value["__array__"]]
        if value.get("object"):
            arr = arr.astype(object)
        return arr[()] if value.get("scalar") else arr
    raise ValueError(f"unknown value encoding {sorted(value)}")


def _encode_state(est, enc: _Encoder):
    """Parameters and fitted state of ``est`` as JSON (arrays collected by ``enc``)."""
    params, unsaved = {}, {}
    for name, value in est.get_params(deep=False).items():
        try:
            params[name] = enc(value)
        except _Unsaveable as exc:
            unsaved[name] = f"{exc} (not saved; the default is used on load)"
    own = set(est.get_params(deep=False))
    attributes = {}
    for name, value in vars(est).items():
        if name in own:
            continue
        try:
            attributes[name] = enc(value)
        except _Unsaveable as exc:
            raise TypeError(f"cannot save {type(est).__name__}.{name}: {exc} has no "
                            "representation in the linrfm model format") from None
    return params, unsaved, attributes


# --------------------------------------------------------------------------- checksum
def _digest(manifest: dict, members: dict[str, bytes]) -> str:
    """SHA-256 over the manifest (without its checksum) and every member's bytes."""
    h = hashlib.sha256()
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True, allow_nan=False).encode())
    for name in sorted(members):
        h.update(name.encode() + b"\0" + len(members[name]).to_bytes(8, "little"))
        h.update(members[name])
    return h.hexdigest()


# --------------------------------------------------------------------------- save
def save(path, estimator, metadata: dict | None = None) -> Path:
    """Write ``estimator`` (fitted or not) to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
    estimator : one of linrfm's estimators or baselines
    metadata : dict, optional
        Extra JSON-able values (arrays allowed) stored with the model, e.g.
        the CLI's row and column ids; returned by :func:`load_with_metadata`.

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        ``estimator`` is not a linrfm class, or a fitted attribute or a
        metadata value has no representation in the format.
    """
    from . import __version__
    from .io import atomic_write

    name = type(estimator).__name__
    if _CLASSES.get(name) != type(estimator).__module__:
        raise TypeError(f"only linrfm's estimators can be saved, got {type(estimator)!r}")
    enc = _Encoder()
    params, unsaved, attributes = _encode_state(estimator, enc)
    try:
        meta = enc(dict(metadata or {}))
    except _Unsaveable as exc:
        raise TypeError(f"cannot save metadata: {exc}") from None
    if unsaved:
        warnings.warn(f"{name}: parameter(s) {', '.join(sorted(unsaved))} cannot be saved "
                      "(not JSON) and will have their default value after loading",
                      UserWarning, stacklevel=3)
    members = {}
    for key, arr in enc.arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        members[key] = buf.getvalue()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "linrfm_version": __version__, "class": name, "params": params,
                "unsaved_params": unsaved, "attributes": attributes, "metadata": meta}
    manifest["checksum"] = _digest(manifest, members)
    with atomic_write(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_MANIFEST, json.dumps(manifest, allow_nan=False, indent=1))
            for key, data in members.items():
                zf.writestr(key, data)
    return Path(path)


# --------------------------------------------------------------------------- load
def _refuse(path, why: str):
    return ValueError(f"{path}: {why}")


def _check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise _refuse(path, f"cannot read model file: {exc.strerror or exc}") from None
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise _refuse(path, "is a pickle file (an old linrfm model or a foreign file); "
                            "linrfm never unpickles because a pickle can run arbitrary "
                            "code; refit the model and save it with est.save(path)")
    if head != b"PK\x03\x04":
        raise _refuse(path, "not a linrfm model file (no ZIP header); save one with "
                            "est.save(path) or --save-model")


def _read_members(path: Path):
    """Manifest dict and raw member bytes, with the archive's own CRC checks."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if _MANIFEST not in infos:
                raise _refuse(path, "not a linrfm model file (no manifest.json)")
            if infos[_MANIFEST].file_size > _MAX_MANIFEST_BYTES:
                raise _refuse(path, "manifest.json is implausibly large")
            manifest = json.loads(zf.read(_MANIFEST).decode("utf-8"))
            members = {n: zf.read(n) for n in infos if n != _MANIFEST}
    except ValueError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError,
            UnicodeDecodeError, NotImplementedError, RecursionError) as exc:
        raise _refuse(path, f"truncated or corrupted model file ({exc})") from None
    if not isinstance(manifest, dict):
        raise _refuse(path, "not a linrfm model file (malformed manifest)")
    return manifest, members


def _check_manifest(path: Path, manifest: dict, members: dict) -> None:
    if manifest.get("format") != FORMAT:
        raise _refuse(path, f"not a linrfm model file (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise _refuse(path, f"model format version {version!r}, but this linrfm reads "
                            f"version {FORMAT_VERSION}; refit and save with this version")
    if manifest.get("checksum") != _digest(manifest, members):
        raise _refuse(path, "checksum mismatch: the file was modified or corrupted")
    if manifest.get("class") not in _CLASSES:
        raise _refuse(path, f"unknown estimator class {manifest.get('class')!r}; a model "
                            f"file may only name one of {sorted(_CLASSES)}")
    for key in ("params", "attributes", "metadata", "unsaved_params"):
        if not isinstance(manifest.get(key), dict):
            raise _refuse(path, f"malformed manifest: {key!r} is missing")


def _load_arrays(path: Path, members: dict) -> dict:
    arrays = {}
    for key, data in members.items():
        try:
            arrays[key] = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _refuse(path, f"array {key} is unreadable ({exc})") from None
    return arrays


def load_with_metadata(path, expected: type | None = None):
    """Read a model file; return ``(estimator, metadata)``.

    Parameters
    ----------
    path : str or Path
    expected : class, optional
        Refuse a file holding another class.

    Raises
    ------
    ValueError
        Not a model file (a pickle included), truncated, modified, written
        by another format version, naming a class outside linrfm, or not of
        class ``expected``. Raised before any estimator is built.
    """
    path = Path(path)
    _check_magic(path)
    manifest, members = _read_members(path)
    _check_manifest(path, manifest, members)
    name = manifest["class"]
    if expected is not None and name != expected.__name__:
        raise _refuse(path, f"holds a {name}, not a {expected.__name__}; use linrfm.load")
    arrays = _load_arrays(path, members)
    try:
        params = {k: _decode(v, arrays) for k, v in manifest["params"].items()}
        attributes = {k: _decode(v, arrays) for k, v in manifest["attributes"].items()}
        metadata = _decode(manifest["metadata"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(path, f"malformed manifest ({exc})") from None
    cls = getattr(importlib.import_module(_CLASSES[name]), name)
    _warn_version(path, manifest.get("linrfm_version"))
    est = cls()
    try:
        est.set_params(**params)
    except ValueError as exc:
        raise _refuse(path, f"parameters do not match {name} ({exc})") from None
    for key, value in attributes.items():
        setattr(est, key, value)
    return est, metadata


def _warn_version(path, version) -> None:
    from . import __version__

    if version != __version__:
        warnings.warn(f"{path} was saved by linrfm {version}, this is {__version__}; the "
                      "format is the same, but results may differ if the estimator changed",
                      UserWarning, stacklevel=4)


def load(path):
    """Load any linrfm model file written by ``save``; the class comes from the file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    estimator
        Fitted (if it was fitted when saved), with its parameters; parameters
        listed under ``unsaved_params`` in the manifest (callables) have their
        default value.
    """
    return load_with_metadata(path)[0]


class PersistenceMixin:
    """``save(path)`` and ``Class.load(path)`` in the pickle-free model format."""

    def save(self, path):
        """Write this estimator to ``path`` (see ``docs/persistence.md``).

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path
        """
        return save(path, self)

    @classmethod
    def load(cls, path):
        """Load an estimator of this class saved with :meth:`save`.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        estimator
        """
        return load_with_metadata(path, expected=cls)[0]
