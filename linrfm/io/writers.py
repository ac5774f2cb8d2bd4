"""Writers: every output goes through :func:`atomic_write` (no partial file, ever)."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .ids import IdMap

__all__ = ["DENSE_FORMATS", "atomic_write", "check_output_path", "dense_format", "write_dense",
           "write_predictions", "to_jsonable", "write_json", "save_figure"]

DENSE_FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "tsv"}


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file next to ``path``; move it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600 files; give the output the permissions open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        kwargs = {} if "b" in mode else {"newline": "", "encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            # on disk before the rename: a crash never leaves a renamed, empty file
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_output_path(path, what: str = "output") -> Path:
    """Fail early (before any fit) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory")
    if not parent.is_dir():
        raise ValueError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {what} {path}: directory {parent} is not writable")
    return path


def dense_format(path) -> str:
    """Format of a dense output file from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in DENSE_FORMATS:
        raise ValueError(f"unknown output format {suffix or '(no extension)'!r} for {path}; "
                         "write the completed matrix as .npy, .npz, .csv or .tsv")
    return DENSE_FORMATS[suffix]


def _fmt_ids(ids: np.ndarray) -> list[str]:
    return [str(x) for x in ids]


def write_dense(path, Z: np.ndarray, row_ids: IdMap | None = None,
                col_ids: IdMap | None = None, *, fmt: str | None = None) -> Path:
    """Write a dense matrix atomically.

    ``.npy``: the array. ``.npz``: ``completed``, ``row_ids``, ``col_ids``.
    ``.csv``/``.tsv``: one line per row; when the ids are not ``0..n-1`` a
    header line of column ids is written and each line starts with its row id.
    """
    path = Path(path)
    fmt = fmt or dense_format(path)
    row_ids = row_ids or IdMap(Z.shape[0])
    col_ids = col_ids or IdMap(Z.shape[1])
    with atomic_write(path, "wb" if fmt in ("npy", "npz") else "w") as handle:
        if fmt == "npy":
            np.save(handle, Z)
        elif fmt == "npz":
            np.savez(handle, completed=Z, row_ids=row_ids.ids(), col_ids=col_ids.ids())
        else:
            delim = "\t" if fmt == "tsv" else ","
            labelled = not (row_ids.is_identity and col_ids.is_identity)
            writer = csv.writer(handle, delimiter=delim, lineterminator="\n")
            if labelled:
                writer.writerow(["", *_fmt_ids(col_ids.ids())])
                for rid, row in zip(_fmt_ids(row_ids.ids()), Z):
                    writer.writerow([rid, *(f"{v:.12g}" for v in row)])
            else:
                np.savetxt(handle, Z, delimiter=delim, fmt="%.12g")
    return path


def write_predictions(path, row_tokens, col_tokens, values, *,
                      names=("row", "col", "prediction")) -> Path | None:
    """Write ``row, col, prediction`` lines (atomically; ``path="-"``: stdout)."""
    delim = "\t" if str(path).lower().endswith(".tsv") else ","

    def emit(handle):
        writer = csv.writer(handle, delimiter=delim, lineterminator="\n")
        writer.writerow(list(names))
        for r, c, v in zip(row_tokens, col_tokens, values):
            writer.writerow([r, c, f"{v:.12g}"])

    if str(path) == "-":
        import sys

        emit(sys.stdout)
        sys.stdout.flush()
        return None
    with atomic_write(path, "w") as handle:
        emit(handle)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert NumPy scalars/arrays to JSON types (NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def write_json(path, data: dict) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(to_jsonable(data), handle, indent=2)
        handle.write("\n")
    return Path(path)


def save_figure(fig, path, dpi: int = 90) -> Path:
    """Lay out ``fig``, write it as PNG atomically (creating the folder) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


