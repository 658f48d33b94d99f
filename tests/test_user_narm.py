"""UserNARM: NARM's attention readout over each user's history, served from
stored states. The attention's training gradients are checked in
test_narm.py (float64 reference, every SIMD level); here the model around
them: the kept span answers as a replay of the whole history does, after
fit, after update (one item and many), after a warm start and after a save
and load."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import grurec

SMALL = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2, num_threads=1,
             random_state=0, show_progress=False)


@pytest.fixture(scope="module")
def events(user_events):
    return user_events


# (bptt, attention_memory): windows only, windows + memory, GRU4Rec's schedule
# with memory, and a span longer than any history.
CONFIGS = [(4, 0), (3, 2), (1, 5), (64, 0)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"T{c[0]}M{c[1]}")
def fitted(request, events):
    T, M = request.param
    return grurec.UserNARM(bptt=T, attention_memory=M, **SMALL).fit(events)


def _same_as_replay(model, users, hist, k=15):
    a_ids, a_sc = model.recommend(users=users, k=k)
    b_ids, b_sc = model.recommend([hist[u] for u in users], k=k, exclude_seen=True)
    np.testing.assert_allclose(a_sc, b_sc, rtol=2e-5, atol=2e-5)
    # Ids equal except where two scores tie to float precision.
    close = np.isclose(a_sc, b_sc, rtol=0, atol=1e-6)
    assert (a_ids == b_ids)[close].mean() > 0.99


def test_stored_span_is_the_replayed_history(fitted, events, user_histories):
    hist = user_histories(events)
    users = list(hist)
    _same_as_replay(fitted, users, hist)
    # The attention is in the query: it differs from the plain GRU state.
    q = fitted._user_queries(fitted._users, np.arange(5))
    assert not np.allclose(q, fitted.user_states(users[:5]), atol=1e-3)


@pytest.mark.parametrize("n_new", [1, 3, 9])
def test_update_then_recommend_equals_replay(events, n_new, user_histories):
    hist = user_histories(events)
    m = grurec.UserNARM(bptt=3, attention_memory=2, **SMALL).fit(events)
    rng = np.random.default_rng(n_new)
    items = m.item_ids
    users = list(hist)[:12]
    for u in users:
        new = rng.choice(items, n_new).tolist()
        for j in range(0, n_new, 2):  # in pieces: the span carries across calls
            m.update(u, new[j:j + 2])
        hist[u] = hist[u] + new
    _same_as_replay(m, users, hist)


def test_new_user_and_unknown_items(events, user_histories):
    hist = user_histories(events)
    m = grurec.UserNARM(bptt=2, attention_memory=3, **SMALL).fit(events)
    u = max(hist) + 1000
    m.update(u, [m.item_ids[0], -12345, m.item_ids[5]])
    assert m.last_unknown_count == 1
    hist[u] = [m.item_ids[0], m.item_ids[5]]
    _same_as_replay(m, [u], hist)
    # Unknown user: the zero query, as an empty history.
    a, sa = m.recommend(users=[u + 1], k=5)
    b, sb = m.recommend([[]], k=5)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)


def test_save_load_keeps_the_span(events, tmp_path, user_histories):
    hist = user_histories(events)
    m = grurec.UserNARM(bptt=3, attention_memory=2, **SMALL).fit(events)
    users = list(hist)[:30]
    m.update(users[0], [m.item_ids[3]])
    path = tmp_path / "m.grurec"
    m.save(path)
    m2 = grurec.load(path)
    assert type(m2) is grurec.UserNARM and m2.attention_memory == 2
    a = m.recommend(users=users, k=10)
    b = m2.recommend(users=users, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # The loaded store keeps working: updates apply to the span.
    for mm in (m, m2):
        mm.update(users[1], [m.item_ids[7], m.item_ids[8]])
    np.testing.assert_array_equal(m.recommend(users=users, k=10)[1],
                                  m2.recommend(users=users, k=10)[1])


def test_a_usergru_file_is_not_a_usernarm(events, tmp_path):
    g = grurec.UserGRU(bptt=3, **SMALL).fit(events)
    g.save(tmp_path / "g.grurec")
    assert type(grurec.load(tmp_path / "g.grurec")) is grurec.UserGRU


def test_warm_start_advances_the_span(events):
    users = sorted(events.UserId.unique())
    m = grurec.UserNARM(bptt=3, attention_memory=2, **SMALL).fit(
        events[events.UserId.isin(users[: len(users) // 2])])
    st = m._users
    states0, span0, n0 = st.states[:st.n].copy(), st.span[:st.n].copy(), st.n_pos[:st.n].copy()
    known, other = users[0], users[1]
    new_items = [m.item_ids[2], m.item_ids[9], m.item_ids[4]]
    t0 = events.Time.max() + 1
    new = pd.DataFrame(dict(UserId=[known] * 3 + [10**9] * 2, ItemId=new_items + new_items[:2],
                            Time=t0 + np.arange(5)))
    m.fit(new, warm_start=True)
    st = m._users
    # The known user: three more positions, whose states are its old state
    # stepped (GRU4Rec's one-step path) with the new weights; the older kept
    # rows shift up.
    r = st.index[known]
    assert st.n_pos[r] == n0[r] + 3
    hs, off = [], 0
    for H in m.layers:
        hs.append(states0[r:r + 1, off:off + H].copy())
        off += H
    want = [m._step(hs, np.array([i]))[0].copy() for i in m._lookup(new_items).tolist()]
    np.testing.assert_allclose(st.span[r, -3:], np.array(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(st.span[r, :-3], span0[r, 3:])
    # A new user is its new events replayed; other users keep their span.
    a = m.recommend(users=[10**9], k=5)
    b = m.recommend([new_items[:2]], k=5, exclude_seen=True)
    np.testing.assert_allclose(a[1], b[1], rtol=2e-5, atol=2e-5)
    ro = st.index[other]
    np.testing.assert_array_equal(st.span[ro], span0[ro])
    assert st.n_pos[ro] == n0[ro]


def test_evaluate_users_and_hyperparameters(events):
    m = grurec.UserNARM(bptt=4, attention_memory=1, **SMALL).fit(events)
    r = grurec.evaluate_users(m, events, protocol="loo", cutoffs=(10,), show_progress=False)
    assert 0 < r["hr@10"] <= 1
    p = m.get_params()
    assert p["bptt"] == 4 and p["attention_memory"] == 1 and p["max_len"] is None
    assert "bptt=4" in repr(m)
    with pytest.raises(ValueError, match="attention_memory"):
        grurec.UserNARM(attention_memory=-1, **SMALL).fit(events)
    d = grurec.UserNARM.from_preset("beauty-s3rec", attention_memory=3)
    assert d.attention_memory == 3 and d.n_sample == grurec.presets.get_user_narm(
        "beauty-s3rec")["n_sample"]
