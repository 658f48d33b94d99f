"""Loaders: the literature's preprocessing on small files in the raw formats
(written here: no raw download is available), and the prepared files, whose
counts must match ../shared/data/README.md."""
import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grurec import datasets
from grurec.data import to_sessions

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "data"
SHARED = Path(os.environ.get("GRUREC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))


def seqs(sd):
    """{session id: [item ids]} in session order."""
    f = sd.to_frame()
    return {s: list(g.ItemId) for s, g in f.groupby("SessionId", sort=False)}


def removed(report, text, part="all"):
    s = report.find(text, part)
    return s.removed_events, s.removed_sessions, s.removed_items


def unix(ts):
    return pd.Timestamp(ts, tz="UTC").timestamp()


# ------------------------------------------------------------------ RSC15 (GRU4Rec)
RSC15_CLICKS = [  # SessionId, Timestamp, ItemId, Category
    (0, "2014-03-31T09:00:00.000Z", 10, 0), (0, "2014-03-31T09:01:00.000Z", 11, 0),
    (1, "2014-04-01T09:00:00.100Z", 10, "S"), (1, "2014-04-01T09:10:00.000Z", 11, 0),
    (1, "2014-04-01T09:20:00.000Z", 10, 0),
    (2, "2014-04-01T09:05:00.000Z", 10, 0), (2, "2014-04-01T09:15:00.000Z", 11, 0),
    (3, "2014-04-01T09:25:00.000Z", 11, 0), (3, "2014-04-01T09:30:00.000Z", 12, 0),
    (4, "2014-04-01T09:40:00.000Z", 99, 0),                                   # length 1
    (5, "2014-04-01T09:45:00.000Z", 10, 0), (5, "2014-04-01T09:50:00.000Z", 77, 0),  # 77 rare
    (6, "2014-04-02T12:00:00.000Z", 10, 0), (6, "2014-04-02T12:01:00.000Z", 11, 0),
    (6, "2014-04-02T12:02:00.000Z", 12, 0),                                   # last click
    (7, "2014-04-02T11:00:00.000Z", 12, 0), (7, "2014-04-02T11:05:00.000Z", 13, 0),  # 13 rare
    (8, "2014-04-01T12:00:00.000Z", 11, 0), (8, "2014-04-01T12:05:00.000Z", 12, 0),  # straddles
    (9, "2014-04-02T10:00:00.000Z", 10, 0), (9, "2014-04-02T10:01:00.000Z", 14, 0),
    (9, "2014-04-02T10:02:00.000Z", 14, 0),                                   # 14 test-only
]


def write_rsc15(path, rows):
    with (gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w")) as f:
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")


def test_rsc15_gru4rec_preprocessing(tmp_path):
    p = tmp_path / "yoochoose-clicks.dat"
    write_rsc15(p, RSC15_CLICKS)
    ds = datasets.load_rsc15(p, min_item_support=2)
    r = ds.report
    assert r[0].step == "read" and (r[0].events, r[0].sessions, r[0].items) == (22, 10, 7)
    assert removed(r, "remove sessions of length 1") == (1, 1, 1)          # session 4
    assert removed(r, "remove items with fewer than 2") == (2, 0, 2)      # 77, 13
    assert removed(r, "remove sessions shorter than 2") == (2, 2, 0)      # sessions 5, 7
    # Last click at 04-02 12:02: the cut is 04-01 12:02. Session 8 ends after
    # it, so all of it is test (assigned by its last click).
    assert seqs(ds.train) == {0: [10, 11], 1: [10, 11, 10], 2: [10, 11], 3: [11, 12]}
    assert seqs(ds.test) == {8: [11, 12], 6: [10, 11, 12]}  # 9 lost item 14, then its length
    assert removed(r, "test split: remove items not in train", "test") == (2, 0, 1)
    assert removed(r, "test split: remove sessions shorter than 2", "test") == (1, 1, 0)
    assert ds.test.times[0] == unix("2014-04-01T12:00:00")
    assert ds.train.times[0] == unix("2014-03-31T09:00:00")
    assert ds.events.n_events == 17
    # The same split on train: cut 03-31 09:30; session 3 loses item 12, then its length.
    assert seqs(ds.train_tr) == {0: [10, 11]}
    assert seqs(ds.valid) == {1: [10, 11, 10], 2: [10, 11]}


def test_rsc15_default_support_and_several_files(tmp_path):
    a, b = tmp_path / "clicks-a.dat", tmp_path / "clicks-b.dat.gz"
    write_rsc15(a, RSC15_CLICKS[:10])
    write_rsc15(b, RSC15_CLICKS[10:])
    two = datasets.load_rsc15([a, b], min_item_support=2, valid_days=None)
    write_rsc15(tmp_path / "all.dat", RSC15_CLICKS)
    one = datasets.load_rsc15(tmp_path / "all.dat", min_item_support=2, valid_days=None)
    assert two.train.equals(one.train) and two.test.equals(one.test)
    assert two.valid is None and two.train_tr is None
    ds = datasets.load_rsc15(tmp_path / "all.dat", valid_days=None)  # support >= 5
    # 12 (4 clicks), 77, 13, 14 (2); session 7 had only 12 and 13
    assert removed(ds.report, "remove items with fewer than 5") == (8, 1, 4)
    assert set(ds.events.item_ids[ds.events.items]) == {10, 11}


# ------------------------------------------------------------------ RetailRocket
H, M = 3_600_000, 60_000
T0 = 1_433_000_000_000
RR_EVENTS = [  # timestamp (ms), visitorid, event, itemid, transactionid
    (T0, 1, "view", 1, ""), (T0 + 5 * M, 1, "addtocart", 2, ""),
    (T0 + 10 * M, 1, "view", 2, ""), (T0 + 20 * M, 1, "view", 1, ""),          # session a
    (T0 + 3 * H, 1, "view", 3, ""), (T0 + 3 * H + M, 1, "view", 3, ""),        # repeat
    (T0 + 3 * H + 2 * M, 1, "view", 1, ""), (T0 + 3 * H + 3 * M, 1, "transaction", 1, "77"),
    (T0 + 1 * H, 2, "view", 2, ""), (T0 + 1 * H + 5 * M, 2, "view", 3, ""),    # c
    (T0 + 2 * H, 3, "view", 9, ""), (T0 + 2 * H + M, 3, "view", 6, ""),        # d: 9 rare
    (T0 + 2 * H + 30 * M, 4, "view", 6, ""), (T0 + 2 * H + 31 * M, 4, "view", 2, ""),  # h
    (T0 + 30 * H, 5, "view", 1, ""), (T0 + 30 * H + 5 * M, 5, "view", 2, ""),  # i: test
    (T0 + 6 * H, 6, "view", 1, ""), (T0 + 6 * H + 10 * M, 6, "view", 3, ""),   # j straddles
    (T0 + 6 * H + 20 * M, 6, "view", 2, ""),
    (T0 + 29 * H, 7, "view", 5, ""), (T0 + 29 * H + M, 7, "view", 1, ""),      # k: 5 test-only
    (T0 + 29 * H + 2 * M, 7, "view", 5, ""),
]


def test_retailrocket_gru4rec_recipe(tmp_path):
    p = tmp_path / "events.csv"
    pd.DataFrame(RR_EVENTS, columns=["timestamp", "visitorid", "event", "itemid",
                                     "transactionid"]).sample(frac=1, random_state=1) \
        .to_csv(p, index=False)  # row order must not matter
    ds = datasets.load_retailrocket(p, min_item_support=2, test_days=1, valid_days=None)
    r = ds.report
    assert removed(r, "keep events ['view']") == (2, 0, 0)
    s = r.find("sessions: a visitor's events split at gaps of 3600 s")
    assert (s.events, s.sessions) == (20, 8)  # visitor 1 has two sessions
    assert removed(r, "remove consecutive repeats") == (1, 0, 0)
    # Round 1 drops item 9; round 2 session d (now [6]) and then item 6; round 3
    # session h (now [2]); round 4 changes nothing.
    s = r.find("repeated until stable (4 rounds)")
    assert (s.removed_events, s.removed_sessions, s.removed_items) == (4, 2, 2)
    # ids are 0.. in (visitor, time) order: a=0, b=1, c=2, d=3, h=4, i=5, j=6, k=7.
    # The cut is 1 day before the last view (T0 + 30h05m): T0 + 6h05m. Session j
    # straddles it: its first view trains (then it is too short), the rest is dropped.
    assert seqs(ds.train) == {0: [1, 2, 1], 2: [2, 3], 1: [3, 1]}
    assert seqs(ds.test) == {5: [1, 2]}  # k lost item 5 (never in train), then its length
    assert removed(r, "test split: remove sessions shorter than 2", "train") == (1, 1, 0)
    assert ds.train.times.max() < ds.test.times.min()
    assert ds.test.times[0] == (T0 + 30 * H) / 1000


def test_retailrocket_options(tmp_path):
    p = tmp_path / "events.csv"
    pd.DataFrame(RR_EVENTS, columns=["timestamp", "visitorid", "event", "itemid",
                                     "transactionid"]).to_csv(p, index=False)
    ds = datasets.load_retailrocket(p, min_item_support=2, test_days=1, valid_days=None,
                                    remove_repeats=False, session_gap=4 * 3600,
                                    event_types=("view", "addtocart"))
    with pytest.raises(KeyError):
        ds.report.find("remove consecutive repeats")
    assert seqs(ds.train)[0] == [1, 2, 2, 1, 3, 3, 1]  # one session for visitor 1, cart kept


# ------------------------------------------------------------------ Diginetica (SR-GNN)
DIGI_VIEWS = [  # sessionId, userId, itemId, timeframe, eventdate
    (1, "", 10, 5000, "2016-05-01"), (1, "", 11, 1000, "2016-05-01"),
    (1, "", 12, 3000, "2016-05-01"),                                  # ordered by timeframe
    (2, "", 10, 0, "2016-05-02"), (2, "", 11, 100, "2016-05-02"),
    (3, "", 13, 0, "2016-05-03"),                                     # length 1
    (4, "", 12, 0, "2016-05-04"), (4, "", 14, 10, "2016-05-04"),      # 14 rare
    (5, "", 10, 0, "2016-05-25"), (5, "", 12, 10, "2016-05-25"),      # on the split date
    (6, "", 10, 0, "2016-05-26"), (6, "", 11, 10, "2016-05-26"),
    (6, "", 15, 20, "2016-05-26"), (6, "", 15, 30, "2016-05-26"),     # 15: test only
    (7, "", 12, 0, "2016-06-01"), (7, "", 15, 10, "2016-06-01"),
    (8, "", 11, 100, "2016-05-26"), (8, "", 10, 0, "2016-05-10"),     # dated by its last row
]


def test_diginetica_srgnn_preprocessing(tmp_path):
    p = tmp_path / "train-item-views.csv"
    pd.DataFrame(DIGI_VIEWS, columns=["sessionId", "userId", "itemId", "timeframe",
                                      "eventdate"]).to_csv(p, sep=";", index=False)
    ds = datasets.load_diginetica(p, min_item_support=2)
    r = ds.report
    assert removed(r, "remove sessions of length 1") == (1, 1, 1)
    assert removed(r, "remove items with fewer than 2") == (1, 0, 1)
    assert removed(r, "remove sessions shorter than 2") == (1, 1, 0)
    assert seqs(ds.train) == {1: [11, 12, 10], 8: [10, 11], 2: [10, 11]}
    assert seqs(ds.test) == {6: [10, 11]}
    s = r.find("sessions dated after the split date", "test")
    assert s.sessions == 2  # 6 and 7; session 5 (on the split date) is in neither part
    assert r.find("sessions dated before the split date", "train").sessions == 3
    assert removed(r, "remove items not in train", "test") == (3, 0, 1)
    assert removed(r, "remove sessions shorter than 2", "test") == (1, 1, 1)  # 7, its 12
    assert ds.train.times[0] == unix("2016-05-01") + 1.0  # first date + timeframe / 1000
    assert ds.valid is None


# ------------------------------------------------------------------ MovieLens
ML = [  # user, item, rating, timestamp
    (1, 10, 5, 100), (1, 20, 3, 90), (1, 30, 4, 110), (1, 40, 2, 110), (1, 50, 5, 120),
    (2, 10, 4, 50), (2, 20, 4, 51), (2, 30, 4, 52), (2, 40, 4, 53),
    (3, 60, 1, 10), (3, 10, 5, 20), (3, 20, 5, 30), (3, 30, 5, 40), (3, 40, 5, 50),
    (3, 50, 5, 60),
]


def write_movielens(tmp_path):
    (tmp_path / "ratings.dat").write_text("".join("::".join(map(str, r)) + "\n" for r in ML))
    (tmp_path / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in ML))
    pd.DataFrame(ML, columns=["userId", "movieId", "rating", "timestamp"]).astype(
        {"rating": float}).to_csv(tmp_path / "ratings.csv", index=False)
    return [tmp_path / "ratings.dat", tmp_path / "u.data", tmp_path / "ratings.csv"]


def test_movielens_as_user_sequences(tmp_path):
    for p in write_movielens(tmp_path):
        ds = datasets.load_movielens(p)
        assert removed(ds.report, "remove users with fewer than 5 ratings") == (4, 1, 0), p
        # time order; the tie at t=110 keeps the file's order (30 before 40)
        assert seqs(ds.test) == {3: [60, 10, 20, 30, 40, 50], 1: [20, 10, 30, 40, 50]}
        assert seqs(ds.valid) == {3: [60, 10, 20, 30, 40], 1: [20, 10, 30, 40]}
        assert seqs(ds.train) == {3: [60, 10, 20, 30], 1: [20, 10, 30]}
        assert ds.train_tr is ds.train
    ds = datasets.load_movielens(tmp_path / "u.data", min_rating=4, min_user_events=4)
    assert removed(ds.report, "keep ratings >= 4") == (3, 0, 1)
    assert seqs(ds.test) == {2: [10, 20, 30, 40], 3: [10, 20, 30, 40, 50]}
    ds = datasets.load_movielens(tmp_path / "u.data", min_item_events=3, min_user_events=4)
    assert removed(ds.report, "remove items with fewer than 3") == (3, 0, 2)  # 50, 60
    assert ds.test.n_sessions == 3
    with pytest.raises(ValueError, match=r"movielens: no events left after preprocessing"):
        datasets.load_movielens(tmp_path / "u.data", min_item_events=3)


# ------------------------------------------------------------------ RecBole, user-item
def test_recbole_tokens_and_header(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\ttags:token_seq\n"
                 "u1\t007\t1\t3\ta b\nu1\t7\t1\t1\t\nu1\tx\t1\t2\tc\nu2\t007\t1\t1\t\n")
    ds = datasets.load_recbole(p)
    assert seqs(ds.test) == {"u1": ["7", "x", "007"]}  # "007" is not the integer 7
    p.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\t4\n1\t4\t6\n")
    ds = datasets.load_recbole(p)
    assert ds.test.item_ids.dtype == np.int64 and seqs(ds.test) == {1: [3, 2, 4]}
    p.write_text("user_id\titem_id\n1\t2\n")
    with pytest.raises(ValueError, match="is not 'name:type'"):
        datasets.load_recbole(p)
    p.write_text("uid:token\titem_id:token\n1\t2\n")
    with pytest.raises(ValueError, match=r"user field 'user_id' not in the header .* it has "
                                         r"\['uid', 'item_id'\] \(pass user_field=...\)"):
        datasets.load_recbole(p)
    ds = datasets.load_recbole(p, user_field="uid", time_field=None)
    assert ds.events.n_events == 1


def test_user_item_file_keeps_file_order(tmp_path):
    p = tmp_path / "seq.txt"
    p.write_text("2 5\n2 3\n2 9\n1 1\n1 2\n1 3\n1 4\n")
    ds = datasets.load_user_item(p)
    assert seqs(ds.test) == {2: [5, 3, 9], 1: [1, 2, 3, 4]}
    assert seqs(ds.train) == {2: [5], 1: [1, 2]}


# ------------------------------------------------------------------ prepared samples
# (events, sessions, items) of tests/data, from tests/data/README.md (counted with awk)
SAMPLE_COUNTS = {
    "rsc15-100k_train_full.head300.txt": (300, 84, 179),
    "rsc15-100k_test.head300.txt": (300, 58, 192),
    "yoochoose1_64_train.head300.tsv.gz": (300, 75, 202),
    "yoochoose1_64_test.head300.tsv.gz": (300, 79, 171),
    "diginetica_train.head300.tsv.gz": (300, 73, 229),
    "diginetica_test.head300.tsv.gz": (300, 47, 230),
}


def counts(sd):
    return (sd.n_events, sd.n_sessions, sd.n_used_items())


@pytest.mark.parametrize("name", ["rsc15-100k", "yoochoose1_64", "diginetica"])
def test_prepared_session_samples(name):
    tr, te = sorted((f for f in SAMPLE_COUNTS if f.startswith(name)), key=lambda f: "test" in f)
    ds = datasets.load_session_files(SAMPLES / tr, SAMPLES / te, name=name)
    assert counts(ds.train) == SAMPLE_COUNTS[tr]
    assert counts(ds.test) == SAMPLE_COUNTS[te]
    assert [s.step for s in ds.report] == [f"read {tr}", f"read {te}"]


def test_prepared_sequence_samples():
    ds = datasets.load_user_item(SAMPLES / "amazon-beauty_users1-40.txt")
    assert counts(ds.events) == (410, 40, 385)
    assert counts(ds.test) == (410, 40, 385)  # every user has >= 5 actions
    assert ds.valid.n_events == 410 - 40 and ds.train.n_events == 410 - 80
    ds = datasets.load_user_sequences(SAMPLES / "beauty-s3rec_users1-200.txt")
    assert counts(ds.events) == (2798, 200, 2022)
    assert ds.events.item_ids.dtype.kind == "i" and ds.events.session_ids[0] == 1
    first = [int(v) for v in (SAMPLES / "beauty-s3rec_users1-200.txt").read_text().split()[:6]]
    assert list(ds.events.item_ids[ds.events.items[:5]]) == first[1:]  # user 1, in file order
    assert ds.valid.n_events == 2798 - 200 and ds.train.n_events == 2798 - 400
    ds = datasets.load_recbole(SAMPLES / "ml-100k.head300.inter")
    assert counts(ds.events) == (300, 153, 232)
    few = int((ds.events.lengths() < 3).sum())
    assert ds.test.n_sessions == 153 - few


def test_user_sequences_reject_bad_lines(tmp_path):
    p = tmp_path / "seq.txt"
    p.write_text("1 10 11\n2\n")
    with pytest.raises(ValueError, match="line 2: user '2' has no items"):
        datasets.load_user_sequences(p)
    p.write_text("1 10 11\n2 12 13\n1 14\n")
    with pytest.raises(ValueError, match="line 3: user '1' already on line 1"):
        datasets.load_user_sequences(p)


def test_sample_readme_lists_every_sample():
    text = (SAMPLES / "README.md").read_text()
    files = sorted(p.name for p in SAMPLES.iterdir() if p.name != "README.md")
    for f in files:
        assert f"`{f}`" in text
    for f, (e, s, i) in SAMPLE_COUNTS.items():
        assert f"| {e} | {s} | {i} |" in text


# ------------------------------------------------------------------ ../shared/data
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared data at {SHARED}")

# ../shared/data/README.md: events (train / test), sessions or users, items
README = {
    "rsc15-100k": dict(train=(70_278, 17_794, 2_933), test=(13_568, 3_416, None),
                       train_tr=(53_254, None, None), valid=(16_539, None, None), items=2_933),
    "yoochoose1_64": dict(train=(486_026, 116_167, None), test=(71_222, 15_324, None),
                          items=17_745, unseen_test_items=369),
    "diginetica": dict(train=(906_140, 186_670, None), test=(76_821, 15_963, None),
                       items=43_097),
    "amazon-beauty": dict(events=(353_962, 40_226, 54_542)),
    "ml-100k": dict(events=(100_000, 943, 1_682)),
    "beauty-s3rec": dict(events=(198_502, 22_363, 12_101)),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(README))
def test_prepared_loaders_reproduce_the_shared_readme(name):
    ds = datasets.load_prepared(name, SHARED)
    want = README[name]
    for part in ("train", "test", "train_tr", "valid", "events"):
        if part in want:
            got = counts(getattr(ds, part))
            for g, w in zip(got, want[part]):
                if w is not None:
                    assert g == w, (name, part, got, want[part])
    if "items" in want:
        assert ds.summary()["all_items"] == want["items"]
    if "unseen_test_items" in want:
        train_items = set(ds.train.item_ids[np.unique(ds.train.items)])
        test_items = set(ds.test.item_ids[np.unique(ds.test.items)])
        assert len(test_items - train_items) == want["unseen_test_items"]


@needs_shared
def test_shared_samples_are_the_beginning_of_the_shared_files():
    for sample, source in [("rsc15-100k_train_full.head300.txt",
                            "rsc15-100k/yoochoose-clicks-100k_train_full.txt"),
                           ("diginetica_test.head300.tsv.gz",
                            "diginetica/diginetica_sessions_test.tsv.gz")]:
        a = pd.read_csv(SAMPLES / sample, sep="\t")
        b = pd.read_csv(SHARED / source, sep="\t", nrows=len(a))
        pd.testing.assert_frame_equal(a, b)


def test_load_prepared_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown prepared data set 'x'; known:"):
        datasets.load_prepared("x")
    with pytest.raises(FileNotFoundError):
        datasets.load_prepared("rsc15-100k", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        datasets.load_rsc15(tmp_path / "missing.dat")


def test_report_prints_a_table(tmp_path):
    write_rsc15(tmp_path / "c.dat", RSC15_CLICKS)
    ds = datasets.load_rsc15(tmp_path / "c.dat", min_item_support=2)
    text = str(ds.report)
    assert text.splitlines()[0] == "rsc15" and "remove sessions of length 1" in text
    frame = ds.report.to_frame()
    assert list(frame.columns[:3]) == ["step", "part", "events"]
    assert len(frame) == len(ds.report)
    # every "removed" equals before - after along the all-data steps
    steps = [s for s in ds.report if s.part == "all"]
    for a, b in zip(steps, steps[1:]):
        if not b.step.startswith(("as sessions", "test split", "validation split")):
            assert a.events - b.removed_events == b.events


def test_loaded_data_trains(tmp_path):
    import grurec

    write_rsc15(tmp_path / "c.dat", RSC15_CLICKS)
    ds = datasets.load_rsc15(tmp_path / "c.dat", min_item_support=2)
    m = grurec.GRU4Rec(layers=[4], batch_size=2, n_sample=2, n_epochs=1, show_progress=False,
                       random_state=0).fit(ds.train)
    res = grurec.evaluate(m, ds.test)
    assert res["n_events"] == 3 and res["n_unknown_targets"] == 0
    assert to_sessions(ds.test.to_frame()).equals(ds.test)
