"""One behavioural suite that every grurec model runs (implicit's
recommender_base_test habit): fit, recommend, exclusions, live == batch,
save / load / pickle, seeds, refits, interrupts and bad input.

A model class joins by subclassing ``Contract`` and defining ``make``; a
capability a model does not have (model files for the baselines, live
sessions) is skipped with the reason, never silently passed.
"""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import baselines
from grurec.synthetic import generate_sessions


@pytest.fixture(scope="module")
def train():
    return generate_sessions(n_events=3000, n_items=120, mean_length=5, signal=0.8, seed=11)


@pytest.fixture(scope="module")
def sessions(train):
    ids = train.ItemId.unique()
    return [list(ids[:3]), [ids[5]], list(ids[7:12]), [ids[2], ids[2], ids[9]]]


_FITTED: dict = {}


class Contract:
    """Subclasses define ``make(**overrides)``: a fresh, unfitted model."""

    seq_col = "SessionId"  # the column that groups events into sequences

    def make(self, **kw):
        raise NotImplementedError

    @pytest.fixture
    def fitted(self, train):
        """One fitted model per class, shared by its read-only tests."""
        if type(self) not in _FITTED:
            _FITTED[type(self)] = self.make().fit(train)
        return _FITTED[type(self)]

    # ---------------------------------------------------------------- fit
    def test_fit_returns_self_and_sets_the_vocabulary(self, train):
        m = self.make()
        assert m.fit(train) is m
        assert m.item_ids.tolist() == sorted(set(m.item_ids.tolist()))  # sorted, unique
        assert set(m.item_ids.tolist()) <= set(train.ItemId.tolist())
        assert m.n_items == len(m.item_ids) > 0

    def test_unfitted_model_says_so(self, sessions):
        with pytest.raises(RuntimeError, match="not fitted"):
            self.make().recommend(sessions, k=5)

    def test_bad_input_names_the_column(self, train):
        with pytest.raises(ValueError, match="item column 'ItemId' not found"):
            self.make().fit(train.rename(columns={"ItemId": "Item"}))
        bad = train.astype({"ItemId": "float64"}).copy()
        bad.loc[3, "ItemId"] = np.nan
        with pytest.raises(ValueError, match=r"column 'ItemId': missing value .* at row 3"):
            self.make().fit(bad)

    # ----------------------------------------------------------- recommend
    def test_recommend_gives_k_known_items_best_first(self, fitted, sessions):
        ids, scores = fitted.recommend(sessions, k=7)
        assert ids.shape == scores.shape == (len(sessions), 7)
        assert scores.dtype == np.float32 and np.isfinite(scores).all()
        assert (np.diff(scores, axis=1) <= 0).all()
        assert set(ids.ravel().tolist()) <= set(fitted.item_ids.tolist())
        for row in ids:
            assert len(set(row.tolist())) == len(row)

    def test_recommend_agrees_with_score_prefixes(self, fitted, sessions):
        idx = [fitted._lookup(s) for s in sessions]
        dense = fitted.score_prefixes(idx)
        ids, scores = fitted.recommend(sessions, k=5)
        for b in range(len(sessions)):
            order = np.lexsort((np.arange(dense.shape[1]), -dense[b]))[:5]
            np.testing.assert_array_equal(ids[b], fitted.item_ids[order])
            np.testing.assert_allclose(scores[b], dense[b][order], rtol=1e-5, atol=1e-6)

    def test_exclude_seen_and_filter_items(self, fitted, sessions):
        ids, _ = fitted.recommend(sessions, k=10, exclude_seen=True)
        for s, row in zip(sessions, ids):
            assert not set(s) & set(row.tolist())
        allowed = list(fitted.item_ids[::3])
        ids, _ = fitted.recommend(sessions, k=4, filter_items=allowed)
        assert set(ids.ravel().tolist()) <= set(allowed)

    def test_unknown_items_are_skipped_or_named(self, fitted, sessions):
        ghost = "no-such-item" if fitted.item_ids.dtype == object else -987654
        ids, _ = fitted.recommend([sessions[0] + [ghost]], k=3)
        assert fitted.last_unknown_count == 1
        np.testing.assert_array_equal(ids, fitted.recommend([sessions[0]], k=3)[0])
        with pytest.raises(ValueError, match=f"session 0, position {len(sessions[0])}: item "
                                             f"{ghost!r} is not in the model's vocabulary"):
            fitted.recommend([sessions[0] + [ghost]], k=3, unknown="error")

    def test_k_must_be_a_positive_integer(self, fitted, sessions):
        for k in (0, -1, 2.5, "5"):
            with pytest.raises(ValueError, match="k: "):
                fitted.recommend(sessions, k=k)

    def test_evaluate_gives_metrics_in_range(self, fitted, train):
        res = grurec.evaluate(fitted, train.head(400), cutoffs=(5,), session_col=self.seq_col)
        assert 0 <= res["mrr@5"] <= res["recall@5"] <= 1
        assert res["n_events"] > 0

    # ------------------------------------------------ seeds, refit, copies
    def test_same_data_and_seed_give_the_same_model(self, train, sessions):
        a = self.make().fit(train).recommend(sessions, k=6)
        b = self.make().fit(train).recommend(sessions, k=6)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)

    def test_refit_replaces_the_vocabulary(self, train):
        m = self.make().fit(train)
        other = train.assign(ItemId=train.ItemId.astype(str) + "x")
        m.fit(other)
        assert m.item_ids.dtype == object and all(str(i).endswith("x") for i in m.item_ids)
        ids, _ = m.recommend([[m.item_ids[0]]], k=3)
        assert all(str(i).endswith("x") for i in ids.ravel())

    def test_pickle_round_trip(self, fitted, sessions):
        back = pickle.loads(pickle.dumps(fitted))
        assert type(back) is type(fitted)
        for x, y in zip(fitted.recommend(sessions, k=5), back.recommend(sessions, k=5)):
            np.testing.assert_array_equal(x, y)

    def test_save_load_round_trip(self, fitted, sessions, tmp_path):
        if not hasattr(fitted, "save"):
            pytest.skip(f"{type(fitted).__name__} has no model file (a baseline refits in seconds)")
        fitted.save(tmp_path / "m.grurec")
        back = grurec.load(tmp_path / "m.grurec")
        assert type(back) is type(fitted)
        for x, y in zip(fitted.recommend(sessions, k=5), back.recommend(sessions, k=5)):
            np.testing.assert_array_equal(x, y)

    def test_live_session_equals_batch(self, fitted, sessions):
        if not hasattr(fitted, "new_session"):
            pytest.skip(f"{type(fitted).__name__} has no live sessions")
        for s in sessions:
            live = fitted.new_session()
            for item in s:
                live.click(item)
            ids, scores = live.recommend(5)
            b_ids, b_scores = fitted.recommend([s], k=5)
            np.testing.assert_array_equal(ids, b_ids[0])
            np.testing.assert_allclose(scores, b_scores[0], rtol=1e-5, atol=1e-6)

    def test_interrupted_fit_leaves_the_fitted_model(self, train, sessions):
        """A KeyboardInterrupt inside a refit (Ctrl-C, raised from the data
        here) leaves the previous model serving, whole."""
        m = self.make().fit(train)
        before = m.recommend(sessions, k=5)

        class Interrupting(pd.DataFrame):
            def __getitem__(self, key):
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            m.fit(Interrupting(train.assign(ItemId=train.ItemId + 10_000)))
        for x, y in zip(before, m.recommend(sessions, k=5)):
            np.testing.assert_array_equal(x, y)


class TestGRU4Rec(Contract):
    def make(self, **kw):
        return grurec.GRU4Rec(**{**dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2,
                                        num_threads=1, random_state=0, show_progress=False),
                                 **kw})


class TestPopularity(Contract):
    def make(self, **kw):
        return baselines.Popularity(**kw)


class TestSessionPopularity(Contract):
    def make(self, **kw):
        return baselines.SessionPopularity(**kw)


class TestItemKNN(Contract):
    def make(self, **kw):
        return baselines.ItemKNN(**kw)


class TestVSKNN(Contract):
    def make(self, **kw):
        return baselines.VSKNN(**kw)


class TestUserGRU(Contract):
    """Users in place of sessions: the same suite, on a user column."""

    seq_col = "UserId"

    @pytest.fixture
    def train(self):
        return generate_sessions(n_events=3000, n_items=120, mean_length=5, signal=0.8,
                                 seed=11).rename(columns={"SessionId": "UserId"})

    @pytest.fixture
    def sessions(self, train):
        ids = train.ItemId.unique()
        return [list(ids[:3]), [ids[5]], list(ids[7:12]), [ids[2], ids[2], ids[9]]]

    def make(self, **kw):
        return grurec.UserGRU(**{**dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2,
                                        bptt=3, num_threads=1, random_state=0,
                                        show_progress=False), **kw})


class TestUserNARM(TestUserGRU):
    """UserGRU with NARM's readout: the same suite on a user column."""

    def make(self, **kw):
        return grurec.UserNARM(**{**dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2,
                                         bptt=3, attention_memory=2, num_threads=1,
                                         random_state=0, show_progress=False), **kw})


class TestNARM(Contract):
    """GRU4Rec with NARM's attention readout: sessions, windows of bptt steps."""

    def make(self, **kw):
        return grurec.NARM(**{**dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2,
                                     bptt=6, num_threads=1, random_state=0,
                                     show_progress=False), **kw})


class TestBiGRU4Rec(Contract):
    """GRU4Rec with the bidirectional readout: sessions, windows of bptt steps."""

    def make(self, **kw):
        return grurec.BiGRU4Rec(**{**dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2,
                                          bptt=4, num_threads=1, random_state=0,
                                          show_progress=False), **kw})
