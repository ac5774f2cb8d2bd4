"""The experiments of issue 5 in quick mode: CSV columns, PNG, summaries, sanity.

Each experiment runs once per module (``--quick`` sizes, seconds each), then
``plot`` and ``summarize`` are called on the CSV alone (the provenance
sidecar is removed first, since both must only need the CSV). The observers
that trace iterates are checked not to change what the estimators compute.
"""
from __future__ import annotations

import csv
import importlib
import math
import warnings

import numpy as np
import pytest

from linrfm.problems.completion import LinRFMCompleter
from linrfm.datasets import make_completion_problem
from linrfm.exceptions import ConvergenceWarning
from linrfm.experiments import EXPERIMENTS, _common as C, get_experiment

HAS_TORCH = C.has_torch()
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_quick(name, tmp_path_factory):
    module = get_experiment(name)
    out = tmp_path_factory.mktemp(name.replace("-", "_"))
    csv_path = module.run(out, quick=True, seed=0)
    meta = C.read_settings(csv_path)
    assert meta["provenance"]["numpy"] == np.__version__
    assert meta["settings"]["quick"] is True
    csv_path.with_suffix(".json").unlink()  # plot and summarize read the CSV only
    png = module.plot(csv_path, csv_path.with_suffix(".png"))
    summary = module.summarize(csv_path)
    return csv_path, png, summary, C.read_csv(csv_path)


def _header(csv_path):
    with open(csv_path, newline="") as fh:
        return next(csv.reader(fh))


def _check_png(png):
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and 5_000 < len(data) < 300_000


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_registry_modules_have_the_three_functions(name):
    module = get_experiment(name)
    for fn in ("run", "plot", "summarize"):
        assert callable(getattr(module, fn))


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


# --------------------------------------------------------------------------- sparse regression
@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    return _run_quick("sparse-regression", tmp_path_factory)


def test_sparse_regression_outputs(sparse):
    csv_path, png, summary, rows = sparse
    assert _header(csv_path) == ["method", "family", "n", "d", "k", "seed", "rel_error",
                                 "success", "n_iter", "time_s"]
    _check_png(png)
    assert summary.startswith("### Sparse regression") and "claim 4" in summary
    methods = {r["method"] for r in rows}
    assert {"lin-RFM power=1/4", "lin-RFM power=1/2", "lin-RFM power=1",
            "l1 (BasisPursuit)"} <= methods
    if HAS_TORCH:
        assert {f"DLN diagonal depth {L}" for L in (2, 3, 4)} <= methods


def test_sparse_regression_sanity(sparse):
    rows = sparse[3]
    n_max = max(r["n"] for r in rows)
    half = [r for r in rows if r["method"] == "lin-RFM power=1/2" and r["n"] == n_max]
    assert half and all(r["success"] == 1 and r["rel_error"] < 1e-6 for r in half)
    assert all(r["success"] == int(r["rel_error"] <= 1e-3) for r in rows)
    n_min = min(r["n"] for r in rows)
    bp = [r for r in rows if r["method"] == "l1 (BasisPursuit)" and r["n"] == n_min]
    assert all(r["rel_error"] > 1e-3 for r in bp)  # below the l1 transition: a real grid


# --------------------------------------------------------------------------- completion phase
@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    return _run_quick("completion-phase", tmp_path_factory)


def test_completion_phase_outputs(phase):
    csv_path, png, summary, rows = phase
    assert _header(csv_path) == ["method", "d1", "d2", "rank", "oversampling", "n_observed",
                                 "seed", "missing_error", "success", "n_iter", "time_s"]
    _check_png(png)
    assert "phase transition" in summary and "90 % success" in summary
    methods = {r["method"] for r in rows}
    assert {"zero-fill", "lin-RFM columns", "lin-RFM alternate", "IRLS-0 (eigh)",
            "SoftImpute"} <= methods
    if HAS_TORCH:
        assert {"DLN depth 2", "DLN depth 3"} <= methods


def test_completion_phase_sanity(phase):
    rows = phase[3]
    top = max(r["oversampling"] for r in rows)
    at_top = {r["method"]: r for r in rows if r["oversampling"] == top}
    assert at_top["lin-RFM alternate"]["missing_error"] < 1e-4
    assert at_top["lin-RFM alternate"]["missing_error"] < 1e-3 * at_top["zero-fill"][
        "missing_error"]
    assert at_top["zero-fill"]["missing_error"] == pytest.approx(1.0)  # zeros on hidden entries
    for r in rows:
        info = r["rank"] * (r["d1"] + r["d2"] - r["rank"])
        assert r["n_observed"] == round(r["oversampling"] * info)


# --------------------------------------------------------------------------- completion time
@pytest.fixture(scope="module")
def timing(tmp_path_factory):
    return _run_quick("completion-time", tmp_path_factory)


def test_completion_time_outputs(timing):
    csv_path, png, summary, rows = timing
    assert _header(csv_path) == ["method", "measurement", "d", "rank", "oversampling",
                                 "n_observed", "seed", "n_iter", "time_per_iter_s",
                                 "time_to_target_s", "final_error", "stop", "budget_s"]
    _check_png(png)
    assert "complexity exponents" in summary and "claim 3" in summary


def test_completion_time_sanity(timing):
    rows = timing[3]
    assert all(r["time_per_iter_s"] > 0 for r in rows)
    half = [r for r in rows if r["method"] == "lin-RFM power=1/2"]
    assert len(half) == 3
    for r in half:  # reaches the target well within the quick budget
        assert r["stop"] == "target" and r["final_error"] <= 1e-4
        assert 0 < r["time_to_target_s"] <= r["budget_s"]
    for r in rows:
        if r["stop"] == "budget":
            assert math.isnan(r["time_to_target_s"]) and r["final_error"] > 1e-4


def test_fit_slope_recovers_a_power_law():
    from linrfm.experiments.completion_time import fit_slope

    ds = np.array([100, 200, 400, 800])
    a, b = fit_slope(ds, 3e-9 * ds ** 2.5)
    assert a == pytest.approx(2.5, abs=1e-12) and b == pytest.approx(np.log(3e-9))
    assert math.isnan(fit_slope([100, 200], [1.0, math.nan])[0])


# --------------------------------------------------------------------------- equivalence
@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    return _run_quick("equivalence", tmp_path_factory)


def test_equivalence_outputs(equivalence):
    csv_path, png, summary, rows = equivalence
    assert _header(csv_path) == ["problem", "method", "power", "p", "reg", "eps", "seed",
                                 "setup", "max_abs_diff", "rel_diff", "step_size"]
    _check_png(png)
    assert {r["problem"] for r in rows} == {"regression", "completion", "sensing"}
    assert "claim 1" in summary and "supported by this run" in summary


def test_equivalence_sanity(equivalence):
    rows = equivalence[3]
    assert all(r["p"] == pytest.approx(2 - 4 * r["power"]) for r in rows)
    assert all(r["step_size"] > 0.1 for r in rows)  # the steps are not trivially zero
    for r in rows:
        exact = r["problem"] == "regression" or r["power"] == 0.5 or r["method"] != "lin-RFM"
        small = r["reg"] == min(x["reg"] for x in rows)
        if exact:
            assert r["max_abs_diff"] < 1e-9, r
        elif small:
            assert r["max_abs_diff"] < 1e-2, r
    # for the other powers the gap closes as reg -> 0
    for problem in ("completion", "sensing"):
        for power in (0.25, 0.75, 1.0):
            sel = sorted((r for r in rows if r["problem"] == problem and r["power"] == power
                          and r["method"] == "lin-RFM"), key=lambda r: r["reg"])
            assert sel[0]["max_abs_diff"] < 1e-2 * sel[-1]["max_abs_diff"]


def test_reference_irls_step_is_not_the_identity():
    """The independent IRLS-p reference really depends on p (the comparison can fail)."""
    from linrfm.experiments.equivalence import irls_completion_step

    obs = make_completion_problem(20, 12, 2, oversampling=2.0, random_state=1).observed
    Z0 = obs.to_dense(0.0)
    a = irls_completion_step(Z0, obs.rows, obs.cols, obs.values, 0.0, 1e-3)
    b = irls_completion_step(Z0, obs.rows, obs.cols, obs.values, 1.0, 1e-3)
    assert np.max(np.abs(a - b)) > 1e-3
    np.testing.assert_array_equal(a[obs.rows, obs.cols], obs.values)


# --------------------------------------------------------------------------- DLN comparison
@pytest.fixture(scope="module")
def dln(tmp_path_factory):
    return _run_quick("dln-comparison", tmp_path_factory)


def test_dln_comparison_outputs(dln):
    csv_path, png, summary, rows = dln
    assert _header(csv_path) == ["method", "iteration", "time_s", "missing_error", "d1", "d2",
                                 "rank", "n_observed", "seed", "budget_s", "stop"]
    _check_png(png)
    assert "deep linear networks" in summary
    methods = {r["method"] for r in rows}
    assert {"lin-RFM alternate (default)", "lin-RFM columns"} <= methods
    if HAS_TORCH:
        assert {"DLN depth 2", "DLN depth 3", "DLN depth 4"} <= methods


def test_dln_comparison_sanity(dln):
    rows = dln[3]
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    for rs in by.values():
        rs.sort(key=lambda r: r["iteration"])
        t = [r["time_s"] for r in rs]
        assert all(np.diff(t) >= 0) and all(np.isfinite(r["missing_error"]) for r in rs)
    lin = by["lin-RFM alternate (default)"]
    assert lin[-1]["missing_error"] < 1e-4 and lin[-1]["time_s"] < lin[-1]["budget_s"]
    for m, rs in by.items():
        if m.startswith("DLN"):
            assert min(r["missing_error"] for r in rs) > lin[-1]["missing_error"]


# --------------------------------------------------------------------------- observers
def _quiet(est, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args)


@pytest.fixture(scope="module")
def small():
    return make_completion_problem(30, 24, 2, oversampling=2.5, random_state=3)


class _State:
    """A stand-in for LoopState with what ErrorTrace reads."""

    def __init__(self, iteration, elapsed):
        self.iteration, self.elapsed = iteration, elapsed

    def iterate(self):
        return None


@pytest.mark.parametrize("relaxation", [1.0, 1.5])  # 1.5: the iterate is the relaxed one
@pytest.mark.parametrize("side", ["columns", "alternate"])
def test_error_trace_callback_changes_nothing(small, side, relaxation):
    obs = small.observed
    trace = C.ErrorTrace(C.HiddenEntries(small).error)
    traced = _quiet(LinRFMCompleter(side=side, max_iter=40, relaxation=relaxation,
                                    callback=trace), obs)
    plain = _quiet(LinRFMCompleter(side=side, max_iter=40, relaxation=relaxation), obs)
    np.testing.assert_array_equal(traced.completed_, plain.completed_)
    assert len(trace.errors) == plain.n_iter_ and trace.iterations[0] == 1
    assert np.all(np.diff(trace.times) > 0)
    # the last traced error is the error of the estimator's result
    assert trace.errors[-1] == pytest.approx(small.missing_error(plain.completed_), rel=1e-9)


def test_error_trace_on_irls_changes_nothing(small):
    from linrfm.baselines import IRLSCompleter

    obs = small.observed
    trace = C.ErrorTrace(C.HiddenEntries(small).error)
    traced = _quiet(IRLSCompleter(max_iter=15, callback=trace), obs)
    plain = _quiet(IRLSCompleter(max_iter=15), obs)
    np.testing.assert_array_equal(traced.completed_, plain.completed_)
    assert len(trace.errors) == plain.n_iter_ == 15
    assert trace.errors[-1] == pytest.approx(small.missing_error(plain.completed_), rel=1e-9)


@needs_torch
def test_error_trace_on_deep_linear_changes_nothing(small):
    from linrfm.baselines import DeepLinearCompleter

    obs = small.observed
    trace = C.ErrorTrace(C.HiddenEntries(small).error)
    traced = _quiet(DeepLinearCompleter(depth=2, max_iter=30, random_state=0, callback=trace),
                    obs)
    plain = _quiet(DeepLinearCompleter(depth=2, max_iter=30, random_state=0), obs)
    np.testing.assert_allclose(traced.completed_, plain.completed_, rtol=0, atol=1e-12)
    assert trace.errors[-1] == pytest.approx(small.missing_error(plain.completed_), rel=1e-6)


def test_error_trace_stops_at_target_and_budget():
    errors = iter([0.5, 0.1, 1e-5, 1e-6])
    trace = C.ErrorTrace(lambda Z: next(errors), target=1e-4)
    stops = [trace(_State(it, 0.1 * it)) for it in range(1, 4)]
    assert stops == [False, False, True]
    assert trace.stop == "target" and trace.errors == [0.5, 0.1, 1e-5]
    assert trace.time_to(0.2) == trace.times[1] and math.isnan(trace.time_to(1e-9))
    trace = C.ErrorTrace(lambda Z: 1.0, budget_s=0.0)
    assert trace(_State(1, 0.0)) and trace.stop == "budget"


def test_error_trace_counts_on_across_loops():
    # a multi-phase fit calls back from several loops, each counting from 1
    trace = C.ErrorTrace(lambda Z: 1.0)
    for it, t in [(1, 0.1), (2, 0.2), (1, 0.05), (2, 0.1), (3, 0.2)]:
        trace(_State(it, t))
    assert trace.iterations == [1, 2, 3, 4, 5]
    assert trace.times == pytest.approx([0.1, 0.2, 0.25, 0.3, 0.4])


def test_error_trace_follows_a_whole_default_fit():
    # reg="path" (the default) on noisy data: held-out path, grid stages, refit
    noisy = make_completion_problem(120, 100, 3, oversampling=4.0, noise=0.3, random_state=0)
    trace = C.ErrorTrace(C.HiddenEntries(noisy).error)
    est = _quiet(LinRFMCompleter(random_state=0, callback=trace), noisy.observed)
    assert est.selection_ == "path"
    assert trace.iterations == list(range(1, est.n_iter_ + 1))
    assert np.all(np.diff(trace.times) > 0)


def test_error_trace_stops_a_fit_through_the_callback(small):
    trace = C.ErrorTrace(C.HiddenEntries(small).error, target=0.5)
    est = _quiet(LinRFMCompleter(max_iter=200, callback=trace), small.observed)
    assert est.stop_reason_ == "callback" and trace.stop == "target"
    assert est.n_iter_ == len(trace.errors) and trace.errors[-1] <= 0.5


def test_csv_round_trip(tmp_path):
    rows = [{"a": 1, "b": 0.1, "c": "x", "d": math.nan}, {"a": 2, "b": 1e-300, "c": "y"}]
    path = C.write_csv(tmp_path, "t", rows, {"k": 1})
    back = C.read_csv(path)
    assert back[0]["a"] == 1 and back[0]["b"] == 0.1 and back[0]["c"] == "x"
    assert math.isnan(back[0]["d"]) and math.isnan(back[1]["d"]) and back[1]["b"] == 1e-300
    meta = C.read_settings(path)
    assert meta["settings"] == {"k": 1} and "cpu_count" in meta["provenance"]


# --------------------------------------------------------------------------- CLI
def test_cli_runs_an_experiment(tmp_path, capsys):
    from linrfm.cli import main

    assert main(["experiment", "equivalence", "--quick", "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "One lin-RFM step vs one IRLS-p step" in out
    for suffix in (".csv", ".png", ".json"):
        assert (tmp_path / f"equivalence{suffix}").stat().st_size > 0


def test_every_module_is_importable_without_running():
    for name, mod in EXPERIMENTS.items():
        module = importlib.import_module(mod, "linrfm.experiments")
        assert module.NAME == name.replace("-", "_")
