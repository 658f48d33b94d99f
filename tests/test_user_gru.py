"""UserGRU: a GRU over each user's history (truncated BPTT, stored user
states, one-step updates). The gradients themselves are checked in
test_bptt.py; here the model around them."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import grurec

SMALL = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2, num_threads=1,
             random_state=0, show_progress=False)


@pytest.fixture(scope="module")
def events(user_events):
    return user_events


@pytest.fixture(scope="module")
def fitted(events):
    return grurec.UserGRU(bptt=4, **SMALL).fit(events)


@pytest.mark.parametrize("threads", [1, 2])
def test_bptt_1_trains_exactly_as_gru4rec(events, threads):
    kw = dict(SMALL, num_threads=threads, parallel="sync")
    u = grurec.UserGRU(bptt=1, **kw).fit(events)
    g = grurec.GRU4Rec(**kw).fit(events.rename(columns={"UserId": "SessionId"}))
    assert u.item_ids.tolist() == g.item_ids.tolist()
    for k in g.params:
        np.testing.assert_array_equal(u.params[k], g.params[k], err_msg=k)


def test_longer_windows_train_differently(events):
    a = grurec.UserGRU(bptt=1, **SMALL).fit(events)
    b = grurec.UserGRU(bptt=4, **SMALL).fit(events)
    assert not np.array_equal(a.params["W_hh0"], b.params["W_hh0"])
    assert np.isfinite(b.history[-1]["loss"])
    # Every (input, target) pair of every user trains once per epoch.
    n_pairs = int((events.groupby("UserId").size() - 1).clip(lower=0).sum())
    assert b.history[-1]["events"] == n_pairs


def test_stored_state_is_the_replayed_history(fitted, events, user_histories):
    hist = user_histories(events)
    users = list(hist)[:25]
    a_ids, a_sc = fitted.recommend(users=users, k=10)
    b_ids, b_sc = fitted.recommend([hist[u] for u in users], k=10, exclude_seen=True)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5, atol=1e-6)
    # Nothing leaks from the user trained before in the same slot: each
    # state is its own history's, from zero.
    h = fitted.user_states(users)
    idx = [fitted._lookup(hist[u]) for u in users]
    off = np.r_[0, np.cumsum([len(i) for i in idx])]
    want = fitted._states(off, np.concatenate(idx))
    np.testing.assert_allclose(h, want, rtol=1e-5, atol=1e-6)


def test_exclude_seen_removes_the_users_items(fitted, events, user_histories):
    hist = user_histories(events)
    users = list(hist)[:40]
    ids, _ = fitted.recommend(users=users, k=15)
    for u, row in zip(users, ids):
        assert not set(row.tolist()) & set(hist[u])
    ids2, _ = fitted.recommend(users=users, k=15, exclude_seen=False)
    assert any(set(r.tolist()) & set(hist[u]) for u, r in zip(users, ids2))


def test_update_then_recommend_equals_replay(events, user_histories):
    m = grurec.UserGRU(bptt=4, **SMALL).fit(events)
    hist = user_histories(events)
    u = next(iter(hist))
    new = [m.item_ids[3], m.item_ids[7], m.item_ids[3]]
    m.update(u, new[:1]).update(u, new[1:])
    a = m.recommend(users=[u], k=10)
    b = m.recommend([hist[u] + new], k=10, exclude_seen=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)
    # A new user starts from zero: the same as an empty history.
    m.update(-5, new)
    c = m.recommend(users=[-5], k=10)
    d = m.recommend([new], k=10, exclude_seen=True)
    np.testing.assert_array_equal(c[0], d[0])
    assert -5 in m.user_ids.tolist()


def test_unknown_user_gets_the_zero_state(fitted):
    a = fitted.recommend(users=[10**12], k=5)
    b = fitted.recommend([[]], k=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert fitted.last_unknown_users == 1


def test_update_unknown_items(events):
    m = grurec.UserGRU(bptt=2, **SMALL).fit(events)
    u = m.user_ids[0]
    before = m.user_states([u]).copy()
    m.update(u, ["no-such-item"] if m.item_ids.dtype.kind == "U" else [10**9])
    np.testing.assert_array_equal(m.user_states([u]), before)
    assert m.last_unknown_count == 1
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        m.update(u, [10**9], unknown="error")


def test_concurrent_updates_equal_sequential(events):
    m1 = grurec.UserGRU(bptt=2, **SMALL).fit(events)
    m2 = pickle.loads(pickle.dumps(m1))
    users = m1.user_ids[:8].tolist()
    items = m1.item_ids[:20]

    def work(m, u):
        for i in items:
            m.update(u, [i])

    ts = [threading.Thread(target=work, args=(m1, u)) for u in users]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for u in users:
        work(m2, u)
    np.testing.assert_allclose(m1.user_states(users), m2.user_states(users), rtol=0, atol=0)


def test_save_load_keeps_users(events, tmp_path):
    m = grurec.UserGRU(bptt=3, **SMALL).fit(events)
    m.update(10**9, [m.item_ids[1], m.item_ids[2]])
    users = m.user_ids[:5].tolist() + [10**9]
    want = m.recommend(users=users, k=8)
    p = tmp_path / "m.grurec"
    m.save(p)
    r = grurec.load(p)
    assert type(r) is grurec.UserGRU and r.bptt == 3
    got = r.recommend(users=users, k=8)
    np.testing.assert_array_equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    r.update(10**9, [m.item_ids[4]])  # the loaded store grows like the original
    m.update(10**9, [m.item_ids[4]])
    np.testing.assert_array_equal(r.user_states([10**9]), m.user_states([10**9]))
    with pytest.raises(TypeError, match="user ids are integers"):
        r.update("a string", [m.item_ids[4]])


def test_max_len_trains_on_the_last_events_only(events):
    L = 3
    trimmed = (events.sort_values(["UserId", "Time"], kind="stable")
               .groupby("UserId", sort=False).tail(L))
    a = grurec.UserGRU(bptt=2, max_len=L, **SMALL).fit(events)
    b = grurec.UserGRU(bptt=2, **SMALL).fit(trimmed)
    if a.item_ids.tolist() == b.item_ids.tolist():
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    else:  # the vocabulary is the trained events' either way
        pytest.fail("max_len changed the vocabulary")
    # ... but the states come from the whole history.
    u = a.user_ids[np.argmax(events.groupby("UserId").size().loc[a.user_ids].to_numpy())]
    assert not np.allclose(a.user_states([u]), b.user_states([u]))


def test_bad_hyperparameters_name_themselves():
    with pytest.raises(ValueError, match="bptt"):
        grurec.UserGRU(bptt=0)
    with pytest.raises(ValueError, match="max_len"):
        grurec.UserGRU(max_len=1)
    with pytest.raises(ValueError, match="valid"):
        grurec.UserGRU(**SMALL).fit(pd.DataFrame(dict(UserId=[1, 1], ItemId=[1, 2],
                                                      Time=[0, 1])), valid=0.1)


def test_users_and_sessions_are_exclusive(fitted):
    with pytest.raises(ValueError, match="not both"):
        fitted.recommend([[fitted.item_ids[0]]], users=[fitted.user_ids[0]])


@pytest.mark.parametrize("mode", ["input", "output", "both"])
def test_item_features_with_windows(events, tmp_path, mode, user_histories):
    """The feature tower under T-step windows: all-zero features train the
    id-only model exactly; real ones serve stored states as replays do."""
    from test_features_model import features

    items = np.unique(events["ItemId"])
    a = grurec.UserGRU(bptt=3, **SMALL).fit(events)
    b = grurec.UserGRU(bptt=3, feature_mode=mode, **SMALL).fit(
        events, item_features=features(items, zero=True))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    m = grurec.UserGRU(bptt=3, id_dropout=0.3, feature_mode=mode, **SMALL).fit(
        events, item_features=features(items))
    hist = user_histories(events)
    users = list(hist)[:10]
    x = m.recommend(users=users, k=10)
    y = m.recommend([hist[u] for u in users], k=10, exclude_seen=True)
    np.testing.assert_array_equal(x[0], y[0])
    m.save(tmp_path / "f.grurec")
    z = grurec.load(tmp_path / "f.grurec").recommend(users=users, k=10)
    np.testing.assert_array_equal(x[0], z[0])


def test_value_column_weights(events, tmp_path):
    kw = dict(SMALL, bptt=3)
    base = grurec.UserGRU(**kw).fit(events)
    # Equal values: weight 1 everywhere, exactly the unweighted model.
    same = grurec.UserGRU(**kw).fit(events.assign(Rating=4.0), value_col="Rating")
    for k in base.params:
        np.testing.assert_array_equal(base.params[k], same.params[k], err_msg=k)
    rng = np.random.default_rng(0)
    rated = events.assign(Rating=rng.integers(1, 6, len(events)).astype(float))
    a = grurec.UserGRU(**kw).fit(rated, value_col="Rating")
    assert not np.array_equal(a.params["W_y"], base.params["W_y"])
    # The values follow their rows: the input order does not matter.
    b = grurec.UserGRU(**kw).fit(rated.sample(frac=1.0, random_state=1), value_col="Rating")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    # ... also from a file, and with max_len.
    path = tmp_path / "rated.csv"
    rated.to_csv(path, index=False)
    c = grurec.UserGRU(**kw).fit(str(path), value_col="Rating")
    assert c.n_items == a.n_items and np.isfinite(c.history[-1]["loss"])
    grurec.UserGRU(max_len=3, **kw).fit(rated, value_col="Rating")


@pytest.mark.parametrize("bad,match", [(-1.0, "finite number >= 0"),
                                       (np.nan, "finite number >= 0"),
                                       ("x", "not a number")])
def test_bad_values_name_the_row(events, bad, match):
    df = events.assign(Rating=1.0).astype({"Rating": object})
    df.loc[df.index[7], "Rating"] = bad
    with pytest.raises(ValueError, match=f"value column 'Rating', row 7.*{match}"):
        grurec.UserGRU(**SMALL).fit(df, value_col="Rating")
    with pytest.raises(ValueError, match="value column 'Rating'.*value 0"):
        grurec.UserGRU(**SMALL).fit(events.assign(Rating=0.0), value_col="Rating")


def test_cli_trains_and_saves_a_user_model(events, tmp_path):
    from grurec.cli import main

    path = tmp_path / "users.csv"
    events.to_csv(path, index=False)
    out = tmp_path / "u.grurec"
    rc = main(["train", str(path), "-o", str(out), "--model", "usergru", "--session-col",
               "UserId", "--param", "bptt=3", "--param", "n_epochs=1", "--param", "layers=8",
               "--param", "num_threads=1", "--quiet"])
    assert rc == 0
    m = grurec.load(out)
    assert type(m) is grurec.UserGRU and m.bptt == 3 and len(m.user_ids) > 0


def test_warm_start_continues_weights_and_user_states(events):
    users = sorted(events.UserId.unique())
    old = events[events.UserId.isin(users[: len(users) // 2])]
    m = grurec.UserGRU(bptt=3, **SMALL).fit(old)
    before = {k: v.copy() for k, v in m.params.items()}
    states0 = m._users.states[: m._users.n].copy()
    m.fit(None, warm_start=True)  # nothing new: nothing changes
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])
    known = users[0]
    new_items = [m.item_ids[2], m.item_ids[9], m.item_ids[4]]
    t0 = events.Time.max() + 1
    new = pd.DataFrame(dict(UserId=[known] * 3 + [10**9] * 2,
                            ItemId=new_items + new_items[:2],
                            Time=t0 + np.arange(5)))
    m.fit(new, warm_start=True)
    assert any(not np.array_equal(m.params[k], before[k]) for k in before)
    # The known user's state: its old state advanced over the new events,
    # with the new weights; a new user starts from zero.
    r = m._users.index[known]
    idx = m._lookup(new_items)
    want = m._all_states(np.array([0, 3]), idx, h0=states0[r:r + 1])
    np.testing.assert_allclose(m._users.states[r:r + 1], want, rtol=1e-6, atol=1e-7)
    a = m.recommend(users=[10**9], k=5)
    b = m.recommend([new_items[:2]], k=5, exclude_seen=True)
    np.testing.assert_array_equal(a[0], b[0])
    # Other users keep their states; the new items count as seen.
    other = users[1]
    ro = m._users.index[other]
    np.testing.assert_array_equal(m._users.states[ro], states0[ro])
    assert set(new_items) <= set(m.item_ids[m._users.seen(r)].tolist())
