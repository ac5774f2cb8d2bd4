"""Readers and writers of the ``linrfm`` command (linrfm.io), on tiny files."""
import json
import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from linrfm import io as lio


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _dense(data):
    return data.observations.to_dense()


# --------------------------------------------------------------------------- CSV triplets
@pytest.mark.parametrize("text", [
    "0,0,1.5\n0,2,-2\n1,1,3e-1\n",              # comma, no header
    "row\tcol\tvalue\n0\t0\t1.5\n0\t2\t-2\n1\t1\t3e-1\n",  # tab, header
    "i;j;x\n0;0;1.5\n0;2;-2\n1;1;3e-1\n",      # semicolon, header
    "# comment\n0 0 1.5\n\n0  2 -2\n1 1 3e-1\n",  # whitespace, comment and blank line
    "0|0|1.5\n0|2|-2\n1|1|3e-1\n",              # bar
])
def test_csv_delimiters_and_header(tmp_path, text):
    data = lio.read_observations(_write(tmp_path / "m.csv", text))
    expected = np.array([[1.5, np.nan, -2.0], [np.nan, 0.3, np.nan]])
    np.testing.assert_array_equal(_dense(data), expected)
    assert data.format == "csv"
    assert (data.header is not None) == (not text[0].isdigit() and text[0] != "#")


CLEAN_FILES = [
    "0,0,1.5\n0,2,-2\n1,1,3e-1\n",
    "user,item,rating\nbob,pear,0.1\nalice,apple,2\n\"carol, jr\",pear,3\n",
    "u\ti\tr\n7\t 12\t1e-300\n3\tx y\t-0.30000000000000004\n",
    "1 10 1\n\n2 20 2\n10 10 3\n",
    "a;1;2\nb;1.5;3\n",  # a non-integer numeric id: the line reader keeps it a string
]


@pytest.mark.parametrize("text", CLEAN_FILES)
def test_fast_and_line_readers_agree(tmp_path, text, monkeypatch):
    """pandas' C parser (fast path) and the line-by-line reader give the same result."""
    pytest.importorskip("pandas")
    path = _write(tmp_path / "m.csv", text)
    fast = lio.read_observations(path)
    monkeypatch.setattr(lio.readers, "_read_csv_pandas", lambda *a, **k: None)
    slow = lio.read_observations(path)
    for name in ("rows", "cols", "values"):
        np.testing.assert_array_equal(getattr(fast.observations, name),
                                      getattr(slow.observations, name))
    assert fast.observations.shape == slow.observations.shape and fast.header == slow.header
    for a, b in ((fast.row_ids, slow.row_ids), (fast.col_ids, slow.col_ids)):
        np.testing.assert_array_equal(a.ids(), b.ids())
        assert a.ids().dtype.kind == b.ids().dtype.kind


def test_fast_path_is_used_and_declines_malformed_files(tmp_path):
    pytest.importorskip("pandas")
    kwargs = dict(header=None, delimiter=None, ids="label", shape=None, dtype=np.float64,
                  columns=None)
    assert lio.readers._read_csv_pandas(_write(tmp_path / "a.csv", CLEAN_FILES[0]), **kwargs)
    for k, text in enumerate(["0,0,1\n0,1,2,9\n", "0,0,1\n0,1\n", "# c\n0,0,1\n",
                              "0,0,1\n0,1,nan\n", "0,0,1\n0,0,2\n", "a,b,c\n0,0,x\n"]):
        assert lio.readers._read_csv_pandas(_write(tmp_path / f"b{k}.csv", text), **kwargs) is None


def test_csv_header_names_and_forced_header(tmp_path):
    path = _write(tmp_path / "m.csv", "user,item,rating\n0,0,1\n1,1,2\n")
    assert lio.read_observations(path).header == ["user", "item", "rating"]
    # A numeric first line is data unless --header says otherwise.
    path2 = _write(tmp_path / "n.csv", "5,6,7\n0,0,1\n1,1,2\n")
    assert lio.read_observations(path2).observations.nnz == 3
    forced = lio.read_observations(path2, header=True)
    assert forced.observations.nnz == 2 and forced.header == ["5", "6", "7"]


def test_string_ids_round_trip(tmp_path):
    path = _write(tmp_path / "r.csv",
                  "user,item,rating\nbob,pear,1\nalice,apple,2\n\"carol, jr\",pear,3\n")
    data = lio.read_observations(path)
    assert data.observations.shape == (3, 2)
    np.testing.assert_array_equal(data.row_ids.ids(), ["alice", "bob", "carol, jr"])
    np.testing.assert_array_equal(data.col_ids.ids(), ["apple", "pear"])
    obs = data.observations
    decoded = set(zip(data.row_ids.decode(obs.rows), data.col_ids.decode(obs.cols), obs.values))
    assert decoded == {("bob", "pear", 1.0), ("alice", "apple", 2.0), ("carol, jr", "pear", 3.0)}
    # encode is the inverse of decode
    np.testing.assert_array_equal(data.row_ids.encode(["carol, jr", "alice"]), [2, 0])


def test_integer_ids_label_vs_index(tmp_path):
    path = _write(tmp_path / "m.csv", "1,10,1\n2,20,2\n10,10,3\n")
    label = lio.read_observations(path)
    assert label.observations.shape == (3, 2)
    np.testing.assert_array_equal(label.row_ids.ids(), [1, 2, 10])  # numeric, not "1","10","2"
    assert not label.row_ids.is_identity
    index = lio.read_observations(path, ids="index")
    assert index.observations.shape == (11, 21) and index.row_ids.is_identity
    shaped = lio.read_observations(path, ids="index", shape=(12, 30))
    assert shaped.observations.shape == (12, 30)
    contiguous = lio.read_observations(_write(tmp_path / "c.csv", "0,0,1\n1,1,2\n"))
    assert contiguous.row_ids.is_identity and contiguous.col_ids.is_identity


@pytest.mark.parametrize("text, match", [
    ("0,0,1\n0,1,2\n1,0\n", r"line 3: expected 3 fields .*got 2"),
    ("r,c,v\n0,0,1\n0,1,2,9\n", r"line 3: expected 3 fields .*got 4"),
    ("r,c,v\n0,0,1\n\n0,1,abc\n", r"line 4: value 'abc' is not a number"),
    ("0,0,1\n0,1,nan\n", r"line 2: value 'nan' is not finite"),
    ("0,0,1\n0,1,2\n0,0,5\n", r"duplicate entry for row '0', column '0' \(lines 1 and 3\)"),
    ("", r"the file is empty"),
    ("r,c,v\n", r"no data lines"),
    ("justone\nfield\n", r"could not detect the delimiter"),
])
def test_csv_errors_name_the_line(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(lio.ReadError, match=match):
        lio.read_observations(path)


def test_columns_select_fields_by_name_or_position(tmp_path):
    path = _write(tmp_path / "w.csv", "user,ts,item,rating\na,1,x,2\nb,2,y,3\n")
    with pytest.raises(lio.ReadError, match="line 1: expected 3 fields .*--columns"):
        lio.read_observations(path)
    data = lio.read_observations(path, columns=["user", "item", "rating"])
    assert data.header == ["user", "item", "rating"]
    np.testing.assert_array_equal(_dense(data), [[2.0, np.nan], [np.nan, 3.0]])
    same = lio.read_observations(path, columns=["0", "2", "3"])
    np.testing.assert_array_equal(_dense(same), _dense(data))
    tsv = _write(tmp_path / "u.data", "196\t242\t3\t881250949\n22\t377\t1\t878887116\n"
                                      "22\t242\t4\n")
    with pytest.raises(lio.ReadError, match=r"line 3: expected 4 fields"):
        lio.read_observations(tsv, fmt="csv", columns=[0, 1, 2])
    with pytest.raises(lio.ReadError, match="no column 'score'"):
        lio.read_observations(path, columns=["user", "item", "score"])
    with pytest.raises(lio.ReadError, match="position 7 is out of range"):
        lio.read_observations(path, columns=["0", "1", "7"])
    np.save(tmp_path / "m.npy", np.eye(2))
    with pytest.raises(lio.ReadError, match="only applies to CSV and Parquet"):
        lio.read_observations(tmp_path / "m.npy", columns=[0, 1, 2])


def test_index_ids_must_be_integers(tmp_path):
    path = _write(tmp_path / "m.csv", "0,0,1\nx,1,2\n")
    with pytest.raises(lio.ReadError, match=r"line 2: row id 'x' is not an integer"):
        lio.read_observations(path, ids="index")
    with pytest.raises(lio.ReadError, match="negative row index"):
        lio.read_observations(_write(tmp_path / "n.csv", "0,0,1\n-1,1,2\n"), ids="index")
    with pytest.raises(lio.ReadError, match="only applies with --ids index"):
        lio.read_observations(path, shape=(3, 3))


def test_missing_unknown_and_binary_files(tmp_path):
    with pytest.raises(lio.ReadError, match="no such file"):
        lio.read_observations(tmp_path / "nope.csv")
    with pytest.raises(lio.ReadError, match=r"unknown input format '\.xyz'"):
        lio.read_observations(_write(tmp_path / "m.xyz", "0,0,1\n"))
    with pytest.raises(lio.ReadError, match="unknown input format"):
        lio.read_observations(tmp_path / "m.csv", fmt="excel")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(lio.ReadError, match="not a UTF-8 text file"):
        lio.read_observations(tmp_path / "bin.csv")
    with pytest.raises(lio.ReadError, match="is a directory"):
        lio.read_observations(tmp_path, fmt="csv")
    # --format overrides the extension
    data = lio.read_observations(_write(tmp_path / "m.xyz", "0,0,1\n1,1,2\n"), fmt="csv")
    assert data.observations.nnz == 2


# --------------------------------------------------------------------------- binary formats
def test_npy_and_npz_dense_with_nan(tmp_path):
    Z = np.array([[1.0, np.nan], [np.nan, 4.0], [5.0, 6.0]])
    np.save(tmp_path / "m.npy", Z)
    data = lio.read_observations(tmp_path / "m.npy")
    np.testing.assert_array_equal(_dense(data), Z)
    assert data.row_ids.is_identity and data.observations.nnz == 4
    np.savez(tmp_path / "d.npz", anything=Z)
    np.testing.assert_array_equal(_dense(lio.read_observations(tmp_path / "d.npz")), Z)


def test_npz_triplets_and_scipy_sparse(tmp_path):
    np.savez(tmp_path / "t.npz", rows=[0, 2], cols=[1, 0], values=[1.0, 0.0], shape=[3, 4])
    data = lio.read_observations(tmp_path / "t.npz")
    assert data.observations.shape == (3, 4) and data.observations.nnz == 2
    S = sp.csr_array(([0.0, 2.0], ([0, 1], [1, 2])), shape=(2, 3))  # explicit zero kept
    sp.save_npz(tmp_path / "s.npz", S)
    obs = lio.read_observations(tmp_path / "s.npz").observations
    assert obs.nnz == 2 and obs.shape == (2, 3)
    np.savez(tmp_path / "x.npz", a=np.ones(2), b=np.ones(2))
    with pytest.raises(lio.ReadError, match=r"found arrays \['a', 'b'\]"):
        lio.read_observations(tmp_path / "x.npz")


def test_npy_errors(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(3))
    with pytest.raises(lio.ReadError, match="2-D"):
        lio.read_observations(tmp_path / "v.npy")
    np.save(tmp_path / "a.npy", np.full((2, 2), np.nan))
    with pytest.raises(lio.ReadError, match="no observed entry"):
        lio.read_observations(tmp_path / "a.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(lio.ReadError, match="not a readable NumPy file"):
        lio.read_observations(tmp_path / "junk.npy")


def test_matrix_market(tmp_path):
    S = sp.coo_array(([1.0, 0.0, 3.0], ([0, 1, 2], [1, 0, 3])), shape=(3, 5))
    scipy.io.mmwrite(tmp_path / "m.mtx", S)
    obs = lio.read_observations(tmp_path / "m.mtx").observations
    assert obs.shape == (3, 5) and obs.nnz == 3  # the stored zero is observed
    np.testing.assert_array_equal(obs.values, [1.0, 0.0, 3.0])
    scipy.io.mmwrite(tmp_path / "d.mtx", np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert lio.read_observations(tmp_path / "d.mtx").observations.nnz == 3
    _write(tmp_path / "bad.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1\n")
    with pytest.raises(lio.ReadError, match="MatrixMarket"):
        lio.read_observations(tmp_path / "bad.mtx")


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"u": ["a", "b", "a"], "i": [3, 4, 4], "r": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "m.parquet")
    data = lio.read_observations(tmp_path / "m.parquet")
    assert data.observations.shape == (2, 2) and data.header == ["u", "i", "r"]
    np.testing.assert_array_equal(data.row_ids.ids(), ["a", "b"])
    np.testing.assert_array_equal(data.col_ids.ids(), [3, 4])
    frame.assign(extra=1).to_parquet(tmp_path / "w.parquet")
    with pytest.raises(lio.ReadError, match="expected three columns.*--columns"):
        lio.read_observations(tmp_path / "w.parquet")
    picked = lio.read_observations(tmp_path / "w.parquet", columns=["u", "i", "r"])
    np.testing.assert_array_equal(_dense(picked), _dense(data))


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    (tmp_path / "m.parquet").write_bytes(b"PAR1")
    with pytest.raises(lio.ReadError, match="needs pyarrow.*pip install pyarrow"):
        lio.read_observations(tmp_path / "m.parquet")


# --------------------------------------------------------------------------- pairs
def test_read_pairs_maps_ids_and_reports_unknown(tmp_path):
    data = lio.read_observations(_write(tmp_path / "r.csv", "u,i,r\nbob,x,1\nann,y,2\n"))
    pairs = _write(tmp_path / "p.csv", "user,item\nann,x\nbob,y\n")
    rows, cols, rtok, ctok, header, skipped = lio.read_pairs(pairs, data.row_ids, data.col_ids)
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_array_equal(cols, [0, 1])
    assert list(rtok) == ["ann", "bob"] and header == ["user", "item"]
    # extra fields (a test file of triplets) are ignored; no header
    got = lio.read_pairs(_write(tmp_path / "t.csv", "bob,y,5\n"), data.row_ids, data.col_ids)
    assert got.header is None and got.rows.tolist() == [1] and skipped == 0
    with pytest.raises(lio.ReadError, match=r"line 3: row id 'carol' is not among the ids"):
        lio.read_pairs(_write(tmp_path / "q.csv", "ann,x\nbob,x\ncarol,x\n"),
                       data.row_ids, data.col_ids)
    # unknown="skip" drops pairs with an unknown row or column id
    got = lio.read_pairs(_write(tmp_path / "s.csv", "ann,x\ncarol,x\nbob,zz\nbob,y\n"),
                         data.row_ids, data.col_ids, unknown="skip")
    assert got.rows.tolist() == [0, 1] and list(got.row_tokens) == ["ann", "bob"]
    assert got.n_skipped == 2
    index = lio.IdMap(3)
    assert index.encode(["2", "x", "3", "-1"], missing=-1).tolist() == [2, -1, -1, -1]
    with pytest.raises(lio.ReadError, match=r"line 2: column id '7' is not an index in \[0, 3\)"):
        lio.read_pairs(_write(tmp_path / "z.csv", "0,1\n1,7\n"), index, index)


# --------------------------------------------------------------------------- writers
def test_write_dense_formats(tmp_path):
    Z = np.arange(6.0).reshape(2, 3) / 7
    lio.write_dense(tmp_path / "z.npy", Z)
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), Z)
    lio.write_dense(tmp_path / "z.csv", Z)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "z.csv", delimiter=","), Z, rtol=1e-11)
    rows = lio.IdMap(2, np.array(["a", "b"]))
    cols = lio.IdMap(3, np.array([5, 7, 9]))
    lio.write_dense(tmp_path / "l.csv", Z, rows, cols)
    lines = (tmp_path / "l.csv").read_text().splitlines()
    assert lines[0] == ",5,7,9" and lines[2].startswith("b,")
    lio.write_dense(tmp_path / "z.npz", Z, rows, cols)
    with np.load(tmp_path / "z.npz") as f:
        np.testing.assert_array_equal(f["completed"], Z)
        assert f["row_ids"].tolist() == ["a", "b"] and f["col_ids"].tolist() == [5, 7, 9]
    with pytest.raises(ValueError, match="unknown output format"):
        lio.dense_format(tmp_path / "z.xlsx")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with lio.atomic_write(target, "w") as handle:
            handle.write("partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with lio.atomic_write(target, "w") as handle:
            handle.write("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]


def test_check_output_path(tmp_path):
    assert lio.check_output_path(tmp_path / "x.npy") == tmp_path / "x.npy"
    with pytest.raises(ValueError, match="does not exist"):
        lio.check_output_path(tmp_path / "missing" / "x.npy")
    with pytest.raises(ValueError, match="is a directory"):
        lio.check_output_path(tmp_path)


def test_predictions_json_and_model_round_trip(tmp_path):
    lio.write_predictions(tmp_path / "p.csv", ["a", "b"], [1, 2], np.array([0.5, 1 / 3]))
    assert (tmp_path / "p.csv").read_text().splitlines() == [
        "row,col,prediction", "a,1,0.5", "b,2,0.333333333333"]
    lio.write_json(tmp_path / "r.json", {"x": np.float64(np.nan), "y": np.arange(2),
                                         "z": {"w": np.int64(3)}})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": [0, 1],
                                                              "z": {"w": 3}}
    from linrfm import LinRFMCompleter

    labels = np.array(["u1", "u2"])
    lio.save_model(tmp_path / "m.linrfm", LinRFMCompleter(max_iter=7), kind="completer",
                   row_ids=lio.IdMap(2), col_ids=lio.IdMap(2, labels))
    payload = lio.load_model(tmp_path / "m.linrfm")
    assert payload["estimator"].max_iter == 7 and payload["row_ids"] == lio.IdMap(2)
    np.testing.assert_array_equal(payload["col_ids"].labels, labels)
    with pytest.raises(TypeError, match="only linrfm"):
        lio.save_model(tmp_path / "d.linrfm", {"fitted": True})
    (tmp_path / "junk.pkl").write_bytes(b"garbage")
    with pytest.raises(lio.ReadError, match="not a linrfm model file"):
        lio.load_model(tmp_path / "junk.pkl")
