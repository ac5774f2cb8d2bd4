"""Every command and Python example in README.md and docs/*.md runs as written (issue 11).

The test reads the documents at run time, so it checks whatever they say now:

* in fenced blocks marked ``bash``/``sh``/``console`` or unmarked, each line that starts
  with ``linrfm``, ``python`` or ``.venv/bin/python`` is run by bash in a temporary folder
  (``linrfm`` and ``python`` are this checkout's interpreter with this checkout first on
  ``PYTHONPATH``); the lines of one block run in order in one folder, so a later line can
  use what an earlier one wrote (``--save-model m.pkl`` then ``--load-model m.pkl``);
* every ``python`` block runs as a script in a temporary folder, except a full benchmark
  marked by the line ``<!-- docs-test: full run ... -->`` right above its fence, which
  runs only with ``LINRFM_DOCS_FULL=1``.

The input files the commands name (``ratings.csv``, ``train.csv``, ``test.csv``,
``u.data``, ``pairs.csv``, ``data.csv``) are small seeded stand-ins written into the folder.
Lines that are synopses (``[--quick]``) or loop bodies (``$e``) are not commands. Full
benchmark, experiment and demo runs (no ``--quick``; minutes to hours) are left out
(the test then reports a skip naming them) unless ``LINRFM_DOCS_FULL=1``. MovieLens examples are skipped only when the
data cannot be had offline (no cached recbole wheel and no network).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
COMMAND = re.compile(r"^\s*(?:\$\s+)?(linrfm|python|\.venv/bin/python)\s")
FULL = os.environ.get("LINRFM_DOCS_FULL") == "1"
FULL_MARK = "<!-- docs-test: full run"
TIMEOUT = 900
BENCH_MODULES = ("cvxpy", "psutil", "threadpoolctl")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
PRELUDE = (f'linrfm() {{ "{sys.executable}" -m linrfm "$@"; }}\n'
           f'python() {{ "{sys.executable}" "$@"; }}\n'
           "set -e -o pipefail\n")


def _blocks():
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for k, match in enumerate(FENCE.finditer(text)):
            lang, body = match.group(1).strip().lower(), match.group(2)
            before = text[:match.start()]
            line = before.count("\n") + 1
            full = FULL_MARK in before.rstrip().rsplit("\n", 1)[-1]
            yield doc.relative_to(ROOT), line, lang, body, full


def _is_full_run(command: str) -> bool:
    """A benchmark, experiment or demo run without --quick: minutes to hours."""
    heavy = re.search(r"benchmarks/\S+\.py|linrfm\s+(experiment|demo)\b", command)
    return bool(heavy) and "--quick" not in command


def _shell_cases():
    for doc, line, lang, body, _ in _blocks():
        if lang not in SHELL_LANGS:
            continue
        commands = []
        for text in body.splitlines():
            if not COMMAND.match(text) or re.search(r"\[--|\$\w|\$\{", text):
                continue
            command = re.sub(r"^\s*\$\s+", "", text).strip()
            command = re.sub(r"^\.venv/bin/python\b", "python", command)
            commands.append(command)
        if commands:
            yield pytest.param(commands, id=f"{doc}:{line}", marks=[pytest.mark.slow])


def _python_cases():
    for doc, line, lang, body, full in _blocks():
        if lang in ("python", "py", "pycon"):
            marks = [pytest.mark.slow, pytest.mark.skipif(
                not FULL, reason="a full benchmark; LINRFM_DOCS_FULL=1")] if full else []
            yield pytest.param(body, id=f"{doc}:{line}", marks=marks)


def _ratings(rng, n_users=30, n_items=20, density=0.5):
    """Rank-2 ratings rounded to 1..5 with string-free integer ids (user, item, rating)."""
    U, V = rng.standard_normal((n_users, 2)), rng.standard_normal((n_items, 2))
    R = np.clip(np.rint(3 + U @ V.T + 0.3 * rng.standard_normal((n_users, n_items))), 1, 5)
    mask = rng.random_sample(R.shape) < density
    mask[np.arange(n_users), rng.randint(0, n_items, n_users)] = True
    mask[rng.randint(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(mask)
    return users + 1, items + 1, R[users, items]


def _write_inputs(folder: Path) -> None:
    rng = np.random.RandomState(0)
    users, items, ratings = _ratings(rng)
    lines = [f"{u},{i},{r:g}" for u, i, r in zip(users, items, ratings)]
    (folder / "ratings.csv").write_text("user,item,rating\n" + "\n".join(lines) + "\n")
    test = rng.random_sample(len(lines)) < 0.1
    (folder / "train.csv").write_text("\n".join(np.array(lines)[~test]) + "\n")
    # the test file names a user the training file never saw (issue 11)
    (folder / "test.csv").write_text("\n".join([*np.array(lines)[test], "999,1,3"]) + "\n")
    (folder / "u.data").write_text("".join(
        f"{u}\t{i}\t{r:g}\t{881250949 + k}\n"
        for k, (u, i, r) in enumerate(zip(users, items, ratings))))
    (folder / "pairs.csv").write_text("user,item\n1,2\n3,4\n999,5\n")
    X = rng.standard_normal((40, 6))
    y = 2 * X[:, 0] - X[:, 3] + 0.1 * rng.standard_normal(40)
    table = ["a,b,c,d,e,f,y"] + [",".join(f"{v:.6g}" for v in (*x, t)) for x, t in zip(X, y)]
    (folder / "data.csv").write_text("\n".join(table) + "\n")


def _movielens_available() -> bool:
    from linrfm.datasets import load_movielens_100k

    try:
        load_movielens_100k()
    except OSError:
        return False
    return True


def _run(args, cwd, stdin=None):
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT, input=stdin)


def test_documents_have_commands_and_examples():
    """The extraction finds the README's examples (so a format change cannot hide them)."""
    shell = [p.values[0] for p in _shell_cases()]
    assert any("linrfm complete" in c for cmds in shell for c in cmds)
    assert sum(1 for _ in _python_cases()) >= 3


@pytest.mark.parametrize("commands", list(_shell_cases()))
def test_shell_commands_run_as_written(commands, tmp_path):
    _write_inputs(tmp_path)
    if any("movielens" in c.lower() for c in commands) and not _movielens_available():
        pytest.skip("MovieLens-100K is not available offline")
    if any("benchmarks/" in c for c in commands):
        for module in BENCH_MODULES:  # the `bench` extra, which `make test` does not install
            pytest.importorskip(module, reason=f"benchmarks need {module}: pip install "
                                               "'linrfm[bench]'")
    skipped = [c for c in commands if _is_full_run(c) and not FULL]
    for command in commands:
        if command in skipped:
            continue
        proc = _run(["bash", "-c", PRELUDE + command], tmp_path)
        assert proc.returncode == 0, (
            f"`{command}` failed with status {proc.returncode}:\n{proc.stderr[-3000:]}")
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if skipped:
        pytest.skip(f"ran {len(commands) - len(skipped)} command(s); full runs need "
                    f"LINRFM_DOCS_FULL=1: {'; '.join(skipped)}")


@pytest.mark.parametrize("code", list(_python_cases()))
def test_python_examples_run_as_written(code, tmp_path):
    if "load_movielens_100k" in code and not _movielens_available():
        pytest.skip("MovieLens-100K is not available offline")
    _write_inputs(tmp_path)
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = _run([sys.executable, str(script)], tmp_path)
    assert proc.returncode == 0, f"example failed:\n{code}\n{proc.stderr[-3000:]}"
