"""The ``linrfm`` command. Most cases call ``linrfm.cli.main(argv)`` in-process;
a few run ``python -m linrfm`` to check the real entry point, exit codes and
stderr (each subprocess costs 1-2 s of imports, so they are few)."""
import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from linrfm import LinRFMCompleter, cli
from linrfm import io as lio
from linrfm.datasets import make_completion_problem, make_sparse_regression
from linrfm.exceptions import ConvergenceWarning

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run_main(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "linrfm", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, env=ENV, timeout=300)


def assert_one_error_line(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("linrfm: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def problem():
    """12 x 10 rank-2 matrix, 70 observed entries (seeded)."""
    return make_completion_problem(12, 10, 2, n_observed=70, random_state=0)


@pytest.fixture
def triplets_csv(tmp_path, problem):
    """The problem as a CSV with a header and string ids ``u<i>``, ``m<j>``."""
    obs = problem.observed
    lines = ["user,item,rating"] + [f"u{r},m{c},{float(v)!r}" for r, c, v in
                                     zip(obs.rows, obs.cols, obs.values)]
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def dense_npy(tmp_path, problem):
    path = tmp_path / "m.npy"
    np.save(path, problem.observed.to_dense())
    return path


def _fit_directly(problem, **params):
    obs = problem.observed
    est = LinRFMCompleter(random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # small max_iter on purpose
        return est.fit((obs.rows, obs.cols, obs.values), shape=obs.shape)


# --------------------------------------------------------------------------- complete
def test_complete_dense_equals_the_estimator(tmp_path, dense_npy, problem, capsys):
    out = tmp_path / "done.npy"
    code, stdout, err = run_main(["complete", dense_npy, "-o", out, "--max-iter", 40, "-q",
                                  "--blas-threads", 1], capsys)
    assert code == 0 and stdout == ""
    assert all(line.startswith("linrfm: warning: ") for line in err.splitlines())  # -q
    expected = _fit_directly(problem, max_iter=40).completed_
    np.testing.assert_array_equal(np.load(out), expected)


def test_complete_params_json_and_flag_override(tmp_path, dense_npy, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"max_iter": 3, "tol": 0, "power": 0.25}))
    report = tmp_path / "r.json"
    code, _, _ = run_main(["complete", dense_npy, "--params", params, "--max-iter", 2,
                           "--report", report, "-q"], capsys)
    assert code == 0
    rep = json.loads(report.read_text())
    assert rep["params"]["power"] == 0.25 and rep["params"]["max_iter"] == 2
    assert rep["result"]["n_iter"] == 2 and len(rep["history"]["iteration"]) == 2
    code, _, _ = run_main(["complete", dense_npy, "--params", '{"side": "columns"}',
                           "--max-iter", 2, "--report", report, "-q"], capsys)
    assert code == 0 and json.loads(report.read_text())["params"]["side"] == "columns"


def test_complete_predict_maps_string_ids(tmp_path, triplets_csv, problem, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item\nu3,m7\nu0,m0\nu11,m9\n")
    preds = tmp_path / "preds.csv"
    code, _, _ = run_main(["complete", triplets_csv, "--predict", pairs, "-o", preds,
                           "--max-iter", 40, "-q"], capsys)
    assert code == 0
    lines = preds.read_text().splitlines()
    assert lines[0] == "row,col,prediction"
    assert [tuple(line.split(",")[:2]) for line in lines[1:]] == [
        ("u3", "m7"), ("u0", "m0"), ("u11", "m9")]
    # The CLI's rows are in sorted-label order (u0, u1, u10, ...); lin-RFM is
    # permutation-equivariant, so predictions equal the direct fit's entries.
    est = _fit_directly(problem, max_iter=40)
    got = np.array([float(line.split(",")[2]) for line in lines[1:]])
    expected = est.completed_[[3, 0, 11], [7, 0, 9]]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Without -o the predictions go to stdout.
    code, stdout, _ = run_main(["complete", triplets_csv, "--predict", pairs, "--max-iter",
                                40, "-q"], capsys)
    assert code == 0 and stdout.splitlines() == lines
    # Unknown ids (issue 11): by default the fallback (here the mean of column m0's
    # observed entries) and a count on stderr; an error naming the line; or skipped.
    pairs.write_text("user,item\nu3,m7\nzoe,m0\nu11,m9\nu0,zz\n")
    code, stdout, err = run_main(["complete", triplets_csv, "--predict", pairs, "--max-iter",
                                  40], capsys)
    assert code == 0 and "2 of 4 pair(s) have an id the fitted matrix never saw" in err
    got = [line.split(",") for line in stdout.splitlines()[1:]]
    assert [g[:2] for g in got] == [["u3", "m7"], ["zoe", "m0"], ["u11", "m9"], ["u0", "zz"]]
    obs = problem.observed
    assert float(got[1][2]) == pytest.approx(obs.values[obs.cols == 0].mean(), rel=1e-12)
    assert float(got[3][2]) == pytest.approx(obs.values[obs.rows == 0].mean(), rel=1e-12)
    assert float(got[0][2]) == pytest.approx(expected[0], rel=1e-10)
    pairs.write_text("user,item\nu3,m7\nzoe,m0\nu11,m9\n")
    code, _, err = run_main(["complete", triplets_csv, "--predict", pairs, "-o", preds,
                             "--max-iter", 40, "--unknown-ids", "error"], capsys)
    assert code == 2
    assert_one_error_line(err, "line 3: row id 'zoe' is not among the ids")
    code, stdout, err = run_main(["complete", triplets_csv, "--predict", pairs, "--max-iter",
                                  40, "--unknown-ids", "skip"], capsys)
    assert code == 0 and stdout.splitlines() == [lines[0], lines[1], lines[3]]
    assert "linrfm: warning: " in err and "skipped 1 pair(s)" in err


def test_complete_json_log_lines(tmp_path, dense_npy, capsys):
    code, _, err = run_main(["complete", dense_npy, "-o", tmp_path / "z.npy", "--max-iter", 3,
                             "--tol", 0, "--json"], capsys)
    assert code == 0
    events = [json.loads(line) for line in err.strip().splitlines()]
    iterations = [e for e in events if e["event"] == "iteration"]
    assert [e["iteration"] for e in iterations] == [1, 2, 3]
    assert {"rel_change", "reg", "time"} <= set(iterations[0])
    assert events[-1]["event"] == "done" and events[-1]["n_iter"] == 3


def test_complete_warnings_are_one_line(tmp_path, capsys):
    path = tmp_path / "gap.csv"
    path.write_text("0,0,1\n0,1,2\n2,0,3\n2,1,4\n")  # row 1 empty with --ids index
    code, _, err = run_main(["complete", path, "--ids", "index", "-o", tmp_path / "z.csv",
                             "--max-iter", 5], capsys)
    assert code == 0
    warning = [line for line in err.splitlines() if "row(s)" in line]
    assert len(warning) == 1 and warning[0].startswith("linrfm: warning: 1 row(s) and 0 col")
    assert np.loadtxt(tmp_path / "z.csv", delimiter=",").shape == (3, 2)


@pytest.mark.parametrize("extra, fragments", [
    (["--power", "-1"], ["power"]),
    (["--side", "diagonal"], ["side"]),
    (["--validation-fraction", "2"], ["validation_fraction"]),
    (["--params", "__import__('os').system('echo hi')"], ["invalid JSON"]),
    (["--params", '{"alpha": 1}'], ["unknown parameter", "alpha"]),
    (["--params", "[1, 2]"], ["JSON object"]),
    (["--max-dense", "50"], ["--max-dense", "--predict"]),
    (["--power", "abc"], ["invalid float value"]),
    (["--bogus"], ["unrecognized arguments: --bogus"]),
    (["--blas-threads", "0"], ["--blas-threads", "must be >= 1"]),
    (["--load-model", "m.pkl"], ["not both"]),
])
def test_complete_errors_leave_no_output(tmp_path, dense_npy, capsys, extra, fragments):
    out = tmp_path / "out.npy"
    code, stdout, err = run_main(["complete", dense_npy, "-o", out, *extra], capsys)
    assert code == 2 and stdout == ""
    assert_one_error_line(err, *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]  # no temp file either


@pytest.mark.parametrize("argv, fragments", [
    (["complete", "{d}/none.csv", "-o", "{d}/o.npy"], ["no such file"]),
    (["complete", "{d}/m.npy", "-o", "{d}/o.xlsx"], ["unknown output format '.xlsx'"]),
    (["complete", "{d}/m.npy", "-o", "{d}/sub/o.npy"], ["does not exist"]),
    (["complete", "{d}/m.npy"], ["nothing to write"]),
    (["complete", "{d}/bad.csv", "-o", "{d}/o.npy"], ["bad.csv: line 3", "'oops'"]),
    (["complete", "{d}/m.weird", "-o", "{d}/o.npy"], ["unknown input format '.weird'"]),
    (["complete", "{d}/m.npy", "--predict", "{d}/pairs.csv", "-o", "{d}/o.csv",
      "--unknown-ids", "error"], ["pairs.csv: line 2: column id '99'"]),
    (["complete", "--load-model", "{d}/m.npy", "--predict", "{d}/pairs.csv"],
     ["not a linrfm model file"]),
    (["complete", "--load-model", "{d}/m.pkl", "--power", "1", "-o", "{d}/o.npy"],
     ["--power has no effect with --load-model"]),
    (["experiment", "no-such-experiment"], ["unknown experiment"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_usage_and_input_errors(tmp_path, dense_npy, capsys, argv, fragments):
    (tmp_path / "bad.csv").write_text("r,c,v\n0,0,1\n0,1,oops\n")
    (tmp_path / "m.weird").write_text("0,0,1\n")
    (tmp_path / "pairs.csv").write_text("0,1\n1,99\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run_main([a.format(d=tmp_path) for a in argv], capsys)
    assert code == 2 and stdout == ""
    assert_one_error_line(err, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_save_and_load_model_subprocess(tmp_path, triplets_csv, problem):
    """Real entry point: fit + dense CSV + report + model, then predict from the model."""
    model, report, dense = tmp_path / "m.pkl", tmp_path / "r.json", tmp_path / "z.csv"
    proc = run_cli("complete", triplets_csv, "-o", dense, "--report", report, "--save-model",
                   model, "--max-iter", 40)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = dense.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["", "m0", "m1"]  # column ids in the header
    assert lines[1].startswith("u0,")
    rep = json.loads(report.read_text())
    assert rep["input"]["shape"] == [12, 10] and rep["input"]["n_observed"] == 70
    assert rep["result"]["n_iter"] == 40 or rep["result"]["stop_reason"] == "tol"
    assert set(rep["versions"]) >= {"linrfm", "numpy", "scipy", "scikit-learn"}
    assert {"read", "fit", "total"} <= set(rep["timings_s"])

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("u3,m7\nu11,m9\n")
    proc = run_cli("complete", "--load-model", model, "--predict", pairs)
    assert proc.returncode == 0, proc.stderr
    payload = lio.load_model(model)
    est = payload["estimator"]
    expected = est.predict(payload["row_ids"].encode(["u3", "u11"]),
                           payload["col_ids"].encode(["m7", "m9"]))
    got = [float(line.split(",")[2]) for line in proc.stdout.splitlines()[1:]]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Rows/columns are in sorted-label order (u0, u1, u10, ...); lin-RFM is
    # permutation-equivariant, so this is the direct fit with permuted axes.
    rperm = [int(u[1:]) for u in payload["row_ids"].ids()]
    cperm = [int(m[1:]) for m in payload["col_ids"].ids()]
    direct = _fit_directly(problem, max_iter=40).completed_
    np.testing.assert_allclose(est.completed_, direct[np.ix_(rperm, cperm)], rtol=1e-10)


def test_malformed_input_subprocess(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("0\t0\t1\n0\t1\t2\n1\t1\n")
    proc = run_cli("complete", bad, "-o", tmp_path / "out.npy")
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_error_line(proc.stderr, "line 3: expected 3 fields")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tsv"]


def test_unknown_option_subprocess():
    proc = run_cli("complete", "--frobnicate")
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, "--frobnicate")


# --------------------------------------------------------------------------- regress
@pytest.fixture
def regression_csv(tmp_path):
    X, y, coef = make_sparse_regression(40, 15, 3, random_state=0)
    header = ",".join([f"f{j}" for j in range(15)] + ["target"])
    rows = [",".join(repr(float(v)) for v in [*x, t]) for x, t in zip(X, y)]
    path = tmp_path / "data.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path, coef


def test_regress_subprocess(regression_csv):
    path, coef = regression_csv
    proc = run_cli("regress", path, "--target", "target")
    assert proc.returncode == 0, proc.stderr
    true = ", ".join(f"f{j}" for j in np.flatnonzero(coef))
    assert f"selected features (3 of 15): {true}" in proc.stdout
    assert "5-fold CV R^2: " in proc.stdout
    r2 = float(proc.stdout.split("5-fold CV R^2: ")[1].split()[0])
    assert r2 > 0.99


def test_regress_report_and_errors(tmp_path, regression_csv, capsys):
    path, coef = regression_csv
    report = tmp_path / "r.json"
    code, stdout, _ = run_main(["regress", path, "--target", "target", "--cv", 0,
                                "--no-intercept", "--report", report, "-q"], capsys)
    assert code == 0 and "CV" not in stdout
    rep = json.loads(report.read_text())
    assert rep["params"]["fit_intercept"] is False
    np.testing.assert_allclose([rep["coefficients"][f"f{j}"] for j in range(15)], coef,
                               atol=1e-6)
    code, _, err = run_main(["regress", path, "--target", "nope"], capsys)
    assert code == 2
    assert_one_error_line(err, "no column 'nope'")
    text = path.read_text().splitlines()
    text[3] = "abc" + text[3][text[3].index(","):]
    path.write_text("\n".join(text) + "\n")
    code, _, err = run_main(["regress", path, "--target", "target"], capsys)
    assert code == 2
    assert_one_error_line(err, "line 4", "'f0'", "'abc'")


# --------------------------------------------------------------------------- experiment, info, demo
def test_experiment_dispatch(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("linrfm_fake_experiment")

    def run(out_dir, quick=False, seed=0, verbose=0):
        calls.append(("run", Path(out_dir), quick, seed))
        path = Path(out_dir) / "fake.csv"
        path.write_text("x,y\n1,2\n")
        return path

    def plot(csv_path, png_path):
        calls.append(("plot", Path(csv_path), Path(png_path)))
        Path(png_path).write_bytes(b"png")
        return png_path

    def summarize(csv_path):
        return f"| fake | {Path(csv_path).read_text().splitlines()[1]} |"

    fake.run, fake.plot, fake.summarize = run, plot, summarize
    monkeypatch.setitem(sys.modules, "linrfm_fake_experiment", fake)
    from linrfm import experiments

    monkeypatch.setitem(experiments.EXPERIMENTS, "fake", "linrfm_fake_experiment")
    out = tmp_path / "exp"
    code, stdout, _ = run_main(["experiment", "fake", "--quick", "--out", out, "--seed", 3,
                                "-q"], capsys)
    assert code == 0
    assert calls == [("run", out, True, 3), ("plot", out / "fake.csv", out / "fake.png")]
    assert stdout.strip() == "| fake | 1,2 |"


def test_info_subprocess():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    for word in ("linrfm 0.", "numpy:", "scipy:", "scikit-learn:", "torch", "CUDA available",
                 "dask", "blas"):
        assert word in proc.stdout


def test_info_json(capsys):
    code, stdout, _ = run_main(["info", "--json"], capsys)
    info = json.loads(stdout)
    assert code == 0 and info["versions"]["linrfm"] and "cuda_available" in info["torch"]


def test_demo_quick_subprocess(tmp_path):
    proc = run_cli("demo", "--quick", "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "synthetic rank 3" in proc.stdout and "camera image" in proc.stdout
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    synthetic, image = report["tasks"]
    assert synthetic["relative_error_missing"] < 1e-3
    assert image["relative_error_missing"] < 0.75 * image["mean_fill_relative_error_missing"]
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 10_000


def test_version_and_help(capsys):
    code, stdout, _ = run_main(["--version"], capsys)
    assert code == 0 and stdout.startswith("linrfm ")
    code, stdout, _ = run_main(["complete", "--help"], capsys)
    assert code == 0 and "--predict" in stdout and "--max-dense" in stdout


# --------------------------------------------------------------------------- issue 11: ratings files
def _ratings_data(path, problem, shift=3.0):
    """The problem as a MovieLens-style ``u.data``: user, item, rating, timestamp (tabs)."""
    obs = problem.observed
    path.write_text("".join(f"{r + 1}\t{c + 1}\t{float(v) + shift!r}\t88125{k}\n" for k, (r, c, v)
                            in enumerate(zip(obs.rows, obs.cols, obs.values))))
    return path


def test_u_data_file_reads_as_delimited_text_and_reports_heldout_errors(tmp_path, problem,
                                                                        capsys):
    data = _ratings_data(tmp_path / "u.data", problem)
    report = tmp_path / "r.json"
    code, _, err = run_main(["complete", data, "--columns", "0,1,2", "--reg", "0.1",
                             "--validation-fraction", "0.2", "--report", report], capsys)
    assert code == 0, err
    rep = json.loads(report.read_text())
    assert rep["input"]["n_observed"] == problem.observed.nnz
    held = rep["heldout"]
    assert held["rmse"] > 0 and held["mean_rmse"] > 0
    assert "held-out RMSE" in err and "predicting the mean" in err
    assert "validation error" not in err


def test_constant_ratings_give_the_constant_with_a_warning(tmp_path, capsys):
    path = tmp_path / "same.csv"
    path.write_text("".join(f"{i},{j},4\n" for i in range(6) for j in range(5)
                            if (i + 2 * j) % 3))  # a connected pattern
    out = tmp_path / "z.npy"
    code, _, err = run_main(["complete", path, "-o", out, "--max-iter", 30], capsys)
    assert code == 0
    assert "every observed value equals 4: these ratings carry nothing" in err
    np.testing.assert_allclose(np.load(out), 4.0, rtol=1e-6)


def test_model_worse_than_the_mean_is_a_warning(capsys):
    obs = types.SimpleNamespace(values=np.array([1.0, 2.0, 3.0, 4.0, 5.0]), shape=(2, 3),
                                nnz=5)
    est = types.SimpleNamespace(n_iter_=1, stop_reason_="tol", validation_error_=2.0)
    with pytest.warns(UserWarning, match="worse on the held-out entries than predicting the "
                                         "mean"):
        metrics = cli._describe_fit(est, obs, {"fit": 0.1}, cli._Console(quiet=True))
    assert metrics["rmse"] == pytest.approx(2.0 * np.sqrt(11.0)) and not metrics["exact"]
    est.validation_rmse_, est.validation_mae_ = 0.5, 0.4  # the estimator's own numbers win
    assert cli._heldout_metrics(est, obs)["rmse"] == 0.5


def test_fallback_survives_save_and_load(tmp_path, triplets_csv, problem, capsys):
    model = tmp_path / "m.pkl"
    code, _, _ = run_main(["complete", triplets_csv, "--save-model", model, "--max-iter", 20,
                           "-q"], capsys)
    assert code == 0
    pairs = tmp_path / "p.csv"
    pairs.write_text("u1,m2\nnew,m3\nnew,nothing\n")
    code, stdout, err = run_main(["complete", "--load-model", model, "--predict", pairs],
                                 capsys)
    assert code == 0 and "2 of 3 pair(s)" in err
    values = [float(line.split(",")[2]) for line in stdout.splitlines()[1:]]
    obs = problem.observed
    assert values[1] == pytest.approx(obs.values[obs.cols == 3].mean(), rel=1e-12)
    assert values[2] == pytest.approx(obs.values.mean(), rel=1e-12)
