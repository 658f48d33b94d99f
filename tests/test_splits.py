"""Time splits keep the future out of training; leave-last-out for sequences."""
import os
from pathlib import Path

import pandas as pd
import pytest

from grurec.data import SessionData, to_sessions
from grurec.splits import leave_last_out, time_split

SHARED = Path(os.environ.get("GRUREC_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def events(rows):
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


# A: before the cut; B: straddles it (3, 4 | 6, 7); C starts at the cut;
# D after it with an item (5) train never sees; E: one event before the cut.
ROWS = [("A", 1, 1), ("A", 2, 2), ("B", 2, 3), ("B", 3, 4), ("B", 6, 6), ("B", 1, 7),
        ("C", 1, 5), ("C", 2, 7), ("C", 4, 7.5), ("D", 5, 8), ("D", 5, 9), ("E", 1, 4)]


def as_lists(sd):
    f = sd.to_frame()
    return {s: list(g.ItemId) for s, g in f.groupby("SessionId", sort=False)}


@pytest.mark.parametrize("mode,train,test", [
    ("test", {"A": [1, 2]}, {"B": [2, 3, 6, 1], "C": [1, 2, 4], "D": [5, 5]}),
    ("drop", {"A": [1, 2]}, {"C": [1, 2, 4], "D": [5, 5]}),
    ("truncate", {"A": [1, 2], "B": [2, 3]}, {"C": [1, 2, 4], "D": [5, 5]}),
    ("split", {"A": [1, 2], "B": [2, 3]}, {"B": [6, 1], "C": [1, 2, 4], "D": [5, 5]}),
])
def test_straddling_modes(mode, train, test):
    s = time_split(events(ROWS), cut=5, straddling=mode)
    assert as_lists(s.train) == train
    assert as_lists(s.test) == test
    assert s.cut == 5
    if mode != "test":
        assert s.train.times.max() < 5 <= s.test.times.min()
    else:
        assert "note: 2 test events precede the cut" in str(s.report)


def test_unseen_items_are_removed_only_when_asked():
    s = time_split(events(ROWS), cut=5)
    assert 5 in set(s.test.item_ids) and 4 in set(s.test.item_ids)
    s = time_split(events(ROWS), cut=5, drop_unseen_items=True)
    assert as_lists(s.test) == {"C": [1, 2]}
    step = s.report.find("remove items not in train", "test")
    assert (step.removed_events, step.removed_sessions, step.removed_items) == (3, 1, 2)
    short = s.report.find("remove sessions shorter than 2", "test")
    assert short.removed_events == 0
    tr = s.report.find("remove sessions shorter than 2", "train")
    assert (tr.removed_events, tr.removed_sessions) == (1, 1)  # E


def test_vocabularies_are_cut_to_each_part():
    s = time_split(events(ROWS), cut=5, straddling="truncate")
    assert list(s.train.item_ids) == [1, 2, 3]
    assert list(s.test.item_ids) == [1, 2, 4, 5]


def test_days_units_and_dates():
    rows = [(1, 1, 0.0), (1, 2, 3600.0), (2, 1, 86400.0 * 2), (2, 3, 86400.0 * 2 + 10)]
    s = time_split(events(rows), days=1)
    assert s.cut == pytest.approx(86400 + 10)
    assert as_lists(s.train) == {1: [1, 2]} and as_lists(s.test) == {2: [1, 3]}
    ms = events([(a, b, t * 1000) for a, b, t in rows])
    assert time_split(ms, days=1, unit="ms").cut == pytest.approx((86400 + 10) * 1000)
    dt = events([(a, b, pd.Timestamp("2021-01-01", tz="UTC") + pd.Timedelta(seconds=t))
                 for a, b, t in rows])
    s = time_split(dt, cut="2021-01-02")
    assert s.cut == pd.Timestamp("2021-01-02", tz="UTC").timestamp()
    assert as_lists(s.test) == {2: [1, 3]}
    s2 = time_split(dt, cut=pd.Timestamp("2021-01-02 01:00", tz="Europe/Paris"))
    assert s2.cut == s.cut


@pytest.mark.parametrize("kw,match", [
    (dict(), "exactly one of days= and cut="),
    (dict(days=1, cut=3), "exactly one of days= and cut="),
    (dict(days=-1), "days must be > 0"),
    (dict(days=1, straddling="both"), "straddling must be one of"),
    (dict(days=1, unit="h"), "unit must be one of"),
    (dict(cut="not a date"), "cut must be a number or a date/time"),
    (dict(days=1, min_length=0), "min_length must be >= 1"),
])
def test_time_split_argument_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        time_split(events(ROWS), **kw)


def test_time_split_needs_times():
    sd = to_sessions(events(ROWS))
    with pytest.raises(ValueError, match="needs event times"):
        time_split(SessionData(sd.offsets, sd.items, sd.item_ids, sd.session_ids), days=1)


def test_applied_again_gives_a_tuning_split():
    rows = [(s, s % 3, float(s * 20000)) for s in range(30) for _ in range(2)]
    full = time_split(events(rows), days=1)
    tune = time_split(full.train, days=1)
    assert tune.train.times.max() < tune.cut <= tune.test.times.min()
    assert tune.test.times.max() < full.cut


# ------------------------------------------------------------------ leave-last-out
SEQ = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "a", 4),
       ("u2", "a", 1), ("u2", "b", 2),
       ("u3", "c", 1), ("u3", "e", 2), ("u3", "f", 3)]


def test_leave_last_out():
    s = leave_last_out(events(SEQ))
    assert as_lists(s.train) == {"u1": ["a", "b"], "u2": ["a", "b"], "u3": ["c"]}
    assert as_lists(s.valid) == {"u1": ["a", "b", "c"], "u3": ["c", "e"]}
    assert as_lists(s.test) == {"u1": ["a", "b", "c", "a"], "u3": ["c", "e", "f"]}
    assert "1 users with fewer than 3 events" in str(s.report)


def test_leave_last_out_unseen_targets_only_when_asked():
    s = leave_last_out(events(SEQ), drop_unseen_items=True)
    assert as_lists(s.valid) == {"u1": ["a", "b", "c"]}  # u3's target e is not in train
    assert as_lists(s.test) == {"u1": ["a", "b", "c", "a"]}  # f occurs nowhere before
    assert s.report.find("remove users whose target", "valid").removed_sessions == 1


def test_leave_last_out_orders_by_time_not_by_rows():
    shuffled = events(SEQ).sample(frac=1, random_state=3)
    a, b = leave_last_out(shuffled), leave_last_out(events(SEQ))
    assert a.test.equals(b.test) and a.valid.equals(b.valid) and a.train.equals(b.train)
    with pytest.raises(ValueError, match="min_length must be >= 3"):
        leave_last_out(events(SEQ), min_length=2)


# ------------------------------------------------------------------ real data
needs_shared = pytest.mark.skipif(not (SHARED / "rsc15-100k").is_dir(),
                                  reason=f"shared data not found at {SHARED}")


@needs_shared
def test_gru4rec_split_reproduces_rsc15_100k_tuning_files_exactly():
    """rsc15-100k's train_tr / train_valid are the GRU4Rec split of train_full:
    the same split here gives them back event for event."""
    d = SHARED / "rsc15-100k"
    s = time_split(d / "yoochoose-clicks-100k_train_full.txt", days=1, straddling="test",
                   drop_unseen_items=True)
    assert s.train.equals(to_sessions(d / "yoochoose-clicks-100k_train_tr.txt"))
    assert s.test.equals(to_sessions(d / "yoochoose-clicks-100k_train_valid.txt"))
    assert (s.train.n_events, s.test.n_events) == (53_254, 16_539)
    removed = s.report.find("remove items not in train", "test")
    assert removed.removed_events == 422
    # ... and train_full / test from the two files put together.
    both = pd.concat([pd.read_csv(d / f"yoochoose-clicks-100k_{p}.txt", sep="\t")
                      for p in ("train_full", "test")])
    s = time_split(both, days=1, straddling="test", drop_unseen_items=True)
    # (read_csv guessed integer ids: read the files the same way)
    assert s.train.equals(to_sessions(d / "yoochoose-clicks-100k_train_full.txt",
                                      text_ids="infer"))
    assert s.test.equals(to_sessions(d / "yoochoose-clicks-100k_test.txt", text_ids="infer"))
    # The strict default loses the straddling sessions' later clicks instead.
    strict = time_split(both, days=1, drop_unseen_items=True)
    assert strict.train.times.max() < strict.test.times.min()
