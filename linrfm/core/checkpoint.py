"""Checkpoints of a running fit: write the loop's full state, resume from it.

A checkpoint is one ``.npz`` file (NumPy's zip of arrays, read with
``allow_pickle=False``) holding

* ``__meta__``: a JSON document (format version, library version, the
  fingerprint of the data and parameters, the loop's counters and history,
  the stop reason, and every scalar of the problem's state);
* ``problem/<name>``: the problem's arrays (iterate, factors, ...);
* ``best/<name>``: the problem's arrays at the best validation iterate, when
  validation stopping is on.

It is written atomically (temporary file in the same directory, ``fsync``,
rename), so a process killed at any moment leaves either the previous
checkpoint or the new one, never a partial file. A fit resumed from a
checkpoint continues the iteration exactly where it stopped: its result is
bit-identical to that of an uninterrupted fit.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["Checkpointer", "fingerprint", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META = "__meta__"
# Stop reasons after which a resumed fit has nothing left to do; after the
# others (max_iter with a larger max_iter, callback, interrupted) it continues.
FINAL_REASONS = ("tol", "validation", "nonfinite")


def fingerprint(arrays, params: dict) -> str:
    """SHA-256 of the data arrays (dtype, shape, bytes) and the JSON of ``params``.

    Parameters
    ----------
    arrays : iterable of ndarray
        The data the fit depends on (e.g. observed rows, columns, values).
    params : dict
        Parameters that change the iteration (JSON-serialisable values;
        anything else is represented by its type name).
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(params, sort_keys=True, default=lambda v: type(v).__name__).encode())
    return h.hexdigest()


def _split(state: dict, prefix: str) -> tuple[dict, dict]:
    """Arrays of a problem state under ``prefix/``, and the JSON-able rest."""
    arrays, scalars = {}, {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}/{key}"] = value
        else:
            scalars[key] = value
    return arrays, scalars


def _write_atomic(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Checkpointer:
    """Writes and reads the checkpoints of one fit.

    Parameters
    ----------
    path : path-like
        The checkpoint file (``.npz``); its directory must exist.
    every : int
        Write every ``every`` completed iterations (and when the fit stops).
    fingerprint : str
        :func:`fingerprint` of the data and parameters; a checkpoint with
        another fingerprint is refused.
    """

    def __init__(self, path, every: int, fingerprint: str):
        self.path = Path(path)
        self.every = int(every)
        self.fingerprint = fingerprint
        if self.every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every!r}")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"cannot write checkpoint {self.path}: directory {parent} "
                             "does not exist")
        if self.path.is_dir():
            raise ValueError(f"checkpoint path {self.path} is a directory")

    def save(self, loop: dict, state: dict, best: dict | None = None) -> None:
        """Write the loop counters/history and the problem's state (and best state)."""
        from .. import __version__

        arrays, scalars = _split(state, "problem")
        meta = {"format": FORMAT_VERSION, "linrfm": __version__,
                "fingerprint": self.fingerprint, "loop": loop, "problem": scalars}
        if best is not None:
            best_arrays, meta["best"] = _split(best, "best")
            arrays.update(best_arrays)
        arrays[_META] = np.array(json.dumps(meta, allow_nan=True))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _write_atomic(self.path, buf.getvalue())

    def load(self) -> tuple[dict, dict, dict | None] | None:
        """The saved ``(loop, state, best)``, or None when there is no checkpoint.

        Raises
        ------
        ValueError
            The file is not a linrfm checkpoint, is damaged, has another
            format version, or was written for other data or parameters.
        """
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
            meta = json.loads(str(files.pop(_META)[()]))
        except Exception as exc:  # zip, npy or JSON errors: all mean "not readable"
            raise ValueError(f"{self.path} is not a readable linrfm checkpoint "
                             f"({type(exc).__name__}: {exc}); delete it to start afresh"
                             ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.path} has checkpoint format {meta.get('format')!r}; "
                             f"this linrfm reads format {FORMAT_VERSION}")
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError(f"checkpoint {self.path} was written for other data or "
                             "parameters; use another checkpoint_path or delete it")
        state = dict(meta["problem"])
        best = dict(meta["best"]) if "best" in meta else None
        for key, value in files.items():
            prefix, _, name = key.partition("/")
            (state if prefix == "problem" else best)[name] = value
        return meta["loop"], state, best


def history_to_json(history: dict) -> dict:
    """History columns with NumPy scalars turned into Python ones."""
    return {k: [v.item() if isinstance(v, np.generic) else v for v in col]
            for k, col in history.items()}


# Parameters that do not change the iterates: a fit may resume with other values
# (e.g. a larger max_iter continues a fit that stopped at max_iter).
_VOLATILE = ("callback", "verbose", "max_iter", "checkpoint_path", "checkpoint_every")

def checkpointer_for(est, arrays) -> Checkpointer | None:
    """The :class:`Checkpointer` of an estimator's fit, or None without ``checkpoint_path``.

    Parameters
    ----------
    est : BaseEstimator
        Has ``checkpoint_path`` and ``checkpoint_every`` parameters.
    arrays : iterable of ndarray, or a callable returning one
        The data the iterates depend on (after any random split); a callable
        is only called when checkpointing is on.
    """
    from .._validation import check_int

    path = est.checkpoint_path
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint_path must be a path or None, got {type(path).__name__}")
    every = check_int(est.checkpoint_every, "checkpoint_every", low=1)
    params = {k: v for k, v in est.get_params().items() if k not in _VOLATILE}
    params["__class__"] = type(est).__name__
    if callable(arrays):
        arrays = arrays()
    return Checkpointer(path, every, fingerprint(arrays, params))
