"""grurec.RepeatAware: the repeat/explore mixture on top of a trained model.

The reference below computes the mixture's probabilities for one prefix the
plain way, a loop over the clicks and a full softmax over every item, in
float64; the fast paths (recommend's merge, evaluate's threshold counts, the
live session) must agree with it.
"""
import io
import pickle

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.repeat import GATE_FEATURES, RepeatAware

R = 4  # recency weights in these tests


def _lse(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def reference(ra, prefix):
    """float64 log P(i) for every item after ``prefix`` (item indices, -1
    unknown), straight from the formulas of grurec.repeat's docstring."""
    m = ra.model
    clicks = [int(i) for i in prefix if i >= 0]
    h = m._states(np.array([0, len(prefix)], np.int64), np.asarray(prefix, np.int32))
    W, b = m._output_params()
    s = ra.beta_ * (h @ W.T + b)[0].astype(np.float64)
    N = len(s)
    lse = _lse(s)
    if not clicks:
        return s - lse
    th = ra.theta
    Rr = ra.recency
    w_rec, w_s, w_cnt, w_last, v = th[:Rr], th[Rr], th[Rr + 1], th[Rr + 2], th[Rr + 3:]
    L = len(clicks)
    e = []
    for tau, x in enumerate(clicks):
        rec = min(L - 1 - tau, Rr - 1)
        cnt = clicks.count(x)
        last = all(y != x for y in clicks[tau + 1:])
        e.append(w_rec[rec] + w_s * (s[x] - lse) + w_cnt * np.log(cnt) + w_last * last)
    e = np.array(e)
    a = np.exp(e - e.max())
    a /= a.sum()
    rep = np.zeros(N)
    for tau, x in enumerate(clicks):
        rep[x] += a[tau]
    S_items = sorted(set(clicks))
    p = np.exp(s - lse)
    f = np.array([1.0, np.log(L), len(S_items) / L, float(clicks[-1] in clicks[:-1]),
                  lse - s.max(), np.log(p[S_items].sum()), s[S_items].max() - s.max()])
    assert len(f) == len(GATE_FEATURES)
    g = 1.0 / (1.0 + np.exp(-(f @ v)))
    if ra.explore == "all":
        pe = p
    else:
        pe = np.exp(s - lse)
        pe[S_items] = 0.0
        pe /= pe.sum()
    with np.errstate(divide="ignore"):
        return np.log((1 - g) * pe + g * rep)


@pytest.fixture(scope="module")
def data():
    from grurec.synthetic import generate_sessions

    return generate_sessions(n_events=3000, n_items=60, mean_length=6, signal=0.8, seed=5)


@pytest.fixture(scope="module")
def model(data):
    return grurec.GRU4Rec(layers=[12], batch_size=8, n_sample=16, n_epochs=2, num_threads=1,
                          random_state=0, show_progress=False).fit(data)


def _random_mixture(model, explore, seed):
    ra = RepeatAware(model, explore=explore, recency=R)
    rng = np.random.default_rng(seed)
    ra.theta = rng.normal(0, 1.0, R + 3 + len(GATE_FEATURES))
    ra.beta_ = float(rng.uniform(0.5, 3.0))
    return ra


def _sessions(model, rng, n=12):
    """Random sessions of item indices with repeats and an unknown click."""
    N = model.n_items
    out = []
    for j in range(n):
        L = int(rng.integers(1, 9))
        s = rng.integers(0, N, L)
        if L > 2:
            s[rng.integers(0, L)] = s[rng.integers(0, L)]  # a repeat
        s = list(s)
        if j % 5 == 4:
            s.insert(1, -1)  # an unknown click
        out.append(np.array(s, np.int64))
    return out


@pytest.mark.parametrize("explore", ["all", "new"])
def test_probabilities_match_the_reference(model, explore):
    ra = _random_mixture(model, explore, 1)
    rng = np.random.default_rng(2)
    sess = _sessions(model, rng)
    got = ra.score_prefixes(sess)
    for j, s in enumerate(sess):
        want = reference(ra, s)
        np.testing.assert_allclose(got[j], want.astype(np.float32), rtol=1e-5, atol=1e-5)
        # a distribution over all items
        assert abs(np.exp(want).sum() - 1) < 1e-9
        assert abs(np.exp(got[j].astype(np.float64)).sum() - 1) < 1e-4


def _events(model, sess):
    rows = [(j, model.item_ids[i]) for j, s in enumerate(sess) for i in s if i >= 0]
    return pd.DataFrame({"SessionId": [r[0] for r in rows], "ItemId": [r[1] for r in rows],
                         "Time": np.arange(len(rows))})


@pytest.mark.parametrize("explore", ["all", "new"])
def test_evaluate_ranks_match_the_reference(model, explore):
    ra = _random_mixture(model, explore, 3)
    rng = np.random.default_rng(4)
    sess = [s[s >= 0] for s in _sessions(model, rng, 30)]
    sess = [s for s in sess if len(s) >= 2]
    ranks = []
    for s in sess:
        for t in range(1, len(s)):
            M = reference(ra, s[:t])
            ranks.append(1 + int((M > M[s[t]]).sum()))
    ranks = np.array(ranks, np.float64)
    r = grurec.evaluate(ra, _events(model, sess), cutoffs=(1, 3, 10), show_progress=False)
    assert r["n_events"] == len(ranks)
    for k in (1, 3, 10):
        assert r[f"recall@{k}"] == pytest.approx((ranks <= k).mean(), abs=1e-12)
        assert r[f"mrr@{k}"] == pytest.approx(np.where(ranks <= k, 1 / ranks, 0).mean(),
                                              abs=1e-12)
    with pytest.raises(ValueError, match="standard"):
        grurec.evaluate(ra, _events(model, sess), mode="median")
    with pytest.raises(ValueError, match="candidates"):
        grurec.evaluate(ra, _events(model, sess), candidates=list(model.item_ids[:5]))


@pytest.mark.parametrize("explore", ["all", "new"])
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_recommend_is_the_top_k_of_the_mixture(model, explore, exclude_seen):
    ra = _random_mixture(model, explore, 5)
    rng = np.random.default_rng(6)
    sess = [s[s >= 0] for s in _sessions(model, rng)]
    ids = [list(model.item_ids[s]) for s in sess]
    k = 7
    got_ids, got_sc = ra.recommend(ids, k=k, exclude_seen=exclude_seen)
    for j, s in enumerate(sess):
        M = reference(ra, s)
        if exclude_seen:
            M[s] = -np.inf
        order = np.lexsort((np.arange(len(M)), -M))[:k]
        np.testing.assert_array_equal(got_ids[j], model.item_ids[order])
        np.testing.assert_allclose(got_sc[j], M[order], rtol=1e-5, atol=1e-5)
        live = ra.new_session()
        for x in ids[j]:
            live.click(x)
        li, ls = live.recommend(k=k, exclude_seen=exclude_seen)
        np.testing.assert_array_equal(li, got_ids[j])
        np.testing.assert_allclose(ls, got_sc[j], rtol=1e-6)


def test_gate_zero_is_the_base_model(model, data):
    ra = RepeatAware(model, recency=R)
    ra.theta = np.zeros(R + 3 + len(GATE_FEATURES))
    ra.beta_ = 2.5
    ra.theta[R + 3] = -1e4  # gate bias: g = 0 whatever the features
    test = data.iloc[:600]
    a = grurec.evaluate(ra, test, cutoffs=(1, 5, 20), show_progress=False)
    b = grurec.evaluate(model, test, cutoffs=(1, 5, 20), show_progress=False)
    for key in ("recall@1", "mrr@5", "recall@20", "mrr@20", "n_events"):
        assert a[key] == b[key]
    sess = [list(data.ItemId.values[:5]), list(data.ItemId.values[10:13])]
    ia, sa = ra.recommend(sess, k=10)
    ib, sb = model.recommend(sess, k=10)
    np.testing.assert_array_equal(ia, ib)
    assert np.all(np.diff(sa, axis=1) <= 0)
    assert np.allclose(ra.gate(sess), 0)


def _repeat_data(n_sessions, n_items, seed):
    """Sessions where the next item is always the previous click again, after
    a random first click: (a, a, b, b, c, c, ...) in pairs."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0
    for s in range(n_sessions):
        L = int(rng.integers(2, 5))
        for x in rng.integers(0, n_items, L):
            for _ in range(2):
                rows.append((s, int(x), t))
                t += 1
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def test_fitting_finds_the_repeat_signal():
    tr = _repeat_data(400, 50, 0)
    va = _repeat_data(200, 50, 1)
    m = grurec.GRU4Rec(layers=[8], batch_size=8, n_sample=8, n_epochs=1, num_threads=1,
                       random_state=0, show_progress=False).fit(tr)
    ra = RepeatAware(m, recency=R, steps=300).fit_mixture(va)
    assert ra.fit_history[-1] < ra.fit_history[0]
    # After an odd number of clicks the next one repeats the last click.
    g = ra.gate([[va.ItemId[0]], [3, 3, 7]])
    assert g[0] > 0.9
    ids, _ = ra.recommend([[5], [3, 3, 7]], k=1)
    assert list(ids[:, 0]) == [5, 7]
    p = ra.params()
    assert p["w_rec0"] > p["w_rec1"]  # the last click is the one repeated
    base = grurec.evaluate(m, va, cutoffs=(1,), show_progress=False)["recall@1"]
    mixed = grurec.evaluate(ra, va, cutoffs=(1,), show_progress=False)["recall@1"]
    # Half the targets are repeats (all of them found now), half a new random item.
    assert mixed > 0.5 and mixed > base + 0.2


def test_fit_gradient_matches_finite_differences(model, data):
    from grurec.repeat import _Events, _FitData, _Mixture, _prefix_blocks
    from grurec.data import to_sessions

    sd = to_sessions(data.iloc[:400], item_ids=model.item_ids, unknown="keep")
    sd = sd.select_sessions(sd.lengths() >= 2)
    parts, ts, tus = [], [], []
    for start, length, items, targets, S in _prefix_blocks(model, sd):
        ev = _Events(S, start, length, items, R)
        parts.append(ev)
        ts.append(S[np.arange(len(targets)), targets].astype(np.float64) - ev.lse)
        tus.append(ev.target_u(targets))
    fd = _FitData(parts, ts, tus)
    for explore in ("all", "new"):
        mix = _Mixture(R, explore)
        th = np.random.default_rng(7).normal(0, 0.5, mix.n)
        _, g = fd.nll(mix, th)
        eps = 1e-6
        num = np.array([(fd.nll(mix, th + eps * e)[0] - fd.nll(mix, th - eps * e)[0]) / (2 * eps)
                        for e in np.eye(mix.n)])
        np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-7)


def test_save_load_round_trip(model, tmp_path):
    ra = _random_mixture(model, "new", 8)
    sess = [list(model.item_ids[[1, 2, 1]]), list(model.item_ids[[4]])]
    want = ra.recommend(sess, k=5)
    path = tmp_path / "m.grurec"
    ra.save(path)
    for back in (grurec.load(path), RepeatAware.load(path), grurec.load(path.read_bytes()),
                 RepeatAware.load(io.BytesIO(path.read_bytes())),
                 pickle.loads(pickle.dumps(ra))):
        assert isinstance(back, RepeatAware) and back.explore == "new"
        np.testing.assert_array_equal(back.theta, ra.theta)
        got = back.recommend(sess, k=5)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    raw = bytearray(path.read_bytes())
    raw[20] ^= 1
    with pytest.raises(grurec.ModelFileError):
        grurec.load(bytes(raw))
    with pytest.raises(grurec.ModelFileError):
        RepeatAware.from_bytes(bytes(raw[:-3]))


def test_misuse_is_named(model, data):
    ra = RepeatAware(model)
    with pytest.raises(RuntimeError, match="fit_mixture"):
        ra.recommend([[model.item_ids[0]]])
    with pytest.raises(RuntimeError, match="fit_mixture"):
        grurec.evaluate(ra, data.iloc[:50])
    with pytest.raises(RuntimeError, match="fit_mixture"):
        ra.save("/nonexistent/x")
    with pytest.raises(TypeError, match="fit_mixture"):
        ra.fit(data)
    with pytest.raises(ValueError, match="no event"):
        ra.fit_mixture(data.iloc[:1])
    with pytest.raises(ValueError, match="explore"):
        RepeatAware(model, explore="both")
    with pytest.raises(ValueError, match="recency"):
        RepeatAware(model, recency=0)
    with pytest.raises(TypeError, match="GRU4Rec or NARM"):
        RepeatAware(grurec.baselines.SessionPopularity().fit(data))
    with pytest.raises(RuntimeError, match="not fitted"):
        RepeatAware(grurec.GRU4Rec()).fit_mixture(data)


def test_narm_works_too(data):
    m = grurec.NARM(layers=[8], batch_size=8, n_sample=16, n_epochs=1, bptt=3, num_threads=1,
                    random_state=0, show_progress=False).fit(data)
    ra = _random_mixture(m, "all", 9)
    sess = [np.array([1, 4, 1, 7], np.int64)]
    np.testing.assert_allclose(ra.score_prefixes(sess)[0], reference(ra, sess[0]), rtol=1e-5,
                               atol=1e-5)
    ids = [list(m.item_ids[sess[0]])]
    live = ra.new_session()
    for x in ids[0]:
        live.click(x)
    np.testing.assert_array_equal(live.recommend(k=5)[0], ra.recommend(ids, k=5)[0][0])


def test_beta_is_the_scale_of_the_scores(data):
    """Halving the output weights (exactly, in float32) is undone by a beta
    twice as large: the same likelihood, the same probabilities."""
    kw = dict(layers=[8], batch_size=8, n_sample=16, n_epochs=1, constrained_embedding=False,
              num_threads=1, random_state=0, show_progress=False)
    m = grurec.GRU4Rec(**kw).fit(data.iloc[:1500])
    m2 = grurec.GRU4Rec.from_bytes(m.to_bytes())
    m2.params["W_y"] = m2.params["W_y"] / np.float32(2)
    m2.params["b_y"] = m2.params["b_y"] / np.float32(2)
    m2._input_cache = m2._output_cache = None
    va = data.iloc[1500:2500]
    r1 = RepeatAware(m, recency=R, beta=[0.5, 1.0, 2.0], select="nll", steps=60).fit_mixture(va)
    r2 = RepeatAware(m2, recency=R, beta=[1.0, 2.0, 4.0], select="nll",
                     steps=60).fit_mixture(va)
    assert r2.beta_ == 2 * r1.beta_
    np.testing.assert_allclose(list(r2.beta_nll.values()), list(r1.beta_nll.values()),
                               rtol=1e-6)
    sess = [list(data.ItemId.values[:4])]
    np.testing.assert_allclose(r2.score_prefixes([m2._lookup(sess[0])]),
                               r1.score_prefixes([m._lookup(sess[0])]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="beta"):
        RepeatAware(m, beta=0)
    with pytest.raises(ValueError, match="beta"):
        RepeatAware(m, beta=[])
    with pytest.raises(ValueError, match="select"):
        RepeatAware(m, select="auc")
