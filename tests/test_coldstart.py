"""Cold-item split, three-way evaluation and the ContentKNN baseline (issue 18)."""
import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.baselines import ContentKNN, Popularity
from grurec.coldstart import cold_item_split, evaluate_cold
from grurec.synthetic import generate_sessions


@pytest.fixture(scope="module")
def data():
    ev = generate_sessions(n_events=3000, n_items=120, seed=2)
    items = np.unique(ev["ItemId"])
    feats = grurec.ItemFeatures({"ItemId": items, "group": [int(i) % 7 for i in items]},
                                categorical=["group"])
    return ev, feats


def test_split_keeps_cold_items_out_of_training(data):
    ev, _ = data
    s = cold_item_split(ev, fraction=0.2, test_sessions=0.25, seed=1)
    assert len(s.cold_items) == round(0.2 * len(s.items))
    assert not s.train["ItemId"].isin(s.cold_items).any()
    assert s.test["ItemId"].isin(s.cold_items).any()
    assert not set(s.train["SessionId"]) & set(s.test["SessionId"])


def test_content_knn_ranks_cold_items_and_popularity_cannot(data):
    ev, feats = data
    s = cold_item_split(ev, fraction=0.2, test_sessions=0.25, seed=1)
    knn = ContentKNN().fit(s.train, item_features=feats)
    assert set(s.cold_items) <= set(knn.item_ids)  # cold items are in its vocabulary
    pop = evaluate_cold(Popularity().fit(s.train), s, cutoffs=(20,))
    assert pop["cold"]["recall@20"] == 0.0 and pop["cold"]["n_events"] > 0
    r = evaluate_cold(knn, s, cutoffs=(20,))
    assert r["all"]["n_events"] == r["warm"]["n_events"] + r["cold"]["n_events"]
    assert r["cold"]["recall@20"] > 0


def test_content_knn_scores_are_feature_similarities():
    ev = pd.DataFrame({"SessionId": [1, 1, 2, 2], "ItemId": [10, 11, 12, 13], "Time": [0, 1, 2, 3]})
    feats = grurec.ItemFeatures({"ItemId": [10, 11, 12, 13, 14],
                                 "c": [["a"], ["b"], ["a", "b"], ["c"], ["a"]]})
    m = ContentKNN(decay=0.5, exclude_session_items=False).fit(ev, item_features=feats)
    s = m.score_prefixes([np.array([0])])[0]  # session [10]: item 10 is ("a")
    # cos(a, a) = 1 for 10 and 14, cos(a, a+b) = 1/sqrt(2) for 12, 0 for 11 and 13
    np.testing.assert_allclose(s[[0, 4, 2, 1, 3]], [1, 1, 2 ** -0.5, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="needs item features"):
        ContentKNN().fit(ev)


def test_tied_scores_rank_by_mode():
    from grurec.coldstart import _ranks

    s = np.array([[3.0, 1.0, 1.0, 1.0, 0.0]])
    t = np.array([2])
    assert _ranks(s, t, "standard")[0] == 2.0
    assert _ranks(s, t, "conservative")[0] == 4.0
    assert _ranks(s, t, "median")[0] == 3.0
