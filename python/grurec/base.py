"""The interface every grurec model shares (``SessionRecommender``), and the
argument checks and ranking helpers its subclasses use.

``fit(data, session_col, item_col, time_col) -> self``
    ``data`` is an event table (anything ``grurec.to_sessions`` reads) or a
    ``SessionData``. Sets ``item_ids`` (index -> the user's id).
``score_prefixes(prefixes) -> float32 (n, n_items)``
    ``prefixes``: a list of integer arrays of item *indices*, oldest first; -1
    marks an item unknown to the model and is ignored. Row ``b`` scores every
    item as the next item after ``prefixes[b]``; higher is better. This is what
    the full-ranking evaluator calls.
``recommend(sessions, k, exclude_seen, filter_items, unknown) -> (ids, scores)``
    Top-k in the user's own item ids, best first, ties broken by lower item
    index. Implemented once here on top of ``score_prefixes``.

Model classes register themselves (``register``) so that ``grurec.io`` finds a
file's class by the name it records, without importing the model modules.
"""
from __future__ import annotations

import inspect
import logging
import math
import numbers
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .data import SessionData, _hashable, sessions_from_frame, to_sessions

log = logging.getLogger("grurec")

__all__ = ["SessionRecommender", "register", "model_class", "model_classes"]

_REGISTRY: dict = {}


def register(cls):
    """Class decorator: make ``cls`` known to the model-file reader by its name."""
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"a model class named {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def model_class(name: str):
    """The registered model class called ``name`` (KeyError if none)."""
    from . import baselines, model  # noqa: F401  (importing registers the built-in classes)

    return _REGISTRY[name]


def model_classes() -> dict:
    """Name -> class of every registered model."""
    from . import baselines, model  # noqa: F401

    return dict(_REGISTRY)

# Rows of the (n, n_items) score matrix handled at once by ``recommend`` and
# ``evaluate``: at most 512, and at most 32 MiB of float32 scores, so that the
# chunk and its top-k temporaries (a few copies) stay near 128 MiB whatever the
# catalogue size (512 rows x 1M items would be 2 GB).
_RECOMMEND_CHUNK = 512
_CHUNK_BYTES = 32 << 20


# recommend() shows a progress bar (show_progress=None) past this many sessions.
_PROGRESS_SESSIONS = 65536


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


# Integer hyperparameters are capped at the native code's int32 range.
_INT_MAX = 2**31 - 1


def _as_int(name: str, v, low: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: must be an integer, got {v!r} ({type(v).__name__})")
    if not isinstance(v, numbers.Integral):
        f = float(v)
        if not (math.isfinite(f) and f.is_integer()):
            raise ValueError(f"{name}: must be a whole number, got {v!r}")
        v = f
    v = int(v)
    if v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v}")
    if v > _INT_MAX:
        raise ValueError(f"{name}: must be <= {_INT_MAX}, got {v}")
    return v


def _as_float(name: str, v) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: must be a number, got {v!r} ({type(v).__name__})")
    return float(v)


def _as_bool(name: str, v) -> bool:
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral) and v in (0, 1)):
        return bool(v)
    raise TypeError(f"{name}: must be True or False, got {v!r} ({type(v).__name__})")


def _all_finite(a: np.ndarray, chunk: int = 1 << 22) -> bool:
    """np.isfinite(a).all() in chunks (no same-size mask for a big table)."""
    flat = a.reshape(-1)
    return all(np.isfinite(flat[i:i + chunk]).all() for i in range(0, flat.size, chunk))


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
        self._ids = _IdIndex()

    # ------------------------------------------------ scikit-learn manners
    @classmethod
    def _param_names(cls) -> list:
        """The hyperparameters: the keyword arguments of ``__init__``."""
        names = []
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ takes *{name}: its hyperparameters "
                                "must be named keyword arguments (get_params reads them)")
            names.append(name)
        return names

    def get_params(self, deep: bool = True) -> dict:
        """Hyperparameter name -> value (scikit-learn's estimator protocol:
        ``sklearn.base.clone``, grid searches). ``deep`` is accepted for
        compatibility; grurec models hold no nested estimators."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyperparameters by name and check them (the error names the
        hyperparameter; on an error none is changed). Takes effect at the
        next ``fit``. Returns the model."""
        valid = self._param_names()
        for name in params:
            if name not in valid:
                raise ValueError(f"{name}: not a hyperparameter of {type(self).__name__}; "
                                 f"valid: {', '.join(valid)}")
        old = {name: getattr(self, name) for name in params}
        for name, value in params.items():
            setattr(self, name, value)
        try:
            self._check_params()
        except Exception:
            for name, value in old.items():
                setattr(self, name, value)
            raise
        return self

    def __repr__(self) -> str:
        # scikit-learn's style: the class and the hyperparameters that differ
        # from their defaults, so the text rebuilds an equal (unfitted) model.
        sig = inspect.signature(type(self).__init__).parameters
        shown = [f"{name}={value!r}" for name, value in self.get_params().items()
                 if not _same_value(value, sig[name].default)]
        return f"{type(self).__name__}({', '.join(shown)})"

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
            time_col: str = "Time", *, show_progress: Optional[bool] = None):
        """Learn from an event table (pandas DataFrame) or a ``SessionData``.

        ``show_progress`` is accepted so that every model takes the same call;
        these models fit in one vectorised pass and show no bar."""
        if show_progress is not None and not _is_bool(show_progress):
            raise TypeError(f"show_progress: must be True, False or None, got {show_progress!r}")
        self._check_params()
        sd = data if isinstance(data, SessionData) else sessions_from_frame(
            data, session_col, item_col, time_col)
        work = self._snapshot()  # other threads keep using the old model meanwhile
        n = len(sd.item_ids)
        work.item_ids = np.asarray(sd.item_ids)
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
    def _id_index(self):
        """The pandas Index of ``item_ids``, built once per vocabulary: the
        cache is shared with the model's snapshots and used only for the exact
        array it was built from, so a refit never meets a stale index."""
        cache = self.__dict__.get("_ids")
        if cache is None:  # a model built without SessionRecommender.__init__
            cache = self._ids = _IdIndex()
        return cache.get(self.item_ids)

    def _lookup(self, ids, where=None, coerce_ids: bool = False) -> np.ndarray:
        """Item indices of user ids; -1 where unknown. A bool is never an id
        (as in ``to_sessions``); a value that cannot be an id at all (a list,
        an array: anything unhashable) raises TypeError, and so does an id of
        the other kind than the vocabulary's (a string for integer ids, a
        number for string ids) unless ``coerce_ids`` converts it where that is
        unambiguous ("12" -> 12 for integer ids, 12 -> "12" for string ids);
        errors name the place with ``where(position)``."""
        index = self._id_index()
        if len(ids) == 0:
            return np.zeros(0, np.int64)
        if len(ids) == 1:  # one id (a live click, an update): a hash lookup, ~20x faster
            v = ids[0]
            t = type(v)
            if ((t is int or isinstance(v, np.integer)) and self.item_ids.dtype.kind in "iu") or (
                    t is str and self.item_ids.dtype.kind in "OU"):
                try:
                    loc = index.get_loc(v)
                    return np.array([loc if isinstance(loc, (int, np.integer)) else -1], np.int64)
                except KeyError:
                    return np.array([-1], np.int64)
                except (TypeError, ValueError, OverflowError):
                    pass  # the general path names the problem
        arr = np.empty(len(ids), dtype=object)
        arr[:] = ids
        arr = _match_id_kind(arr, self.item_ids.dtype.kind in "iu", coerce_ids, where)
        try:
            typed = arr.astype(self.item_ids.dtype) if self.item_ids.dtype != object else arr
            # A lossy conversion (1.5 -> 1, 'a' -> ...) must not create a match.
            if self.item_ids.dtype != object and not np.all(typed.astype(object) == arr):
                typed = arr
        except (TypeError, ValueError, OverflowError):
            typed = arr
        try:
            out = np.asarray(index.get_indexer(typed), dtype=np.int64)
        except TypeError:
            j = next(j for j, v in enumerate(arr) if not _hashable(v))
            place = where(j) if where is not None else f"position {j}"
            raise TypeError(f"{place}: item id {arr[j]!r} is a {type(arr[j]).__name__}, not an "
                            "item id (ids are integers or strings)") from None
        if self.item_ids.dtype.kind in "iu":
            out[np.frompyfunc(_is_bool, 1, 1)(arr).astype(bool)] = -1
        return out

    def _filter_indices(self, filter_items, unknown: str, name: str = "filter_items",
                        coerce_ids: bool = False):
        """(indices, number unknown) of ``filter_items`` (a sequence of ids)."""
        if isinstance(filter_items, (str, bytes)):
            filter_items = [filter_items]
        try:
            fl = list(filter_items)
        except TypeError:
            raise TypeError(f"{name}: expected a sequence of item ids, got "
                            f"{type(filter_items).__name__}") from None
        fidx = self._lookup(fl, lambda j: f"{name}, position {j}", coerce_ids)
        if (fidx < 0).any() and unknown == "error":
            j = int(np.flatnonzero(fidx < 0)[0])
            raise ValueError(f"{name}, position {j}: item {fl[j]!r} is not in "
                             f"the model's vocabulary")
        return fidx, int((fidx < 0).sum())

    def recommend(self, sessions, k: int = 20, exclude_seen: bool = False,
                  filter_items=None, unknown: str = "skip", *, session_col: str = "SessionId",
                  item_col: str = "ItemId", time_col: str = "Time", coerce_ids: bool = False,
                  show_progress: Optional[bool] = None):
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
        coerce_ids: an id of the other kind than the model's (the string
            "12" for a model with integer ids, the number 12 for string ids)
            raises TypeError naming it, whatever ``unknown`` says; with
            ``coerce_ids=True`` it is converted where that is unambiguous
            ("12" -> 12, but "012" or "1.0" raise).
        show_progress: a progress bar over the sessions (None: only for more
            than ``_PROGRESS_SESSIONS`` sessions).
        Returns (ids, scores): arrays (n_sessions, k) of item ids (the dtype of
        ``item_ids``) and float32 scores, best first, ties by lower item index.
        """
        m = self._snapshot()  # one consistent model even if fit() runs meanwhile
        try:
            return m._recommend(sessions, k, exclude_seen, filter_items, unknown,
                                session_col, item_col, time_col, coerce_ids, show_progress)
        finally:
            self.last_session_ids = m.__dict__.get("last_session_ids")
            self.last_unknown_count = m.__dict__.get("last_unknown_count", 0)

    def _recommend(self, sessions, k, exclude_seen, filter_items, unknown, session_col,
                   item_col, time_col, coerce_ids=False, show_progress=None):
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
                                               f"{j - starts[srows[j]]}", coerce_ids)
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
            fidx, n_bad = self._filter_indices(filter_items, unknown, coerce_ids=coerce_ids)
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

        from .evaluation import _progress_bar

        bar = _progress_bar(show_progress, n_sess, _PROGRESS_SESSIONS, "recommend")
        if bar is None:
            top, scores = self._recommend_topk(rows, idx, n_sess, k_eff, exclude_seen, candidate)
        else:  # in chunks of sessions, to move the bar
            top = np.empty((n_sess, k_eff), np.int64)
            scores = np.empty((n_sess, k_eff), np.float32)
            starts = np.searchsorted(rows, np.arange(n_sess + 1))
            step = _PROGRESS_SESSIONS // 4
            for c0 in range(0, n_sess, step):
                c1 = min(c0 + step, n_sess)
                e0, e1 = starts[c0], starts[c1]
                top[c0:c1], scores[c0:c1] = self._recommend_topk(
                    rows[e0:e1] - c0, idx[e0:e1], c1 - c0, k_eff, exclude_seen, candidate)
                bar.update(c1 - c0)
            bar.close()
        return self.item_ids[top], scores

    # --------------------------------------------------------- item space
    # A model whose scores for the one-item session [i] say how related each
    # item is to i (ItemKNN, VSKNN) sets this; similar_items then uses them.
    _similar_from_scores = False

    def item_vectors(self) -> np.ndarray:
        """float32 (n_items, d): one vector per item, row i for ``item_ids[i]``
        (a copy). Models without item vectors raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} has no item vectors")

    def similar_items(self, item, k: int = 10):
        """The ``k`` items most similar to ``item`` (one of the user's item
        ids), best first, the item itself left out.

        Models with ``item_vectors()`` rank by the cosine similarity of those
        vectors; ItemKNN and VSKNN by their scores for the one-item session
        ``[item]``. Popularity models raise NotImplementedError.
        Returns (ids, scores): 1-D arrays of at most ``k`` (and at most
        n_items - 1) item ids and float32 similarities.
        """
        k = _check_int("k", k, 1)
        self._check_fitted()
        try:
            V = self.item_vectors()
        except NotImplementedError:
            if not self._similar_from_scores:
                raise NotImplementedError(
                    f"{type(self).__name__} has no item similarity (it ranks by "
                    "popularity); use GRU4Rec, ItemKNN or VSKNN") from None
            V = None
        i = self._lookup([item], lambda j: "item")[0]
        if i < 0:
            raise ValueError(f"item: {item!r} is not in the model's vocabulary")
        if V is not None:
            norms = np.linalg.norm(V, axis=1)
            sims = (V @ V[i]) / np.maximum(norms * norms[i], np.finfo(np.float32).tiny)
            sims = sims.astype(np.float32)
        else:
            sims = self.score_prefixes([np.array([i], np.int64)])[0]
        sims[i] = -np.inf
        top = _topk(sims[None, :], min(k, self.n_items - 1))[0]
        return self.item_ids[top], sims[top]

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


def _same_value(a: Any, b: Any) -> bool:
    """a == b for hyperparameter values (a list equals the tuple default it
    came from); False where the comparison is not a plain bool."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


class _IdIndex:
    """item_ids -> pandas Index, for the one ``item_ids`` array it was last
    built from (compared by identity; a refit publishes a new array). One
    tuple, replaced in one step, so concurrent readers never see a mix."""

    __slots__ = ("entry",)

    def __init__(self):
        self.entry = None

    def get(self, ids):
        import pandas as pd

        e = self.entry
        if e is None or e[0] is not ids:
            e = (ids, pd.Index(ids))
            self.entry = e
        return e[1]

    def __reduce__(self):  # a copy starts empty
        return (_IdIndex, ())


def _canonical_int(s: str):
    """int(s) when ``s`` spells an integer the one way str(int) writes it
    ('12', '-3'; not '012', '+1', ' 1', '1.0'), else None."""
    try:
        v = int(s)
    except ValueError:
        return None
    return v if str(v) == s else None


def _match_id_kind(arr: np.ndarray, int_vocab: bool, coerce: bool, where) -> np.ndarray:
    """``arr`` (object) with every id of the vocabulary's kind: a string
    among integer ids (or a number among string ids) raises TypeError naming
    it, or with ``coerce`` is converted where unambiguous."""
    import pandas as pd

    inferred = pd.api.types.infer_dtype(arr, skipna=False)
    if int_vocab:
        if inferred in ("integer", "floating", "mixed-integer-float", "boolean", "empty",
                        "decimal"):
            return arr
        wrong = np.fromiter((isinstance(v, (str, bytes)) for v in arr), bool, len(arr))
    else:
        if inferred in ("string", "empty"):
            return arr
        wrong = np.fromiter((isinstance(v, (int, float, np.integer, np.floating))
                             and not isinstance(v, (bool, np.bool_)) for v in arr),
                            bool, len(arr))
    if not wrong.any():
        return arr
    out = arr.copy()
    for j in np.flatnonzero(wrong):
        v = out[j] = _coerce_id(arr[j], int_vocab) if coerce else None
        if v is not None:
            continue
        place = where(j) if where is not None else f"position {j}"
        have, want = ("a string", "integers") if int_vocab else ("a number", "strings")
        hint = (" (it has no unambiguous conversion)" if coerce else
                "; pass coerce_ids=True to convert ids such as '12' to 12" if int_vocab else
                "; pass coerce_ids=True to convert ids such as 12 to '12'")
        raise TypeError(f"{place}: item id {arr[j]!r} is {have}, but the model's item ids are "
                        f"{want}{hint}")
    return out


def _coerce_id(v, int_vocab: bool):
    """``v`` as the other kind of id where unambiguous, else None: a string
    spelling an integer canonically for integer ids; an integer (or a whole
    float) as its decimal string for string ids."""
    if int_vocab:
        return _canonical_int(v) if isinstance(v, str) else None
    if isinstance(v, (float, np.floating)) and not float(v).is_integer():
        return None
    return str(int(v))


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
