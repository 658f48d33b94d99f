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
