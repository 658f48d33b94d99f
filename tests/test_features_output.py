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
    extra = {"feat_out_T0", "feat_out_W_z"} | ({"feat_T0", "feat_W_z"} if fmode == "both" else set())
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
