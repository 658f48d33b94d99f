"""Batch recommend and evaluate over a Dask DataFrame of events
(``pip install "grurec[dask]"``).

    import dask.dataframe as dd, grurec, grurec.distributed as gd
    events = dd.read_parquet("events/")                # SessionId, ItemId, Time
    recs = gd.recommend(model, events, k=20)           # a lazy Dask DataFrame
    recs.to_parquet("recs/")                           # SessionId, rank, item, score
    gd.evaluate(model, events, cutoffs=(5, 20))        # the dict grurec.evaluate gives

**Partitions.** Each session must lie whole in one partition. A frame
indexed by the session column with known divisions is taken as it is, as is
any frame with ``sessions_whole=True`` (the caller's promise, e.g. files
written per session range); any other is shuffled on the session column
first (``DataFrame.shuffle``), which costs one pass over the events.

**The model** is shipped once per worker: its file bytes (``to_bytes``) are
one task of the graph, so Dask sends them to each worker that needs them
once, and every worker process loads them once (lazily, on its first
partition; a small per-process cache keyed by the bytes' hash), whatever
the number of partitions.

**Threads.** Dask runs one task per worker thread; each task's native calls
use ``num_threads`` threads (default 1), so a worker with N threads keeps N
cores busy without oversubscription. With fewer, bigger partitions, use one
thread per worker and ``num_threads`` = its cores.

**Results** equal the single-process calls: ``recommend`` gives, for every
session, the rows of ``model.recommend(events)`` (scores bit for bit; row
order is per partition, so sort if order matters), and ``evaluate`` sums
integer counts over partitions (``grurec.evaluation``), so its metrics are
the ones ``grurec.evaluate`` computes on the whole frame, bit for bit.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

__all__ = ["recommend", "evaluate", "to_frame"]

_CACHE: OrderedDict = OrderedDict()  # token -> model, in each worker process
_CACHE_SIZE = 2
_LOCK = threading.Lock()


def _dask():
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - exercised where dask is absent
        raise ImportError('grurec.distributed needs Dask: pip install "grurec[dask]"') from None
    return dask, dd


class _Shipped:
    """A model file's bytes and their hash: what the graph carries."""

    __slots__ = ("token", "blob")

    def __init__(self, model):
        self.blob = model.to_bytes()
        self.token = hashlib.blake2b(self.blob, digest_size=16).hexdigest()

    def __getstate__(self):
        return (self.token, self.blob)

    def __setstate__(self, state):
        self.token, self.blob = state

    def model(self):
        """The model, loaded once per process."""
        from .io import from_bytes

        with _LOCK:
            m = _CACHE.get(self.token)
            if m is None:
                m = _CACHE[self.token] = from_bytes(self.blob)
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            else:
                _CACHE.move_to_end(self.token)
        return m


def _check(model, ddf, session_col, num_threads):
    from .base import SessionRecommender, _check_int

    dask, dd = _dask()
    if not isinstance(model, SessionRecommender):
        raise TypeError(f"model: expected a fitted grurec model, got {type(model).__name__}")
    model._check_fitted()
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"ddf: expected a dask.dataframe.DataFrame of events, got "
                        f"{type(ddf).__name__} (use grurec.evaluate / model.recommend for "
                        "in-memory data)")
    has = session_col in ddf.columns or ddf.index.name == session_col
    if not has:
        raise ValueError(f"ddf: no column {session_col!r} (session_col); columns: "
                         f"{list(ddf.columns)}")
    return _check_int("num_threads", num_threads, 0)


def _by_session(ddf, session_col: str, sessions_whole: bool):
    """``ddf`` with every session whole in one partition, the session id a column."""
    if ddf.index.name == session_col:
        if not (ddf.known_divisions or sessions_whole):
            ddf = ddf.reset_index().shuffle(on=session_col)
        else:
            ddf = ddf.reset_index()
    elif not sessions_whole:
        ddf = ddf.shuffle(on=session_col)
    return ddf


def to_frame(session_ids, ids, scores, session_col: str = "SessionId") -> pd.DataFrame:
    """``recommend``'s (ids, scores) as long rows: session, rank (1 = best), item, score."""
    n, k = ids.shape
    return pd.DataFrame({
        session_col: np.repeat(np.asarray(session_ids), k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n),
        "item": ids.reshape(-1),
        "score": scores.reshape(-1).astype(np.float32, copy=False),
    })


def _set_threads(m, num_threads):
    m = m._snapshot()  # this task's own view: the cached model is shared by threads
    if hasattr(m, "num_threads"):
        m.num_threads = num_threads
    return m


def _recommend_part(pdf, shipped, meta, k, exclude_seen, filter_items, cols, num_threads):
    if len(pdf) == 0:
        return meta
    m = _set_threads(shipped.model(), num_threads)
    ids, scores = m.recommend(pdf, k=k, exclude_seen=exclude_seen, filter_items=filter_items,
                              unknown="skip", session_col=cols[0], item_col=cols[1],
                              time_col=cols[2])
    out = to_frame(m.last_session_ids, ids, scores, cols[0])
    return out.astype(meta.dtypes.to_dict())


def recommend(model, ddf, k: int = 20, *, exclude_seen: bool = False, filter_items=None,
              session_col: str = "SessionId", item_col: str = "ItemId", time_col: str = "Time",
              sessions_whole: bool = False, num_threads: int = 1):
    """Top-k next items for every session of ``ddf`` (a Dask DataFrame of
    events), as a lazy Dask DataFrame of (``session_col``, ``rank``, ``item``,
    ``score``), ``k`` rows per session, best first. Item ids unknown to the
    model are skipped (as ``recommend(unknown="skip")``). See the module
    docstring for partitions, shipping and threads."""
    from .base import _check_int

    num_threads = _check(model, ddf, session_col, num_threads)
    k = _check_int("k", k, 1)
    dask, _ = _dask()
    ddf = _by_session(ddf, session_col, sessions_whole)
    sess_dtype = ddf[session_col].dtype
    item_dtype = model.item_ids.dtype if model.item_ids.dtype.kind in "iufb" else object
    meta = pd.DataFrame({session_col: pd.Series([], dtype=sess_dtype),
                         "rank": pd.Series([], dtype=np.int64),
                         "item": pd.Series([], dtype=item_dtype),
                         "score": pd.Series([], dtype=np.float32)})
    if filter_items is not None:
        filter_items = list(filter_items)
    shipped = dask.delayed(_Shipped(model), pure=True)
    return ddf.map_partitions(_recommend_part, shipped, meta, k, exclude_seen, filter_items,
                              (session_col, item_col, time_col), num_threads, meta=meta,
                              enforce_metadata=False)


def _evaluate_part(pdf, shipped, cutoffs, mode, cols, candidates, num_threads):
    from .evaluation import _evaluate_counts

    if len(pdf) == 0:
        return None
    m = _set_threads(shipped.model(), num_threads)
    return _evaluate_counts(m, pdf, cutoffs, mode, cols[0], cols[1], cols[2], candidates,
                            32768, num_threads)


def _merge(*parts):
    acc, n_sess = None, 0
    for p in parts:
        if p is None:
            continue
        if acc is None:
            acc, n_sess = p
        else:
            acc = acc.merge(p[0])
            n_sess += p[1]
    return None if acc is None else (acc, n_sess)


def evaluate(model, ddf, cutoffs=(1, 5, 10, 20), mode: str = "standard", *,
             candidates=None, session_col: str = "SessionId", item_col: str = "ItemId",
             time_col: str = "Time", sessions_whole: bool = False, num_threads: int = 1,
             fan_in: int = 8) -> dict:
    """``grurec.evaluate`` over a Dask DataFrame of test events: each
    partition's counts are computed where it lives and summed in a tree of
    ``fan_in``-way merges; returns the same dict as ``grurec.evaluate`` on
    the whole frame. Runs on Dask's current scheduler (a ``Client``'s, if
    one is active)."""
    from .base import _check_int
    from .evaluation import MODES, _check_cutoffs

    num_threads = _check(model, ddf, session_col, num_threads)
    cutoffs = _check_cutoffs(cutoffs)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    fan_in = _check_int("fan_in", fan_in, 2)
    if candidates is not None:
        candidates = list(candidates)
    dask, _ = _dask()
    ddf = _by_session(ddf, session_col, sessions_whole)
    shipped = dask.delayed(_Shipped(model), pure=True)
    cols = (session_col, item_col, time_col)
    parts = [dask.delayed(_evaluate_part)(p, shipped, cutoffs, mode, cols, candidates,
                                          num_threads)
             for p in ddf.to_delayed()]
    while len(parts) > 1:
        parts = [dask.delayed(_merge)(*parts[i:i + fan_in])
                 for i in range(0, len(parts), fan_in)]
    total = parts[0].compute() if parts else None
    if total is None:
        raise ValueError("ddf: no events to evaluate")
    acc, n_sess = total
    out = acc.result()
    out["n_sessions"] = int(n_sess)
    return out
