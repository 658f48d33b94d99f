"""Item features on the output side (feature_mode "output" / "both"),
cold items served with add_items, and warm-start training (issue 18)."""
import numpy as np
import pandas as pd
import pytest
from test_features_model import MODES, features, settings

import grurec
from grurec.synthetic import generate_sessions


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=3000, n_items=150, seed=1)


@pytest.mark.parametrize("fmode", ["output", "both"])
@pytest.mark.parametrize("kw", MODES)
def test_all_zero_features_train_exactly_the_id_only_model(events, kw, fmode):
    items = np.unique(events["ItemId"])
    a = grurec.GRU4Rec(**settings(**kw)).fit(events)
    b = grurec.GRU4Rec(**settings(feature_mode=fmode, **kw)).fit(
        events, item_features=features(items, zero=True))
    # "both" with the shared embedding shares the feature tables too
    separate = fmode == "both" and not b.constrained_embedding
    extra = {"feat_out_T0", "feat_out_W_z"} | ({"feat_T0", "feat_W_z"} if separate else set())
    assert set(b.params) - set(a.params) == extra
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    sess = [[int(items[1]), int(items[2]), int(items[3])]]
    for x, y in zip(a.recommend(sess, k=10), b.recommend(sess, k=10)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fmode", ["output", "both"])
@pytest.mark.parametrize("kw", MODES)
def test_output_features_train_save_load_and_serve_alike(events, kw, fmode, tmp_path):
    items = np.unique(events["ItemId"])
    m = grurec.GRU4Rec(**settings(id_dropout=0.3, feature_mode=fmode, **kw)).fit(
        events, item_features=features(items))
    assert all(np.isfinite(h["loss"]) for h in m.history)
    T = m.params["feat_out_T0"]
    assert T.shape[1] == m.layers[-1] and np.abs(T[1:]).sum() > 0 and not T[0].any()
    W, b = m._output_params()
    assert not np.array_equal(W, m.params["W_y"])
    sess = [[int(items[3]), int(items[7]), int(items[1])]]
    ids, scores = m.recommend(sess, k=10)
    # the scores are those of the scoring table W_y + features
    h = m._states(np.array([0, 3]), m._lookup(sess[0]))
    dense = (h.astype(np.float64) @ W.T.astype(np.float64) + b)[0]
    np.testing.assert_allclose(scores[0], np.sort(dense)[::-1][:10], rtol=1e-5, atol=1e-5)
    live = m.new_session()
    for i in sess[0]:
        live.click(i)
    lids, lscores = live.recommend(10)
    np.testing.assert_array_equal(lids, ids[0])
    np.testing.assert_allclose(lscores, scores[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.prepare_serving().recommend(sess, k=10)[0], ids)
    path = tmp_path / "m.grurec"
    m.save(path)
    back = grurec.load(path)
    assert back.feature_mode == fmode
    r = back.recommend(sess, k=10)
    np.testing.assert_array_equal(r[0], ids)
    np.testing.assert_array_equal(r[1], scores)


# ----------------------------------------------------------------- add_items
COLD = np.arange(1000, 1020)


def frame(ids, seed=0):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pd.DataFrame({
        "ItemId": ids,
        "genres": [list(rng.choice(["a", "b", "c", "d"], rng.integers(0, 3))) for _ in ids],
        "price": rng.standard_normal(n),
        "emb": [list(rng.standard_normal(3)) for _ in ids],
    })


def fitted_with_cold(events, fmode="output", cls=grurec.GRU4Rec, col="SessionId", **kw):
    items = np.unique(events["ItemId"])
    df = frame(np.concatenate([items, COLD]))
    f = grurec.ItemFeatures(df, categorical=["genres"], numeric=["price"], dense=["emb"])
    m = cls(**settings(id_dropout=0.3, feature_mode=fmode, **kw)).fit(
        events if col == "SessionId" else events.rename(columns={"SessionId": col}),
        item_features=f)
    return m, f, df[df.ItemId >= 1000]


def projection(m, f, ids, side="feat_out_"):
    """float64 feature projection of items ``ids`` from ``f`` (NumPy)."""
    enc = f.encode(ids)
    d = lambda a: np.asarray(a, np.float64)  # noqa: E731
    x = d(enc.z) @ d(m.params[f"{side}W_z"])
    T = d(m.params[f"{side}T0"])
    off, cid = enc.cat_offsets[0], enc.cat_ids[0]
    for i in range(len(ids)):
        c = cid[off[i]:off[i + 1]]
        for v in c:
            x[i] += T[v] / len(c)
    return x


@pytest.mark.parametrize("fmode", ["output", "both"])
@pytest.mark.parametrize("kw", MODES)
def test_add_items_ranks_cold_items_by_their_features(events, kw, fmode):
    m, f, cold_df = fitted_with_cold(events, fmode, **kw)
    N = m.n_items
    W0, b0 = (a.copy() for a in m._output_params())
    sess = [[int(m.item_ids[3]), int(m.item_ids[7])]]
    before = m.recommend(sess, k=10)
    old = m._snapshot()
    assert m.add_items(cold_df) is m
    assert m.n_items == N + 20 and list(m.item_ids[N:]) == list(COLD)
    assert (m.popularity[N:] == 0).all() and not m.params["W_y"][N:].any()
    assert old.n_items == N  # a reader of the old model keeps it
    W, b = m._output_params()
    np.testing.assert_array_equal(W[:N], W0)
    np.testing.assert_array_equal(b[:N], b0)
    assert not b[N:].any()
    np.testing.assert_allclose(W[N:], projection(m, f, COLD), rtol=1e-5, atol=1e-5)
    # recommend ranks against the scoring table with the cold rows (float64 check)
    h = m._states(np.array([0, 2]), m._lookup(sess[0])).astype(np.float64)
    dense = h[0] @ np.concatenate([np.asarray(W0, np.float64), projection(m, f, COLD)]).T
    dense += np.concatenate([b0, np.zeros(20)])
    ids, scores = m.recommend(sess, k=N + 20)
    np.testing.assert_allclose(scores[0], np.sort(dense)[::-1], rtol=1e-4, atol=1e-4)
    assert set(ids[0]) == set(m.item_ids)
    # the old items' order is unchanged; only cold ones are interleaved
    warm_order = [i for i in ids[0] if i < 1000][:10]
    np.testing.assert_array_equal(warm_order, before[0][0])
    # filter_items and exclude_seen apply to cold items
    only = m.recommend(sess, k=5, filter_items=list(COLD[:8]))[0][0]
    assert set(only) <= set(COLD[:8]) and len(only) == 5
    live = m.new_session()
    for i in [*sess[0], int(COLD[0])]:
        live.click(i)
    assert live.n_unknown == 0
    assert int(COLD[0]) not in live.recommend(N + 20, exclude_seen=True)[0]
    if fmode == "both":  # a click on a cold item feeds its input features
        still = m.new_session()
        for i in sess[0]:
            still.click(i)
        assert not np.array_equal(still.recommend(5)[1], live.recommend(5)[1])
    # evaluate ranks cold targets among all items
    test = pd.DataFrame({"SessionId": [1, 1, 1], "ItemId": [*sess[0], int(COLD[2])],
                         "Time": [1, 2, 3]})
    r = grurec.evaluate(m, test, cutoffs=(N + 20,))
    assert r["n_unknown_targets"] == 0 and r[f"recall@{N + 20}"] == 1.0


def test_add_items_survives_save_load_and_prepare_serving(events, tmp_path):
    m, f, cold_df = fitted_with_cold(events, "both")
    m.prepare_serving()
    m.add_items(cold_df)
    sess = [[int(COLD[1]), int(m.item_ids[4])]]
    ids, scores = m.recommend(sess, k=10)
    assert m._topk_index is not None
    m.save(tmp_path / "m.grurec", optimizer=True)
    back = grurec.load(tmp_path / "m.grurec")
    r = back.recommend(sess, k=10)
    np.testing.assert_array_equal(r[0], ids)
    np.testing.assert_allclose(r[1], scores, rtol=1e-6, atol=1e-6)


def test_user_gru_ranks_added_items(events):
    m, f, cold_df = fitted_with_cold(events, "output", cls=grurec.UserGRU, col="UserId")
    users = list(m.user_ids[:3])
    m.add_items(cold_df)
    ids, _ = m.recommend(users=users, k=5, filter_items=list(COLD))
    assert set(ids.ravel()) <= set(COLD)
    m.update(users[0], [int(COLD[0])])
    ids, _ = m.recommend(users=users[:1], k=m.n_items)
    assert int(COLD[0]) not in ids[0]  # exclude_seen covers items added after fit


def test_add_items_rejects_bad_input(events):
    m, f, cold_df = fitted_with_cold(events, "input")
    with pytest.raises(ValueError, match="feature_mode='input'.*'output' or 'both'"):
        m.add_items(cold_df)
    plain = grurec.GRU4Rec(**settings(n_epochs=1)).fit(events)
    with pytest.raises(ValueError, match="no item features"):
        plain.add_items(cold_df)
    m, f, cold_df = fitted_with_cold(events, "output")
    known = frame([int(m.item_ids[5])])
    with pytest.raises(ValueError, match=f"item {int(m.item_ids[5])} is already in the model"):
        m.add_items(known)
    with pytest.raises(ValueError, match="columns \\['color'\\]"):
        m.add_items(cold_df.assign(color="red"))
    with pytest.raises(TypeError, match="integers"):
        m.add_items(cold_df.assign(ItemId=[f"x{i}" for i in range(20)]))
    with pytest.raises(ValueError, match="price"):
        m.add_items(cold_df.assign(price=["cheap"] * 20))
    assert m.n_items == len(np.unique(events["ItemId"]))  # nothing was added


def test_add_items_from_an_item_features_object(events):
    m, f, cold_df = fitted_with_cold(events, "output")
    a = m._snapshot()
    a.add_items(cold_df)
    m.add_items(f)  # the items of f that the model lacks: the cold ones
    assert list(m.item_ids) == list(a.item_ids)
    np.testing.assert_allclose(m._output_params()[0], a._output_params()[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="has no row"):
        m.add_items(f, items=[5000])


# ---------------------------------------------------------------- warm_start
def split_events(events, frac=0.7):
    s = np.sort(events.SessionId.unique())
    cut = s[int(len(s) * frac)]
    return (events[events.SessionId < cut].reset_index(drop=True),
            events[events.SessionId >= cut].reset_index(drop=True))


@pytest.mark.parametrize("kw", MODES)
def test_warm_start_with_no_new_events_changes_nothing(events, kw):
    m = grurec.GRU4Rec(**settings(**kw)).fit(events)
    before = {k: v.copy() for k, v in m.params.items()}
    opt = {k: v.copy() for k, v in m._opt.items()}
    for empty in (None, events[:0], events[:1]):  # one event: no session to learn from
        assert m.fit(empty, warm_start=True) is m
    assert m.epochs_trained == 2 and len(m.history) == 2
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k], err_msg=k)
        np.testing.assert_array_equal(m._opt[k], opt[k], err_msg=k)


@pytest.mark.parametrize("fmode", [None, "output", "both"])
@pytest.mark.parametrize("kw", MODES)
def test_warm_start_continues_and_grows_the_vocabulary(events, kw, fmode):
    old_ev, new_ev = split_events(events)
    new_ev = new_ev.assign(ItemId=new_ev.ItemId.where(new_ev.ItemId % 7 != 0,
                                                      new_ev.ItemId + 10_000))
    fk = {} if fmode is None else dict(feature_mode=fmode)
    m = grurec.GRU4Rec(**settings(**kw, **fk))
    allitems = np.unique(np.concatenate([old_ev.ItemId, new_ev.ItemId]))
    f = features(allitems) if fmode else None
    m.fit(old_ev, item_features=f)
    N0, pop0 = m.n_items, m.popularity.copy()
    W0 = m.params["W_y"].copy()
    old = m._snapshot()
    m.fit(new_ev, warm_start=True, item_features=f)
    fresh = np.setdiff1d(np.unique(new_ev.ItemId), old.item_ids)
    assert len(fresh) > 5 and m.n_items == N0 + len(fresh)
    assert set(m.item_ids[N0:]) == set(fresh)
    assert m.epochs_trained == 4 and [h["epoch"] for h in m.history] == [1, 2, 3, 4]
    # the old model (a reader's snapshot) is untouched: training ran on copies
    np.testing.assert_array_equal(old.params["W_y"], W0)
    assert old.n_items == N0
    # popularity adds the new counts
    counts = new_ev.ItemId.value_counts()
    idx = m._lookup(list(counts.index))
    np.testing.assert_array_equal(m.popularity[idx] - np.concatenate(
        [pop0, np.zeros(len(fresh), np.int64)])[idx], counts.to_numpy())
    # the new ids were learned: their rows moved from the initial draw, and a
    # new item that follows a session's last item ranks above chance
    assert np.abs(m.params["W_y"][N0:]).sum() > 0
    if fmode:
        enc = m._feat
        assert enc["z"].shape[0] == m.n_items and np.abs(enc["z"][N0:]).sum() > 0
    ids, _ = m.recommend([[int(new_ev.ItemId.iloc[0])]], k=5)
    assert ids.shape == (1, 5)


def test_warm_start_new_items_are_learned(events):
    """Items only in the new events: after warm_start the model ranks a new
    item higher after its usual predecessor than an untrained row would."""
    old_ev, new_ev = split_events(events, 0.5)
    # relabel the new half's items so that all of them are new ids
    new_ev = new_ev.assign(ItemId=new_ev.ItemId + 10_000)
    m = grurec.GRU4Rec(**settings(n_epochs=3)).fit(old_ev)
    N0 = m.n_items
    sess = new_ev.groupby("SessionId").ItemId.apply(list)
    pairs = [(s[i], s[i + 1]) for s in sess for i in range(len(s) - 1)]
    m.fit(new_ev, warm_start=True)
    assert m.n_items > N0
    ranks = []
    for a, b in pairs[:200]:
        ids, _ = m.recommend([[a]], k=m.n_items)
        ranks.append(int(np.flatnonzero(ids[0] == b)[0]))
    assert np.mean(ranks) < 0.35 * m.n_items  # chance: 0.5


def test_warm_start_from_a_file_with_and_without_optimizer_state(events, tmp_path, caplog):
    old_ev, new_ev = split_events(events)
    m = grurec.GRU4Rec(**settings()).fit(old_ev)
    m.save(tmp_path / "opt.grurec", optimizer=True)
    m.save(tmp_path / "plain.grurec")
    a = grurec.load(tmp_path / "opt.grurec").fit(new_ev, warm_start=True)
    b = m.fit(new_ev, warm_start=True)
    for k in a.params:  # the file keeps what continuing needs: the same weights
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    with caplog.at_level("INFO", logger="grurec"):
        c = grurec.load(tmp_path / "plain.grurec").fit(new_ev, warm_start=True)
    assert "fresh optimizer state" in caplog.text
    assert c.n_items == a.n_items and not np.array_equal(c.params["W_y"], a.params["W_y"])


def test_warm_start_rejects_what_it_cannot_do(events):
    m = grurec.GRU4Rec(**settings(n_epochs=1)).fit(events)
    with pytest.raises(ValueError, match="fitted without item features"):
        m.fit(events, warm_start=True, item_features=features(np.unique(events.ItemId)))
    with pytest.raises(ValueError, match="valid / patience"):
        m.fit(events, warm_start=True, valid=0.1)
    with pytest.raises(RuntimeError, match="not fitted"):
        grurec.GRU4Rec(**settings()).fit(events, warm_start=True)
    u = grurec.UserGRU(**settings(n_epochs=1)).fit(events.rename(columns={"SessionId": "UserId"}))
    with pytest.raises(ValueError, match="value_col / valid / patience"):
        u.fit(events.rename(columns={"SessionId": "UserId"}), warm_start=True, valid=0.1)
