"""Read partially observed matrices from files and write results safely.

This is the file layer of the ``linrfm`` command; it is importable on its own.

Inputs (:func:`read_observations`), chosen by extension or ``fmt``:

* ``csv`` (``.csv``, ``.tsv``, ``.txt``, ``.dat``, ``.data``): one observed
  entry per line, ``row, column, value`` (MovieLens' tab-separated ``u.data``
  and ``::``-free ``.dat`` exports included; pick fields with ``columns``).
  The delimiter (comma, tab, semicolon, bar or whitespace) is detected, a header line is recognised by a non-numeric value
  field, blank lines and lines starting with ``#`` are skipped. Row and column
  ids may be any strings.
* ``mtx`` (``.mtx``, ``.mm``): MatrixMarket. Stored entries of a coordinate
  file are the observed ones (explicit zeros included); an array file is read
  as a dense matrix with NaN for missing entries.
* ``npy``: a 2-D array with NaN for missing entries.
* ``npz``: one 2-D array with NaN for missing entries, arrays ``rows``,
  ``cols``, ``values`` (and optionally ``shape``), or a
  :func:`scipy.sparse.save_npz` file.
* ``parquet`` (``.parquet``, ``.pq``): three columns row, column, value
  (needs ``pyarrow``).

Ids. With ``ids="label"`` (default) each distinct row id is one row of the
matrix, in sorted order (numeric order when every id is an integer), and
likewise for columns; :class:`IdMap` translates in both directions, so
outputs use the ids of the input. With ``ids="index"`` integer ids are used
as 0-based positions (gaps become rows without observations).

Writers go through :func:`atomic_write`: the file is written next to its
destination under a temporary name and moved into place with
:func:`os.replace`, so a failure never leaves a partial output behind.

Modules: :mod:`~linrfm.io.readers` (inputs and prediction pairs),
:mod:`~linrfm.io.ids` (id maps and the parsed input), :mod:`~linrfm.io.writers`
(atomic outputs, JSON, figures), :mod:`~linrfm.io.models` (the CLI's model files).
"""
from __future__ import annotations

from .ids import IdMap, InputData, ReadError
from .models import load_model, save_model
from .readers import (INPUT_FORMATS, UNKNOWN_IDS, Pairs, input_format, read_observations,
                      read_pairs, read_table)
from .writers import (DENSE_FORMATS, atomic_write, check_output_path, dense_format, save_figure,
                      to_jsonable, write_dense, write_json, write_predictions)

__all__ = [
    "ReadError", "IdMap", "InputData", "INPUT_FORMATS", "DENSE_FORMATS", "input_format",
    "read_observations", "read_pairs", "Pairs", "UNKNOWN_IDS", "read_table", "atomic_write",
    "check_output_path", "dense_format", "write_dense", "write_predictions", "write_json",
    "save_model", "load_model", "to_jsonable", "save_figure",
]
