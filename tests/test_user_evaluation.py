"""grurec.evaluate_users and grurec.splits.user_time_split against a plain
NumPy reference: one user at a time, dense float64 scores from
``score_prefixes``, history items set to -inf, ranks counted with the
GRU4Rec tie definitions, the metrics from their formulas."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import baselines as bl

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "beauty-s3rec_users1-200.txt"
SHARED = Path(os.environ.get("GRUREC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
CUTOFFS = (1, 3, 5, 10, 20)


def user_events(n_users=60, n_items=40, seed=0):
    """User sequences (UserId, ItemId, Time) of 1..14 events with repeats: a
    user revisits earlier items often, so targets fall in the history."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for u in range(n_users):
        seq = []
        for _ in range(int(rng.integers(1, 15))):
            if seq and rng.random() < 0.3:
                seq.append(seq[int(rng.integers(len(seq)))])
            else:
                seq.append(int(rng.zipf(1.3) % n_items))
        if u % 7 == 0:  # an item no one else has: unknown to the model as a target
            seq.append(1000 + u)
        for i in seq:
            rows.append((100 + u, i, t))
            t += 1
    return pd.DataFrame(rows, columns=["UserId", "ItemId", "Time"])


def reference(model, events, targets_of, cutoffs, exclude_seen, mode="standard"):
    """targets_of(times of one user) -> target positions in that user's sequence."""
    ids = {v: i for i, v in enumerate(model.item_ids)}
    ranks, n_unknown, n_in_hist = [], 0, 0
    for _, g in events.sort_values("Time", kind="stable").groupby("UserId", sort=False):
        items = [ids.get(v, -1) for v in g["ItemId"]]
        for p in targets_of(g["Time"].to_numpy()):
            hist, t = [i for i in items[:p] if i >= 0], items[p]
            s = model.score_prefixes([np.array(hist, np.int64)])[0].astype(np.float64)
            if t < 0:
                n_unknown += 1
                ranks.append(np.inf)
                continue
            if exclude_seen:
                if t in hist:
                    n_in_hist += 1
                    ranks.append(np.inf)
                    continue
                s[hist] = -np.inf
            gt, eq = int((s > s[t]).sum()), int((s == s[t]).sum()) - 1
            ranks.append({"standard": 1 + gt, "conservative": 1 + gt + eq,
                          "median": 1 + gt + eq / 2}[mode])
    r = np.array(ranks, float)
    out = {"n_events": len(r), "n_unknown_targets": n_unknown,
           "n_targets_in_history": n_in_hist}
    for k in cutoffs:
        hit = r <= k
        out[f"hr@{k}"] = out[f"recall@{k}"] = hit.mean()
        out[f"ndcg@{k}"] = np.where(hit, 1 / np.log2(r + 1), 0).mean()
        out[f"mrr@{k}"] = np.where(hit, 1 / r, 0).mean()
        out[f"precision@{k}"] = (hit / k).mean()
        f1 = np.where(hit, 2 * (1 / k) * 1 / (1 / k + 1), 0)  # 2PR/(P+R), P = 1/k, R = 1
        out[f"f1@{k}"] = f1.mean()
    return out


def assert_matches(got, want):
    for key, v in want.items():
        assert got[key] == pytest.approx(v, abs=1e-12), key


def loo_positions(valid=False, min_length=3):
    def f(times):
        n = len(times)
        return [n - (2 if valid else 1)] if n >= min_length else []
    return f


class Coarse(bl.SessionRecommender):
    """Scores in 5 levels driven by the prefix's last item: many exact ties."""

    def _score(self, rows, items, n):
        last = np.zeros(n, np.int64)
        last[rows] = items
        table = np.round(np.random.default_rng(9).random((self.n_items, self.n_items)) * 4)
        return table[last].astype(np.float32)


@pytest.fixture(scope="module")
def events():
    return user_events()


@pytest.fixture(scope="module")
def split(events):
    return grurec.splits.leave_last_out(events, session_col="UserId")


@pytest.fixture(scope="module", params=["GRU4Rec", "ItemKNN", "Coarse"])
def model(request, split):
    if request.param == "GRU4Rec":
        m = grurec.GRU4Rec(layers=[16], batch_size=8, n_sample=16, n_epochs=2, random_state=0,
                           show_progress=False, num_threads=1)
    elif request.param == "ItemKNN":
        m = bl.ItemKNN()
    else:
        m = Coarse()
    return m.fit(split.train)


# ------------------------------------------------------------------ leave-one-out
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("valid", [False, True])
def test_loo_matches_numpy_reference(model, events, split, exclude_seen, valid):
    got = grurec.evaluate_users(model, split, cutoffs=CUTOFFS, exclude_seen=exclude_seen,
                                valid=valid, chunk_users=7)
    want = reference(model, events, loo_positions(valid), CUTOFFS, exclude_seen)
    assert_matches(got, want)
    assert got["protocol"] == ("loo-valid" if valid else "loo")
    assert got["n_users"] == got["n_events"] == int((events.groupby("UserId").size() >= 3).sum())
    assert got["n_items"] == len(model.item_ids)


def test_the_cases_the_reference_covers_do_occur(events, split):
    """The synthetic users exercise targets in the history and unknown targets."""
    m = bl.ItemKNN().fit(split.train)
    r = grurec.evaluate_users(m, split)
    assert r["n_targets_in_history"] > 3 and r["n_unknown_targets"] > 0
    r = grurec.evaluate_users(m, split, exclude_seen=False)
    assert r["n_targets_in_history"] == 0


@pytest.mark.parametrize("mode", ["conservative", "median"])
def test_tie_modes_match_reference(events, split, mode):
    m = Coarse().fit(split.train)
    got = grurec.evaluate_users(m, split, cutoffs=CUTOFFS, mode=mode)
    assert_matches(got, reference(m, events, loo_positions(), CUTOFFS, True, mode))


def test_every_input_form_gives_the_same_result(events, split):
    m = bl.ItemKNN().fit(split.train)
    a = grurec.evaluate_users(m, split)
    assert grurec.evaluate_users(m, events) == a  # DataFrame, UserId column
    assert grurec.evaluate_users(m, split.test) == a  # SessionData
    renamed = events.rename(columns={"UserId": "user", "ItemId": "item", "Time": "ts"})
    assert grurec.evaluate_users(m, renamed, user_col="user", item_col="item",
                                 time_col="ts") == a
    b = grurec.evaluate_users(m, split, chunk_users=1, num_threads=2, show_progress=False)
    assert b.pop("protocol") == a.pop("protocol") == "loo"
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-12, abs=0), k


def test_min_length(events, split):
    m = bl.Popularity().fit(split.train)
    r = grurec.evaluate_users(m, events, min_length=6)
    assert r["n_events"] == int((events.groupby("UserId").size() >= 6).sum())
    assert_matches(r, reference(m, events, loo_positions(min_length=6), (5, 10, 20), True))


# ------------------------------------------------------------------ time cut
def test_user_time_split_and_time_protocol_match_reference(events, model):
    cut = float(np.quantile(events["Time"], 0.8))
    sp = grurec.splits.user_time_split(events, cut=cut)
    assert sp.cut == cut
    assert (sp.train.times < cut).all() and sp.train.n_events == int((events["Time"] < cut).sum())
    # test: whole sequences (history before the cut included) of users with a target
    later = events[events["Time"] >= cut]
    firsts = events.groupby("UserId")["Time"].transform("min")
    with_target = set(later.loc[later["Time"] > firsts[later.index], "UserId"])
    assert sp.test.n_sessions == len(with_target)
    assert sp.test.n_events == int(events["UserId"].isin(with_target).sum())
    assert (sp.test.times < cut).any()

    def positions(times):
        return [p for p in range(1, len(times)) if times[p] >= cut]

    got = grurec.evaluate_users(model, sp, protocol="time", cutoffs=CUTOFFS, chunk_users=5)
    want = reference(model, events, positions, CUTOFFS, True)
    assert_matches(got, want)
    assert got["n_users"] == len(with_target) and got["n_events"] > got["n_users"]
    # the same with the cut given and the whole event table
    again = grurec.evaluate_users(model, events, protocol="time", cut=cut, cutoffs=CUTOFFS,
                                  chunk_users=5)
    assert_matches(again, want)


def test_user_time_split_by_days_and_dates():
    ev = pd.DataFrame({"UserId": [1, 1, 1, 2, 2], "ItemId": [1, 2, 3, 1, 4],
                       "Time": [0.0, 86400.0, 3 * 86400.0, 2 * 86400.0, 3 * 86400.0]})
    sp = grurec.splits.user_time_split(ev, days=1.5)
    assert sp.cut == pytest.approx(1.5 * 86400)
    assert sp.train.n_events == 2 and sp.test.n_sessions == 2
    sp = grurec.splits.user_time_split(ev, cut="1970-01-02 12:00")
    assert sp.cut == pytest.approx(1.5 * 86400)
    with pytest.raises(ValueError, match="exactly one of days= and cut="):
        grurec.splits.user_time_split(ev)


# ------------------------------------------------------------------ errors
def test_clear_errors(events, split):
    m = bl.Popularity().fit(split.train)
    with pytest.raises(ValueError, match="protocol must be one of"):
        grurec.evaluate_users(m, split, protocol="leave-one-out")
    with pytest.raises(ValueError, match="protocol='time' needs cut="):
        grurec.evaluate_users(m, events, protocol="time")
    with pytest.raises(ValueError, match="valid=True: only for protocol='loo'"):
        grurec.evaluate_users(m, events, protocol="time", cut=1.0, valid=True)
    with pytest.raises(ValueError, match="min_length: must be >= 3"):
        grurec.evaluate_users(m, events, min_length=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        grurec.evaluate_users(m, events, mode="optimistic")
    with pytest.raises(ValueError, match="cutoffs"):
        grurec.evaluate_users(m, events, cutoffs=(0,))
    with pytest.raises(TypeError, match="expected a fitted grurec model"):
        grurec.evaluate_users("model", events)
    with pytest.raises(RuntimeError, match="not fitted"):
        grurec.evaluate_users(bl.Popularity(), events)
    with pytest.raises(TypeError, match="exclude_seen"):
        grurec.evaluate_users(m, events, exclude_seen="yes")


# ------------------------------------------------------------------ real sample
def test_beauty_s3rec_sample_matches_reference():
    """The first 200 users of S3-Rec's Beauty.txt (tests/data/README.md)."""
    ds = grurec.datasets.load_user_sequences(SAMPLE)
    ev = pd.DataFrame({"UserId": ds.events.session_ids[np.repeat(np.arange(ds.events.n_sessions),
                                                                 ds.events.lengths())],
                       "ItemId": ds.events.item_ids[ds.events.items],
                       "Time": ds.events.times})
    for m in (bl.ItemKNN().fit(ds.train), bl.VSKNN().fit(ds.train),
              grurec.GRU4Rec(layers=[16], batch_size=8, n_sample=32, n_epochs=1,
                             random_state=0, show_progress=False, num_threads=1
                             ).fit(ds.train)):
        got = grurec.evaluate_users(m, ds, cutoffs=CUTOFFS)
        assert got["n_users"] == 200 and got["n_unknown_targets"] > 0
        assert_matches(got, reference(m, ev, loo_positions(), CUTOFFS, True))


@pytest.mark.skipif(not (SHARED / "beauty-s3rec").is_dir(),
                    reason=f"no beauty-s3rec in the shared data at {SHARED}")
def test_beauty_s3rec_popularity_on_the_whole_set():
    """Popularity scores are the same for every user: a target's rank is 1 +
    the number of items outside the user's history with more training
    events. Counted here with plain Python over the 22,363 users."""
    ds = grurec.datasets.load_prepared("beauty-s3rec", SHARED)
    m = bl.Popularity().fit(ds.train)
    got = grurec.evaluate_users(m, ds, cutoffs=(10,))
    pop = m.popularity
    ids = {v: i for i, v in enumerate(m.item_ids)}
    sd, hits = ds.events, 0
    for u in range(sd.n_sessions):
        seq = [ids.get(v, -1) for v in sd.item_ids[sd.items[sd.offsets[u]:sd.offsets[u + 1]]]]
        hist, t = set(seq[:-1]) - {-1}, seq[-1]
        if t < 0 or t in hist:
            continue
        above = int((pop > pop[t]).sum()) - sum(1 for i in hist if pop[i] > pop[t])
        hits += above + 1 <= 10
    assert got["hr@10"] == pytest.approx(hits / sd.n_sessions, abs=1e-12)
    assert got["n_users"] == 22_363 and 0.005 < got["hr@10"] < 0.05
