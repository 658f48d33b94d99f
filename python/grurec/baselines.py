"""Baselines for session-based next-item recommendation.

Models (all pure NumPy, vectorised over a batch of sessions):

- ``Popularity``: the most popular items of the training data (POP in Hidasi et
  al., "Session-based recommendations with recurrent neural networks", ICLR 2016).
- ``SessionPopularity``: the most popular items of the current session, ties and
  the rest by global popularity (S-POP, same paper).
- ``ItemKNN``: items similar to the session's last item, cosine similarity of the
  items' session-occurrence vectors with the usual regularisation (Item-KNN, same
  paper).
- ``VSKNN``: vector-based session kNN (Jannach & Ludewig, "When recurrent neural
  networks meet the neighborhood for session-based recommendation", RecSys 2017;
  Ludewig & Jannach, "Evaluation of session-based recommendation algorithms",
  UMUAI 2018).

The interface they share with every grurec model is ``grurec.base.SessionRecommender``.

Scores of items a model has no evidence for. A kNN model leaves most items
without a score. Rather than tie them all at 0 (which the standard
"1 + number scored strictly higher" rank would count as a hit for every such
target whenever fewer than K items are scored), every model orders them by
its *fallback*: global popularity (training event count), then lower index.
ItemKNN and VSKNN give such items ``f(i) - 1`` and S-POP gives items outside
the session ``f(i)``, where ``f(i) = r(i) / (R + 1)`` in (0, 1), ``r(i)`` in
1..R being the dense rank of the item's popularity among the R distinct
popularity values (more popular = higher). So ``score_prefixes`` and
``recommend`` give the same order, and ``recommend`` always returns k items
(as far as the catalogue allows): scored items first, then the fallback order.
To read raw kNN scores, clip at zero: ``np.maximum(scores, 0)``.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from .base import (SessionRecommender, _bad, _check_float, _check_int, _flatten,  # noqa: F401
                   _is_event_source, _topk, register)
from .data import SessionData

log = logging.getLogger("grurec")

__all__ = ["SessionRecommender", "Popularity", "SessionPopularity", "ItemKNN", "VSKNN", "ContentKNN"]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values starts in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _rank_in_group(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a grouped array."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = _group_starts(groups)
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def _ranges(start: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Concatenation of start[j] .. start[j] + cnt[j] - 1 over j."""
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.arange(total, dtype=np.int64) + np.repeat(start - (np.cumsum(cnt) - cnt), cnt)


def _unique_session_items(sd: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each session's distinct items: CSR (offsets int64[S+1], items int64, lengths)."""
    n = len(sd.item_ids)
    sess = np.repeat(np.arange(sd.n_sessions, dtype=np.int64), sd.lengths())
    key = np.unique(sess * n + sd.items.astype(np.int64))
    s, it = key // n, key % n
    lengths = np.bincount(s, minlength=sd.n_sessions).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    return offsets, it, lengths


# ---------------------------------------------------------------------- POP
@register
class Popularity(SessionRecommender):
    """POP: always the items most often seen in training (Hidasi et al., ICLR 2016).

    score(i) = number of training events of item i (the same for every session).
    Ties (equal counts) are real ties; ``recommend`` breaks them by lower index.
    """

    def _score(self, rows, items, n):
        return np.repeat(self.popularity.astype(np.float32)[None, :], n, axis=0)


# -------------------------------------------------------------------- S-POP
@register
class SessionPopularity(SessionRecommender):
    """S-POP: the most popular items of the current session (Hidasi et al., ICLR 2016).

    score(i | s) = c_s(i) + f(i), where c_s(i) is the number of times item i
    occurs in the session so far and f(i) in (0, 1) is the popularity fallback
    (module docstring): items of the session come first, by their count in the
    session, ties by global popularity; then every other item by global
    popularity. Exact in float32 while the count and the number of distinct
    popularity values R stay within 2^23 / R (e.g. counts < 1000 for R < 8000).
    """

    def _score(self, rows, items, n):
        out = self._fallback_rows(n, 0.0)
        if len(items):
            N = self.n_items
            key, cnt = np.unique(rows * N + items, return_counts=True)
            r, it = key // N, key % N
            out[r, it] = (cnt + self._fallback[it]).astype(np.float32)
        return out


# ------------------------------------------------------------------ ItemKNN
@register
class ItemKNN(SessionRecommender):
    """Item-KNN: items similar to the session's last item (Hidasi et al., ICLR 2016).

    Each item is the binary vector of the training sessions it occurs in. With
    co(i, j) the number of sessions containing both items and supp(i) the number
    of sessions containing i,

        sim(i, j) = co(i, j) / ((supp(i) + lmbd)^alpha * (supp(j) + lmbd)^(1 - alpha))

    which is the cosine similarity for lmbd = 0, alpha = 0.5; lmbd > 0 shrinks
    the similarities of rarely seen items (regularisation against coincidental
    co-occurrence), alpha != 0.5 makes it asymmetric (alpha -> 1 favours popular
    candidates j). An item is not its own neighbour (sim(i, i) is not used).
    Each item keeps its ``n_sims`` most similar items (None = all).

    score(j | s) = sim(last(s), j), last(s) being the last known item of the
    session; items without a similarity get the popularity fallback f(j) - 1 < 0
    (module docstring), as does every item for a session with no known item.

    Defaults n_sims=100, lmbd=20, alpha=0.5 are those of the GRU4Rec authors'
    Item-KNN baseline.

    ``similar_items(i)`` lists i's stored neighbours by sim(i, j), then the
    popularity fallback.
    """

    _similar_from_scores = True

    def __init__(self, n_sims: Optional[int] = 100, lmbd: float = 20.0, alpha: float = 0.5):
        super().__init__()
        self.n_sims = n_sims
        self.lmbd = lmbd
        self.alpha = alpha
        self._check_params()

    def _check_params(self):
        self.n_sims = _check_int("n_sims", self.n_sims, 1, allow_none=True)
        self.lmbd = _check_float("lmbd", self.lmbd, 0.0)
        self.alpha = _check_float("alpha", self.alpha, 0.0, 1.0)

    def _fit(self, sd):
        N = len(sd.item_ids)
        offsets, items, lengths = _unique_session_items(sd)
        supp = np.bincount(items, minlength=N).astype(np.float64)
        a, b, co = _cooccurrence(offsets, items, lengths, N)
        # Both directions: row = the query item i, column = the candidate j.
        row = np.r_[a, b]
        col = np.r_[b, a]
        co = np.r_[co, co].astype(np.float64)
        sim = co / ((supp[row] + self.lmbd) ** self.alpha
                    * (supp[col] + self.lmbd) ** (1.0 - self.alpha))
        # Rank on the stored float32 values, so equal stored similarities are
        # ties broken by lower index, like everywhere else.
        sim = sim.astype(np.float32)
        order = np.lexsort((col, -sim, row))
        row, col, sim = row[order], col[order], sim[order]
        if self.n_sims is not None:
            keep = _rank_in_group(row) < self.n_sims
            row, col, sim = row[keep], col[keep], sim[keep]
        self.sim_indptr = np.r_[0, np.cumsum(np.bincount(row, minlength=N))].astype(np.int64)
        self.sim_indices = col.astype(np.int32)  # [nnz] neighbour j, best first per row
        self.sim_data = sim  # [nnz] float32 sim(i, j)

    def _score(self, rows, items, n):
        out = self._fallback_rows(n, -1.0)
        if len(items) == 0:
            return out
        # Last known item of each prefix: the last entry of each run of rows.
        is_last = np.r_[rows[1:] != rows[:-1], True]
        b, last = rows[is_last], items[is_last]
        start, stop = self.sim_indptr[last], self.sim_indptr[last + 1]
        cnt = stop - start
        rb = np.repeat(b, cnt)
        pos = _ranges(start, cnt)
        out[rb, self.sim_indices[pos]] = self.sim_data[pos]
        return out


def _cooccurrence(offsets, items, lengths, N, max_pairs: int = 1 << 23):
    """Sessions containing both i and j, for every pair i < j that co-occurs.

    offsets/items/lengths: each session's distinct items (CSR). Pairs are
    generated session by session in chunks of about ``max_pairs``.
    Returns (i int64[P], j int64[P], count int64[P]).
    """
    pairs_per = lengths * (lengths - 1) // 2
    cum = np.cumsum(pairs_per)
    keys, counts = [], []
    s0 = 0
    S = len(lengths)
    while s0 < S:
        base = cum[s0 - 1] if s0 else 0
        s1 = max(s0 + 1, int(np.searchsorted(cum, base + max_pairs, side="right")))
        s1 = min(s1, S)
        e0, e1 = offsets[s0], offsets[s1]
        L = np.repeat(lengths[s0:s1], lengths[s0:s1])  # [events] own session length
        p = np.arange(e1 - e0) - np.repeat(offsets[s0:s1] - e0, lengths[s0:s1])  # position
        partners = L - 1 - p  # later items of the same session
        total = int(partners.sum())
        if total:
            src = np.repeat(np.arange(e0, e1), partners)
            dst = _ranges(np.arange(e0, e1) + 1, partners)
            i, j = items[src], items[dst]
            k, c = np.unique(np.minimum(i, j) * N + np.maximum(i, j), return_counts=True)
            keys.append(k)
            counts.append(c)
        s0 = s1
    if not keys:
        z = np.zeros(0, np.int64)
        return z, z, z
    k = np.concatenate(keys)
    c = np.concatenate(counts)
    if len(keys) > 1:
        k, inv = np.unique(k, return_inverse=True)
        c = np.bincount(inv, weights=c).astype(np.int64)
    return k // N, k % N, c


# -------------------------------------------------------------------- VSKNN
_WEIGHTINGS = ("linear", "same", "div", "quadratic")
_SIMILARITIES = ("cosine", "dot")


@register
class VSKNN(SessionRecommender):
    """Vector-based session kNN, V-SKNN (Jannach & Ludewig, RecSys 2017;
    Ludewig & Jannach, UMUAI 2018).

    The current session s (its known items, positions p = 1..L, oldest first)
    is a real-valued vector: item i gets the weight w(p, L) of its most recent
    position p, where ``weighting`` is

        "linear"     w = p / L           (last item 1, linearly less before it)
        "same"       w = 1               (binary: plain SKNN)
        "div"        w = 1 / (L - p + 1)
        "quadratic"  w = (p / L)^2

    times idf(i) = log(S / supp(i)) when ``idf_weighting`` (S training sessions,
    supp(i) of them containing i). Past sessions n are binary vectors of their
    distinct items.

    Candidates: the ``sample_size`` most recent training sessions (recency =
    the order of the sessions' first events) that contain at least one item of
    s. Similarity (``similarity``):

        "dot"     sim(s, n) = sum_{i in n} w_s(i)
        "cosine"  sim(s, n) = sum_{i in n} w_s(i) / (||w_s||_2 * sqrt(|n|))

    Neighbours N_k(s): the ``k`` candidates of highest similarity (ties: the more
    recent). Item score:

        score(i | s) = sum_{n in N_k(s), i in n} sim(s, n)

    Items no neighbour contains get the popularity fallback f(i) - 1 < 0
    (module docstring). The session's own items are scored like any other
    (use ``exclude_seen`` in ``recommend`` to drop them).

    Defaults: k=100 neighbours, sample_size=1000, linear decay, cosine, no IDF
    (the ranges explored by Ludewig & Jannach 2018).

    ``similar_items(i)`` ranks items by their score for the one-item session
    ``[i]``: how often they occur in the most similar sessions holding i.
    """

    _similar_from_scores = True

    def __init__(self, k: int = 100, sample_size: int = 1000, weighting: str = "linear",
                 similarity: str = "cosine", idf_weighting: bool = False):
        super().__init__()
        self.k = k
        self.sample_size = sample_size
        self.weighting = weighting
        self.similarity = similarity
        self.idf_weighting = idf_weighting
        self._check_params()

    def _check_params(self):
        self.k = _check_int("k", self.k, 1)
        self.sample_size = _check_int("sample_size", self.sample_size, 1)
        if self.weighting not in _WEIGHTINGS:
            raise _bad("weighting", f"must be one of {_WEIGHTINGS}", self.weighting)
        if self.similarity not in _SIMILARITIES:
            raise _bad("similarity", f"must be one of {_SIMILARITIES}", self.similarity)
        if not isinstance(self.idf_weighting, (bool, np.bool_)):
            raise _bad("idf_weighting", "must be True or False", self.idf_weighting)

    def _fit(self, sd):
        N = len(sd.item_ids)
        offsets, items, lengths = _unique_session_items(sd)
        S = len(lengths)
        # Renumber sessions by recency: r = 0 is the most recent (latest start).
        sess = np.repeat(np.arange(S, dtype=np.int64), lengths)
        r_of_event = S - 1 - sess
        order = np.lexsort((r_of_event, items))  # by item, then most recent first
        it_sorted, r_sorted = items[order], r_of_event[order]
        supp = np.bincount(items, minlength=N)
        keep = _rank_in_group(it_sorted) < self.sample_size
        self.item_sess_indptr = np.r_[0, np.cumsum(np.minimum(supp, self.sample_size))
                                      ].astype(np.int64)
        self.item_sess = r_sorted[keep].astype(np.int32)  # [nnz] sessions of item i, recent first
        rev = np.argsort(r_of_event, kind="stable")
        self.sess_len = lengths[::-1].copy()  # [S] distinct items of session r
        self.sess_indptr = np.r_[0, np.cumsum(self.sess_len)].astype(np.int64)
        self.sess_items = items[rev].astype(np.int32)  # [events] items of session r
        self.n_train_sessions = S
        self.idf = np.log(S / np.maximum(supp, 1)).astype(np.float64)

    def _weights(self, p: np.ndarray, L: np.ndarray) -> np.ndarray:
        if self.weighting == "linear":
            return p / L
        if self.weighting == "same":
            return np.ones(len(p))
        if self.weighting == "div":
            return 1.0 / (L - p + 1)
        return (p / L) ** 2

    def _score(self, rows, items, n):
        out = self._fallback_rows(n, -1.0)
        if len(items) == 0:
            return out
        N, S, M = self.n_items, self.n_train_sessions, self.sample_size
        # Session vectors: weight by position among the known items, the most
        # recent occurrence of a repeated item counts.
        L = np.bincount(rows, minlength=n)[rows].astype(np.float64)
        p = _rank_in_group(rows) + 1.0
        w = self._weights(p, L)
        key = rows * N + items
        order = np.lexsort((-w, key))
        first = _group_starts(key[order])
        sel = order[first]
        vb, vi, vw = rows[sel], items[sel], w[sel]  # one entry per (prefix, item)
        if self.idf_weighting:
            vw = vw * self.idf[vi]
        norm = np.sqrt(np.bincount(vb, weights=vw * vw, minlength=n))

        # Candidate sessions with their dot products: each item's most recent
        # sessions (at most M: any session among the M most recent of the union
        # is among the M most recent of each of its items' lists).
        start, stop = self.item_sess_indptr[vi], self.item_sess_indptr[vi + 1]
        cnt = stop - start
        skey = np.repeat(vb * S, cnt) + self.item_sess[_ranges(start, cnt)]
        ew = np.repeat(vw, cnt)
        # The order among equal keys only changes the summation order (a few ulp).
        order = np.argsort(skey)
        skey = skey[order]
        g = _group_starts(skey)
        dot = np.add.reduceat(ew[order], g) if len(g) else np.zeros(0)
        cb, cs = skey[g] // S, skey[g] % S  # sorted by prefix, then recency
        rank = _rank_in_group(cb)  # 0 = the most recent candidate of the prefix
        sample = rank < M
        cb, cs, dot, rank = cb[sample], cs[sample], dot[sample], rank[sample]
        if self.similarity == "cosine":
            denom = norm[cb] * np.sqrt(self.sess_len[cs])
            sim = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
        else:
            sim = dot
        # k nearest: highest similarity, ties by recency. Candidates laid out
        # (n, M) by recency rank, so "ties by lower column" is "the more recent".
        width = int(rank.max()) + 1 if len(rank) else 0
        if self.k < width:
            D = np.full((n, width), -1.0)  # [n, width] sims; -1 = no candidate
            D[cb, rank] = sim
            C = np.zeros((n, width), np.int64)  # [n, width] the candidate sessions
            C[cb, rank] = cs
            top = _topk(D, self.k)
            cb = np.repeat(np.arange(n), self.k)
            sim = np.take_along_axis(D, top, 1).ravel()
            cs = np.take_along_axis(C, top, 1).ravel()
        nb = sim > 0
        cb, cs, sim = cb[nb], cs[nb], sim[nb]

        # Item scores: each neighbour adds its similarity to its items.
        ln = self.sess_len[cs]
        ib = np.repeat(cb, ln)
        pos = _ranges(self.sess_indptr[cs], ln)
        ikey = ib * N + self.sess_items[pos]
        u, inv = np.unique(ikey, return_inverse=True)
        total = np.bincount(inv, weights=np.repeat(sim, ln))
        out[u // N, u % N] = total.astype(np.float32)
        return out


# --------------------------------------------------------------- ContentKNN
class ContentKNN(SessionRecommender):
    """Content kNN: items similar by their features to the session's items
    (the cold-start baseline of issue 18; docs/features.md).

    Each item is a vector v(i): per categorical field the multi-hot vector of
    its categories, L2-normalised, then the numeric + dense block (``z`` of
    ``grurec.ItemFeatures``), L2-normalised; the whole vector L2-normalised.
    The session profile is p(s) = sum_t decay^(age_t) v(item_t) (age 0 for
    the last item), and

        score(j | s) = v(j) . p(s)

    (cosine similarity up to a per-session factor). Items without features
    and, with ``exclude_session_items``, the session's own items get the
    popularity fallback f(j) - 2, below every similarity (module docstring).
    ``fit(events, item_features=...)``: the vocabulary is every item of the
    events and of the features, so items never seen in training (cold items)
    are ranked by their features alone. Memory: a dense n_items x D matrix.
    """

    def __init__(self, decay: float = 0.8, exclude_session_items: bool = True):
        super().__init__()
        self.decay = decay
        self.exclude_session_items = exclude_session_items
        self._check_params()

    def _check_params(self):
        self.decay = _check_float("decay", self.decay, 0.0, 1.0)
        if not isinstance(self.exclude_session_items, (bool, np.bool_)):
            raise _bad("exclude_session_items", "must be True or False", self.exclude_session_items)

    def fit(self, data, session_col: str = "SessionId", item_col: str = "ItemId",
            time_col: str = "Time", *, show_progress: Optional[bool] = None, item_features=None):
        """Learn from events and ``item_features`` (a ``grurec.ItemFeatures``
        or a table it reads); see the class docstring."""
        from .data import sessions_from_frame
        from .features import ItemFeatures

        if item_features is None:
            raise ValueError("item_features: ContentKNN needs item features (grurec.ItemFeatures)")
        if not isinstance(item_features, ItemFeatures):
            item_features = ItemFeatures(item_features, item_col)
        sd = data if isinstance(data, SessionData) else sessions_from_frame(
            data, session_col, item_col, time_col)
        ids = np.asarray(sd.item_ids)
        fids = np.asarray(item_features.item_ids)
        if ids.dtype.kind in "iu" and fids.dtype.kind not in "iu":
            fids = np.array([int(v) for v in fids])
        elif ids.dtype.kind not in "iu" and fids.dtype.kind in "iu":
            fids = np.array([str(v) for v in fids], dtype=object)
        universe = np.union1d(ids, fids) if len(fids) else ids
        if universe.dtype.kind == "U":
            universe = universe.astype(object)
        import pandas as pd

        remap = pd.Index(universe).get_indexer(ids)
        items = np.where(sd.items >= 0, remap[np.maximum(sd.items, 0)], -1).astype(np.int32)
        sd = SessionData(sd.offsets, items, universe, sd.session_ids, sd.times)
        self._features = item_features
        return super().fit(sd, show_progress=show_progress)

    def _fit(self, sd):
        enc = self._features.encode(self.item_ids, log_missing=False)
        N = len(self.item_ids)
        blocks = []
        for off, ids, V in zip(enc.cat_offsets, enc.cat_ids, enc.vocab_sizes):
            m = np.zeros((N, V + 1), np.float32)
            rows = np.repeat(np.arange(N), np.diff(off))
            np.add.at(m, (rows, ids), 1.0)
            m[:, 0] = 0  # categories outside the vocabulary
            blocks.append(m[:, 1:])
        if enc.z.shape[1]:
            blocks.append(enc.z.astype(np.float32))
        for b in blocks:
            nrm = np.linalg.norm(b, axis=1, keepdims=True)
            np.divide(b, nrm, out=b, where=nrm > 0)
        v = np.concatenate(blocks, axis=1) if blocks else np.zeros((N, 1), np.float32)
        nrm = np.linalg.norm(v, axis=1, keepdims=True)
        np.divide(v, nrm, out=v, where=nrm > 0)
        self.item_vectors_ = np.ascontiguousarray(v, np.float32)
        self._has_vector = nrm[:, 0] > 0
        self._features = None  # the vectors are all it needs

    def _score(self, rows, items, n):
        out = self._fallback_rows(n, -2.0)
        if len(items) == 0:
            return out
        starts = np.searchsorted(rows, np.arange(n + 1))
        age = (starts[rows + 1] - 1 - np.arange(len(rows))).astype(np.float64)
        w = (self.decay ** age).astype(np.float32)
        P = np.zeros((n, self.item_vectors_.shape[1]), np.float32)
        np.add.at(P, rows, w[:, None] * self.item_vectors_[items])
        sim = P @ self.item_vectors_.T
        has = np.zeros(n, bool)
        has[rows] = True
        keep = has[:, None] & self._has_vector[None, :]
        out = np.where(keep, sim, out).astype(np.float32)
        if self.exclude_session_items:
            out[rows, items] = self._fallback[items] - 2.0
        return out
