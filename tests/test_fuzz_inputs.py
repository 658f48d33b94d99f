"""Property-based fuzzing of the data-facing entry points (issue 6):
grurec.to_sessions (hence fit/evaluate input), grurec.splits, the
grurec.datasets loaders, model files (load/from_bytes) and the command line.

As in test_fuzz_api.py: every example ends in a correct result or in a
ValueError/TypeError (OSError for a file that cannot be read,
grurec.ModelFileError for a model file) naming the problem; nothing else.
"""
import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import zlib

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import grurec  # noqa: E402
from grurec import datasets, splits  # noqa: E402
from grurec.io import MAGIC, ModelFileError  # noqa: E402
from grurec.synthetic import generate_sessions  # noqa: E402

import reference as ref  # noqa: E402

from fuzzing import (Rejected, counted, fuzz_settings, is_int, nasty_values,  # noqa: E402
                     object_array, outcome, real)

NASTY = st.sampled_from(nasty_values())
COLS = ("S_col", "I_col", "T_col")


# ------------------------------------------------------------------ to_sessions
# Values that make an id column invalid, whatever its kind (a string is
# invalid in an integer column, a number in a string column).
BAD_ID = st.sampled_from([math.nan, None, math.inf, 1.5, True, b"x", 2**70, -(2**70), [1],
                          complex(1, 2), object()])
BAD_TIME = st.sampled_from([math.nan, math.inf, -math.inf, None, "soon", True, b"x", [1],
                            complex(1, 2), object()])


@st.composite
def events_with_fault(draw):
    n = draw(st.integers(1, 20))
    str_s, str_i = draw(st.booleans()), draw(st.booleans())
    sess = draw(st.lists(st.integers(-3, 5), min_size=n, max_size=n))
    items = draw(st.lists(st.one_of(st.integers(-5, 5), st.integers(-2**63, 2**63 - 1)),
                          min_size=n, max_size=n))
    times = draw(st.lists(st.one_of(st.floats(-1e12, 1e12), st.integers(-10**6, 10**6)),
                          min_size=n, max_size=n))
    if str_s:
        sess = [f"s{v}" for v in sess]
    if str_i:
        items = [f"i{v}" for v in items]
    rows = list(zip(sess, items, [float(t) for t in times]))
    fault = draw(st.sampled_from([None, None, "S_col", "I_col", "T_col", "mixed", "length",
                                  "2d", "missing", "dtype"]))
    cols = {"S_col": list(sess), "I_col": list(items), "T_col": list(times)}
    bad_col = None
    if fault in COLS:
        bad_col = fault
        pos = draw(st.integers(0, n - 1))
        cols[fault][pos] = draw(BAD_TIME if fault == "T_col" else BAD_ID)
    elif fault == "mixed":  # one id of the other kind
        bad_col = draw(st.sampled_from(["S_col", "I_col"]))
        pos = draw(st.integers(0, n - 1))
        is_str = str_s if bad_col == "S_col" else str_i
        cols[bad_col][pos] = 7 if is_str else "x7"
        if n == 1:
            bad_col = None  # a single id of either kind is fine
            rows = [(cols["S_col"][0], cols["I_col"][0], rows[0][2])]
    elif fault in ("length", "2d", "missing", "dtype"):
        bad_col = draw(st.sampled_from(COLS))
    return rows, cols, fault, bad_col


def build_source(cols, fault, bad_col, kind):
    arrays = {}
    for name, v in cols.items():
        # a typed array when every value has one type, else an object array
        # (np.array would turn a NaN among strings into the string 'nan')
        types = {type(e) for e in v}
        if types == {int} and all(-2**63 <= e < 2**63 for e in v):
            a = np.array(v, np.int64)
        elif types == {float}:
            a = np.array(v, np.float64)
        elif types == {str}:
            a = np.array(v, dtype=str)
        else:
            a = object_array(v)
        arrays[name] = a
    if fault == "length":
        arrays[bad_col] = arrays[bad_col][:-1]
        cols = dict(cols, **{bad_col: list(cols[bad_col])[:-1]})
    elif fault == "2d":
        arrays[bad_col] = np.stack([arrays[bad_col], arrays[bad_col]], axis=1)
    elif fault == "missing":
        arrays.pop(bad_col)
        cols = {k: v for k, v in cols.items() if k != bad_col}
    elif fault == "dtype":
        n = len(arrays[bad_col])
        arrays[bad_col] = (np.ones(n, np.complex64) if bad_col == "T_col"
                           else np.arange(n).astype("datetime64[s]"))
    if kind == "strided":  # non-contiguous views of the same values
        out = {}
        for k, a in arrays.items():
            if a.ndim == 1:
                big = np.empty(2 * len(a), dtype=a.dtype)
                big[::2] = a
                a = big[::2]
            out[k] = a
        return out
    if kind == "lists":
        return {k: list(a) if a.ndim == 1 else a for k, a in arrays.items()}
    if kind == "pandas" and fault not in ("length", "2d"):
        return pd.DataFrame({k: pd.Series(a, dtype=object if a.dtype == object else None)
                             for k, a in arrays.items()})
    return arrays


@fuzz_settings(500)
@given(case=events_with_fault(), kind=st.sampled_from(["numpy", "strided", "lists", "pandas"]))
@counted
def test_to_sessions_is_correct_or_names_the_column(case, kind):
    rows, cols, fault, bad_col = case
    src = build_source(cols, fault, bad_col, kind)
    try:
        sd = outcome(lambda: grurec.to_sessions(src, *COLS), *((bad_col,) if bad_col else ()))
    except Rejected:
        assert bad_col is not None, "valid events rejected"
        return
    assert bad_col is None, f"accepted although column {bad_col} is bad ({fault})"
    offsets, items, vocab, order, times = ref.session_layout(rows)
    assert sd.offsets.tolist() == offsets
    assert sd.items.tolist() == items
    assert sd.item_ids.tolist() == vocab
    assert sd.session_ids.tolist() == order
    assert sd.times.tolist() == times


@fuzz_settings(60)
@given(case=events_with_fault(), kind=st.sampled_from(["polars", "arrow"]))
@counted
def test_to_sessions_from_polars_and_arrow_agrees(case, kind):
    rows, cols, fault, bad_col = case
    if bad_col is not None or fault is not None:
        return  # mixed-type columns do not exist in polars/Arrow
    df = pd.DataFrame({k: v for k, v in cols.items()})
    if kind == "polars":
        pl = pytest.importorskip("polars")
        src = pl.from_pandas(df)
    else:
        pa = pytest.importorskip("pyarrow")
        src = pa.Table.from_pandas(df)
    assert grurec.to_sessions(src, *COLS).equals(grurec.to_sessions(df, *COLS))


# ------------------------------------------------------------------ splits
@st.composite
def small_events(draw):
    n = draw(st.integers(1, 30))
    return pd.DataFrame({
        "SessionId": draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)),
        "ItemId": draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)),
        "Time": draw(st.lists(st.floats(0, 30 * 86400), min_size=n, max_size=n)),
    })


def split_args_problems(days, cut, straddling, unit, min_length):
    problems = []
    if (days is None) == (cut is None):
        problems.append("days")
    if days is not None and not (real(days) and math.isfinite(days) and days > 0):
        problems.append("days")
    if cut is not None and real(cut) and not math.isfinite(cut) and cut == cut:
        pass  # +-inf: everything on one side, a valid (if empty) split
    elif cut is not None and not real(cut) and not isinstance(cut, str):
        problems.append("cut")
    elif cut is not None and real(cut) and math.isnan(cut):
        problems.append("cut")
    if not isinstance(straddling, str) or straddling not in splits.STRADDLING:
        problems.append("straddling")
    if not isinstance(unit, str) or unit not in ("s", "ms", "us", "ns"):
        problems.append("unit")
    if not is_int(min_length) or min_length < 1:
        problems.append("min_length")
    return problems


@fuzz_settings(300)
@given(events=small_events(), days=st.one_of(st.none(), st.floats(-2, 40), NASTY),
       cut=st.one_of(st.none(), st.floats(-1e6, 4e6), NASTY,
                     st.sampled_from(["1970-01-05", "1970-01-05T12:00:00+02:00", "soon"])),
       straddling=st.sampled_from(["truncate", "drop", "split", "test", "TEST", None, ["x"]]),
       unit=st.sampled_from(["s", "ms", "us", "ns", "h", None, ["s"]]),
       min_length=st.sampled_from([1, 2, 3, 0, -1, 2.5, "2", None, np.int64(2)]),
       drop_unseen=st.booleans())
@counted
def test_time_split_keeps_its_promise_or_names_the_argument(events, days, cut, straddling, unit,
                                                             min_length, drop_unseen):
    problems = split_args_problems(days, cut, straddling, unit, min_length)
    names = problems or ["days", "cut", "straddling", "unit", "min_length"]
    try:
        sp = outcome(lambda: splits.time_split(events, days=days, cut=cut, unit=unit,
                                               straddling=straddling, min_length=min_length,
                                               drop_unseen_items=drop_unseen), *names)
    except Rejected as e:
        # a string cut that is not a date/time is the only other rejection
        assert problems or (isinstance(cut, str) and "cut" in str(e)), str(e)
        return
    assert not problems, f"accepted although {problems} are bad"
    if straddling != "test":
        assert sp.train.n_events == 0 or sp.train.times.max() < sp.cut
        assert sp.test.n_events == 0 or sp.test.times.min() >= sp.cut
    else:
        for a, b in zip(sp.train.offsets[:-1], sp.train.offsets[1:]):
            assert sp.train.times[b - 1] < sp.cut
    for part in (sp.train, sp.test):
        assert (part.lengths() >= min_length).all()
    if drop_unseen and sp.test.n_events:
        assert set(sp.test.item_ids.tolist()) <= set(sp.train.item_ids.tolist())


@fuzz_settings(100)
@given(events=small_events(), min_length=st.sampled_from([3, 4, 2, 0, 3.5, "3", None,
                                                          np.int32(5)]),
       drop_unseen=st.booleans())
@counted
def test_leave_last_out_is_consistent_or_names_min_length(events, min_length, drop_unseen):
    try:
        sp = outcome(lambda: splits.leave_last_out(events, min_length=min_length,
                                                   drop_unseen_items=drop_unseen), "min_length")
    except Rejected:
        assert not (is_int(min_length) and min_length >= 3)
        return
    assert is_int(min_length) and min_length >= 3
    n_all = grurec.to_sessions(events).n_events
    assert sp.train.n_events + sp.test.n_sessions + sp.valid.n_sessions >= 0
    assert sp.train.n_events <= n_all
    assert (sp.test.lengths() >= min_length).all()


# ------------------------------------------------------------------ loaders
def _line(draw, fields):
    tok = st.one_of(st.integers(-5, 10**6).map(str), st.text(max_size=6), st.sampled_from(
        ["", "nan", "NaN", "inf", "2014-04-01T10:00:00.000Z", "view", "addtocart", "1e400",
         "99999999999999999999999", "\x00", "\"", "'"]))
    return [draw(tok) for _ in range(fields)]


@st.composite
def garbage_file(draw):
    loader = draw(st.sampled_from(["rsc15", "retailrocket", "diginetica", "movielens",
                                   "user_item", "recbole", "session_files"]))
    sep = {"rsc15": ",", "retailrocket": ",", "diginetica": ";", "movielens": "::",
           "user_item": " ", "recbole": "\t", "session_files": "\t"}[loader]
    width = {"rsc15": 4, "retailrocket": 5, "diginetica": 5, "movielens": 4, "user_item": 2,
             "recbole": 3, "session_files": 3}[loader]
    header = {"retailrocket": "timestamp,visitorid,event,itemid,transactionid",
              "diginetica": "sessionId;userId;itemId;timeframe;eventdate",
              "recbole": "user_id:token\titem_id:token\ttimestamp:float",
              "session_files": "SessionId\tItemId\tTime"}.get(loader)
    lines = [] if header is None or draw(st.integers(0, 9)) == 0 else [header]
    for _ in range(draw(st.integers(0, 12))):
        w = width + draw(st.sampled_from([0, 0, 0, -1, 1]))
        lines.append(sep.join(_line(draw, max(w, 1))))
    text = "\n".join(lines)
    raw = text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else \
        draw(st.binary(max_size=200))
    gz = draw(st.sampled_from([False, False, True]))
    return loader, raw, gz


def _load(loader, path):
    if loader == "rsc15":
        return datasets.load_rsc15(path, min_item_support=1)
    if loader == "retailrocket":
        return datasets.load_retailrocket(path)
    if loader == "diginetica":
        return datasets.load_diginetica(path)
    if loader == "movielens":
        return datasets.load_movielens(path)
    if loader == "user_item":
        return datasets.load_user_item(path)
    if loader == "recbole":
        return datasets.load_recbole(path)
    return datasets.load_session_files(path)


@fuzz_settings(250)
@given(case=garbage_file())
@counted
def test_loaders_reject_garbage_cleanly(case):
    loader, raw, gz = case
    names = {"movielens": "ratings.dat", "session_files": "train.tsv", "recbole": "x.inter"}
    name = names.get(loader, "events.csv") + (".gz" if gz else "")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
            f.write(raw)
        if gz and len(raw) % 3 == 0:  # a damaged compressed file
            with open(path, "r+b") as f:
                f.truncate(max(0, os.path.getsize(path) - 5))
        try:
            ds = _load(loader, path)
        except (ValueError, TypeError, OSError, EOFError) as e:
            assert str(e), f"{type(e).__name__} without a message"
            return
        # accepted: a consistent data set
        for part in (ds.train, ds.test):
            if part is not None:
                assert (np.diff(part.offsets) >= 0).all()
                assert part.n_events == 0 or (0 <= part.items.min() and
                                              part.items.max() < part.n_items)
                assert part.times is None or np.isfinite(part.times).all()


# ------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_bytes():
    df = generate_sessions(n_events=400, n_items=25, mean_length=5, seed=1)
    m = grurec.GRU4Rec(layers=[4], batch_size=4, n_sample=4, n_epochs=1, num_threads=1,
                       random_state=0, show_progress=False).fit(df)
    return m.to_bytes(optimizer=True)


def split_file(b):
    jlen = struct.unpack("<I", b[12:16])[0]
    start = -(-(32 + jlen) // 64) * 64
    return json.loads(b[32:32 + jlen]), b[start:-32]


def reseal(meta, data):
    """A file with valid CRC and SHA-256 around any metadata and data (what a
    hostile writer who knows the format produces)."""
    js = json.dumps(meta).encode()
    start = -(-(32 + len(js)) // 64) * 64
    total = start + len(data) + 32
    head = struct.pack("<8sIIQI", MAGIC, 2, len(js), total, 0)
    head += struct.pack("<I", zlib.crc32(head))
    body = head + js + bytes(start - 32 - len(js)) + data
    return body + hashlib.sha256(body).digest()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
              st.sampled_from([0, 1, 2, -1, 2**31, 2**63, 2**64, 10**30, "float32", "<f4",
                               "GRU4Rec", "pickle", "os.system", "__reduce__"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


_DELETE = object()


@fuzz_settings(400)
@given(data=st.data())
@counted
def test_resealed_hostile_metadata_is_rejected_or_loads_a_working_model(model_bytes, data):
    meta, region = split_file(model_bytes)
    paths = list(_paths(meta))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = list(_paths(meta))
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(st.one_of(JSON_VALUES, st.just(_DELETE)) if path else JSON_VALUES,
                          label="value")
        meta = _set(meta, path, value)
    if data.draw(st.booleans(), label="resize data"):
        cut = data.draw(st.integers(0, len(region)), label="cut")
        region = region[:cut] + data.draw(st.binary(max_size=64), label="tail")
    blob = reseal(meta, region)
    try:
        m = grurec.load(blob)
    except ModelFileError as e:
        assert str(e)
        return
    # Whatever loaded is a working model: finite weights of the right shapes;
    # recommend and a live session answer (or say the scores overflow float32,
    # possible with huge finite weights); it writes itself back identically.
    for a in m.params.values():
        assert np.isfinite(a).all()
    if m.params:
        try:
            ids, scores = m.recommend([list(m.item_ids[:3]), []], k=5)
            assert ids.shape == scores.shape == (2, min(5, len(m.item_ids)))
            assert np.isfinite(scores).all()
            m.new_session().click(m.item_ids[0]).recommend(3)
        except ValueError as e:
            assert "overflow" in str(e), str(e)
    back = grurec.GRU4Rec.from_bytes(m.to_bytes())
    assert back.to_bytes() == m.to_bytes()


@fuzz_settings(300)
@given(data=st.data(), how=st.sampled_from(["random", "flip", "splice", "stream"]))
@counted
def test_damaged_model_bytes_are_rejected(model_bytes, data, how):
    b = bytearray(model_bytes)
    if how == "random":
        blob = data.draw(st.one_of(st.binary(max_size=300),
                                   st.binary(max_size=100).map(lambda x: MAGIC + x)))
    elif how == "flip":  # several bytes at once (single flips: test_io.py)
        for i in data.draw(st.sets(st.integers(0, len(b) - 1), min_size=2, max_size=6)):
            b[i] ^= data.draw(st.integers(1, 255))
        blob = bytes(b)
    elif how == "splice":
        i = data.draw(st.integers(0, len(b)))
        j = data.draw(st.integers(i, len(b)))
        blob = bytes(b[:i]) + data.draw(st.binary(max_size=40)) + bytes(b[j:])
        if blob == model_bytes:
            return
    else:  # a stream that delivers a damaged file in odd chunks
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] ^= 0x40
        blob = io.BufferedReader(io.BytesIO(bytes(b)), buffer_size=7)
    with pytest.raises(ModelFileError):
        grurec.load(blob)


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    df = generate_sessions(n_events=300, n_items=20, mean_length=5, seed=2)
    df.to_csv(d / "events.csv", index=False)
    m = grurec.GRU4Rec(layers=[4], batch_size=4, n_sample=4, n_epochs=1, num_threads=1,
                       random_state=0, show_progress=False).fit(df)
    m.save(d / "model.grurec")
    (d / "unfitted.grurec").write_bytes(grurec.GRU4Rec().to_bytes())
    (d / "garbage.grurec").write_bytes(b"\x80\x04garbage")
    (d / "bad.csv").write_text("SessionId,ItemId,Time\n1,2,soon\n1,3,4\n")
    return d


@st.composite
def argv_strategy(draw, d):
    files = [str(d / n) for n in ("events.csv", "model.grurec", "unfitted.grurec",
                                  "garbage.grurec", "bad.csv", "missing.csv")] + [str(d)]
    f = st.sampled_from(files)
    val = st.one_of(st.integers(-3, 5).map(str), st.sampled_from(
        ["0", "1e9", "nan", "inf", "-1", "x", "", "2.5", "true", "99999999999"]))
    cmd = draw(st.sampled_from(["train", "evaluate", "recommend", "bogus"]))
    argv = [cmd]
    if cmd == "train":
        argv += [draw(f), "-o", str(d / "out.grurec"), "--quiet", "--n-epochs",
                 draw(st.sampled_from(["1", "0", "-1", "x"]))]
        for opt in draw(st.lists(st.sampled_from(
                ["--layers", "--batch-size", "--n-sample", "--learning-rate", "--momentum",
                 "--dropout-p-embed", "--num-threads", "--loss", "--embedding",
                 "--constrained-embedding", "--sample-alpha", "--item-col"]), max_size=3)):
            argv += [opt, draw(val)]
        argv += draw(st.sampled_from([[], ["--preset", "rsc15_xe_shared_100"], ["--preset", "search_diginetica_valid"],
                                      ["--preset", "x"], ["--preset"]]))
    elif cmd == "evaluate":
        argv += [draw(f), draw(f)] + draw(st.sampled_from(
            [[], ["--cutoffs", "0"], ["--cutoffs", "5", "x"], ["--mode", "x"], ["--json"]]))
    elif cmd == "recommend":
        argv += [draw(f)] + draw(st.lists(val, max_size=3)) + draw(st.sampled_from(
            [[], ["-k", "0"], ["-k", "3"], ["--events", files[0]], ["--events", files[4]],
             ["--exclude-seen"]]))
    return argv


@fuzz_settings(120)
@given(data=st.data())
@counted
def test_cli_exits_cleanly(cli_files, data):
    argv = data.draw(argv_strategy(cli_files), label="argv")
    from grurec import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse: usage errors exit 2
            rc = e.code
    assert rc in (0, 2), (argv, rc, err.getvalue())
    if rc == 2:
        assert err.getvalue().strip(), "exit 2 without a message"
        assert "Traceback" not in err.getvalue()
