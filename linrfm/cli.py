"""The ``linrfm`` command: a thin argparse layer over the estimators.

Subcommands: ``complete`` (matrix completion from a file), ``regress``
(sparse linear regression on a CSV table), ``experiment`` (reproduce a claim
of the paper), ``demo`` (the main job on built-in data) and ``info``
(versions and hardware). Reading and writing live in :mod:`linrfm.io`, the
demo in :mod:`linrfm.demo`, the mathematics in the estimators.

Errors in the input, the options or the parameters print one line
``linrfm: error: ...`` on stderr and exit with status 2; no output file is
left behind (every file is written under a temporary name and moved into
place). Set ``LINRFM_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from . import io as lio
from ._provenance import environment_info, package_versions
from .backends._threads import limit_blas

__all__ = ["main", "build_parser", "ESTIMATORS", "get_estimator_class"]

PROG = "linrfm"
DEFAULT_MAX_DENSE = 50_000_000

# name -> (module, class): the CLI never hard-codes an estimator elsewhere.
ESTIMATORS = {
    "completer": ("linrfm.problems.completion", "LinRFMCompleter"),
    "regressor": ("linrfm.problems.regression", "LinRFMRegressor"),
}


def get_estimator_class(name: str):
    """The estimator class registered under ``name`` in :data:`ESTIMATORS`."""
    module, cls = ESTIMATORS[name]
    return getattr(importlib.import_module(module), cls)


class CLIError(Exception):
    """A usage error reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- output helpers
class _Console:
    """Where messages go: results on stdout, everything else on stderr."""

    def __init__(self, quiet: bool = False, json_mode: bool = False):
        self.quiet = quiet
        self.json_mode = json_mode

    def info(self, message: str) -> None:
        if self.json_mode:
            self.event("info", message=message)
        elif not self.quiet:
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    def event(self, kind: str, **fields) -> None:
        if self.json_mode:
            line = json.dumps(lio.to_jsonable({"event": kind, **fields}))
            print(line, file=sys.stderr, flush=True)

    def warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if self.json_mode:
            self.event("warning", category=category.__name__, message=text)
        else:
            print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)


class _WarningHandler(logging.Handler):
    """Print the warnings that logging captured as ``linrfm: warning: ...`` lines."""

    _FORMAT = re.compile(r"^.*?:\d+: (\w+): (.*)$")

    def __init__(self, console):
        super().__init__()
        self.console = console

    def emit(self, record) -> None:
        first = str(record.args[0] if record.args else record.msg).splitlines()[0]
        match = self._FORMAT.match(first)
        category, text = (match.group(1), match.group(2)) if match else ("Warning", first)
        self.console.warning(text, type(category, (Warning,), {}), "", 0)


@contextlib.contextmanager
def _warnings_to(console):
    """Route warnings to the console through logging's documented capture
    (``logging.captureWarnings``), instead of replacing ``warnings.showwarning``."""
    logger = logging.getLogger("py.warnings")
    handler, propagate = _WarningHandler(console), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
        logger.propagate = propagate


def _verbose_level(args) -> int:
    if args.quiet or args.json:
        return 0
    if args.verbose:
        return int(args.verbose)
    return 1 if sys.stderr.isatty() else 0


# --------------------------------------------------------------------------- argument types
def _reg_type(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid reg value {text!r} (a number or 'auto')")


def _shape_type(text: str):
    parts = text.replace("x", ",").split(",")
    try:
        d1, d2 = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r} (expected D1,D2)")
    if d1 < 1 or d2 < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r} (positive sizes)")
    return d1, d2


def _delimiter_type(text: str):
    names = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": "whitespace",
             "whitespace": "whitespace"}
    if text in names:
        return names[text]
    if len(text) == 1:
        return text
    raise argparse.ArgumentTypeError(f"invalid delimiter {text!r}")


def _columns_type(text: str):
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"invalid columns {text!r} (expected ROW,COL,VALUE)")
    return parts


def _positive_int(text: str):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _read_params(text: str | None) -> dict:
    """``--params``: a JSON object, inline or in a file (parsed by json, never eval)."""
    if text is None:
        return {}
    source = "--params"
    if not text.lstrip().startswith("{") and os.path.isfile(text):
        source = text
        with open(text, encoding="utf-8") as handle:
            text = handle.read()
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno})") from None
    if not isinstance(params, dict):
        raise CLIError(f"{source}: expected a JSON object of estimator parameters")
    return params


def _build_estimator(name: str, args, flag_params: dict, console: _Console):
    """Instantiate ``ESTIMATORS[name]`` from --params overridden by explicit flags."""
    cls = get_estimator_class(name)
    params = _read_params(getattr(args, "params", None))
    params.update({k: v for k, v in flag_params.items() if v is not None})
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise CLIError(f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                       f"valid: {', '.join(sorted(valid))}")
    if "random_state" in valid and params.get("random_state") is None:
        params["random_state"] = 0
    if "verbose" in valid and "verbose" not in params:
        params["verbose"] = _verbose_level(args)
    if console.json_mode and "callback" in valid and "callback" not in params:
        params["callback"] = lambda it, record: console.event("iteration", **record)
    return cls(**params)


def _emit_history(console: _Console, est) -> None:
    """--json without a live callback: one line per recorded iteration after the fit."""
    if not console.json_mode or "callback" in est.get_params():
        return
    history = getattr(est, "history_", None) or {}
    n = max((len(v) for v in history.values()), default=0)
    for k in range(n):
        console.event("iteration", **{key: col[k] for key, col in history.items()
                                      if k < len(col)})


def _save_model(path, est, **extra) -> None:
    if est.get_params().get("callback") is not None:
        est.set_params(callback=None)  # the --json printer is code: not saved
    lio.save_model(path, est, **extra)


# --------------------------------------------------------------------------- complete
def _complete_output(args):
    """Check the INPUT / --load-model / output options; return (OUTPUT, predict mode)."""
    if args.input is None and args.load_model is None:
        raise CLIError("give an INPUT file to fit, or --load-model MODEL")
    if args.input is not None and args.load_model is not None:
        raise CLIError("give either INPUT (fit) or --load-model (no refit), not both")
    predict_mode = args.predict is not None
    out = args.output
    if out is None and predict_mode:
        out = "-"
    if out is None and not (args.save_model or args.report):
        raise CLIError("nothing to write: give -o OUTPUT, --predict PAIRS, --save-model or "
                       "--report")
    if out not in (None, "-"):
        lio.check_output_path(out)
        if not predict_mode:
            lio.dense_format(out)
        elif Path(out).suffix.lower() not in (".csv", ".tsv", ".txt"):
            raise CLIError(f"predictions are written as CSV: use an OUTPUT ending in .csv "
                           f"or .tsv, got {out}")
    for path, what in ((args.save_model, "model"), (args.report, "report")):
        if path is not None:
            lio.check_output_path(path, what)
    if args.load_model is not None:
        for flag in ("power", "reg", "side", "max_iter", "tol", "rank", "validation_fraction",
                     "device", "dtype", "seed", "params", "save_model"):
            if getattr(args, flag) is not None:
                raise CLIError(f"--{flag.replace('_', '-')} has no effect with --load-model "
                               "(the model is not refitted)")
    return out, predict_mode


def _fallback_means(obs) -> dict:
    """Row, column and global means of the observed values: what the estimators
    predict for a row or column they never saw (an unknown id in --predict)."""
    from .problems.completion import _means

    row, col, glob = _means(obs)
    return {"row_means": row, "col_means": col, "global_mean": glob}


def _load_completer(args):
    """``--load-model``: (estimator, row ids, column ids, input info, fallback means)."""
    payload = lio.load_model(args.load_model)
    if payload.get("kind") != "completer":
        raise CLIError(f"{args.load_model} holds a {payload.get('kind')} model, "
                       "not a completion model")
    est = payload["estimator"]
    means = payload.get("fallback")
    if means is None:  # a model saved before the means were stored
        Z = np.asarray(est.completed_, dtype=np.float64)
        means = {"row_means": Z.mean(axis=1), "col_means": Z.mean(axis=0),
                 "global_mean": float(Z.mean())}
    return est, payload["row_ids"], payload["col_ids"], payload.get("input"), means


def _predict_pairs(est, pairs, means):
    """Predictions for ``pairs``; an unknown id (index -1) gets the fallback: the
    column mean for an unknown row, the row mean for an unknown column, the
    global mean for both (as the estimator fills rows/columns it never saw)."""
    rows, cols = pairs.rows, pairs.cols
    known = (rows >= 0) & (cols >= 0)
    values = np.full(rows.shape, means["global_mean"], dtype=np.float64)
    values[known] = est.predict(rows[known], cols[known])
    for mask, idx, table in (((rows < 0) & (cols >= 0), cols, means["col_means"]),
                             ((rows >= 0) & (cols < 0), rows, means["row_means"])):
        fill = np.asarray(table, dtype=np.float64)[idx[mask]]
        values[mask] = np.where(np.isnan(fill), means["global_mean"], fill)
    return values


def _read_prediction_pairs(args, row_ids, col_ids, console):
    pairs = lio.read_pairs(args.predict, row_ids, col_ids, unknown=args.unknown_ids)
    if pairs.n_skipped:
        warnings.warn(f"{args.predict}: skipped {pairs.n_skipped} pair(s) whose row or "
                      "column id is not in the fitted matrix (--unknown-ids skip)",
                      UserWarning, stacklevel=1)
    unknown_rows = int(np.sum(pairs.rows < 0))
    unknown_cols = int(np.sum(pairs.cols < 0))
    if unknown_rows or unknown_cols:
        n = int(np.sum((pairs.rows < 0) | (pairs.cols < 0)))
        console.info(f"{args.predict}: {n} of {pairs.rows.size} pair(s) have an id the "
                     f"fitted matrix never saw ({unknown_rows} unknown row id(s), "
                     f"{unknown_cols} unknown column id(s)); they get the fallback: the "
                     "column / row / global mean of the observed entries (--unknown-ids "
                     "fallback; 'error' or 'skip' to change)")
    return pairs


def _heldout_metrics(est, obs) -> dict | None:
    """RMSE and MAE on the entries the estimator held out, in the data's units.

    Uses ``validation_rmse_`` / ``validation_mae_`` when the estimator has
    them; otherwise the RMSE is estimated from the relative
    ``validation_error_`` times the root mean square of the observed values
    (the held-out entries are a random sample of them) and the MAE is unknown.
    ``mean_rmse`` is the RMSE of predicting the mean, estimated the same way.
    """
    values = obs.values.astype(np.float64)
    rmse = getattr(est, "validation_rmse_", None)
    mae = getattr(est, "validation_mae_", None)
    exact = rmse is not None
    if rmse is None:
        rel = getattr(est, "validation_error_", None)
        if rel is None:
            return None
        rmse = float(rel) * float(np.sqrt(np.mean(values ** 2)))
    return {"rmse": float(rmse), "mae": None if mae is None else float(mae), "exact": exact,
            "mean_rmse": float(np.std(values))}


def _describe_fit(est, obs, timings, console) -> dict | None:
    """One line on the fit and the held-out errors; warn when they are worse
    than predicting the mean, or when every observed value is the same."""
    d1, d2 = obs.shape
    metrics = _heldout_metrics(est, obs)
    text = ""
    if metrics is not None:
        approx = "" if metrics["exact"] else "~"
        text = f", held-out RMSE {approx}{metrics['rmse']:.4g}"
        if metrics["mae"] is not None:
            text += f", MAE {metrics['mae']:.4g}"
        text += f" (predicting the mean: ~{metrics['mean_rmse']:.4g})"
    console.info(f"completed a {d1} x {d2} matrix from {obs.nnz:,} observed entries "
                 f"({100 * obs.nnz / (d1 * d2):.2f} %): {est.n_iter_} iterations, "
                 f"{timings['fit']:.2f} s, stop: {est.stop_reason_}{text}")
    if metrics is not None and metrics["rmse"] > metrics["mean_rmse"]:
        warnings.warn(f"the completion is worse on the held-out entries than predicting the "
                      f"mean (RMSE {metrics['rmse']:.4g} vs {metrics['mean_rmse']:.4g}); "
                      "try a larger --reg or a larger --validation-fraction",
                      UserWarning, stacklevel=1)
    if np.ptp(obs.values) == 0:
        warnings.warn(f"every observed value equals {obs.values[0]:.6g}: these ratings "
                      "carry nothing but that constant", UserWarning, stacklevel=1)
    return metrics


def _fit_completer(args, data, console, timings) -> object:
    flags = {"power": args.power, "reg": args.reg, "side": args.side,
             "max_iter": args.max_iter, "tol": args.tol, "rank": args.rank,
             "validation_fraction": args.validation_fraction, "device": args.device,
             "dtype": args.dtype, "random_state": args.seed}
    est = _build_estimator("completer", args, flags, console)
    obs = data.observations
    t0 = time.perf_counter()
    est.fit((obs.rows, obs.cols, obs.values), shape=obs.shape)
    timings["fit"] = time.perf_counter() - t0
    _emit_history(console, est)
    return est


def _write_completion(args, console, est, out, values, pairs, source) -> dict:
    """Write predictions / the dense matrix / the model; return {what: path}."""
    outputs = {}
    row_ids, col_ids = source["row_ids"], source["col_ids"]
    if pairs is not None:
        written = lio.write_predictions(out, pairs.row_tokens, pairs.col_tokens, values)
        outputs["predictions"] = str(written) if written else "-"
    elif out == "-":
        np.savetxt(sys.stdout, est.completed_, delimiter=",", fmt="%.12g")
        outputs["completed"] = "-"
    elif out is not None:
        outputs["completed"] = str(lio.write_dense(out, est.completed_, row_ids, col_ids))
        if (lio.dense_format(out) == "npy"
                and not (row_ids.is_identity and col_ids.is_identity)):
            console.info(f"{out}: rows and columns are in sorted id order; write .npz or .csv "
                         "to keep the ids")
    if args.save_model is not None:
        _save_model(args.save_model, est, kind="completer", row_ids=row_ids,
                    col_ids=col_ids, input=source["input"], fallback=source["means"])
        outputs["model"] = args.save_model
    return outputs


def _complete_source(args, console, timings, start) -> dict:
    """Load the model, or read INPUT and fit; the ids, input summary, fallback means."""
    if args.load_model is not None:
        est, row_ids, col_ids, info, means = _load_completer(args)
        return dict(est=est, row_ids=row_ids, col_ids=col_ids, input=info, means=means,
                    data=None, shape=tuple(est.completed_.shape))
    dtype = args.dtype if args.dtype in ("float32", "float64") else "float64"
    data = lio.read_observations(args.input, fmt=args.format, ids=args.ids,
                                 header=args.header, delimiter=args.delimiter,
                                 shape=args.shape, columns=args.columns, dtype=dtype)
    timings["read"] = time.perf_counter() - start
    return dict(est=None, row_ids=data.row_ids, col_ids=data.col_ids, input=data.describe(),
                means=_fallback_means(data.observations), data=data,
                shape=data.observations.shape)


def _cmd_complete(args, console: _Console) -> int:
    timings = {}
    start = time.perf_counter()
    out, predict_mode = _complete_output(args)
    source = _complete_source(args, console, timings, start)
    d1, d2 = source["shape"]
    if out is not None and not predict_mode and d1 * d2 > args.max_dense:
        raise CLIError(f"the completed matrix would have {d1} x {d2} = {d1 * d2:,} entries, "
                       f"more than --max-dense {args.max_dense:,}; ask for the entries you "
                       "need with --predict PAIRS.csv, or raise --max-dense")
    pairs = (_read_prediction_pairs(args, source["row_ids"], source["col_ids"], console)
             if predict_mode else None)
    est, metrics = source["est"], None
    if est is None:
        est = _fit_completer(args, source["data"], console, timings)
        metrics = _describe_fit(est, source["data"].observations, timings, console)
    t0 = time.perf_counter()
    values = None if pairs is None else _predict_pairs(est, pairs, source["means"])
    outputs = _write_completion(args, console, est, out, values, pairs, source)
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    if args.report is not None:
        outputs["report"] = args.report
        extra = {"heldout": metrics}
        if pairs is not None:
            extra["n_unknown_pairs"] = int(np.sum((pairs.rows < 0) | (pairs.cols < 0)))
        lio.write_json(args.report, _report("complete", args, est, source["input"], timings,
                                            outputs, extra))
    for what, path in outputs.items():
        if path != "-":
            console.info(f"wrote {what}: {path}")
    console.event("done", outputs=outputs, timings=timings,
                  n_iter=getattr(est, "n_iter_", None),
                  stop_reason=getattr(est, "stop_reason_", None))
    return 0


def _report(command: str, args, est, input_info, timings, outputs, extra=None) -> dict:
    result = {}
    for attr in ("n_iter_", "stop_reason_", "reg_", "validation_error_", "validation_rmse_",
                 "validation_mae_", "side_",
                 "n_unobserved_rows_", "n_unobserved_cols_", "intercept_"):
        if hasattr(est, attr):
            result[attr.rstrip("_")] = getattr(est, attr)
    return {
        "command": command,
        "argv": getattr(args, "argv", None),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": input_info,
        "estimator": type(est).__name__,
        "params": {k: v for k, v in est.get_params().items() if k != "callback"},
        "result": result,
        **(extra or {}),
        "history": getattr(est, "history_", None),
        "timings_s": timings,
        "outputs": outputs,
        "versions": package_versions(),
    }


# --------------------------------------------------------------------------- regress
def _line_of(frame_index: int) -> int:
    return frame_index + 2  # one header line, 1-based numbering


def _read_regression_table(args, path):
    """The numeric table of ``regress``: (X, y, feature names), checked line by line."""
    try:
        import pandas as pd
    except ImportError:
        raise CLIError("regress reads tables with pandas: pip install 'linrfm[data]'") from None
    try:
        frame = pd.read_csv(path, sep=args.delimiter or None, engine="python",
                            skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise lio.ReadError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise lio.ReadError(f"{path}: {' '.join(str(exc).split())}") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if args.target not in columns:
        raise CLIError(f"{path}: no column {args.target!r}; columns are {', '.join(columns)}")
    features = args.features.split(",") if args.features else [
        c for c in columns if c != args.target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise CLIError(f"{path}: no column(s) {', '.join(missing)}")
    if not features:
        raise CLIError(f"{path}: no feature columns besides the target")
    for name in [*features, args.target]:
        col = frame[name]
        numeric = pd.to_numeric(col, errors="coerce")
        bad = numeric.isna() & col.notna()
        if bad.any():
            k = int(np.flatnonzero(bad.to_numpy())[0])
            raise lio.ReadError(f"{path}: line {_line_of(k)}: column {name!r} has the "
                                f"non-numeric value {str(col.iloc[k])!r}")
        if numeric.isna().any():
            k = int(np.flatnonzero(numeric.isna().to_numpy())[0])
            raise lio.ReadError(f"{path}: line {_line_of(k)}: column {name!r} has a missing "
                                "value; drop or impute it first")
        frame[name] = numeric.astype(np.float64)
    X = frame[features].to_numpy(dtype=np.float64)
    y = frame[args.target].to_numpy(dtype=np.float64)
    return X, y, features


def _cv_r2(args, est, X, y, timings):
    """K-fold cross-validated R^2 of a quiet clone of ``est`` (None with --cv 0)."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_score

    if not args.cv:
        return None
    quiet = clone(est).set_params(**({"verbose": 0} if "verbose" in est.get_params() else {}))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(
            quiet, X, y, scoring="r2",
            cv=KFold(n_splits=args.cv, shuffle=True, random_state=est.random_state))
    timings["cv"] = time.perf_counter() - t0
    return scores


def _regression_summary(args, est, features, coef, mask, cv_scores) -> str:
    """The coefficient table, intercept, selected features and CV R^2."""
    width = max(len("feature"), *(len(f) for f in features))
    lines = [f"{'feature':<{width}}  {'coefficient':>14}  selected"]
    for name, c, s in zip(features, coef, mask):
        lines.append(f"{name:<{width}}  {c:>14.6g}  {'*' if s else ''}")
    intercept = float(np.ravel(getattr(est, "intercept_", 0.0))[0])
    chosen = [f for f, s in zip(features, mask) if s]
    lines += ["", f"intercept: {intercept:.6g}",
              f"selected features ({len(chosen)} of {len(features)}): "
              f"{', '.join(chosen) if chosen else '(none)'}",
              f"iterations: {est.n_iter_}"]
    if cv_scores is not None:
        lines.append(f"{args.cv}-fold CV R^2: {cv_scores.mean():.4f} +/- {cv_scores.std():.4f}")
    return "\n".join(lines)


def _cmd_regress(args, console: _Console) -> int:
    start = time.perf_counter()
    path = Path(args.data)
    if not path.is_file():
        raise lio.ReadError(f"cannot read {path}: no such file")
    for p, what in ((args.report, "report"), (args.save_model, "model")):
        if p is not None:
            lio.check_output_path(p, what)
    X, y, features = _read_regression_table(args, path)
    if args.cv and X.shape[0] < args.cv:
        raise CLIError(f"{args.cv}-fold cross-validation needs at least {args.cv} rows, "
                       f"got {X.shape[0]}; lower --cv (0 skips it)")
    flags = {"power": args.power, "reg": args.reg, "feature_matrix": args.feature_matrix,
             "fit_intercept": False if args.no_intercept else None,
             "max_iter": args.max_iter, "tol": args.tol, "random_state": args.seed}
    est = _build_estimator("regressor", args, flags, console)
    t0 = time.perf_counter()
    est.fit(X, y)
    timings = {"fit": time.perf_counter() - t0}
    _emit_history(console, est)
    coef = np.ravel(np.asarray(est.coef_, dtype=np.float64))
    support = np.asarray(getattr(est, "support_", np.flatnonzero(coef)))
    mask = support if support.dtype == bool else np.isin(np.arange(coef.size), support)
    cv_scores = _cv_r2(args, est, X, y, timings)
    print(_regression_summary(args, est, features, coef, mask, cv_scores), flush=True)
    intercept = float(np.ravel(getattr(est, "intercept_", 0.0))[0])
    chosen = [f for f, s in zip(features, mask) if s]
    outputs = {}
    if args.save_model is not None:
        _save_model(args.save_model, est, kind="regressor", features=features,
                    target=args.target)
        outputs["model"] = args.save_model
    timings["total"] = time.perf_counter() - start
    if args.report is not None:
        outputs["report"] = args.report
        extra = {"coefficients": dict(zip(features, coef)), "selected": chosen,
                 "cv_r2": None if cv_scores is None else list(cv_scores)}
        lio.write_json(args.report, _report(
            "regress", args, est, {"path": str(path), "shape": list(X.shape),
                                   "target": args.target}, timings, outputs, extra))
    console.event("done", coefficients=dict(zip(features, coef)), selected=chosen,
                  intercept=intercept,
                  cv_r2=None if cv_scores is None else float(cv_scores.mean()))
    return 0


# --------------------------------------------------------------------------- experiment
def _cmd_experiment(args, console: _Console) -> int:
    from . import experiments

    try:
        module = experiments.get_experiment(args.name)
    except ModuleNotFoundError as exc:
        raise CLIError(f"experiment {args.name!r} is not available in this install "
                       f"({exc})") from None
    out_dir = Path(args.out) if args.out else Path("results") / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    console.info(f"running experiment {args.name!r}{' (quick)' if args.quick else ''} "
                 f"into {out_dir}")
    t0 = time.perf_counter()
    csv_path = Path(module.run(out_dir, quick=args.quick, seed=args.seed,
                               verbose=_verbose_level(args)))
    console.info(f"wrote {csv_path} ({time.perf_counter() - t0:.1f} s)")
    png_path = csv_path.with_suffix(".png")
    try:
        module.plot(csv_path, png_path)
    except ImportError as exc:
        console.info(f"no plot ({exc}); install matplotlib: pip install 'linrfm[plot]'")
        png_path = None
    else:
        console.info(f"wrote {png_path}")
    print(module.summarize(csv_path), flush=True)
    console.event("done", csv=csv_path, png=png_path)
    return 0


# --------------------------------------------------------------------------- info
def system_info() -> dict:
    """Versions, BLAS, torch/CUDA and Dask availability (what ``linrfm info`` prints)."""
    info = environment_info()
    v = info["versions"]
    info["dask"] = {"version": v["dask"], "distributed": v["distributed"]} if v["dask"] else None
    return info


def _cmd_info(args, console: _Console) -> int:
    info = system_info()
    if args.json:
        print(json.dumps(lio.to_jsonable(info), indent=2), flush=True)
        return 0
    lines = [f"linrfm {__version__}", f"platform: {info['platform']}",
             f"cpus: {info['cpu_count']}", "versions:"]
    lines += [f"  {k}: {v if v is not None else 'not installed'}"
              for k, v in info["versions"].items()]
    blas = info["blas"]
    if isinstance(blas, list):
        lines += ["blas:"] + [f"  {b['internal_api']} {b['version']} ({b['num_threads']} "
                              f"threads, {b.get('threading_layer')}, {b.get('architecture')})"
                              for b in blas] if blas else ["blas: none found"]
    else:
        lines.append(f"blas: {blas}")
    torch_info = info["torch"]
    if torch_info is None:
        lines.append("torch: not installed (device='torch'/'cuda' unavailable; "
                     "pip install 'linrfm[torch]')")
    else:
        cuda = (f"yes, CUDA {torch_info['cuda_version']}: {', '.join(torch_info['devices'])}"
                if torch_info["cuda_available"] else "no")
        lines.append(f"torch: {torch_info['version']} (CUDA available: {cuda})")
    dask_info = info["dask"]
    lines.append("dask: not installed (device='dask' unavailable; pip install 'linrfm[dask]')"
                 if dask_info is None else
                 f"dask: {dask_info['version']} (distributed "
                 f"{dask_info['distributed'] or 'not installed'})")
    print("\n".join(lines), flush=True)
    return 0


# --------------------------------------------------------------------------- demo
def _cmd_demo(args, console: _Console) -> int:
    from . import demo

    demo.run_demo(out_dir=args.out, quick=args.quick, seed=args.seed,
                  verbose=_verbose_level(args), log=console.info,
                  blas_threads=args.blas_threads or demo.DEMO_BLAS_THREADS)
    return 0


# --------------------------------------------------------------------------- parser
def _common_parser() -> argparse.ArgumentParser:
    """Options shared by the subcommands (messages, BLAS threads)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("messages")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar or messages (results and warnings only)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="progress bar even when stderr is not a terminal; -vv: one line "
                            "per iteration")
    group.add_argument("--json", action="store_true",
                       help="machine-readable JSON lines on stderr (one per iteration)")
    common.add_argument("--blas-threads", type=_positive_int, metavar="N",
                        help="limit BLAS threads (threadpoolctl); many small solves run "
                             "faster with 1 (default: demo 1, others unchanged)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``linrfm`` command."""
    common = _common_parser()
    parser = _Parser(prog=PROG, description="Linear Recursive Feature Machines: matrix "
                     "completion and sparse regression (lin-RFM = IRLS-p, p = 2 - 4 power).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_complete_parser, _add_regress_parser, _add_experiment_parser,
                _add_demo_parser):
        add(sub, common)
    p = sub.add_parser("info", help="versions, BLAS, torch/CUDA and Dask availability")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info, quiet=False, verbose=0)
    return parser


def _add_complete_parser(sub, common) -> None:
    p = sub.add_parser("complete", parents=[common], help="complete a partially observed "
                       "matrix read from a file",
                       description="Fit LinRFMCompleter on the observed entries of INPUT and "
                       "write the completed matrix (-o) or predictions for given pairs "
                       "(--predict). INPUT: CSV/TSV triplets row,col,value (ids may be "
                       "strings), MatrixMarket .mtx, .npy/.npz with NaN for missing, or "
                       ".parquet.")
    p.add_argument("input", nargs="?", metavar="INPUT", help="observed entries")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="dense completed matrix (.npy, .npz, .csv, .tsv), or the "
                        "predictions CSV with --predict ('-': stdout)")
    p.add_argument("--predict", metavar="PAIRS",
                   help="CSV of row,col pairs (ids as in INPUT): write row,col,prediction "
                        "instead of the dense matrix")
    p.add_argument("--unknown-ids", choices=lio.UNKNOWN_IDS, default="fallback",
                   help="pairs whose row or column id is not in the fitted matrix: "
                        "fallback (default: predict the column / row / global mean of the "
                        "observed entries and say how many), error, or skip them")
    p.add_argument("--max-dense", type=_positive_int, default=DEFAULT_MAX_DENSE, metavar="N",
                   help=f"refuse a dense output with more than N entries "
                        f"(default {DEFAULT_MAX_DENSE:,})")
    _add_input_options(p.add_argument_group("input parsing"))
    _add_completer_options(p.add_argument_group("estimator (LinRFMCompleter parameters)"))
    files = p.add_argument_group("model and report")
    files.add_argument("--save-model", metavar="PATH", help="save the fitted model and "
                       "the id maps (linrfm model format, no pickle; docs/persistence.md)")
    files.add_argument("--load-model", metavar="PATH", help="use a saved model instead of "
                       "fitting (checked: version, checksum; never unpickled)")
    files.add_argument("--report", metavar="PATH", help="JSON report: settings, history, "
                       "timings, held-out errors, versions")
    p.set_defaults(func=_cmd_complete)


def _add_input_options(io_group) -> None:
    io_group.add_argument("--format", choices=sorted(set(lio.INPUT_FORMATS.values())),
                          help="input format (default: from the extension)")
    io_group.add_argument("--columns", type=_columns_type, metavar="ROW,COL,VALUE",
                          help="CSV/Parquet with more than three fields: the row, column and "
                               "value fields, by header name or 0-based position")
    io_group.add_argument("--ids", choices=("label", "index"), default="label",
                          help="label: each distinct id is a row/column, sorted (default); "
                               "index: integer ids are 0-based positions")
    io_group.add_argument("--shape", type=_shape_type, metavar="D1,D2",
                          help="matrix shape with --ids index")
    io_group.add_argument("--delimiter", type=_delimiter_type,
                          help="field separator of CSV files (default: detected; "
                               "'tab', 'whitespace')")
    io_group.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                          help="whether the first CSV line is a header (default: detected)")


def _add_completer_options(est) -> None:
    est.add_argument("--power", type=float, help="lin-RFM power (default 0.5: IRLS-0, "
                     "SVD-free)")
    est.add_argument("--reg", type=_reg_type, help="'auto' (default) or a fixed smoothing")
    est.add_argument("--side", help="auto, columns, rows or alternate")
    est.add_argument("--max-iter", type=int, metavar="N")
    est.add_argument("--tol", type=float, metavar="TOL")
    est.add_argument("--rank", type=int, metavar="R", help="optional rank hint")
    est.add_argument("--validation-fraction", type=float, metavar="F",
                     help="hold out this fraction of the observed entries for early stopping")
    est.add_argument("--device", help="cpu, torch, cuda, cuda:N or dask")
    est.add_argument("--dtype", help="float64 (default) or float32")
    est.add_argument("--seed", type=int, help="random_state (default 0)")
    est.add_argument("--params", metavar="JSON",
                     help="estimator parameters as a JSON object or a .json file; explicit "
                          "options override it")


def _add_regress_parser(sub, common) -> None:
    p = sub.add_parser("regress", parents=[common], help="sparse linear regression on a CSV "
                       "table", description="Fit LinRFMRegressor to predict TARGET from the "
                       "other (numeric) columns of DATA; print the coefficients, the "
                       "selected features and the cross-validated R^2.")
    p.add_argument("data", metavar="DATA", help="CSV file with a header line")
    p.add_argument("--target", required=True, metavar="COLUMN", help="column to predict")
    p.add_argument("--features", metavar="A,B,...", help="feature columns (default: all "
                   "others)")
    p.add_argument("--delimiter", type=_delimiter_type, help="field separator (default: "
                   "detected)")
    p.add_argument("--power", type=float)
    p.add_argument("--reg", type=_reg_type)
    p.add_argument("--feature-matrix", help="diagonal (default) or full")
    p.add_argument("--no-intercept", action="store_true", help="fit_intercept=False")
    p.add_argument("--max-iter", type=int, metavar="N")
    p.add_argument("--tol", type=float, metavar="TOL")
    p.add_argument("--seed", type=int, help="random_state and CV folds (default 0)")
    p.add_argument("--cv", type=int, default=5, metavar="K",
                   help="K-fold cross-validated R^2 (default 5; 0 skips it)")
    p.add_argument("--params", metavar="JSON")
    p.add_argument("--save-model", metavar="PATH")
    p.add_argument("--report", metavar="PATH")
    p.set_defaults(func=_cmd_regress)


def _add_experiment_parser(sub, common) -> None:
    from .experiments import EXPERIMENTS

    p = sub.add_parser("experiment", parents=[common], help="reproduce a claim of the paper "
                       "(CSV, PNG, summary)",
                       description="Run an experiment, plot it and print its summary. "
                       f"Experiments: {', '.join(sorted(EXPERIMENTS))}.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--quick", action="store_true", help="small version (< 2 min)")
    p.add_argument("--out", metavar="DIR", help="output folder (default "
                   "results/NAME)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_experiment)


def _add_demo_parser(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="the main job on built-in data "
                       "(synthetic completion + image inpainting)",
                       description="Complete the paper's 500 x 500 rank-5 problem from "
                       "10 000 entries and inpaint a 512 x 512 photograph with 80 %% of its "
                       "pixels missing; print a table, write a PNG and a JSON report.")
    p.add_argument("--out", default="demo_output", metavar="DIR",
                   help="output folder (default demo_output)")
    p.add_argument("--quick", action="store_true", help="smaller problems (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM raises SystemExit(143) so that ``finally`` blocks run (atomic writes
    remove their temporary file) instead of the process dying mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv=None) -> int:
    """Run the ``linrfm`` command; return the exit status (0 ok, 2 error)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = bool(os.environ.get("LINRFM_DEBUG"))
    try:
        args = build_parser().parse_args(argv)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    args.argv = argv
    console = _Console(quiet=getattr(args, "quiet", False),
                       json_mode=getattr(args, "json", False) and args.command != "info")
    with warnings.catch_warnings(), _warnings_to(console):
        warnings.simplefilter("default")
        try:
            blas = None if args.command == "demo" else getattr(args, "blas_threads", None)
            with limit_blas(blas), _terminate_as_exit():
                return int(args.func(args, console) or 0)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except RuntimeError as exc:  # torch reports allocation failures as RuntimeError
            if debug or not any(k in str(exc).lower() for k in ("alloc", "out of memory")):
                raise
            print(f"{PROG}: error: out of memory ({' '.join(str(exc).split())[:300]}); "
                  "try --dtype float32 or a smaller input", file=sys.stderr)
            return 2
        except (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError) as exc:
            if debug:
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                message = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
            if isinstance(exc, MemoryError):
                message = f"out of memory ({message})"
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
