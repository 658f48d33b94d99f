"""GRU4Rec with item features on the input side (issue 18, part 3)."""
import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.synthetic import generate_sessions

MODES = [dict(), dict(constrained_embedding=False, embedding=12),
         dict(constrained_embedding=False, embedding=0)]


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=3000, n_items=150, seed=1)


def settings(**kw):
    return dict(dict(layers=[12], n_epochs=2, batch_size=16, n_sample=24, num_threads=1,
                     random_state=3, show_progress=False, momentum=0.3, dropout_p_embed=0.2),
                **kw)


def features(items, zero=False, seed=0):
    rng = np.random.default_rng(seed)
    n = len(items)
    return grurec.ItemFeatures(pd.DataFrame({
        "ItemId": items,
        "genres": [None] * n if zero else [list(rng.choice(["a", "b", "c", "d"],
                                                           rng.integers(0, 3))) for _ in items],
        "price": np.zeros(n) if zero else rng.standard_normal(n),
        "emb": [[0.0, 0.0, 0.0]] * n if zero else [list(rng.standard_normal(3)) for _ in items],
    }), categorical=["genres"], numeric=["price"], dense=["emb"])


@pytest.mark.parametrize("kw", MODES)
def test_all_zero_features_train_exactly_the_id_only_model(events, kw):
    """Exact (bitwise): the feature part adds 0.0 to every input row, its
    gradients are 0 and its weights come from their own random stream."""
    items = np.unique(events["ItemId"])
    a = grurec.GRU4Rec(**settings(**kw)).fit(events)
    b = grurec.GRU4Rec(**settings(**kw)).fit(events, item_features=features(items, zero=True))
    assert set(b.params) - set(a.params) == {"feat_T0", "feat_W_z"}
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    np.testing.assert_array_equal(a.recommend([[1, 2, 3]], k=10)[0],
                                  b.recommend([[1, 2, 3]], k=10)[0])


@pytest.mark.parametrize("kw", MODES)
def test_features_train_save_load_and_serve_alike(events, kw, tmp_path):
    items = np.unique(events["ItemId"])
    m = grurec.GRU4Rec(**settings(id_dropout=0.3, **kw)).fit(
        events, item_features=features(items))
    assert all(np.isfinite(h["loss"]) for h in m.history)
    assert np.abs(m.params["feat_T0"][1:]).sum() > 0 and not m.params["feat_T0"][0].any()
    sess = [[int(items[3]), int(items[7]), int(items[1])]]
    ids, scores = m.recommend(sess, k=10)
    # the native session states and the Python live session agree
    live = m.new_session()
    for i in sess[0]:
        live.click(i)
    lids, lscores = live.recommend(10)
    np.testing.assert_array_equal(lids, ids[0])
    np.testing.assert_allclose(lscores, scores[0], rtol=1e-5, atol=1e-6)
    path = tmp_path / "m.grurec"
    m.save(path)
    back = grurec.load(path)
    assert back.item_features.categorical == ["genres"]
    r = back.recommend(sess, k=10)
    np.testing.assert_array_equal(r[0], ids)
    np.testing.assert_array_equal(r[1], scores)
    meta = grurec.io.read_metadata(path)
    assert meta["format_version"] == 2 and meta["features"]["numeric"] == ["price"]


def test_features_change_the_model(events):
    items = np.unique(events["ItemId"])
    a = grurec.GRU4Rec(**settings()).fit(events)
    b = grurec.GRU4Rec(**settings()).fit(events, item_features=features(items))
    assert not np.array_equal(a.params["W_y"], b.params["W_y"])


def test_feature_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="feature_mode: must be one of"):
        grurec.GRU4Rec(feature_mode="sideways")
    with pytest.raises(ValueError, match=r"id_dropout: must be in \[0, 1\)"):
        grurec.GRU4Rec(id_dropout=1.0)


def test_items_without_features_count(events, caplog):
    items = np.unique(events["ItemId"])
    f = features(items[:100])
    with caplog.at_level("INFO", logger="grurec"):
        grurec.GRU4Rec(**settings(n_epochs=1)).fit(events, item_features=f)
    assert f"{len(items) - 100} of {len(items)} items have no row" in caplog.text


def test_a_feature_table_in_fit_is_read_with_the_item_column(events):
    items = np.unique(events["ItemId"])
    m = grurec.GRU4Rec(**settings(n_epochs=1)).fit(
        events.rename(columns={"ItemId": "item"}), item_col="item",
        item_features=pd.DataFrame({"item": items, "brand": ["x", "y", "z"] * (len(items) // 3)
                                    + ["x"] * (len(items) % 3)}))
    assert m.item_features.categorical == ["brand"]
