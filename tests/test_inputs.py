"""One way in: every input type gives the same SessionData; bad inputs get
errors that name the column, the row and the value."""
import gzip
import sys

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.data import SessionData, _extract, _Where, to_sessions

# Unsorted, interleaved, with ties in time (kept in input order) and a session
# whose first event comes after another session's first.
ROWS = [  # session, item, time
    (7, 30, 5.0), (3, 10, 1.0), (7, 10, 4.0), (3, 20, 2.0), (3, 20, 2.0), (9, 40, 4.0),
    (3, 30, 3.0), (9, 10, 6.0), (5, 20, 4.0), (5, 40, 4.0), (7, 20, 9.0),
]


def frame(str_ids=False):
    s, i, t = map(list, zip(*ROWS))
    if str_ids:
        i = [f"item-{x}" for x in i]
        s = [f"s{x}" for x in s]
    return pd.DataFrame({"SessionId": s, "ItemId": i, "Time": t})


def expected(str_ids=False):
    # sessions by first time (ties by id): 3 (t=1), 5 (t=4), 7 (t=4), 9 (t=4)
    items = [10, 20, 20, 30, 20, 40, 10, 30, 20, 40, 10]
    vocab = [10, 20, 30, 40]
    sess = [3, 5, 7, 9]
    if str_ids:
        vocab = [f"item-{x}" for x in vocab]
        sess = [f"s{x}" for x in sess]
    return SessionData(np.array([0, 4, 6, 9, 11]), np.array([vocab.index(
        f"item-{x}" if str_ids else x) for x in items], np.int32),
        np.array(vocab, dtype=object if str_ids else np.int64),
        np.array(sess, dtype=object if str_ids else np.int64),
        np.array([1, 2, 2, 3, 4, 4, 4, 5, 9, 4, 6], float))


def assert_same(a: SessionData, b: SessionData):
    assert a.equals(b), (a, b, a.offsets, b.offsets, a.items, b.items, a.item_ids, b.item_ids,
                         a.session_ids, b.session_ids, a.times, b.times)
    assert a.offsets.dtype == np.int64 and a.items.dtype == np.int32
    assert a.times.dtype == np.float64


def test_reference_layout():
    assert_same(to_sessions(frame()), expected())
    assert_same(to_sessions(frame(True)), expected(True))


# ------------------------------------------------------------------ every source
def pandas_variants(df):
    yield "pandas", df
    yield "categorical", df.astype({"ItemId": "category", "SessionId": "category"})
    yield "nullable", df.astype({"ItemId": "Int64" if df.ItemId.dtype.kind == "i" else "string",
                                 "Time": "Float64"})
    yield "dict-numpy", {k: df[k].to_numpy() for k in df.columns}
    yield "dict-lists", {k: df[k].tolist() for k in df.columns}
    yield "extra-columns", df.assign(Other=1.5, Category="x")[["Other", "Time", "ItemId",
                                                               "Category", "SessionId"]]


def file_variants(df, tmp_path):
    df.to_csv(tmp_path / "e.csv", index=False)
    yield "csv", tmp_path / "e.csv"
    df.to_csv(tmp_path / "e.tsv", sep="\t", index=False)
    yield "tsv", str(tmp_path / "e.tsv")
    with gzip.open(tmp_path / "e.tsv.gz", "wt") as f:
        df.to_csv(f, sep="\t", index=False)
    yield "tsv.gz", tmp_path / "e.tsv.gz"
    df.to_csv(tmp_path / "e.txt", sep="\t", index=False)
    yield "txt-sniffed-tab", tmp_path / "e.txt"
    df.to_csv(tmp_path / "e2.txt", sep=";", index=False)
    yield "txt-sniffed-semicolon", tmp_path / "e2.txt"


def as_text(sd: SessionData) -> SessionData:
    """``sd`` with its ids as a text file gives them: strings, verbatim."""
    return SessionData(sd.offsets, sd.items, np.array([str(v) for v in sd.item_ids], object),
                       np.array([str(v) for v in sd.session_ids], object), sd.times)


@pytest.mark.parametrize("str_ids", [False, True], ids=["int-ids", "str-ids"])
def test_pandas_dicts_and_text_files_agree(tmp_path, str_ids):
    df = frame(str_ids)
    want = expected(str_ids)
    for name, src in pandas_variants(df):
        assert_same(to_sessions(src), want), name
    # Text files: ids are read verbatim as strings (issue 22), or guessed
    # by pandas with text_ids="infer". (These ids sort the same either way.)
    for name, src in file_variants(df, tmp_path):
        assert_same(to_sessions(src), as_text(want)), name
        assert_same(to_sessions(src, text_ids="infer"), want), name


@pytest.mark.parametrize("str_ids", [False, True], ids=["int-ids", "str-ids"])
def test_polars_agrees(str_ids):
    pl = pytest.importorskip("polars")
    df = pl.from_pandas(frame(str_ids))
    assert_same(to_sessions(df), expected(str_ids))
    assert_same(to_sessions(df.lazy()), expected(str_ids))
    cat = df.with_columns(pl.col("ItemId").cast(pl.Utf8).cast(pl.Categorical)) if str_ids else df
    assert_same(to_sessions(cat), expected(str_ids))


@pytest.mark.parametrize("str_ids", [False, True], ids=["int-ids", "str-ids"])
def test_arrow_and_parquet_agree(tmp_path, str_ids):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = pa.Table.from_pandas(frame(str_ids), preserve_index=False)
    want = expected(str_ids)
    assert_same(to_sessions(t), want)
    assert_same(to_sessions(t.to_batches()[0]), want)
    chunked = pa.concat_tables([t.slice(0, 4), t.slice(4)])
    assert chunked.column("ItemId").num_chunks == 2
    assert_same(to_sessions(chunked), want)
    if str_ids:
        assert_same(to_sessions(t.set_column(1, "ItemId", t.column("ItemId")
                                             .dictionary_encode())), want)
    pq.write_table(t, tmp_path / "e.parquet")
    assert_same(to_sessions(tmp_path / "e.parquet"), want)
    assert_same(to_sessions(str(tmp_path / "e.parquet")), want)


def test_session_data_passes_through_and_remaps():
    sd = to_sessions(frame())
    same = to_sessions(sd)
    assert same.equals(sd)
    # Private copies of what native code reads (issue 22: the caller may
    # change its arrays during fit).
    assert not np.shares_memory(same.items, sd.items)
    assert not np.shares_memory(same.offsets, sd.offsets)
    vocab = np.array([40, 30, 99, 20, 10])
    re = to_sessions(sd, item_ids=vocab)
    assert list(vocab[re.items]) == list(sd.item_ids[sd.items])
    with pytest.raises(ValueError, match="item 10 .* not in the model's vocabulary"):
        to_sessions(sd, item_ids=np.array([20, 30, 40]))
    dropped = to_sessions(sd, item_ids=np.array([20, 30, 40]), unknown="drop")
    assert dropped.n_events == sd.n_events - 3
    kept = to_sessions(sd, item_ids=np.array([20, 30, 40]), unknown="keep")
    assert (kept.items == -1).sum() == 3


def test_column_names_are_configurable():
    df = frame().rename(columns={"SessionId": "user", "ItemId": "movie", "Time": "ts"})
    assert_same(to_sessions(df, "user", "movie", "ts"), expected())
    assert_same(to_sessions(df, session_col="user", item_col="movie", time_col="ts"), expected())


def test_datetimes_and_iso_strings_become_unix_seconds():
    base = frame()
    t0 = pd.Timestamp("2021-03-04 05:06:07", tz="UTC")
    as_dt = base.assign(Time=t0 + pd.to_timedelta(base.Time, unit="s"))
    want = to_sessions(base.assign(Time=base.Time + t0.timestamp()))
    assert_same(to_sessions(as_dt), want)
    assert_same(to_sessions(as_dt.assign(Time=as_dt.Time.dt.tz_localize(None))), want)
    assert_same(to_sessions(as_dt.assign(Time=as_dt.Time.dt.tz_convert("Asia/Tokyo"))), want)
    iso = as_dt.assign(Time=as_dt.Time.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert_same(to_sessions(iso), want)
    pl = pytest.importorskip("polars")
    assert_same(to_sessions(pl.from_pandas(as_dt)), want)


def test_numeric_columns_are_not_copied_on_the_way_in():
    n = 1000
    s, i, t = np.repeat(np.arange(100), 10), np.arange(n) % 37, np.arange(n, dtype=np.float64)
    cols = _extract({"SessionId": s, "ItemId": i, "Time": t}, ("SessionId", "ItemId", "Time"),
                    ("session", "item", "time"), None, _Where())
    assert cols[0] is s and cols[1] is i and cols[2] is t
    df = pd.DataFrame({"SessionId": s, "ItemId": i, "Time": t})
    cols = _extract(df, ("SessionId", "ItemId", "Time"), ("session", "item", "time"), None,
                    _Where())
    assert np.shares_memory(cols[2].to_numpy(), df["Time"].to_numpy())
    pa = pytest.importorskip("pyarrow")
    tab = pa.table({"SessionId": s, "ItemId": i, "Time": t})
    cols = _extract(tab, ("SessionId", "ItemId", "Time"), ("session", "item", "time"), None,
                    _Where())
    buf = np.frombuffer(tab.column("Time").chunk(0).buffers()[1], np.float64)
    assert np.shares_memory(cols[2], buf)
    pl = pytest.importorskip("polars")
    pdf = pl.DataFrame({"SessionId": s, "ItemId": i, "Time": t})
    cols = _extract(pdf, ("SessionId", "ItemId", "Time"), ("session", "item", "time"), None,
                    _Where())
    assert np.shares_memory(cols[2], pdf["Time"].to_numpy())


# ------------------------------------------------------------------ fit / evaluate
@pytest.fixture(scope="module")
def synth():
    from grurec.synthetic import generate_sessions

    return generate_sessions(n_events=2000, n_items=50, mean_length=5, seed=2)


def _fit(src, **kw):
    return grurec.GRU4Rec(layers=[8], batch_size=8, n_sample=8, n_epochs=1, random_state=0,
                          show_progress=False, num_threads=1).fit(src, **kw)


def test_fit_and_evaluate_take_every_source(synth, tmp_path):
    ref = _fit(synth)
    res = grurec.evaluate(ref, synth.head(300))
    synth.to_csv(tmp_path / "e.csv", index=False)
    # (a text file's ids are strings unless pandas may guess: text_ids="infer")
    srcs = [to_sessions(tmp_path / "e.csv", text_ids="infer"),
            {k: synth[k].to_numpy() for k in synth.columns},
            to_sessions(synth)]
    try:
        import polars as pl

        srcs.append(pl.from_pandas(synth))
    except ImportError:
        pass
    try:
        import pyarrow as pa

        srcs.append(pa.Table.from_pandas(synth))
    except ImportError:
        pass
    for src in srcs:
        m = _fit(src)
        for k in ref.params:
            np.testing.assert_array_equal(m.params[k], ref.params[k])
    head = synth.head(300)
    head.to_csv(tmp_path / "t.csv", index=False)
    for src in (tmp_path / "t.csv", to_sessions(head), {k: head[k].to_numpy() for k in head}):
        assert grurec.evaluate(ref, src) == res


def test_evaluate_remaps_a_session_data_with_its_own_vocabulary(synth):
    m = _fit(synth)
    test = synth.head(300).copy()
    test.loc[test.index[5], "ItemId"] = 10**6  # unknown item
    sd = to_sessions(test)  # vocabulary: the test's items only
    assert not np.array_equal(sd.item_ids, m.item_ids)
    assert grurec.evaluate(m, sd) == grurec.evaluate(m, test)


def test_fit_checks_a_hand_built_session_data():
    bad = SessionData(np.array([0, 2]), np.array([0, 5], np.int32), np.array([1, 2]),
                      np.array([1]))
    with pytest.raises(ValueError, match="item index 5 of event 1 is outside the vocabulary"):
        _fit(bad)
    bad = SessionData(np.array([0, 3]), np.array([0, 1], np.int32), np.array([1, 2]),
                      np.array([1]))
    with pytest.raises(ValueError, match="offsets must start at 0 and end"):
        _fit(bad)


# ------------------------------------------------------------------ errors
def df3(**cols):
    base = {"SessionId": [1, 1, 2, 2], "ItemId": [1, 2, 3, 4], "Time": [0.0, 1.0, 2.0, 3.0]}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize("src,exc,match", [
    (df3().drop(columns="ItemId"), ValueError,
     r"item column 'ItemId' not found; the data has columns \['SessionId', 'Time'\] "
     r"\(pass item_col=... to name it\)"),
    (df3(ItemId=[1, 2, None, 4]), ValueError,
     r"column 'ItemId': missing value \(NaN/None\) at row 2"),
    (df3(ItemId=[1.0, np.nan, 3.0, 4.0]), ValueError, r"column 'ItemId': missing value .* row 1"),
    (df3(ItemId=pd.array([1, 2, 3, None], dtype="Int64")), ValueError, r"missing value .* row 3"),
    (df3(ItemId=["a", "b", None, "d"]), ValueError, r"column 'ItemId': missing value .* row 2"),
    (df3(SessionId=[1, None, 2, 2]), ValueError, r"column 'SessionId': missing value .* row 1"),
    (df3(Time=[0.0, 1.0, np.nan, 3.0]), ValueError, r"column 'Time': NaN time at row 2"),
    (df3(Time=[0, 1, None, 3]), ValueError, r"column 'Time': NaN time at row 2"),
    (df3(Time=[0.0, np.inf, 2.0, 3.0]), ValueError, r"column 'Time': infinite time at row 1"),
    (df3(Time=["0", "1", "soon", "3"]), ValueError,
     r"column 'Time': non-numeric time 'soon' at row 2 \(times must be numbers, datetimes or "
     r"ISO 8601 strings\)"),
    (df3(Time=pd.to_datetime(["2020-01-01", None, "2020-01-02", "2020-01-03"])), ValueError,
     r"NaN time at row 1"),
    (df3(ItemId=[1, "b", 3, "d"]), TypeError,
     r"column 'ItemId': mixed id types: 1 \(a number\) at row 0 and 'b' \(a string\) at row 1"),
    (df3(SessionId=["x", "x", 2, 2]), TypeError, r"column 'SessionId': mixed id types"),
    (df3(ItemId=[1.0, 2.5, 3.0, 4.0]), ValueError,
     r"column 'ItemId': id 2.5 at row 1 is not a whole number"),
    (df3(ItemId=[True, False, True, False]), TypeError, r"ids must be integers or strings, not "
                                                        "booleans"),
    (df3(ItemId=[(1,), (2,), (3,), (4,)]), TypeError, r"id \(1,\) \(tuple\) at row 0"),
    (df3(ItemId=[b"a", b"b", b"c", b"d"]), TypeError, r"id b'a' \(bytes\) at row 0"),
    (df3(ItemId=[2**70, 1, 2, 3]), ValueError, r"does not fit in 64 bits"),
    (df3().iloc[:0], ValueError, r"no events: the input is empty"),
    ({"SessionId": np.array([1, 1]), "ItemId": np.array([1]), "Time": np.array([0, 1])},
     ValueError, r"columns differ in length: 'SessionId' has 2 values, 'ItemId' has 1"),
    ({"SessionId": np.zeros(0), "ItemId": np.zeros(0), "Time": np.zeros(0)}, ValueError,
     "no events"),
    ({"SessionId": np.zeros((2, 2))}, ValueError, "item column 'ItemId' not found"),
    ([(1, 2, 3)], TypeError, r"events must be a pandas or polars DataFrame, a pyarrow Table, "
                             r"a dict of arrays, a path"),
])
def test_malformed_inputs_get_clear_errors(src, exc, match):
    with pytest.raises(exc, match=match):
        to_sessions(src)


def test_file_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("SessionId,ItemId,Time\n1,1,0\n1,2,1\n2,,2\n")
    with pytest.raises(ValueError, match=r"column 'ItemId': missing value \(NaN/None\) at row 2 "
                                         r"\(line 4 of '.*bad.csv'\)"):
        to_sessions(p)
    p.write_text("SessionId,ItemId,Time\n1,1,0\n1,2,later\n")
    with pytest.raises(ValueError, match=r"non-numeric time 'later' at row 1 \(line 3 of"):
        to_sessions(p)
    p.write_text("Session,Item,Time\n1,1,0\n")
    with pytest.raises(ValueError, match=r"session column 'SessionId' not found; the data has "
                                         r"columns \['Session', 'Item', 'Time'\]"):
        to_sessions(p)
    p.write_text("SessionId,ItemId,Time\n")
    with pytest.raises(ValueError, match=r"no events: the input '.*bad.csv' is empty"):
        to_sessions(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        to_sessions(tmp_path / "missing.csv")


def test_polars_and_arrow_errors():
    pl = pytest.importorskip("polars")
    d = pl.DataFrame({"SessionId": [1, 1], "ItemId": [1, None], "Time": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"column 'ItemId': missing value .* at row 1"):
        to_sessions(d)
    with pytest.raises(ValueError, match=r"time column 'T' not found; the data has columns "
                                         r"\['SessionId', 'ItemId', 'Time'\]"):
        to_sessions(d, time_col="T")
    with pytest.raises(ValueError, match=r"time column 'T' not found"):
        to_sessions(d.lazy(), time_col="T")
    with pytest.raises(ValueError, match="no events"):
        to_sessions(d.head(0))
    pa = pytest.importorskip("pyarrow")
    t = pa.table({"SessionId": [1, 1], "ItemId": ["a", None], "Time": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"column 'ItemId': missing value .* at row 1"):
        to_sessions(t)
    t = pa.table({"SessionId": [1, 1], "ItemId": ["a", "b"], "Time": [0.0, None]})
    with pytest.raises(ValueError, match=r"column 'Time': NaN time at row 1"):
        to_sessions(t)


def test_parquet_without_pyarrow_or_polars_names_the_package(tmp_path, monkeypatch):
    p = tmp_path / "e.parquet"
    p.write_bytes(b"PAR1")
    for mod in ("pyarrow", "pyarrow.parquet", "polars"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match=r"pip install pyarrow.*pip install polars"):
        to_sessions(p)


def test_vocabulary_errors():
    with pytest.raises(ValueError, match=r"item 9 at row 2 is not in the model's vocabulary "
                                         r"\(its 3 item ids are integers"):
        to_sessions(df3(ItemId=[1, 2, 9, 3]), item_ids=np.array([1, 2, 3]))
    # Ids of the other kind are an error of their own (issue 23), whatever
    # ``unknown`` says.
    with pytest.raises(TypeError, match=r"item 'a' at row 0 is a string, but the model's item "
                                        r"ids are integers"):
        to_sessions(df3(ItemId=["a", "b", "c", "d"]), item_ids=np.array([1, 2, 3]),
                    unknown="keep")
    with pytest.raises(ValueError, match="unknown must be one of"):
        to_sessions(df3(), unknown="ignore")
    with pytest.raises(ValueError, match="duplicate ids"):
        to_sessions(df3(), item_ids=np.array([1, 1, 2]))
    kept = to_sessions(df3(ItemId=[1, 2, 9, 4]), item_ids=np.array([1, 2, 4]), unknown="keep")
    assert list(kept.items) == [0, 1, -1, 2]
    assert kept.to_frame().ItemId.isna().sum() == 1


def test_to_frame_round_trips():
    sd = to_sessions(frame(True))
    assert_same(to_sessions(sd.to_frame()), sd)


@pytest.mark.parametrize("str_ids", [False, True], ids=["int-ids", "str-ids"])
def test_pandas_arrow_backed_columns(str_ids):
    pa = pytest.importorskip("pyarrow")
    df = frame(str_ids)
    ids = pa.string() if str_ids else pa.int64()
    arrow = df.astype({"SessionId": pd.ArrowDtype(ids), "ItemId": pd.ArrowDtype(ids),
                       "Time": pd.ArrowDtype(pa.float64())})
    assert_same(to_sessions(arrow), expected(str_ids))
    ts = df.assign(Time=pd.to_datetime(df.Time, unit="s", utc=True)).astype(
        {"Time": pd.ArrowDtype(pa.timestamp("ms", tz="UTC"))})
    assert_same(to_sessions(ts), expected(str_ids))
    arrow.loc[3, "Time"] = None
    with pytest.raises(ValueError, match="column 'Time': NaN time at row 3"):
        to_sessions(arrow)
