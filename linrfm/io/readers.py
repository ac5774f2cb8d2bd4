"""Readers of partially observed matrices and of prediction pairs (see :mod:`linrfm.io`)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from .._observations import as_observations
from .ids import IdMap, InputData, ReadError, _triplets_to_input

__all__ = ["INPUT_FORMATS", "UNKNOWN_IDS", "input_format", "read_table", "read_observations",
           "Pairs", "read_pairs"]

INPUT_FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".dat": "csv", ".data": "csv",
    ".mtx": "mtx", ".mm": "mtx",
    ".npy": "npy", ".npz": "npz",
    ".parquet": "parquet", ".pq": "parquet",
}
UNKNOWN_IDS = ("fallback", "error", "skip")
_DELIMITERS = (",", "\t", ";", "|")
_SNIFF_LINES = 50


def input_format(path, fmt: str | None = None) -> str:
    """The input format of ``path`` (``fmt`` overrides the extension)."""
    if fmt is not None:
        if fmt not in set(INPUT_FORMATS.values()):
            raise ReadError(f"unknown input format {fmt!r}; choose one of "
                            f"{sorted(set(INPUT_FORMATS.values()))}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ReadError(f"{path}: unknown input format {suffix or '(no extension)'!r}; use "
                        ".csv/.tsv/.txt (triplets), .mtx, .npy, .npz or .parquet, "
                        "or name the format with --format")
    return INPUT_FORMATS[suffix]



def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _detect_delimiter(sample_lines: list[str]) -> str | None:
    """The delimiter splitting most sample lines alike (None: runs of whitespace).

    The most common field count must be >= 2; ties prefer 3 fields (triplets).
    A few malformed lines do not change the choice, so they are reported with
    their line number afterwards.
    """
    best, best_score = None, None
    for delim in (*_DELIMITERS, None):
        if delim is None:
            counts = [len(line.split()) for line in sample_lines]
        else:
            counts = [len(next(csv.reader([line], delimiter=delim))) for line in sample_lines]
        mode = max(set(counts), key=counts.count)
        if mode < 2:
            continue
        score = (counts.count(mode), mode == 3, delim is not None)
        if best_score is None or score > best_score:
            best, best_score = delim, score
    if best_score is None:
        raise ReadError("could not detect the delimiter (tried comma, tab, semicolon, bar and "
                        "whitespace); expected lines of 'row, column, value'")
    return best


def _iter_rows(handle, delim: str | None):
    """Yield (line_number, fields) for non-blank, non-comment lines."""
    if delim is None:
        for lineno, line in enumerate(handle, 1):
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                yield lineno, fields
        return
    reader = csv.reader(handle, delimiter=delim)
    start = 1
    for fields in reader:
        lineno = start
        start = reader.line_num + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if fields[0].lstrip().startswith("#"):
            continue
        yield lineno, [f.strip() for f in fields]


def _open_text(path):
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
        handle.read(4096)
        handle.seek(0)
    except UnicodeDecodeError:
        handle.close()
        raise ReadError(f"{path}: not a UTF-8 text file; give its format with --format") from None
    except IsADirectoryError:
        raise ReadError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return handle


def _sample_lines(path) -> list[str]:
    lines = []
    with _open_text(path) as handle:
        for line in handle:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                lines.append(stripped)
                if len(lines) >= _SNIFF_LINES:
                    break
    return lines


def read_table(path, n_fields: int, *, delimiter: str | None = None,
               what: str = "row, column, value", min_fields: int | None = None,
               usecols: Sequence[int] | None = None):
    """Read fields of every line of a delimited text file, as strings.

    Parameters
    ----------
    path : path-like
    n_fields : int
        Number of fields every line must have; with ``min_fields`` lines need
        at least that many and fields past ``n_fields`` are ignored.
    delimiter : str, optional
        Detected when None; ``"whitespace"`` splits on runs of blanks.
    what : str
        Description of the expected fields, for error messages.
    usecols : sequence of int, optional
        Positions of the fields to return (default: the first ``n_fields``).

    Returns
    -------
    columns : list of ndarray of str, each of shape (n,)
        Every data line, the first one included (header detection is the
        caller's).
    lines : ndarray of int, shape (n,)
        Line number of each row.
    """
    path = str(path)
    _, delimiter = _sample_and_delimiter(path, delimiter)
    delim = None if delimiter == "whitespace" else delimiter
    low = n_fields if min_fields is None else min_fields
    usecols = list(range(n_fields)) if usecols is None else list(usecols)
    cols: list[list[str]] = [[] for _ in usecols]
    linenos: list[int] = []
    lineno = 0
    with _open_text(path) as handle:
        try:
            for lineno, fields in _iter_rows(handle, delim):
                if len(fields) < low or (min_fields is None and len(fields) != n_fields):
                    expect = f"{n_fields}" if min_fields is None else f"at least {low}"
                    # Too many fields from the first line on: a wider table.
                    hint = ("; pick the row, column and value fields with --columns"
                            if not linenos and len(fields) > n_fields and n_fields == 3 else "")
                    raise ReadError(f"{path}: line {lineno}: expected {expect} fields ({what}), "
                                    f"got {len(fields)}: {_show(fields)}{hint}")
                for col, k in zip(cols, usecols):
                    col.append(fields[k])
                linenos.append(lineno)
        except csv.Error as exc:
            raise ReadError(f"{path}: line {lineno + 1}: {exc}") from None
        except UnicodeDecodeError:
            raise ReadError(f"{path}: not a UTF-8 text file") from None
    return [np.asarray(c, dtype=str) for c in cols], np.asarray(linenos, dtype=np.int64)


def _show(fields: list[str]) -> str:
    text = ",".join(fields)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _resolve_columns(spec, names: list[str], source: str) -> list[int]:
    """Positions of the row, column and value fields named or numbered in ``spec``."""
    if len(spec) != 3:
        raise ReadError(f"columns must name three fields (row, column, value), got {spec!r}")
    positions = []
    for item in spec:
        item = str(item).strip()
        if item.isdigit():
            k = int(item)
            if k >= len(names):
                raise ReadError(f"{source}: column position {k} is out of range: the first "
                                f"line has {len(names)} fields (positions start at 0)")
        elif item in names:
            k = names.index(item)
        else:
            raise ReadError(f"{source}: no column {item!r}; the first line has "
                            f"{', '.join(repr(n) for n in names)}")
        positions.append(k)
    return positions


def _sample_and_delimiter(path, delimiter) -> tuple[list[str], str]:
    """The first lines of ``path`` and its delimiter (detected when None;
    ``"whitespace"`` for runs of blanks)."""
    sample = _sample_lines(path)
    if not sample:
        raise ReadError(f"{path}: the file is empty")
    if delimiter is None:
        try:
            delimiter = _detect_delimiter(sample)
        except ReadError as exc:
            raise ReadError(f"{path}: {exc}") from None
        delimiter = "whitespace" if delimiter is None else delimiter
    return sample, delimiter


def _first_fields(path, delimiter) -> tuple[list[str], str]:
    sample, delimiter = _sample_and_delimiter(path, delimiter)
    if delimiter == "whitespace":
        return sample[0].split(), delimiter
    return [f.strip() for f in next(csv.reader([sample[0]], delimiter=delimiter))], delimiter


def _read_csv(path, *, header, delimiter, ids, shape, dtype, columns=None) -> InputData:
    """Pandas' C parser when it applies; the line-by-line reader otherwise.

    Both give the same result on a valid file. Any doubt in the fast path
    (a parse error, a missing field, a comment, a non-integer numeric id, an
    invalid matrix) falls back to the line-by-line reader, which reports the
    problem with its line number.
    """
    fast = _read_csv_pandas(path, header=header, delimiter=delimiter, ids=ids, shape=shape,
                            dtype=dtype, columns=columns)
    if fast is not None:
        return fast
    return _read_csv_lines(path, header=header, delimiter=delimiter, ids=ids, shape=shape,
                           dtype=dtype, columns=columns)


def _first_line_index(path) -> int | None:
    """0-based index of the first non-blank line; None if it is a comment."""
    with _open_text(path) as handle:
        for k, line in enumerate(handle):
            stripped = line.strip()
            if stripped:
                return None if stripped.startswith("#") else k
    return None


def _exact_floats(pd) -> dict:
    """pandas < 3 parses floats exactly (like ``float``) only when asked to."""
    return {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _read_csv_pandas(path, *, header, delimiter, ids, shape, dtype, columns):
    try:
        import pandas as pd
    except ImportError:
        return None
    try:
        first, delim = _first_fields(path, delimiter)
        positions = ([0, 1, 2] if columns is None
                     else _resolve_columns(columns, first, str(path)))
    except ReadError:
        return None
    start = _first_line_index(path)
    if start is None or (columns is None and len(first) != 3):
        return None
    if columns is not None and header is None and any(
            not str(c).strip().isdigit() for c in columns):
        header = True
    if header is None:
        header = not _is_number(first[positions[2]])
    try:
        # Every column is read (no usecols) so that a line with extra fields
        # is a ParserError; a short line leaves '' in some column.
        frame = pd.read_csv(
            path, sep=r"\s+" if delim == "whitespace" else delim, header=None,
            skiprows=start + 1 if header else start, dtype={positions[2]: np.float64},
            na_filter=False, skipinitialspace=True, engine="c", **_exact_floats(pd))
    except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError, OSError):
        return None
    if frame.shape[0] == 0 or frame.shape[1] != len(first):
        return None
    for k in range(frame.shape[1]):
        if frame[k].dtype.kind not in "iuf" and (frame[k].astype(str) == "").any():
            return None
    id_columns = []
    for pos in positions[:2]:
        col = frame[pos]
        if col.dtype.kind in "iu":
            id_columns.append(col.to_numpy(dtype=np.int64))
        elif col.dtype.kind in "OSUT" or str(col.dtype) in ("str", "string"):
            id_columns.append(np.char.strip(col.to_numpy().astype(str)))
        else:
            return None
    values = frame[positions[2]].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return None
    names = [first[k] for k in positions] if header else None
    try:
        return _triplets_to_input(*id_columns, values, ids=ids, shape=shape, dtype=dtype,
                                  source=str(path), fmt="csv", header=names)
    except ReadError:
        return None


def _read_csv_lines(path, *, header, delimiter, ids, shape, dtype, columns=None) -> InputData:
    if columns is None:
        columns, lines = read_table(path, 3, delimiter=delimiter)
    else:
        first, delimiter = _first_fields(path, delimiter)
        positions = _resolve_columns(columns, first, str(path))
        if header is None and any(not str(c).strip().isdigit() for c in columns):
            header = True  # selected by name
        columns, lines = read_table(path, len(first), delimiter=delimiter, usecols=positions,
                                    what=f"{len(first)} like the first line")
    names = None
    if header is None:
        header = not _is_number(columns[2][0])
    if header:
        names = [str(c[0]) for c in columns]
        columns = [c[1:] for c in columns]
        lines = lines[1:]
    if lines.size == 0:
        raise ReadError(f"{path}: no data lines after the header")
    row_tok, col_tok, val_tok = columns
    try:
        values = val_tok.astype(np.float64)
    except ValueError:
        values = None
    if values is None:
        for k, tok in enumerate(val_tok):
            if not _is_number(tok):
                raise ReadError(f"{path}: line {lines[k]}: value {str(tok)!r} is not a number")
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ReadError(f"{path}: line {lines[k]}: value {str(val_tok[k])!r} is not finite; leave "
                        "missing entries out of a triplet file")
    return _triplets_to_input(row_tok, col_tok, values, ids=ids, shape=shape, dtype=dtype,
                              source=str(path), fmt="csv", header=names, lines=lines)


# --------------------------------------------------------------------------- binary formats
def _dense_input(arr, source: str, fmt: str, dtype) -> InputData:
    arr = np.asarray(arr)
    try:
        obs = as_observations(arr, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ReadError(f"{source}: {exc}") from None
    return InputData(obs, IdMap(arr.shape[0]), IdMap(arr.shape[1]), fmt, None, source)


def _sparse_input(mat, source: str, fmt: str, dtype) -> InputData:
    try:
        obs = as_observations(mat, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ReadError(f"{source}: {exc}") from None
    return InputData(obs, IdMap(mat.shape[0]), IdMap(mat.shape[1]), fmt, None, source)


def _read_mtx(path, dtype) -> InputData:
    import scipy.io

    try:
        mat = scipy.io.mmread(str(path))
    except (ValueError, OSError, IndexError, TypeError, RuntimeError) as exc:
        raise ReadError(f"{path}: not a readable MatrixMarket file ({exc})") from None
    if sp.issparse(mat):
        return _sparse_input(mat, str(path), "mtx", dtype)
    return _dense_input(mat, str(path), "mtx", dtype)


def _load_numpy(path):
    """The array of a .npy file, or a dict of the arrays of a .npz file (read in full,
    so that the file is closed even when the archive is truncated)."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ReadError(f"{path}: not a readable NumPy file, truncated or corrupted "
                        f"({type(exc).__name__}: {exc})") from None


def _read_npy(path, dtype) -> InputData:
    arr = _load_numpy(path)
    if not isinstance(arr, np.ndarray):
        raise ReadError(f"{path}: expected a .npy array, found an .npz archive")
    return _dense_input(arr, str(path), "npy", dtype)


def _read_npz(path, *, ids, shape, dtype) -> InputData:
    archive = _load_numpy(path)
    if isinstance(archive, np.ndarray):
        return _dense_input(archive, str(path), "npz", dtype)
    keys = set(archive)
    if {"format", "shape", "data"} <= keys:
        try:
            mat = sp.load_npz(str(path))
        except (ValueError, KeyError, OSError, TypeError, IndexError, AttributeError) as exc:
            raise ReadError(f"{path}: not a readable scipy.sparse .npz: its 'format', "
                            "'shape' and 'data' arrays are inconsistent "
                            f"({type(exc).__name__})") from None
        return _sparse_input(mat, str(path), "npz", dtype)
    if {"rows", "cols", "values"} <= keys:
        given = shape
        if "shape" in keys:
            given = archive["shape"]
            if given.shape != (2,) or given.dtype.kind not in "iu":
                raise ReadError(f"{path}: 'shape' must hold two integers (d1, d2), got "
                                f"{given.tolist()}")
            given = tuple(int(s) for s in given)
        return _triplets_to_input(archive["rows"], archive["cols"], archive["values"],
                                  ids="index" if given is not None else ids,
                                  shape=given, dtype=dtype, source=str(path), fmt="npz")
    if len(keys) == 1:
        return _dense_input(archive[keys.pop()], str(path), "npz", dtype)
    raise ReadError(f"{path}: expected one 2-D array, arrays 'rows', 'cols', 'values', or a "
                    f"scipy.sparse .npz; found arrays {sorted(keys)}")


def _read_parquet(path, *, ids, shape, dtype, columns=None) -> InputData:
    try:
        import pandas as pd
    except ImportError:
        raise ReadError("reading Parquet needs pandas and pyarrow: "
                        "pip install pandas pyarrow") from None
    try:
        frame = pd.read_parquet(str(path))
    except ImportError:
        raise ReadError("reading Parquet needs pyarrow (or fastparquet): "
                        "pip install pyarrow") from None
    except (OSError, ValueError) as exc:
        raise ReadError(f"{path}: not a readable Parquet file ({exc})") from None
    if columns is not None:
        frame = frame.iloc[:, _resolve_columns(columns, [str(c) for c in frame.columns],
                                               str(path))]
    if frame.shape[1] != 3:
        raise ReadError(f"{path}: expected three columns (row, column, value), got "
                        f"{frame.shape[1]}: {list(frame.columns)}; select them with "
                        "--columns")
    values = frame.iloc[:, 2]
    if values.dtype.kind not in "iufb":
        raise ReadError(f"{path}: value column {frame.columns[2]!r} is not numeric")
    return _triplets_to_input(frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy(),
                              values.to_numpy(dtype=np.float64), ids=ids, shape=shape,
                              dtype=dtype, source=str(path), fmt="parquet",
                              header=[str(c) for c in frame.columns])


def read_observations(path, *, fmt: str | None = None, ids: str = "label",
                      header: bool | None = None, delimiter: str | None = None,
                      shape: tuple[int, int] | None = None, columns=None,
                      dtype=np.float64) -> InputData:
    """Read a partially observed matrix from a file.

    Parameters
    ----------
    path : path-like
    fmt : {"csv", "mtx", "npy", "npz", "parquet"}, optional
        Detected from the extension when None (see the module docstring).
    ids : {"label", "index"}, default="label"
        How row and column ids of triplet inputs become indices.
    header : bool, optional
        CSV only: whether the first line is a header. When None it is a header
        exactly when its value field is not a number.
    delimiter : str, optional
        CSV only: the field separator (``"whitespace"`` for runs of blanks);
        detected when None.
    shape : (int, int), optional
        Matrix shape for triplet inputs with ``ids="index"`` (to include
        trailing rows or columns that have no observation).
    columns : sequence of three str or int, optional
        CSV and Parquet: the row, column and value fields among more, by
        header name or 0-based position (default: the file has exactly
        three).
    dtype : {float64, float32}

    Returns
    -------
    InputData

    Raises
    ------
    ReadError
        Missing or unreadable file, unknown format, malformed line (with its
        number), non-numeric or non-finite value, duplicate entry, invalid
        matrix (empty, all missing...).
    """
    if ids not in ("label", "index"):
        raise ValueError(f"ids must be 'label' or 'index', got {ids!r}")
    path = Path(path)
    kind = input_format(path, fmt)
    if not path.exists():
        raise ReadError(f"cannot read {path}: no such file")
    if path.is_dir():
        raise ReadError(f"{path}: is a directory, not a file")
    if columns is not None and kind not in ("csv", "parquet"):
        raise ReadError(f"--columns only applies to CSV and Parquet inputs, not {kind}")
    if kind == "csv":
        return _read_csv(path, header=header, delimiter=delimiter, ids=ids, shape=shape,
                         dtype=dtype, columns=columns)
    if kind == "mtx":
        return _read_mtx(path, dtype)
    if kind == "npy":
        return _read_npy(path, dtype)
    if kind == "npz":
        return _read_npz(path, ids=ids, shape=shape, dtype=dtype)
    return _read_parquet(path, ids=ids, shape=shape, dtype=dtype, columns=columns)


class Pairs(NamedTuple):
    """What :func:`read_pairs` returns."""

    rows: np.ndarray
    cols: np.ndarray
    row_tokens: np.ndarray
    col_tokens: np.ndarray
    header: list | None
    n_skipped: int


def read_pairs(path, row_ids: IdMap, col_ids: IdMap, *, delimiter: str | None = None,
               unknown: str = "error"):
    """Read ``row, column`` pairs (ids as in the fitted input) to predict.

    Lines may carry more fields (a test file of triplets, say); only the first
    two are used. The first line is a header when neither of its first two
    fields is a known id.

    Parameters
    ----------
    path : path-like
    row_ids, col_ids : IdMap
        The id maps of the fitted matrix.
    delimiter : str, optional
        Detected when None.
    unknown : {"fallback", "error", "skip"}
        What to do with a pair whose row or column id the fitted matrix does
        not have: keep it with index ``-1`` on the unknown axis (the caller
        predicts a fallback for it), raise :class:`ReadError` naming its
        line, or drop it.

    Returns
    -------
    Pairs
        ``rows, cols`` (int64 matrix indices, shape (n,)), ``row_tokens,
        col_tokens`` (the ids as written, used verbatim in outputs; ``-1``
        in ``rows``/``cols`` marks an unknown id with ``unknown="fallback"``),
        ``header`` (list of str or None) and ``n_skipped``.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"cannot read {path}: no such file")
    columns, lines = read_table(path, 2, delimiter=delimiter, what="row, column",
                                min_fields=2)
    first = [str(c[0]) for c in columns]
    header = None

    def known(tok, idmap):
        try:
            idmap.encode([tok])
        except ReadError:
            return False
        return True

    if not known(first[0], row_ids) and not known(first[1], col_ids):
        header = first
        columns = [c[1:] for c in columns]
        lines = lines[1:]
    if lines.size == 0:
        raise ReadError(f"{path}: no pairs to predict")
    if unknown not in UNKNOWN_IDS:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_IDS)}, got {unknown!r}")
    missing = None if unknown == "error" else -1
    rows = row_ids.encode(columns[0], lines, axis="row", source=str(path), missing=missing)
    cols = col_ids.encode(columns[1], lines, axis="column", source=str(path), missing=missing)
    known = (rows >= 0) & (cols >= 0)
    if unknown == "fallback" or known.all():
        return Pairs(rows, cols, columns[0], columns[1], header, 0)
    rows, cols, columns = rows[known], cols[known], [c[known] for c in columns]
    return Pairs(rows, cols, columns[0], columns[1], header, int(known.size - known.sum()))

