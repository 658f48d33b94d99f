"""model.explain: leave-one-click-out contributions (python/grurec/explain.py,
cpp/infer.cpp drop_one_queries) for GRU4Rec, UserGRU and NARM.

A contribution is the score change when one click is left out, so it must
equal what score_prefixes gives for the shorter sequence; a click that
cannot matter (an update gate shut for its item: the state passes through
unchanged) gets zero; a planted "this click decides" signal is found.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.synthetic import generate_sessions

KW = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2, num_threads=1, random_state=0,
          show_progress=False)


@pytest.fixture(scope="module")
def train():
    return generate_sessions(n_events=3000, n_items=120, mean_length=5, signal=0.8, seed=11)


def _models(train):
    return [grurec.GRU4Rec(**KW).fit(train),
            grurec.GRU4Rec(**dict(KW, constrained_embedding=False, embedding=0)).fit(train),
            grurec.UserGRU(**dict(KW, bptt=3)).fit(train.rename(columns={"SessionId": "UserId"})),
            grurec.NARM(**dict(KW, bptt=4)).fit(train),
            grurec.UserNARM(**dict(KW, bptt=3, attention_memory=2)).fit(
                train.rename(columns={"SessionId": "UserId"}))]


@pytest.fixture(scope="module")
def models(train):
    return _models(train)


def test_contributions_are_the_score_changes_of_leaving_a_click_out(models, train):
    ids = train.ItemId.unique()
    seq = list(ids[[3, 9, 3, 14, 27, 5, 40]])
    for m in models:
        e = m.explain(seq, k=6)
        rec_ids, rec_scores = m.recommend([seq], k=6)
        np.testing.assert_array_equal(e.items, rec_ids[0])
        np.testing.assert_allclose(e.scores, rec_scores[0], rtol=1e-5, atol=1e-6)
        idx = m._lookup(seq)
        it = m._lookup(list(e.items))
        full = m.score_prefixes([idx])[0][it]
        for j in range(len(seq)):
            without = m.score_prefixes([np.delete(idx, j)])[0][it]
            np.testing.assert_allclose(e.contributions[:, j], full - without, rtol=1e-4,
                                       atol=2e-6, err_msg=f"{type(m).__name__} click {j}")
        assert np.abs(e.contributions).max() > 1e-3
        given = m.explain(seq, items=list(e.items[::-1]))
        np.testing.assert_allclose(given.contributions, e.contributions[::-1], rtol=1e-6,
                                   atol=1e-7)


def test_unknown_clicks_contribute_zero(models, train):
    ids = train.ItemId.unique()
    for m in models:
        seq = [ids[1], -987654, ids[2], ids[6]]
        e = m.explain(seq, k=4)
        assert (e.contributions[:, 1] == 0).all()
        np.testing.assert_allclose(e.contributions[:, [0, 2, 3]],
                                   m.explain([ids[1], ids[2], ids[6]],
                                             items=list(e.items)).contributions, atol=1e-7)
        if isinstance(m, grurec.NARM):
            assert e.attention[1] == 0 and e.attention.sum() == pytest.approx(1, rel=1e-5)
        else:
            assert e.attention is None


@pytest.mark.parametrize("cls", ["GRU4Rec", "UserGRU"])
def test_a_click_that_cannot_matter_gets_zero(train, cls):
    """One-hot input, one layer: item x's input row shuts the update gate
    (z = sigmoid(-60)), so h' = h + z (n - h) = h in float32: removing a click
    on x leaves every score unchanged, and its contribution is zero."""
    data = train if cls == "GRU4Rec" else train.rename(columns={"SessionId": "UserId"})
    m = getattr(grurec, cls)(**dict(KW, constrained_embedding=False, embedding=0)).fit(data)
    H = m.layers[0]
    ids = list(m.item_ids)
    x = 7
    m.params["W_ih0"][x, H:2 * H] = -60.0
    seq = [ids[3], ids[9], ids[x], ids[14], ids[x], ids[5]]
    idx = m._lookup(seq)
    np.testing.assert_array_equal(m.score_prefixes([idx])[0],
                                  m.score_prefixes([np.delete(idx, 2)])[0])
    e = m.explain(seq, k=10)
    assert np.abs(e.contributions[:, [2, 4]]).max() < 1e-6
    assert np.abs(e.contributions[:, [0, 1, 3, 5]]).max() > 1e-3


def _planted(n_sessions, seed):
    """Five clicks: four noise items and, at a random position, key k; then
    the target 100 + k. Only the key decides the last item."""
    rng = np.random.default_rng(seed)
    rows, where = [], []
    for s in range(n_sessions):
        k = rng.integers(0, 8)
        clicks = list(rng.integers(8, 60, 5))
        pos = rng.integers(0, 5)
        clicks[pos] = k
        where.append((clicks, pos, 100 + k))
        for t, it in enumerate(clicks + [100 + k]):
            rows.append((s, int(it), t))
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"]), where


@pytest.mark.parametrize("cls", ["GRU4Rec", "NARM"])
def test_a_planted_deciding_click_is_found(cls):
    df, _ = _planted(3000, 0)
    m = getattr(grurec, cls)(layers=[32], loss="cross-entropy", batch_size=32, n_sample=0,
                             n_epochs=8, learning_rate=0.1, momentum=0.0,
                             dropout_p_embed=0.0, dropout_p_hidden=0.0, num_threads=1,
                             random_state=1, show_progress=False,
                             **({"bptt": 6} if cls == "NARM" else {})).fit(df)
    _, test = _planted(200, 1)
    hits = 0
    for clicks, pos, target in test:
        e = m.explain(clicks, items=[target])
        hits += int(np.argmax(e.contributions[0]) == pos)
    assert hits / len(test) > 0.8, hits
