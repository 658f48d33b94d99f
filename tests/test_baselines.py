"""Baselines: hand-computed examples, the shared recommend() contract, plain
reference implementations on random data, and a planted-signal check."""
import math

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import baselines as bl
from grurec.synthetic import generate_sessions

MODELS = [bl.Popularity, bl.SessionPopularity, bl.ItemKNN, bl.VSKNN]


def frame(sessions, ids=None):
    """Event table from lists of items; sessions start in list order."""
    rows = []
    t = 0
    for s, items in enumerate(sessions):
        for it in items:
            rows.append((s if ids is None else ids[s], it, t))
            t += 1
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


# Training data of the hand examples. Items a b c d e -> indices 0..4.
#   s0: a b c     s1: a c     s2: b c d     s3: c e c
TRAIN = frame([["a", "b", "c"], ["a", "c"], ["b", "c", "d"], ["c", "e", "c"]])
# Events per item: a 2, b 2, c 5, d 1, e 1 -> 3 distinct levels: 1 < 2 < 5,
# dense ranks d,e -> 1, a,b -> 2, c -> 3; f(i) = rank / 4.
F = np.array([2, 2, 3, 1, 1]) / 4.0
A, B, C, D, E = range(5)


def arr(*xs):
    return np.array(xs, dtype=np.int32)


# ------------------------------------------------------------ hand examples
def test_popularity_scores_are_training_counts():
    m = bl.Popularity().fit(TRAIN)
    assert list(m.item_ids) == ["a", "b", "c", "d", "e"]
    s = m.score_prefixes([arr(A), arr()])
    np.testing.assert_array_equal(s, [[2, 2, 5, 1, 1]] * 2)
    ids, sc = m.recommend([["a"]], k=5)
    # Ties (a/b at 2, d/e at 1) go to the lower index.
    assert ids.tolist() == [["c", "a", "b", "d", "e"]]
    np.testing.assert_array_equal(sc, [[5, 2, 2, 1, 1]])


def test_session_popularity_counts_in_session_then_global_popularity():
    m = bl.SessionPopularity().fit(TRAIN)
    s = m.score_prefixes([arr(D, A, D), arr(E, B), arr()])
    exp = np.tile(F, (3, 1))
    exp[0, D] = 2 + F[D]
    exp[0, A] = 1 + F[A]
    exp[1, E] = 1 + F[E]
    exp[1, B] = 1 + F[B]
    np.testing.assert_allclose(s, exp, rtol=0, atol=1e-7)
    ids, _ = m.recommend([["d", "a", "d"], ["e", "b"], []], k=5)
    assert ids.tolist() == [["d", "a", "c", "b", "e"],
                            ["b", "e", "c", "a", "d"],  # b and e once each; b more popular
                            ["c", "a", "b", "d", "e"]]


def test_itemknn_cosine_of_session_vectors():
    # supp: a 2, b 2, c 4, d 1, e 1 sessions; co(a,b)=1 co(a,c)=2 co(b,c)=2
    # co(b,d)=1 co(c,d)=1 co(c,e)=1.
    m = bl.ItemKNN(lmbd=0.0, alpha=0.5).fit(TRAIN)
    s = m.score_prefixes([arr(A, C), arr(B), arr(C, -1), arr(-1), arr()])
    fb = F - 1
    row_c = [2 / math.sqrt(8), 2 / math.sqrt(8), fb[C], 1 / math.sqrt(4), 1 / math.sqrt(4)]
    row_b = [1 / math.sqrt(4), fb[B], 2 / math.sqrt(8), 1 / math.sqrt(2), fb[E]]
    np.testing.assert_allclose(s, [row_c, row_b, row_c, fb, fb], rtol=1e-6, atol=0)
    ids, sc = m.recommend([["b"]], k=5)
    # Scored items by similarity, then the unscored ones by popularity: b (2
    # events) before e (1).
    assert ids.tolist() == [["c", "d", "a", "b", "e"]]
    np.testing.assert_allclose(sc, [[row_b[C], row_b[D], row_b[A], fb[B], fb[E]]], rtol=1e-6)


def test_itemknn_regularised_asymmetric():
    lmbd, alpha = 3.0, 0.25
    m = bl.ItemKNN(lmbd=lmbd, alpha=alpha).fit(TRAIN)
    s = m.score_prefixes([arr(B)])[0]
    supp = {A: 2, B: 2, C: 4, D: 1}
    co = {A: 1, C: 2, D: 1}
    for j, c in co.items():
        exp = c / ((supp[B] + lmbd) ** alpha * (supp[j] + lmbd) ** (1 - alpha))
        assert s[j] == pytest.approx(exp, rel=1e-6)
    assert s[B] == pytest.approx(F[B] - 1) and s[E] == pytest.approx(F[E] - 1)


def test_itemknn_n_sims_keeps_the_most_similar():
    m = bl.ItemKNN(n_sims=1, lmbd=0.0).fit(TRAIN)
    s = m.score_prefixes([arr(A), arr(B)])
    # a: c (2/sqrt(8)) beats b (1/2). b: c (2/sqrt(8)) and d (1/sqrt(2)) tie;
    # the lower index stays.
    np.testing.assert_allclose(s[0], [F[A] - 1, F[B] - 1, 2 / math.sqrt(8), F[D] - 1, F[E] - 1],
                               rtol=1e-6)
    np.testing.assert_allclose(s[1], [F[A] - 1, F[B] - 1, 2 / math.sqrt(8), F[D] - 1, F[E] - 1],
                               rtol=1e-6)


# The VSKNN hand example: current session [a, b] (linear decay: a 1/2, b 1),
# ||w|| = sqrt(5)/2. Sessions (|n|): s0 {a,b,c} (3) dot 3/2; s1 {a,c} (2) dot 1/2;
# s2 {b,c,d} (3) dot 1; s3 {c,e} (2) no overlap.
def _cos(dot, n):
    return dot / (math.sqrt(5) / 2 * math.sqrt(n))


def test_vsknn_hand_example_cosine():
    m = bl.VSKNN().fit(TRAIN)
    s = m.score_prefixes([arr(A, B)])[0]
    s0, s1, s2 = _cos(1.5, 3), _cos(0.5, 2), _cos(1.0, 3)
    exp = [s0 + s1, s0 + s2, s0 + s1 + s2, s2, F[E] - 1]
    np.testing.assert_allclose(s, exp, rtol=1e-6)


def test_vsknn_k_and_sample_size():
    # k=1: only the most similar neighbour (s0) counts.
    s = bl.VSKNN(k=1).fit(TRAIN).score_prefixes([arr(A, B)])[0]
    s0 = _cos(1.5, 3)
    np.testing.assert_allclose(s, [s0, s0, s0, F[D] - 1, F[E] - 1], rtol=1e-6)
    # sample_size=2: the two most recent sessions with a or b are s2 and s1.
    s = bl.VSKNN(sample_size=2).fit(TRAIN).score_prefixes([arr(A, B)])[0]
    s1, s2 = _cos(0.5, 2), _cos(1.0, 3)
    np.testing.assert_allclose(s, [s1, s2, s1 + s2, s2, F[E] - 1], rtol=1e-6)
    # Equal similarity: the more recent neighbour wins.
    s = bl.VSKNN(k=1, similarity="dot", weighting="same").fit(TRAIN).score_prefixes(
        [arr(A)])[0]
    # s0 and s1 both contain a with dot 1; s1 is the more recent -> s1 = {a, c}.
    np.testing.assert_allclose(s, [1, F[B] - 1, 1, F[D] - 1, F[E] - 1], rtol=1e-6)


def test_vsknn_dot_weightings_idf_and_repeats():
    # Prefix [b, a, b]: b's weight is that of its last position (3 of 3).
    for weighting, wa, wb in [("linear", 2 / 3, 1.0), ("same", 1.0, 1.0),
                              ("div", 1 / 2, 1.0), ("quadratic", 4 / 9, 1.0)]:
        m = bl.VSKNN(similarity="dot", weighting=weighting).fit(TRAIN)
        s = m.score_prefixes([arr(B, A, B)])[0]
        d0, d1, d2 = wa + wb, wa, wb
        exp = [d0 + d1, d0 + d2, d0 + d1 + d2, d2, F[E] - 1]
        np.testing.assert_allclose(s, exp, rtol=1e-6, err_msg=weighting)
    m = bl.VSKNN(similarity="dot", weighting="same", idf_weighting=True).fit(TRAIN)
    s = m.score_prefixes([arr(A, D)])[0]
    ia, idd = math.log(4 / 2), math.log(4 / 1)
    d0, d1, d2 = ia, ia, idd  # s0 {a,b,c}, s1 {a,c}, s2 {b,c,d}
    np.testing.assert_allclose(s, [d0 + d1, d0 + d2, d0 + d1 + d2, d2, F[E] - 1], rtol=1e-6)


# ------------------------------------------------- the shared interface
@pytest.fixture(scope="module")
def synthetic():
    train = generate_sessions(n_events=20_000, n_items=300, signal=0.5, seed=0, world_seed=3)
    test = generate_sessions(n_events=4_000, n_items=300, signal=0.5, seed=1, world_seed=3)
    return train, test


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def fitted(request, synthetic):
    return request.param().fit(synthetic[0])


def test_score_prefixes_shape_dtype_and_unknown(fitted):
    N = len(fitted.item_ids)
    p = [arr(3, 7, 1), arr(-1), arr(), arr(5, -1, 9, -1)]
    s = fitted.score_prefixes(p)
    assert s.dtype == np.float32 and s.shape == (4, N)
    same = fitted.score_prefixes([arr(3, 7, 1), arr(), arr(), arr(5, 9)])
    np.testing.assert_array_equal(s, same)  # -1 entries are ignored
    assert fitted.score_prefixes([]).shape == (0, N)
    with pytest.raises(ValueError, match=rf"prefix 1, position 0: item index {N}\b"):
        fitted.score_prefixes([arr(1), arr(N)])
    with pytest.raises(ValueError, match=r"prefix 0, position 1: item index -2"):
        fitted.score_prefixes([arr(1, -2)])


def test_recommend_is_the_top_k_of_score_prefixes(fitted, synthetic):
    test = synthetic[1]
    sess = [g.to_numpy() for _, g in test.groupby("SessionId")["ItemId"]][:50]
    ids, sc = fitted.recommend(sess, k=20)
    assert ids.shape == (50, 20) and sc.dtype == np.float32
    idx = fitted._lookup([x for s in sess for x in s])
    lens = np.cumsum([0] + [len(s) for s in sess])
    scores = fitted.score_prefixes([idx[lens[j]:lens[j + 1]] for j in range(50)])
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores),
                       axis=1)[:, :20]
    np.testing.assert_array_equal(ids, fitted.item_ids[order])
    np.testing.assert_array_equal(sc, np.take_along_axis(scores, order, 1))
    assert np.all(np.diff(sc, axis=1) <= 0)


def test_recommend_exclude_seen_and_filter(fitted):
    ids_all = fitted.item_ids
    sess = [list(ids_all[[1, 2, 3]]), list(ids_all[[10]])]
    ids, _ = fitted.recommend(sess, k=30, exclude_seen=True)
    for s, row in zip(sess, ids):
        assert not set(s) & set(row.tolist())
        assert len(set(row.tolist())) == 30
    allowed = list(ids_all[[0, 1, 5, 10, 20, 40]])
    ids, sc = fitted.recommend(sess, k=4, exclude_seen=True, filter_items=allowed)
    assert ids.shape == (2, 4)
    for s, row in zip(sess, ids):
        assert set(row.tolist()) <= set(allowed) - set(s)
    # k larger than what is left: capped so every row holds real items
    # (6 allowed, session 0 has 1 of them, session 1 has 1 of them -> 5).
    ids, sc = fitted.recommend(sess, k=50, exclude_seen=True, filter_items=allowed)
    assert ids.shape == (2, 5) and np.isfinite(sc).all()


def test_recommend_k_larger_than_catalogue(fitted):
    N = len(fitted.item_ids)
    ids, sc = fitted.recommend([[fitted.item_ids[0]]], k=N + 10)
    assert ids.shape == (1, N) and sorted(ids[0].tolist()) == sorted(fitted.item_ids.tolist())


def test_recommend_unknown_items(fitted):
    known = fitted.item_ids[[4, 8]]
    ids_skip, sc_skip = fitted.recommend([[known[0], 10**9, known[1]], [-5]], k=10)
    assert fitted.last_unknown_count == 2
    ids_ref, sc_ref = fitted.recommend([[known[0], known[1]], []], k=10)
    assert fitted.last_unknown_count == 0
    np.testing.assert_array_equal(ids_skip, ids_ref)
    np.testing.assert_array_equal(sc_skip, sc_ref)
    with pytest.raises(ValueError, match=r"session 1, position 2: item 1000000000"):
        fitted.recommend([[known[0]], [known[0], known[1], 10**9]], unknown="error")
    with pytest.raises(TypeError, match=r"session 1, position 2: item id 'nope' is a string"):
        fitted.recommend([[known[0]], [known[0], known[1], "nope"]])
    with pytest.raises(ValueError, match=r"filter_items, position 1: item 999999"):
        fitted.recommend([[known[0]]], filter_items=[known[1], 999999], unknown="error")
    with pytest.raises(ValueError, match="unknown"):
        fitted.recommend([[known[0]]], unknown="drop")
    with pytest.raises(ValueError, match="session 0"):
        fitted.recommend(["abc"])
    with pytest.raises(ValueError, match="k: must be >= 1"):
        fitted.recommend([[known[0]]], k=0)


def test_ties_broken_by_lower_index_and_deterministic():
    # Every item once in its own session: all popularity ties.
    df = frame([[x] for x in [40, 10, 30, 20]])
    for cls in MODELS:
        m = cls().fit(df)
        ids, sc = m.recommend([[], [30]], k=4)
        assert ids[0].tolist() == [10, 20, 30, 40], cls.__name__
        again, _ = cls().fit(df.sample(frac=1, random_state=1)).recommend([[], [30]], k=4)
        np.testing.assert_array_equal(ids, again)


def test_not_fitted_and_bad_hyperparameters():
    with pytest.raises(RuntimeError, match="not fitted"):
        bl.ItemKNN().score_prefixes([arr(0)])
    with pytest.raises(RuntimeError, match="not fitted"):
        bl.Popularity().recommend([[1]])
    for make, name in [
        (lambda: bl.ItemKNN(n_sims=0), "n_sims"),
        (lambda: bl.ItemKNN(n_sims=2.5), "n_sims"),
        (lambda: bl.ItemKNN(lmbd=-1), "lmbd"),
        (lambda: bl.ItemKNN(lmbd=float("nan")), "lmbd"),
        (lambda: bl.ItemKNN(alpha=1.5), "alpha"),
        (lambda: bl.VSKNN(k=0), "k"),
        (lambda: bl.VSKNN(sample_size=-3), "sample_size"),
        (lambda: bl.VSKNN(weighting="exp"), "weighting"),
        (lambda: bl.VSKNN(similarity="jaccard"), "similarity"),
        (lambda: bl.VSKNN(idf_weighting="yes"), "idf_weighting"),
    ]:
        with pytest.raises(ValueError, match=f"^{name}:"):
            make()
    m = bl.VSKNN()
    m.k = -1  # changed after construction: checked again at fit
    with pytest.raises(ValueError, match="^k:"):
        m.fit(TRAIN)


# ------------------------------------------------ plain references, random data
def _random_sessions(rng, n_sessions=300, n_items=40):
    return [list(rng.choice(n_items, size=rng.integers(1, 9))) for _ in range(n_sessions)]


def test_itemknn_matches_dense_reference(rng):
    sessions = _random_sessions(rng)
    df = frame(sessions)
    lmbd, alpha = 2.0, 0.4
    m = bl.ItemKNN(n_sims=None, lmbd=lmbd, alpha=alpha).fit(df)
    N = len(m.item_ids)
    X = np.zeros((len(sessions), N))
    pos = {v: i for i, v in enumerate(m.item_ids)}
    for s, items in enumerate(sessions):
        X[s, [pos[i] for i in items]] = 1
    co = X.T @ X
    supp = X.sum(0)
    sim = co / ((supp[:, None] + lmbd) ** alpha * (supp[None, :] + lmbd) ** (1 - alpha))
    fb = m._fallback - 1
    prefixes = [np.array([pos[i] for i in s], np.int32) for s in sessions[:60]]
    got = m.score_prefixes(prefixes)
    for p, g in zip(prefixes, got):
        exp = np.where(co[p[-1]] > 0, sim[p[-1]], fb)
        exp[p[-1]] = fb[p[-1]]
        np.testing.assert_allclose(g, exp, rtol=1e-6, atol=1e-7)


def test_cooccurrence_chunked_equals_one_pass(rng):
    sessions = _random_sessions(rng, 200, 30)
    sd = grurec.sessions_from_frame(frame(sessions))
    offsets, items, lengths = bl._unique_session_items(sd)
    one = bl._cooccurrence(offsets, items, lengths, 30)
    many = bl._cooccurrence(offsets, items, lengths, 30, max_pairs=7)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def _vsknn_reference(sessions, prefix, k, M, weighting, similarity, idf_weighting, n_items):
    """Plain loops over one prefix; sessions in start order, item indices."""
    S = len(sessions)
    sets = [set(s) for s in sessions]
    supp = np.zeros(n_items)
    for st in sets:
        for i in st:
            supp[i] += 1
    known = [i for i in prefix if i >= 0]
    L = len(known)
    w = {}
    for p, i in enumerate(known, start=1):
        w[i] = {"linear": p / L, "same": 1.0, "div": 1 / (L - p + 1),
                "quadratic": (p / L) ** 2}[weighting]
    if idf_weighting:
        w = {i: v * math.log(S / supp[i]) for i, v in w.items()}
    norm = math.sqrt(sum(v * v for v in w.values()))
    cands = [s for s in range(S - 1, -1, -1) if sets[s] & set(w)][:M]
    sims = []
    for s in cands:
        dot = sum(w[i] for i in sets[s] if i in w)
        if similarity == "cosine":
            dot = dot / (norm * math.sqrt(len(sets[s]))) if norm > 0 else 0.0
        sims.append((-dot, S - 1 - s, s, dot))
    sims.sort()
    score = {}
    for _, _, s, sim in [x for x in sims if x[3] > 0][:k]:
        for i in sets[s]:
            score[i] = score.get(i, 0.0) + sim
    return score


@pytest.mark.parametrize("k,M,weighting,similarity,idf", [
    (100, 1000, "linear", "cosine", False),
    (5, 20, "linear", "cosine", False),
    (3, 1000, "div", "dot", True),
    (10, 7, "quadratic", "cosine", True),
    (1, 3, "same", "dot", False),
])
def test_vsknn_matches_plain_reference(rng, k, M, weighting, similarity, idf):
    sessions = _random_sessions(rng, 300, 40)
    m = bl.VSKNN(k=k, sample_size=M, weighting=weighting, similarity=similarity,
                 idf_weighting=idf).fit(frame(sessions))
    pos = {v: i for i, v in enumerate(m.item_ids)}
    idx_sessions = [[pos[i] for i in s] for s in sessions]
    prefixes = [np.array(s + [-1] * (j % 2), np.int32)
                for j, s in enumerate(_random_sessions(rng, 40, 40))]
    prefixes = [np.array([pos.get(i, -1) if i >= 0 else -1 for i in p], np.int32)
                for p in prefixes]
    got = m.score_prefixes(prefixes)
    fb = m._fallback - 1
    for p, g in zip(prefixes, got):
        ref = _vsknn_reference(idx_sessions, list(p), k, M, weighting, similarity, idf,
                               len(m.item_ids))
        exp = fb.copy()
        for i, v in ref.items():
            exp[i] = v
        np.testing.assert_allclose(g, exp, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------ planted signal
def _recall_mrr_at_20(model, test):
    sd = grurec.sessions_from_frame(test, item_ids=model.item_ids, unknown="keep")
    prefixes, targets = [], []
    for s in range(sd.n_sessions):
        seq = sd.items[sd.offsets[s]:sd.offsets[s + 1]]
        for t in range(1, len(seq)):
            prefixes.append(seq[:t])
            targets.append(seq[t])
    targets = np.array(targets)
    ranks = []
    for c in range(0, len(prefixes), 500):
        sc = model.score_prefixes(prefixes[c:c + 500])
        tg = targets[c:c + 500]
        ts = sc[np.arange(len(tg)), np.maximum(tg, 0)]
        r = 1 + (sc > ts[:, None]).sum(1)
        ranks.append(np.where(tg >= 0, r, 10**9))
    ranks = np.concatenate(ranks)
    hit = ranks <= 20
    return hit.mean(), np.where(hit, 1.0 / ranks, 0).mean()


def test_planted_signal_knn_beats_popularity(synthetic):
    train, test = synthetic
    res = {cls.__name__: _recall_mrr_at_20(cls().fit(train), test) for cls in MODELS}
    pop_recall = res["Popularity"][0]
    # The successor of the last item follows with probability 0.5: a model of
    # the last item gets most of that, popularity cannot (measured: POP 0.43,
    # ItemKNN 0.70, VSKNN 0.71 recall@20). VSKNN mixes whole neighbour
    # sessions, so it puts the successor less often first (MRR 0.22 vs 0.42).
    for name in ("ItemKNN", "VSKNN"):
        assert res[name][0] > pop_recall + 0.2, res
    assert res["ItemKNN"][1] > 2 * res["Popularity"][1], res
    assert res["VSKNN"][1] > 1.25 * res["Popularity"][1], res
