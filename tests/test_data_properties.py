"""Property tests (hypothesis) for the data layer: the layout against a
plain-Python reference, and the split guarantees on random sessions and cuts."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from grurec.data import to_sessions  # noqa: E402
from grurec.splits import time_split  # noqa: E402

import reference as ref  # noqa: E402


def events(rows):
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 6), st.one_of(st.integers(-5, 5)),
                          st.integers(0, 4).map(float)), min_size=1, max_size=40),
       st.booleans())
def test_layout_matches_a_plain_python_reference(rows, str_ids):
    if str_ids:
        rows = [(f"s{s}", f"i{i}", t) for s, i, t in rows]
    offsets, items, vocab, order, times = ref.session_layout(rows)
    s, i, t = map(list, zip(*rows))
    for src in (pd.DataFrame({"SessionId": s, "ItemId": i, "Time": t}),
                {"SessionId": np.array(s, dtype=object if str_ids else np.int64),
                 "ItemId": np.array(i, dtype=object if str_ids else np.int64),
                 "Time": np.array(t)}):
        sd = to_sessions(src)
        assert sd.offsets.tolist() == offsets
        assert sd.items.tolist() == items
        assert sd.item_ids.tolist() == vocab
        assert sd.session_ids.tolist() == order
        assert sd.times.tolist() == times


sessions_strategy = st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=6),
                             min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(sessions_strategy, st.integers(0, 55), st.sampled_from(["truncate", "drop", "split",
                                                                "test"]),
       st.booleans(), st.integers(1, 3))
def test_split_guarantees(sessions, cut, mode, unseen, min_length):
    rows = [(s, (t * 7 + s) % 5, float(t)) for s, ts in enumerate(sessions) for t in ts]
    df = events(rows)
    sp = time_split(df, cut=cut + 0.5, straddling=mode, drop_unseen_items=unseen,
                    min_length=min_length)
    tr, te = sp.train, sp.test
    if mode == "test":  # whole sessions by their last event
        assert tr.n_events == 0 or tr.times[tr.offsets[1:] - 1].max() < sp.cut
        if not unseen:  # (removing unseen items may remove a test session's last event)
            assert te.n_events == 0 or te.times[te.offsets[1:] - 1].min() >= sp.cut
    else:  # no test event precedes a training event
        assert tr.n_events == 0 or te.n_events == 0 or tr.times.max() < te.times.min()
        assert tr.n_events == 0 or tr.times.max() < sp.cut
        assert te.n_events == 0 or te.times.min() >= sp.cut
    assert (tr.lengths() >= min_length).all() and (te.lengths() >= min_length).all()
    if unseen and te.n_events:
        assert set(te.item_ids[te.items]) <= set(tr.item_ids[tr.items])
    # every output event is an input event, none more often than it occurs
    got = Counter((s, i, t) for part in (tr, te)
                  for s, i, t in part.to_frame().itertuples(index=False))
    assert not got - Counter(rows)
    got = list(got.elements())
    if mode in ("split", "test") and not unseen and min_length == 1:
        assert len(got) == len(rows)  # nothing lost
    # the report adds up
    last_train = [s for s in sp.report if s.part == "train"][-1]
    last_test = [s for s in sp.report if s.part == "test"][-1]
    assert (last_train.events, last_train.sessions) == (tr.n_events, tr.n_sessions)
    assert (last_test.events, last_test.sessions) == (te.n_events, te.n_sessions)
    for s in sp.report:
        assert min(s.removed_events, s.removed_sessions, s.removed_items) >= 0


