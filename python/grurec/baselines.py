"""Baselines for session-based next-item recommendation, and the interface
every grurec model shares.

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

The shared interface (``SessionRecommender``; GRU4Rec implements the same):

``fit(data, session_col, item_col, time_col) -> self``
    ``data`` is an event table (pandas DataFrame) or a ``SessionData``. Sets
    ``item_ids`` (index -> the user's id).
``score_prefixes(prefixes) -> float32 (n, n_items)``
    ``prefixes``: a list of integer arrays of item *indices*, oldest first; -1
    marks an item unknown to the model and is ignored. Row ``b`` scores every
    item as the next item after ``prefixes[b]``; higher is better. This is what
    the full-ranking evaluator calls.
``recommend(sessions, k, exclude_seen, filter_items, unknown) -> (ids, scores)``
    Top-k in the user's own item ids, best first, ties broken by lower item
    index. Implemented once here on top of ``score_prefixes``.

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
import math
from typing import Mapping, Optional, Sequence

import numpy as np

from .data import SessionData, _hashable, sessions_from_frame, to_sessions

log = logging.getLogger("grurec")

__all__ = ["SessionRecommender", "Popularity", "SessionPopularity", "ItemKNN", "VSKNN"]

# Rows of the (n, n_items) score matrix handled at once by ``recommend`` and
# ``evaluate``: at most 512, and at most 32 MiB of float32 scores, so that the
# chunk and its top-k temporaries (a few copies) stay near 128 MiB whatever the
# catalogue size (512 rows x 1M items would be 2 GB).
_RECOMMEND_CHUNK = 512
_CHUNK_BYTES = 32 << 20


def _dense_chunk_rows(n_items: int) -> int:
    return int(max(1, min(_RECOMMEND_CHUNK, _CHUNK_BYTES // (4 * max(n_items, 1)))))


def _bad(name: str, why: str, value) -> ValueError:
    return ValueError(f"{name}: {why}, got {value!r}")


def _check_int(name: str, value, low: int, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _bad(name, f"must be an integer >= {low}" + (" or None" if allow_none else ""),
                   value)
    if value < low:
        raise _bad(name, f"must be >= {low}", value)
    return int(value)


def _check_float(name: str, value, low: float, high: float = math.inf) -> float:
    ok = not isinstance(value, bool)
    try:
        v = float(value)
    except (TypeError, ValueError):
        ok = False
    if not ok or not math.isfinite(v) or not (low <= v <= high):
        where = f"in [{low}, {high}]" if high < math.inf else f">= {low}"
        raise _bad(name, f"must be a finite number {where}", value)
    return v


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


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


def _flatten(prefixes) -> tuple[np.ndarray, np.ndarray]:
    """(row of each entry, item index of each entry) of a list of prefixes."""
    arrays = []
    for b, p in enumerate(prefixes):
        try:
            a = np.asarray(p)
        except ValueError:  # ragged: a sequence inside the prefix
            a = None
        if a is None or a.ndim != 1:
            raise ValueError(f"prefix {b}: expected a 1-D sequence of item indices, got "
                             f"{'a nested sequence' if a is None else f'shape {a.shape}'}")
        arrays.append(a)
    lengths = np.fromiter((len(a) for a in arrays), np.int64, count=len(arrays))
    if lengths.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    items = np.concatenate([a for a in arrays if len(a)])
    rows = np.repeat(np.arange(len(prefixes)), lengths)
    return rows, items


def _unique_session_items(sd: SessionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each session's distinct items: CSR (offsets int64[S+1], items int64, lengths)."""
    n = len(sd.item_ids)
    sess = np.repeat(np.arange(sd.n_sessions, dtype=np.int64), sd.lengths())
    key = np.unique(sess * n + sd.items.astype(np.int64))
    s, it = key // n, key % n
    lengths = np.bincount(s, minlength=sd.n_sessions).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    return offsets, it, lengths


class SessionRecommender:
    """The interface every grurec model shares; see the module docstring.

    Subclasses implement ``_check_params()``, ``_fit(sd)`` and ``_score(rows,
    items, n)``; the base class validates input, maps item ids and ranks.
    After ``fit``, ``item_ids`` (index -> id) and ``popularity`` (training
    event count per item) are set.
    """

    item_ids: Optional[np.ndarray] = None

    def __init__(self):
        self.item_ids = None
        self.popularity: Optional[np.ndarray] = None
        self.last_unknown_count = 0
        self._index = None

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        pass

    def _fit(self, sd: SessionData) -> None:
        pass

    def _snapshot(self):
        """A shallow copy of the model taken in one step (copying ``__dict__``
        holds the GIL throughout): calls that read several attributes use it
        so that a ``fit()`` in another thread, which publishes its results
        with one ``__dict__.update``, never shows them a mix of two models."""
        snap = object.__new__(type(self))
        snap.__dict__ = dict(self.__dict__)
        return snap

    def _publish(self, work) -> None:
        """Make ``work``'s state (a ``_snapshot`` that was trained) this model's
        in one step; see ``_snapshot``."""
        self.__dict__.update(work.__dict__)

    def fit(self, data, session_col: str = "SessionId", item_col: str = "ItemId",
            time_col: str = "Time"):
        """Learn from an event table (pandas DataFrame) or a ``SessionData``."""
        self._check_params()
        sd = data if isinstance(data, SessionData) else sessions_from_frame(
            data, session_col, item_col, time_col)
        work = self._snapshot()  # other threads keep using the old model meanwhile
        n = len(sd.item_ids)
        work.item_ids = np.asarray(sd.item_ids)
        work._index = None
        work.popularity = np.bincount(sd.items, minlength=n).astype(np.int64)
        levels = np.unique(work.popularity)
        # Fallback f(i) = r(i) / (R + 1), r = dense popularity rank 1..R.
        work._fallback = ((np.searchsorted(levels, work.popularity) + 1)
                          / (len(levels) + 1)).astype(np.float64)
        work._fit(sd)
        self._publish(work)
        return self

    def _check_fitted(self) -> None:
        if self.item_ids is None:
            raise RuntimeError(f"the {type(self).__name__} model is not fitted: call fit() first")

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_ids)

    # -------------------------------------------------------------- scoring
    def _score(self, rows: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        """Scores (n, n_items) float32 for prefixes given flat: entry j is item
        ``items[j]`` (known, 0..n_items-1) of prefix ``rows[j]``; entries of a
        prefix appear oldest first and rows are non-decreasing."""
        raise NotImplementedError

    def score_prefixes(self, prefixes: Sequence) -> np.ndarray:
        """Scores of every item as the next item of each prefix.

        prefixes: a list of integer arrays of item indices (oldest first); -1
        entries (items unknown to the model) are ignored, so a 2-D array with
        -1 padding works too. Calls are independent (no state is kept between
        them) and read-only, so several threads may score at once.
        Returns float32 (len(prefixes), n_items); higher is better.
        """
        self._check_fitted()
        if isinstance(prefixes, np.ndarray) and prefixes.ndim == 2:
            prefixes = list(prefixes)
        rows, items = _flatten(prefixes)
        if len(items):
            if items.dtype.kind not in "iu":
                raise ValueError(f"prefixes must hold integer item indices, got dtype "
                                 f"{items.dtype}")
            bad = (items < -1) | (items >= self.n_items)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                b = int(rows[j])
                pos = j - int(np.searchsorted(rows, b))
                raise ValueError(f"prefix {b}, position {pos}: item index {int(items[j])} is "
                                 f"outside 0..{self.n_items - 1} (-1 marks an unknown item)")
            known = items >= 0
            rows, items = rows[known], items[known].astype(np.int64)
        out = self._score(rows, items, len(prefixes))
        assert out.dtype == np.float32 and out.shape == (len(prefixes), self.n_items)
        return out

    def _fallback_rows(self, n: int, offset: float) -> np.ndarray:
        """(n, n_items) float32 filled with f(i) + offset."""
        row = (self._fallback + offset).astype(np.float32)
        return np.repeat(row[None, :], n, axis=0)

    # ------------------------------------------------------------ recommend
    def _lookup(self, ids, where=None) -> np.ndarray:
        """Item indices of user ids; -1 where unknown. A bool is never an id
        (as in ``to_sessions``); a value that cannot be an id at all (a list,
        an array: anything unhashable) raises TypeError, naming its place
        with ``where(position)``."""
        import pandas as pd

        if self._index is None:
            self._index = pd.Index(self.item_ids)
        if len(ids) == 0:
            return np.zeros(0, np.int64)
        arr = np.empty(len(ids), dtype=object)
        arr[:] = ids
        try:
            typed = arr.astype(self.item_ids.dtype) if self.item_ids.dtype != object else arr
            # A lossy conversion (1.5 -> 1, 'a' -> ...) must not create a match.
            if self.item_ids.dtype != object and not np.all(typed.astype(object) == arr):
                typed = arr
        except (TypeError, ValueError, OverflowError):
            typed = arr
        try:
            out = np.asarray(self._index.get_indexer(typed), dtype=np.int64)
        except TypeError:
            j = next(j for j, v in enumerate(arr) if not _hashable(v))
            place = where(j) if where is not None else f"position {j}"
            raise TypeError(f"{place}: item id {arr[j]!r} is a {type(arr[j]).__name__}, not an "
                            "item id (ids are integers or strings)") from None
        if self.item_ids.dtype.kind in "iu":
            out[np.frompyfunc(_is_bool, 1, 1)(arr).astype(bool)] = -1
        return out

    def _filter_indices(self, filter_items, unknown: str, name: str = "filter_items"):
        """(indices, number unknown) of ``filter_items`` (a sequence of ids)."""
        if isinstance(filter_items, (str, bytes)):
            filter_items = [filter_items]
        try:
            fl = list(filter_items)
        except TypeError:
            raise TypeError(f"{name}: expected a sequence of item ids, got "
                            f"{type(filter_items).__name__}") from None
        fidx = self._lookup(fl, lambda j: f"{name}, position {j}")
        if (fidx < 0).any() and unknown == "error":
            j = int(np.flatnonzero(fidx < 0)[0])
            raise ValueError(f"{name}, position {j}: item {fl[j]!r} is not in "
                             f"the model's vocabulary")
        return fidx, int((fidx < 0).sum())

    def recommend(self, sessions, k: int = 20, exclude_seen: bool = False,
                  filter_items=None, unknown: str = "skip", *, session_col: str = "SessionId",
                  item_col: str = "ItemId", time_col: str = "Time"):
        """Top-k next items for each session.

        sessions: a list of sequences of the user's item ids (oldest first),
            or events: anything ``grurec.to_sessions`` takes (a pandas or
            polars DataFrame, an Arrow table, a dict of arrays, a CSV/TSV/
            parquet path, a ``SessionData``; columns named by ``session_col``,
            ``item_col``, ``time_col``). For events, the rows of the result
            follow ``to_sessions``' session order (by first event time), and
            ``last_session_ids`` holds the session id of each row.
        k: list length; capped at the number of items every session can still
            get (the candidates, minus the session's own items under
            ``exclude_seen``), so every row holds k real items.
        exclude_seen: never recommend an item of the session itself.
        filter_items: if given, only these item ids are candidates.
        unknown: ``"skip"`` ignores ids the model does not know, in the
            sessions and in ``filter_items`` (their number is in
            ``last_unknown_count`` and logged as a warning); ``"error"`` raises
            ValueError naming the id and where it is.
        Returns (ids, scores): arrays (n_sessions, k) of item ids (the dtype of
        ``item_ids``) and float32 scores, best first, ties by lower item index.
        """
        m = self._snapshot()  # one consistent model even if fit() runs meanwhile
        try:
            return m._recommend(sessions, k, exclude_seen, filter_items, unknown,
                                session_col, item_col, time_col)
        finally:
            self.last_session_ids = m.__dict__.get("last_session_ids")
            self.last_unknown_count = m.__dict__.get("last_unknown_count", 0)

    def _recommend(self, sessions, k, exclude_seen, filter_items, unknown, session_col,
                   item_col, time_col):
        self._check_fitted()
        if unknown not in ("skip", "error"):
            raise _bad("unknown", "must be 'skip' or 'error'", unknown)
        k = _check_int("k", k, 1)
        self.last_session_ids = None
        starts = None
        if _is_event_source(sessions):
            # unknown="error" makes to_sessions name the column, row and id.
            sd = to_sessions(sessions, session_col, item_col, time_col, item_ids=self.item_ids,
                             unknown="keep" if unknown == "skip" else "error")
            self.last_session_ids = sd.session_ids
            lengths = sd.lengths()
            flat = None
            idx = sd.items.astype(np.int64)
        else:
            if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__len__"):
                raise ValueError("sessions: expected a list of sequences of item ids or an "
                                 f"event table, got {type(sessions).__name__}")
            lengths = []
            flat: list = []
            for j, s in enumerate(sessions):
                if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
                    raise ValueError(f"session {j}: expected a sequence of item ids, got "
                                     f"{type(s).__name__} {s!r}")
                if isinstance(s, (set, frozenset, dict)):
                    raise TypeError(f"session {j}: a {type(s).__name__} has no order; give the "
                                    "item ids as a list, oldest first")
                lengths.append(len(s))
                flat.extend(list(s))
            starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
            srows = np.repeat(np.arange(len(lengths)), lengths)
            idx = self._lookup(flat, lambda j: f"session {srows[j]}, position "
                                               f"{j - starts[srows[j]]}")
        n_sess = len(lengths)
        N = self.n_items
        lengths = np.asarray(lengths, np.int64)
        rows = np.repeat(np.arange(n_sess), lengths)
        miss = idx < 0
        n_unknown = int(miss.sum())
        if n_unknown and unknown == "error":
            j = int(np.flatnonzero(miss)[0])
            b = int(rows[j])
            pos = j - int(starts[b])
            raise ValueError(f"session {b}, position {pos}: item {flat[j]!r} is not in the "
                             f"model's vocabulary (pass unknown='skip' to ignore such items)")

        candidate = np.ones(N, bool)
        if filter_items is not None:
            fidx, n_bad = self._filter_indices(filter_items, unknown)
            n_unknown += n_bad
            candidate = np.zeros(N, bool)
            candidate[fidx[fidx >= 0]] = True
        self.last_unknown_count = n_unknown
        if n_unknown:
            log.warning("recommend: skipped %d item ids unknown to the model", n_unknown)

        known = ~miss
        rows, idx = rows[known], idx[known]
        n_cand = int(candidate.sum())
        k_eff = min(k, n_cand)
        if exclude_seen and len(idx):
            key = np.unique(rows * N + idx)
            r, it = key // N, key % N
            seen_cand = np.bincount(r[candidate[it]], minlength=n_sess)
            if n_sess:
                k_eff = min(k_eff, int((n_cand - seen_cand).min()))
        if k_eff < k:
            log.info("recommend: k=%d capped at %d (candidates left after exclusions)", k, k_eff)

        top, scores = self._recommend_topk(rows, idx, n_sess, k_eff, exclude_seen, candidate)
        return self.item_ids[top], scores

    def _recommend_topk(self, rows, idx, n_sess, k, exclude_seen, candidate):
        """Indices (n_sess, k) and float32 scores of the k best items per
        session, best first, ties by lower index. ``rows``/``idx``: the known
        events, flat (session row, item index), rows non-decreasing;
        ``candidate``: bool (n_items,) of the allowed items; ``k`` is already
        capped so that every session has k allowed items. This default scores
        densely, a chunk of sessions at a time; models with a factorised
        scorer override it."""
        starts = np.searchsorted(rows, np.arange(n_sess + 1))
        out_top = np.empty((n_sess, k), np.int64)
        out_scores = np.empty((n_sess, k), np.float32)
        chunk = _dense_chunk_rows(self.n_items)
        for c0 in range(0, n_sess, chunk):
            c1 = min(c0 + chunk, n_sess)
            e0, e1 = starts[c0], starts[c1]
            crow, citem = rows[e0:e1] - c0, idx[e0:e1]
            scores = self._score(crow, citem, c1 - c0)
            if not candidate.all():
                scores[:, ~candidate] = -np.inf
            if exclude_seen:
                scores[crow, citem] = -np.inf
            top = _topk(scores, k)
            out_top[c0:c1] = top
            out_scores[c0:c1] = np.take_along_axis(scores, top, axis=1)
        return out_top, out_scores


def _is_event_source(x) -> bool:
    """An event table or file (what to_sessions reads), not a list of sessions."""
    import os

    if isinstance(x, (str, os.PathLike, SessionData, Mapping)):
        return True
    mod = type(x).__module__.split(".")[0]
    return mod in ("pandas", "polars", "pyarrow")


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of the k best per row, best first, ties by lower index.

    Memory stays a few times the size of ``scores`` however many items tie
    at the k-th value (a popularity count of 1 ties thousands of items): the
    items above the k-th value, then the lowest-index ones equal to it."""
    n, N = scores.shape
    if k == 0 or n == 0:
        return np.zeros((n, k), np.int64)
    if k >= N:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = np.partition(scores, N - k, axis=1)[:, N - k]  # the k-th largest value
    above = scores > kth[:, None]
    need = k - above.sum(axis=1)  # ties at the k-th value still to take, >= 1
    tie = scores == kth[:, None]
    above |= tie & (np.cumsum(tie, axis=1, dtype=np.int32) <= need[:, None])
    c = np.nonzero(above)[1].reshape(n, k)  # row-major: ascending index in a row
    v = np.take_along_axis(scores, c, axis=1)
    order = np.lexsort((c, -v), axis=1)
    return np.take_along_axis(c, order, axis=1)


# ---------------------------------------------------------------------- POP
class Popularity(SessionRecommender):
    """POP: always the items most often seen in training (Hidasi et al., ICLR 2016).

    score(i) = number of training events of item i (the same for every session).
    Ties (equal counts) are real ties; ``recommend`` breaks them by lower index.
    """

    def _score(self, rows, items, n):
        return np.repeat(self.popularity.astype(np.float32)[None, :], n, axis=0)


# -------------------------------------------------------------------- S-POP
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
    """

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
    """

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
