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
import os
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

__all__ = ["main", "build_parser", "ESTIMATORS", "get_estimator_class"]

PROG = "linrfm"
DEFAULT_MAX_DENSE = 50_000_000

# name -> (module, class): the CLI never hard-codes an estimator elsewhere.
ESTIMATORS = {
    "completer": ("linrfm.completion", "LinRFMCompleter"),
    "regressor": ("linrfm.regression", "LinRFMRegressor"),
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
def _cmd_complete(args, console: _Console) -> int:
    timings = {}
    start = time.perf_counter()
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

    input_info = None
    if args.load_model is not None:
        payload = lio.load_model(args.load_model)
        if payload.get("kind") != "completer":
            raise CLIError(f"{args.load_model} holds a {payload.get('kind')} model, "
                           "not a completion model")
        est, row_ids, col_ids = payload["estimator"], payload["row_ids"], payload["col_ids"]
        input_info = payload.get("input")
        shape = tuple(est.completed_.shape)
    else:
        dtype = args.dtype if args.dtype in ("float32", "float64") else "float64"
        data = lio.read_observations(args.input, fmt=args.format, ids=args.ids,
                                     header=args.header, delimiter=args.delimiter,
                                     shape=args.shape, columns=args.columns, dtype=dtype)
        row_ids, col_ids, shape = data.row_ids, data.col_ids, data.observations.shape
        input_info = data.describe()
        timings["read"] = time.perf_counter() - start
    if out is not None and not predict_mode and shape[0] * shape[1] > args.max_dense:
        raise CLIError(f"the completed matrix would have {shape[0]} x {shape[1]} = "
                       f"{shape[0] * shape[1]:,} entries, more than --max-dense "
                       f"{args.max_dense:,}; ask for the entries you need with --predict "
                       "PAIRS.csv, or raise --max-dense")
    if predict_mode:
        pairs = lio.read_pairs(args.predict, row_ids, col_ids, unknown=args.unknown_ids)
        rows, cols, row_tok, col_tok = pairs[:4]
        if pairs.n_skipped:
            warnings.warn(f"{args.predict}: skipped {pairs.n_skipped} pair(s) whose row or "
                          "column id is not in the fitted matrix (--unknown-ids skip)",
                          UserWarning, stacklevel=1)

    if args.load_model is None:
        flags = {"power": args.power, "reg": args.reg, "side": args.side,
                 "max_iter": args.max_iter, "tol": args.tol, "rank": args.rank,
                 "validation_fraction": args.validation_fraction, "device": args.device,
                 "dtype": args.dtype, "random_state": args.seed}
        est = _build_estimator("completer", args, flags, console)
        d1, d2 = shape
        obs = data.observations
        t0 = time.perf_counter()
        est.fit((obs.rows, obs.cols, obs.values), shape=shape)
        timings["fit"] = time.perf_counter() - t0
        _emit_history(console, est)
        console.info(f"completed a {d1} x {d2} matrix from {obs.nnz:,} observed entries "
                     f"({100 * obs.nnz / (d1 * d2):.2f} %): {est.n_iter_} iterations, "
                     f"{timings['fit']:.2f} s, stop: {est.stop_reason_}"
                     + (f", validation error {est.validation_error_:.3g}"
                        if getattr(est, "validation_error_", None) is not None else ""))

    outputs = {}
    t0 = time.perf_counter()
    if predict_mode:
        values = est.predict(rows, cols)
        written = lio.write_predictions(out, row_tok, col_tok, values)
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
                    col_ids=col_ids, input=input_info)
        outputs["model"] = args.save_model
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    if args.report is not None:
        outputs["report"] = args.report
        lio.write_json(args.report, _report("complete", args, est, input_info, timings,
                                            outputs))
    for what, path in outputs.items():
        if path != "-":
            console.info(f"wrote {what}: {path}")
    console.event("done", outputs=outputs, timings=timings,
                  n_iter=getattr(est, "n_iter_", None),
                  stop_reason=getattr(est, "stop_reason_", None))
    return 0


def _report(command: str, args, est, input_info, timings, outputs, extra=None) -> dict:
    result = {}
    for attr in ("n_iter_", "stop_reason_", "reg_", "validation_error_", "side_",
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


def _cmd_regress(args, console: _Console) -> int:
    try:
        import pandas as pd
    except ImportError:
        raise CLIError("regress reads tables with pandas: pip install 'linrfm[data]'") from None
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_score

    start = time.perf_counter()
    path = Path(args.data)
    if not path.is_file():
        raise lio.ReadError(f"cannot read {path}: no such file")
    for p, what in ((args.report, "report"), (args.save_model, "model")):
        if p is not None:
            lio.check_output_path(p, what)
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
    cv_scores = None
    if args.cv:
        quiet = clone(est).set_params(**({"verbose": 0} if "verbose" in est.get_params()
                                         else {}))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cv_scores = cross_val_score(
                quiet, X, y, scoring="r2",
                cv=KFold(n_splits=args.cv, shuffle=True, random_state=est.random_state))
        timings["cv"] = time.perf_counter() - t0

    width = max(len("feature"), *(len(f) for f in features))
    lines = [f"{'feature':<{width}}  {'coefficient':>14}  selected"]
    for name, c, s in zip(features, coef, mask):
        lines.append(f"{name:<{width}}  {c:>14.6g}  {'*' if s else ''}")
    intercept = float(np.ravel(getattr(est, "intercept_", 0.0))[0])
    lines.append("")
    lines.append(f"intercept: {intercept:.6g}")
    chosen = [f for f, s in zip(features, mask) if s]
    lines.append(f"selected features ({len(chosen)} of {len(features)}): "
                 f"{', '.join(chosen) if chosen else '(none)'}")
    lines.append(f"iterations: {est.n_iter_}")
    if cv_scores is not None:
        lines.append(f"{args.cv}-fold CV R^2: {cv_scores.mean():.4f} +/- {cv_scores.std():.4f}")
    print("\n".join(lines), flush=True)

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


def _blas_limit(n: int | None):
    """Context limiting BLAS threads to ``n`` (no-op for None)."""
    from ._provenance import limit_blas_threads

    return limit_blas_threads(n)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``linrfm`` command."""
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

    parser = _Parser(prog=PROG, description="Linear Recursive Feature Machines: matrix "
                     "completion and sparse regression (lin-RFM = IRLS-p, p = 2 - 4 power).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # complete ---------------------------------------------------------------
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
    p.add_argument("--unknown-ids", choices=("error", "skip"), default="error",
                   help="pairs whose ids are not in the fitted matrix: error (default) or "
                        "skip them with a warning")
    p.add_argument("--max-dense", type=_positive_int, default=DEFAULT_MAX_DENSE, metavar="N",
                   help=f"refuse a dense output with more than N entries "
                        f"(default {DEFAULT_MAX_DENSE:,})")
    io_group = p.add_argument_group("input parsing")
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
    est = p.add_argument_group("estimator (LinRFMCompleter parameters)")
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
    files = p.add_argument_group("model and report")
    files.add_argument("--save-model", metavar="PATH", help="save the fitted model and "
                       "the id maps (linrfm model format, no pickle; docs/persistence.md)")
    files.add_argument("--load-model", metavar="PATH", help="use a saved model instead of "
                       "fitting (checked: version, checksum; never unpickled)")
    files.add_argument("--report", metavar="PATH", help="JSON report: settings, history, "
                       "timings, validation error, versions")
    p.set_defaults(func=_cmd_complete)

    # regress ----------------------------------------------------------------
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

    # experiment ---------------------------------------------------------------
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

    # demo -------------------------------------------------------------------------
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

    # info -------------------------------------------------------------------------
    p = sub.add_parser("info", help="versions, BLAS, torch/CUDA and Dask availability")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info, quiet=False, verbose=0)
    return parser


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
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = console.warning
        try:
            blas = None if args.command == "demo" else getattr(args, "blas_threads", None)
            with _blas_limit(blas), _terminate_as_exit():
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
