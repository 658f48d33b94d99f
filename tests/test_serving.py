"""Serving: recommend, live sessions, native session states, evaluate, the CLI.

References are plain NumPy: the reference GRU (tests/reference.py) run event
by event, dense scores, argsort with a lower-index tie-break, ranks counted
with the GRU4Rec tie definitions.
"""
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.synthetic import generate_sessions

import reference as ref


def fit_small(**kw):
    base = dict(layers=[24], batch_size=16, n_sample=64, n_epochs=2, random_state=0,
                show_progress=False, num_threads=1)
    base.update(kw)
    train = generate_sessions(n_events=5000, n_items=150, mean_length=6, signal=0.8, seed=3)
    return grurec.GRU4Rec(**base).fit(train)


@pytest.fixture(scope="module", params=[
    dict(constrained_embedding=True),
    dict(constrained_embedding=False, embedding=0),
    dict(constrained_embedding=False, embedding=10, layers=[20, 16]),
], ids=["shared", "onehot", "embedding-2layers"])
def model(request):
    return fit_small(**request.param)


def ref_topk(scores, k, banned=()):
    s = scores.astype(np.float64).copy()
    s[list(banned)] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))
    return order[:k]


def sessions_of(m, rng, n=12):
    ids = m.item_ids
    return [list(ids[rng.integers(0, len(ids), rng.integers(1, 9))]) for _ in range(n)]


# ------------------------------------------------------------------ states
def test_session_states_match_reference_recurrence(model):
    rng = np.random.default_rng(0)
    sess = [rng.integers(0, len(model.item_ids), rng.integers(1, 7)) for _ in range(9)]
    sess[3][1:3] = -1  # unknown items inside a session leave the state unchanged
    offsets = np.r_[0, np.cumsum([len(s) for s in sess])].astype(np.int64)
    items = np.concatenate(sess).astype(np.int32)
    for nt in (1, 2):
        final = model._states(offsets, items, num_threads=nt)
        prefix = model._states(offsets, items, all_prefixes=True, num_threads=nt)
        assert prefix.shape == (len(items) - len(sess), model.layers[-1])
        for s, seq in enumerate(sess):
            known = [i for i in seq if i >= 0]
            expected = ref.model_state(model, known) if known else 0
            np.testing.assert_allclose(final[s], expected, atol=2e-5)
            for t in range(len(seq) - 1):
                want = [i for i in seq[:t + 1] if i >= 0]
                row = offsets[s] - s + t
                np.testing.assert_allclose(
                    prefix[row], ref.model_state(model, want) if want else 0, atol=2e-5)


# --------------------------------------------------------------- recommend
def test_recommend_matches_numpy_reference(model):
    rng = np.random.default_rng(1)
    sessions = sessions_of(model, rng)
    ids, scores = model.recommend(sessions, k=10)
    assert ids.shape == (len(sessions), 10) and scores.dtype == np.float32
    W, b = model.params["W_y"].astype(np.float64), model.params["b_y"].astype(np.float64)
    for s, seq in enumerate(sessions):
        h = ref.model_state(model, model._lookup(seq))
        dense = W @ h + b
        want = ref_topk(dense, 10)
        np.testing.assert_allclose(scores[s], dense[want], rtol=1e-4, atol=1e-4)
        # ids agree wherever the reference scores are separated
        gap = np.abs(np.diff(dense[want]))
        sep = np.r_[True, gap > 1e-4] & np.r_[gap > 1e-4, True]
        assert (ids[s][sep] == model.item_ids[want][sep]).all()


def test_recommend_equals_live_session_bit_for_bit(model):
    rng = np.random.default_rng(2)
    sessions = sessions_of(model, rng, n=8)
    ids, scores = model.recommend(sessions, k=15)
    for s, seq in enumerate(sessions):
        live = model.new_session()
        for it in seq:
            live.click(it)
        lids, lscores = live.recommend(15)
        np.testing.assert_array_equal(lids, ids[s])
        np.testing.assert_array_equal(lscores, scores[s])
        np.testing.assert_array_equal(live.items, seq)


def test_exclusions_filters_and_k(model):
    rng = np.random.default_rng(3)
    sessions = sessions_of(model, rng)
    ids, _ = model.recommend(sessions, k=20, exclude_seen=True)
    for s, seq in enumerate(sessions):
        assert not set(ids[s]) & set(seq)
    allowed = list(model.item_ids[::7])
    ids, _ = model.recommend(sessions, k=5, filter_items=allowed)
    assert set(ids.ravel()) <= set(allowed)
    # k beyond the allowed items is capped so that every row holds real items
    ids, _ = model.recommend(sessions, k=10**6, filter_items=allowed[:3])
    assert ids.shape == (len(sessions), 3)
    live = model.new_session()
    for it in sessions[0]:
        live.click(it)
    lids, _ = live.recommend(20, exclude_seen=True)
    assert not set(lids) & set(sessions[0])
    lids, _ = live.recommend(5, filter_items=allowed)
    assert set(lids) <= set(allowed)


def test_unknown_items(model):
    known = list(model.item_ids[:3])
    ids, scores = model.recommend([known + [10**9, -123]], k=5)
    assert model.last_unknown_count == 2
    ids2, scores2 = model.recommend([known], k=5)
    np.testing.assert_array_equal(ids, ids2)
    with pytest.raises(ValueError, match=r"session 0, position 3: item 1000000000"):
        model.recommend([known + [10**9]], k=5, unknown="error")
    live = model.new_session().click(known[0]).click(10**9)
    assert live.n_unknown == 1 and list(live.items) == known[:1]
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        live.click(10**9, unknown="error")
    # An id of the wrong kind is an error, not an unknown id (issue 23).
    with pytest.raises(TypeError, match=r"session 0, position 3: item id 'nope' is a string"):
        model.recommend([known + ["nope"]], k=5)
    with pytest.raises(TypeError, match=r"click: item id 'nope' is a string"):
        live.click("nope")
    with pytest.raises(ValueError, match="k"):
        model.recommend([known], k=0)


def test_empty_session_gives_the_zero_state_ranking(model):
    ids, scores = model.recommend([[]], k=5)
    b = model.params["b_y"].astype(np.float64)
    want = ref_topk(b, 5)
    np.testing.assert_allclose(scores[0], b[want], atol=1e-6)


def test_recommend_is_thread_safe(model):
    rng = np.random.default_rng(4)
    sessions = sessions_of(model, rng, n=64)
    want = model.recommend(sessions, k=10)
    out = [None] * 8

    def work(i):
        out[i] = model.recommend(sessions, k=10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in out:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_score_prefixes_dense_scores(model):
    idx = np.array([0, 5, 2], np.int32)
    scores = model.score_prefixes([idx, idx[:1]])
    W, b = model.params["W_y"].astype(np.float64), model.params["b_y"].astype(np.float64)
    np.testing.assert_allclose(scores[0], W @ ref.model_state(model, idx) + b, atol=1e-4)
    np.testing.assert_allclose(scores[1], W @ ref.model_state(model, idx[:1]) + b, atol=1e-4)


# ---------------------------------------------------------------- evaluate
def numpy_metrics(score_rows, targets, cutoffs, mode):
    """Ranks from dense score rows (float64 compare of the float32 values)."""
    ranks = []
    for s, t in zip(score_rows, targets):
        if t < 0:
            ranks.append(np.inf)
            continue
        r = s[t]
        gt = int((s > r).sum())
        eq = int((s == r).sum()) - 1
        ranks.append({"standard": 1 + gt, "conservative": 1 + gt + eq,
                      "median": 1 + gt + eq / 2}[mode])
    ranks = np.array(ranks, float)
    out = {}
    for k in cutoffs:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.mean()
        out[f"mrr@{k}"] = np.where(hit, 1 / ranks, 0).mean()
        out[f"ndcg@{k}"] = np.where(hit, 1 / np.log2(ranks + 1), 0).mean()
    return out


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_evaluate_gru_matches_numpy_ranks_with_planted_ties(mode):
    m = fit_small(constrained_embedding=False, embedding=8)
    # Plant exact ties: several items get identical output rows and biases.
    W, b = m.params["W_y"], m.params["b_y"]
    for dst, src in [(1, 0), (2, 0), (7, 5), (8, 5), (9, 5), (30, 31)]:
        W[dst], b[dst] = W[src], b[src]
    test = generate_sessions(n_events=600, n_items=150, mean_length=5, signal=0.8, seed=7)
    test.loc[::5, "ItemId"] = test.loc[::5, "ItemId"] % 10  # many targets among the ties
    cutoffs = (1, 2, 3, 5, 10, 20)
    got = grurec.evaluate(m, test, cutoffs=cutoffs, mode=mode, chunk_events=97)
    sd = grurec.to_sessions(test, item_ids=m.item_ids, unknown="keep")
    rows, targets = [], []
    for a, z in zip(sd.offsets[:-1], sd.offsets[1:]):
        for t in range(a, z - 1):
            prefix = np.array([i for i in sd.items[a:t + 1] if i >= 0], np.int32)
            rows.append(m.score_prefixes([prefix])[0])  # dense NumPy scores
            targets.append(sd.items[t + 1])
    want = numpy_metrics(rows, targets, cutoffs, mode)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    assert got["n_events"] == len(targets)


def test_rank_exactly_k_is_a_hit_at_k():
    class Fixed(grurec.baselines.SessionRecommender):
        """Scores: item j gets -j, so the target index + 1 is its rank."""

        def _score(self, rows, items, n):
            return np.tile(-np.arange(self.n_items, dtype=np.float32), (n, 1))

    df = pd.DataFrame({"SessionId": [1, 1, 2, 2], "ItemId": [0, 4, 0, 5], "Time": [0, 1, 2, 3]})
    train = pd.DataFrame({"SessionId": np.repeat(np.arange(10), 2),
                          "ItemId": np.arange(20) % 10, "Time": np.arange(20)})
    m = Fixed().fit(train)
    r = grurec.evaluate(m, df, cutoffs=(4, 5, 6))
    assert r["recall@4"] == 0 and r["recall@5"] == 0.5 and r["recall@6"] == 1.0
    assert r["mrr@6"] == pytest.approx((1 / 5 + 1 / 6) / 2)


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_evaluate_dense_path_matches_numpy_with_ties(mode):
    """A model with coarse random scores (many exact ties) through the dense
    path (score_prefixes) against the NumPy rank computation."""

    class Coarse(grurec.baselines.SessionRecommender):
        def _score(self, rows, items, n):
            last = np.full(n, 0)
            last[rows] = items  # last item of each prefix drives the scores
            table = np.round(np.random.default_rng(9).random((self.n_items, self.n_items)) * 4)
            return table[last].astype(np.float32)

    train = generate_sessions(n_events=3000, n_items=60, seed=1)
    test = generate_sessions(n_events=400, n_items=60, seed=2)
    m = Coarse().fit(train)
    cutoffs = (1, 3, 5, 20)
    got = grurec.evaluate(m, test, cutoffs=cutoffs, mode=mode, chunk_events=50)
    sd = grurec.to_sessions(test, item_ids=m.item_ids, unknown="keep")
    rows, targets = [], []
    for a, z in zip(sd.offsets[:-1], sd.offsets[1:]):
        for t in range(a, z - 1):
            rows.append(m.score_prefixes([sd.items[a:t + 1]])[0])
            targets.append(sd.items[t + 1])
    want = numpy_metrics(rows, targets, cutoffs, mode)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k


def test_evaluate_counts_unknown_targets_and_candidates():
    m = fit_small()
    test = pd.DataFrame({"SessionId": [1, 1, 1, 2, 2], "Time": [0, 1, 2, 3, 4],
                         "ItemId": [m.item_ids[0], 10**9, m.item_ids[1], m.item_ids[2],
                                    m.item_ids[3]]})
    r = grurec.evaluate(m, test, cutoffs=(len(m.item_ids),))
    assert r["n_events"] == 3 and r["n_unknown_targets"] == 1
    assert r[f"recall@{len(m.item_ids)}"] == pytest.approx(2 / 3)  # all known targets hit
    cand = list(m.item_ids[:5])
    r = grurec.evaluate(m, test, cutoffs=(5,), candidates=cand)
    assert r["n_items"] == 5 and r["recall@5"] == pytest.approx(2 / 3)
    assert 0 < r["coverage@5"] <= 1
    with pytest.raises(ValueError, match="mode must be one of"):
        grurec.evaluate(m, test, mode="optimistic")
    with pytest.raises(ValueError, match="cutoffs"):
        grurec.evaluate(m, test, cutoffs=(0,))


def test_evaluate_metrics_do_not_depend_on_chunking_or_threads():
    m = fit_small()
    test = generate_sessions(n_events=800, n_items=150, mean_length=6, signal=0.8, seed=11)
    a = grurec.evaluate(m, test, chunk_events=10**6, num_threads=1)
    b = grurec.evaluate(m, test, chunk_events=33, num_threads=2)
    assert a.keys() == b.keys()
    for k in a:  # the same ranks; sums over chunks may differ in the last bit
        assert b[k] == pytest.approx(a[k], rel=1e-12, abs=0), k


def test_baselines_evaluate_through_the_same_path():
    train = generate_sessions(n_events=4000, n_items=100, mean_length=6, signal=0.8, seed=3)
    test = generate_sessions(n_events=600, n_items=100, mean_length=6, signal=0.8, seed=4)
    pop = grurec.evaluate(grurec.baselines.Popularity().fit(train), test, cutoffs=(20,))
    knn = grurec.evaluate(grurec.baselines.ItemKNN().fit(train), test, cutoffs=(20,))
    assert knn["recall@20"] > pop["recall@20"] + 0.2
    assert pop["popularity@20"] > knn["popularity@20"]


# --------------------------------------------------------------------- CLI
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "grurec", *args], capture_output=True,
                          text=True)


def test_cli_train_evaluate_recommend(tmp_path):
    train = generate_sessions(n_events=3000, n_items=80, mean_length=6, signal=0.8, seed=3)
    test = generate_sessions(n_events=500, n_items=80, mean_length=6, signal=0.8, seed=4)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    model = tmp_path / "m.grurec"
    out = run_cli("train", str(tmp_path / "train.csv"), "-o", str(model), "--layers", "16",
                  "--n-epochs", "1", "--n-sample", "32", "--batch-size", "8", "--quiet",
                  "--test", str(tmp_path / "test.tsv"))
    assert out.returncode == 0, out.stderr
    assert "saved" in out.stdout and "recall" in out.stdout
    out = run_cli("evaluate", str(model), str(tmp_path / "test.tsv"), "--json")
    assert out.returncode == 0, out.stderr
    import json

    res = json.loads(out.stdout)
    assert res["n_events"] > 0 and 0 <= res["recall@20"] <= 1
    out = run_cli("recommend", str(model), "3", "17", "-k", "5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "session,rank,item,score" and len(lines) == 6
    loaded = grurec.load(model)
    assert loaded.item_ids.dtype == object  # a text file's ids are read as strings
    ids, _ = loaded.recommend([["3", "17"]], k=5)
    assert [x.split(",")[2] for x in lines[1:]] == list(ids[0])
    out = run_cli("recommend", str(model), "--events", str(tmp_path / "test.tsv"), "-k", "3")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1 + 3 * test.SessionId.nunique()


def test_cli_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.grurec"
    bad.write_bytes(b"not a model")
    out = run_cli("evaluate", str(bad), str(tmp_path / "x.csv"))
    assert out.returncode == 2
    assert "model file" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("train", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "m"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_quickstart_runs():
    out = run_cli("quickstart", "--events", "20000", "--items", "400", "--epochs", "1",
                  "--quiet")
    assert out.returncode == 0, out.stderr
    for name in ("GRU4Rec", "POP", "S-POP", "Item-KNN", "V-SKNN"):
        assert name in out.stdout


def test_recommend_takes_an_event_table(model, tmp_path):
    ids = model.item_ids
    df = pd.DataFrame({"SessionId": ["b", "b", "a", "a", "a"],
                       "ItemId": [ids[3], ids[4], ids[5], ids[6], ids[7]],
                       "Time": [10, 11, 0, 1, 2]})
    got_ids, got_scores = model.recommend(df, k=7)
    # sessions ordered by their first event: a, then b
    assert list(model.last_session_ids) == ["a", "b"]
    want_ids, want_scores = model.recommend([[ids[5], ids[6], ids[7]], [ids[3], ids[4]]], k=7)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)
    df.to_csv(tmp_path / "s.csv", index=False)
    np.testing.assert_array_equal(model.recommend(str(tmp_path / "s.csv"), k=7)[0], want_ids)
    bad = df.assign(ItemId=[ids[3], "zzz", ids[5], ids[6], ids[7]]) if ids.dtype == object \
        else df.assign(ItemId=[ids[3], -5, ids[5], ids[6], ids[7]])
    with pytest.raises(ValueError, match="ItemId"):
        model.recommend(bad, k=3, unknown="error")
    model.recommend(bad, k=3)
    assert model.last_unknown_count == 1


# ------------------------------------------------- precision / F1, rest of session
def test_precision_and_f1_derive_from_the_hits():
    m = fit_small()
    test = generate_sessions(n_events=600, n_items=150, mean_length=5, signal=0.8, seed=7)
    r = grurec.evaluate(m, test, cutoffs=(1, 5, 20), mode="median")
    for k in (1, 5, 20):
        hr = r[f"recall@{k}"]
        assert r[f"precision@{k}"] == pytest.approx(hr / k, rel=1e-15)
        p, rec = hr / k, hr  # mean P and R; per event F1 = 2/(k+1) on a hit
        assert r[f"f1@{k}"] == pytest.approx(2 * p * rec / (p + rec), rel=1e-12)
    assert r["f1@1"] == pytest.approx(r["recall@1"])


def rest_reference(score_rows, top_rows, rests, cutoffs):
    """Per prefix: the top-K list (best first), the set of later items."""
    out = {}
    for k in cutoffs:
        P, R, F, AP = [], [], [], []
        for top, rel in zip(top_rows, rests):
            hits = [int(i) in rel for i in top[:k]]
            h = sum(hits)
            p, r = h / k, h / len(rel)
            P.append(p)
            R.append(r)
            F.append(2 * p * r / (p + r) if h else 0.0)
            ap = sum(sum(hits[:j + 1]) / (j + 1) for j in range(len(hits)) if hits[j])
            AP.append(ap / min(k, len(rel)))
        out.update({f"precision@{k}": np.mean(P), f"recall@{k}": np.mean(R),
                    f"f1@{k}": np.mean(F), f"map@{k}": np.mean(AP)})
    return out


def rest_cases(m, test, k, top_of):
    sd = grurec.to_sessions(test, unknown="keep")  # the test's own ids
    to_model = m._lookup(list(sd.item_ids))
    tops, rests = [], []
    for a, z in zip(sd.offsets[:-1], sd.offsets[1:]):
        if z - a < 2:
            continue
        for t in range(a, z - 1):
            prefix = to_model[sd.items[a:t + 1]]
            tops.append(top_of(prefix[prefix >= 0], k))
            # relevant: the ids of later events (unknown ones can never be hit)
            rests.append({int(to_model[i]) if to_model[i] >= 0 else -10 - int(i)
                          for i in sd.items[t + 1:z]})
    return tops, rests


@pytest.mark.parametrize("which", ["ItemKNN", "Coarse", "GRU4Rec"])
def test_rest_of_session_matches_numpy_reference(which):
    train = generate_sessions(n_events=3000, n_items=60, mean_length=6, signal=0.8, seed=1)
    test = generate_sessions(n_events=500, n_items=70, mean_length=6, signal=0.8, seed=2)
    test.loc[::4, "ItemId"] = test.loc[::4, "ItemId"] % 5  # repeats within sessions

    class Coarse(grurec.baselines.SessionRecommender):
        def _score(self, rows, items, n):
            last = np.full(n, 0)
            last[rows] = items
            table = np.round(np.random.default_rng(9).random((self.n_items, self.n_items)) * 4)
            return table[last].astype(np.float32)

    if which == "GRU4Rec":
        m = grurec.GRU4Rec(layers=[16], batch_size=16, n_sample=32, n_epochs=2, random_state=0,
                           show_progress=False, num_threads=1).fit(train)

        def top_of(prefix, k):  # the native lists recommend() gives (ties: lower index)
            return m._lookup(list(m.recommend([list(m.item_ids[prefix])], k=k)[0][0]))
    else:
        m = (grurec.baselines.ItemKNN() if which == "ItemKNN" else Coarse()).fit(train)

        def top_of(prefix, k):
            s = m.score_prefixes([prefix])[0].astype(np.float64)
            return np.lexsort((np.arange(len(s)), -s))[:k]

    cutoffs = (1, 3, 5, 20)
    got = grurec.evaluate(m, test, cutoffs=cutoffs, protocol="rest", chunk_events=61,
                          show_progress=False)
    tops, rests = rest_cases(m, test, max(cutoffs), top_of)
    want = rest_reference(None, tops, rests, cutoffs)
    for key, v in want.items():
        assert got[key] == pytest.approx(v, abs=1e-12), key
    assert got["n_events"] == len(tops)
    assert got["n_unknown_items"] == int((~test["ItemId"].isin(m.item_ids)).sum())
    assert got["n_unknown_items"] > 0  # test items 60..69 are unknown to the model
    # the next item is relevant too: a next-item hit at 1 (no tie) is a rest hit at 1
    nxt = grurec.evaluate(m, test, cutoffs=cutoffs, mode="conservative")
    assert got["precision@1"] >= nxt["precision@1"] - 1e-12


def test_rest_protocol_checks_and_candidates():
    train = generate_sessions(n_events=2000, n_items=50, seed=1)
    test = generate_sessions(n_events=300, n_items=50, seed=2)
    m = grurec.baselines.ItemKNN().fit(train)
    with pytest.raises(ValueError, match="protocol must be one of"):
        grurec.evaluate(m, test, protocol="all")
    with pytest.raises(ValueError, match="tie modes apply to protocol='next' only"):
        grurec.evaluate(m, test, protocol="rest", mode="median")
    cand = list(m.item_ids[:10])
    r = grurec.evaluate(m, test, cutoffs=(5, 20), protocol="rest", candidates=cand)
    assert r["n_items"] == 10
    for k in (5, 20):  # never more hits than relevant candidates
        assert 0 <= r[f"precision@{k}"] <= min(1, 10 / k) and 0 <= r[f"map@{k}"] <= 1
    full = grurec.evaluate(m, test, cutoffs=(20,), protocol="rest")
    assert full["recall@20"] > r["recall@20"]
