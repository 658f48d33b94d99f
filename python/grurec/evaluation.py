"""Next-item evaluation with full ranking.

For every test session, each next item is predicted from the prefix before
it, and its rank among ALL the model's items is taken (a ``candidates`` list,
if given, is the only way to rank among fewer items). The hidden state starts
at zero for every test session; an input item the model does not know leaves
the state unchanged; a target it does not know cannot be ranked and counts as
a miss (reported in ``n_unknown_targets``).

Ranks, with r the target's score (GRU4Rec's definitions):

    standard      1 + #{items scoring > r}
    conservative  1 + #{items scoring >= r, other than the target}
    median        1 + #{> r} + #{= r, other than the target} / 2

A target ranked exactly K is a hit at K. Metrics, averaged over test events:
``recall@K`` (hit rate), ``mrr@K`` (1/rank if rank <= K else 0),
``ndcg@K`` (1/log2(rank + 1) if rank <= K else 0; one relevant item, so the
ideal DCG is 1), ``precision@K`` (hits / K: one relevant item per event, so
recall@K / K) and ``f1@K`` (2 P R / (P + R) per event, averaged: with one
relevant item it is 2 recall@K / (K + 1)). Over the top-K lists of all test
events: ``coverage@K`` (fraction of the model's items that appear in any
list) and ``popularity@K`` (mean training popularity of the listed items,
relative to the most popular item's).

``protocol="rest"`` (the "rest of the session" evaluation of session-aware
work, e.g. Ludewig & Jannach's session-rec): after every prefix, each item
that occurs *later* in the session is relevant, R_t = the distinct items of
events t+1 .. end (items the model does not know stay in R_t and can never be
hit; items of the prefix that recur later are relevant too). The model's
top-K list after the prefix (best first, ties by lower item index: the list
``recommend`` gives) is compared with R_t:

    precision@K  |top-K and R_t| / K
    recall@K     |top-K and R_t| / |R_t|
    f1@K         2 P R / (P + R) of that prefix (0 without a hit)
    map@K        AP@K = sum over ranks r <= K holding an item of R_t of
                 precision@r, divided by min(K, |R_t|)

each averaged over the prefixes (``n_events`` of them). ``mode`` does not
apply (ranks come from the list); ``grurec.distributed.evaluate`` does the
next-item protocol only.

For GRU4Rec the states of every prefix come from C++, and the ranks and the
top-K lists from one pass of the native blocked scorer (``_core.topk`` with
targets), a chunk of test events at a time: memory stays bounded and no
n_events x n_items matrix is built. Other
models (``grurec.baselines``) provide ``score_prefixes`` (dense scores of a
chunk of prefixes), ranked by the same native code.
"""
from __future__ import annotations

import numpy as np

from .base import _dense_chunk_rows
from .data import to_sessions
from .topk import _rank_counts_dense, _ranks, _topk_rank_counts

MODES = ("standard", "conservative", "median")
PROTOCOLS = ("next", "rest")


def evaluate(model, test, cutoffs=(1, 5, 10, 20), mode: str = "standard",
             session_col: str = "SessionId", item_col: str = "ItemId", time_col: str = "Time",
             candidates=None, chunk_events: int = 32768, num_threads: int | None = None,
             show_progress: bool | None = None, *, protocol: str = "next") -> dict:
    """Full-ranking next-item evaluation of a fitted model on test sessions.

    test: anything ``grurec.to_sessions`` takes (DataFrame, Arrow table,
        file path, ``SessionData``...). Sessions with one event have nothing
        to predict and are skipped.
    cutoffs: the K of the metrics; mode: tie handling (module docstring).
    candidates: optional item ids to rank among instead of all items
        (targets outside them count as misses).
    chunk_events: test events scored at a time (memory bound).
    show_progress: a progress bar over the test events (None: only when
        the test has more than one chunk of events).
    protocol: ``"next"`` (the next item is the one target) or ``"rest"``
        (every later item of the session is relevant; module docstring).
    Returns a dict: the metrics for every K, ``n_events`` (predictions made,
    unknown targets included), ``n_sessions``, ``n_unknown_targets``,
    ``n_items`` (items ranked among). With ``protocol="rest"``: precision,
    recall, f1 and map for every K, ``n_events`` (prefixes), ``n_sessions``,
    ``n_items``, ``n_unknown_items`` (test events whose item the model does
    not know).
    """
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "rest":
        if mode != "standard":
            raise ValueError(f"mode={mode!r}: tie modes apply to protocol='next' only; "
                             "protocol='rest' reads the top-K lists (ties by lower index)")
        return _evaluate_rest(model, test, cutoffs, session_col, item_col, time_col,
                              candidates, chunk_events, num_threads, show_progress)
    acc, n_sessions = _evaluate_counts(model, test, cutoffs, mode, session_col, item_col,
                                       time_col, candidates, chunk_events, num_threads,
                                       show_progress)
    out = acc.result()
    out["n_sessions"] = n_sessions
    return out


def _evaluate_counts(model, test, cutoffs, mode, session_col, item_col, time_col, candidates,
                     chunk_events, num_threads, show_progress=False):
    """``evaluate``'s work: (the ``_Accumulator`` of integer counts, number of
    sessions). Counts add up exactly, so ``grurec.distributed.evaluate`` sums
    them over partitions and gets the single-process result bit for bit."""
    model, cutoffs, chunk_events, nt = _prologue(model, cutoffs, chunk_events, num_threads,
                                                 mode)
    sd = to_sessions(test, session_col, item_col, time_col, item_ids=model.item_ids,
                     unknown="keep")
    sd = sd.select_sessions(sd.lengths() >= 2)
    cand = _candidates(model, candidates)
    n_ranked = len(model.item_ids) if cand is None else len(cand)
    K = max(cutoffs)

    acc = _Accumulator(cutoffs, n_ranked, _popularity(model, cand))
    bar = _progress_bar(show_progress, sd.n_events, chunk_events, "evaluate")
    for s0, s1 in _chunks(sd.offsets, int(chunk_events)):
        off = sd.offsets[s0:s1 + 1] - sd.offsets[s0]
        items = sd.items[sd.offsets[s0]:sd.offsets[s1]]
        starts = np.zeros(len(items), bool)
        starts[off[:-1]] = True
        targets = items[~starts]  # event t + 1 of every session, in prefix-row order
        if cand is not None:  # targets into candidate positions (-1: not a candidate)
            pos = np.searchsorted(cand, targets)
            pos = np.minimum(pos, len(cand) - 1)
            targets = np.where((targets >= 0) & (cand[pos] == targets), pos, -1)
        known = targets >= 0
        if hasattr(model, "_eval_ranks"):  # grurec.RepeatAware: its own ranking
            ranks, top = model._eval_ranks(off, items, targets, known, cand, K, mode, nt)
        elif hasattr(model, "_states"):
            ranks, top = _gru_ranks(model, off, items, targets, known, cand, K, mode, nt)
        else:
            ranks, top = _dense_ranks(model, off, items, targets, known, cand, K, mode, nt)
        acc.add(ranks, known, top)
        if bar is not None:
            bar.update(int(sd.offsets[s1] - sd.offsets[s0]))
    if bar is not None:
        bar.close()
    return acc, int(sd.n_sessions)


def _prologue(model, cutoffs, chunk_events, num_threads, mode="standard"):
    """The checks every evaluation starts with: (a snapshot of the fitted
    model, the cutoffs, chunk_events, the thread count)."""
    from .base import SessionRecommender, _check_int
    from .topk import _threads

    if not isinstance(model, SessionRecommender):
        raise TypeError(f"model: expected a fitted grurec model (GRU4Rec or a baseline), got "
                        f"{type(model).__name__}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    cutoffs = _check_cutoffs(cutoffs)
    chunk_events = _check_int("chunk_events", chunk_events, 1)
    model._check_fitted()
    # One consistent model for the whole run, even if fit() runs in another thread.
    model = model._snapshot()
    nt = _threads(getattr(model, "num_threads", 0) if num_threads is None else num_threads)
    return model, cutoffs, chunk_events, nt


def _candidates(model, candidates):
    """Sorted model indices of the ``candidates`` ids (None: all items)."""
    if candidates is None:
        return None
    cand = np.unique(model._filter_indices(candidates, "skip", "candidates")[0])
    cand = cand[cand >= 0]
    if len(cand) == 0:
        raise ValueError("candidates: none of the given items is known to the model")
    return cand


def _progress_bar(show, total: int, chunk: int, desc: str):
    """A tqdm bar over ``total`` units, or None: ``show`` None means only when
    the work takes more than one chunk."""
    from .base import _is_bool

    if show is not None and not _is_bool(show):
        raise ValueError(f"show_progress: must be True, False or None, got {show!r}")
    if not (show or (show is None and total > chunk)):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=int(total), desc=desc, unit="ev", unit_scale=True, leave=False)


def _check_cutoffs(cutoffs) -> tuple[int, ...]:
    """An integer K >= 1, or a non-empty list, tuple or 1-D array of them."""
    seq = list(cutoffs) if isinstance(cutoffs, (list, tuple)) or (
        isinstance(cutoffs, np.ndarray) and cutoffs.ndim == 1) else [cutoffs]
    ok = bool(seq) and all(isinstance(k, (int, np.integer))
                           and not isinstance(k, (bool, np.bool_)) for k in seq)
    if not ok or min(seq) < 1:
        raise (ValueError if ok or not seq else TypeError)(
            f"cutoffs must be positive integers (an int or a list of ints), got {cutoffs!r}")
    return tuple(dict.fromkeys(int(k) for k in seq))  # a repeated K counts once


def _chunks(offsets: np.ndarray, max_events: int):
    """Session ranges [s0, s1) of about max_events events each (at least one
    session per chunk)."""
    S = len(offsets) - 1
    s0 = 0
    while s0 < S:
        s1 = int(np.searchsorted(offsets, offsets[s0] + max_events, side="right")) - 1
        s1 = min(max(s1, s0 + 1), S)
        yield s0, s1
        s0 = s1


def _popularity(model, cand):
    pop = getattr(model, "popularity", None)
    if pop is None:
        return None
    pop = np.asarray(pop, np.float64)
    if cand is not None:
        pop = pop[cand]
    top = pop.max() if len(pop) else 0.0
    return pop / top if top > 0 else pop


def _gru_ranks(model, off, items, targets, known, cand, K, mode, nt):
    h = model._states(off, items, all_prefixes=True, num_threads=nt)
    W, b = model._output_params()  # with output-side item features: W_y + features
    if cand is not None:
        W, b = np.ascontiguousarray(W[cand]), np.ascontiguousarray(b[cand])
    ranks = np.full(len(targets), np.inf)
    # The top-K lists (coverage, popularity) and the targets' ranks in one pass.
    t = np.where(known, targets, -1)
    top, _, g, e = _topk_rank_counts(h, W, b, min(K, W.shape[0]), t, nt)
    if known.any():
        ranks[known] = _ranks(g[known], e[known], mode)
    return ranks, top


def _dense_ranks(model, off, items, targets, known, cand, K, mode, nt, block=None):
    """Models without a factorised scorer: dense scores of each prefix, a
    block of prefixes at a time (bounded bytes, see ``_dense_chunk_rows``)."""
    n = len(targets)
    if block is None:
        block = _dense_chunk_rows(model.n_items)
    ranks = np.full(n, np.inf)
    top = np.empty((n, min(K, model.n_items if cand is None else len(cand))), np.int64)
    lengths = np.diff(off)
    # prefix row r of session s covers items[off[s] : off[s] + t + 1]
    sess = np.repeat(np.arange(len(lengths)), lengths - 1)
    t = np.arange(n) - np.repeat(off[:-1] - np.arange(len(lengths)), lengths - 1)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        prefixes = [items[off[s]:off[s] + tt + 1] for s, tt in zip(sess[r0:r1], t[r0:r1])]
        scores = model.score_prefixes(prefixes)
        if cand is not None:
            scores = np.ascontiguousarray(scores[:, cand])
        kn = known[r0:r1]
        if kn.any():
            g, e = _rank_counts_dense(scores[kn], targets[r0:r1][kn], num_threads=nt)
            ranks[r0:r1][kn] = _ranks(g, e, mode)
        k = top.shape[1]
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        top[r0:r1] = part
    return ranks, top


class _Accumulator:
    """Integer counts only, so that the metrics do not depend on how the test
    events were chunked or partitioned: hits by (doubled) rank up to the
    largest K (median ranks are multiples of 1/2), and per K how often each
    item was listed. ``merge`` adds another accumulator's counts."""

    def __init__(self, cutoffs, n_items, rel_pop):
        self.cutoffs = cutoffs
        self.n_items = n_items
        self.rel_pop = rel_pop
        self.n = 0
        self.n_unknown = 0
        self.hits2 = np.zeros(2 * max(cutoffs) + 1, np.int64)  # [2 * rank] -> targets
        self.listed = {k: np.zeros(n_items, np.int64) for k in cutoffs}

    def add(self, ranks, known, top):
        self.n += len(ranks)
        self.n_unknown += int((~known).sum())
        r2 = 2 * np.asarray(ranks, np.float64)
        r2 = r2[r2 <= len(self.hits2) - 1].astype(np.int64)  # inf (misses) drop out
        self.hits2 += np.bincount(r2, minlength=len(self.hits2))
        for k in self.cutoffs:
            self.listed[k] += np.bincount(top[:, :k].ravel(), minlength=self.n_items)

    def merge(self, other: "_Accumulator") -> "_Accumulator":
        if other.cutoffs != self.cutoffs or other.n_items != self.n_items:
            raise ValueError("cannot merge evaluations with different cutoffs or items")
        self.n += other.n
        self.n_unknown += other.n_unknown
        self.hits2 += other.hits2
        for k in self.cutoffs:
            self.listed[k] += other.listed[k]
        return self

    def result(self) -> dict:
        n = max(self.n, 1)
        out = {}
        for k in self.cutoffs:
            out.update(_rank_metrics(self.hits2, n, k))
            listed = self.listed[k]
            out[f"coverage@{k}"] = float((listed > 0).mean()) if self.n_items else 0.0
            n_listed = int(listed.sum())
            out[f"popularity@{k}"] = (float(listed @ self.rel_pop) / n_listed
                                      if self.rel_pop is not None and n_listed else None)
        out["n_events"] = int(self.n)
        out["n_unknown_targets"] = int(self.n_unknown)
        out["n_items"] = int(self.n_items)
        return out


def _rank_metrics(hits2: np.ndarray, n: int, k: int) -> dict:
    """recall, mrr, ndcg, precision and f1 at ``k`` from the counts of
    targets by doubled rank (``hits2[2 * rank]``) over ``n`` events, one
    target each (precision = hits / k; f1 = 2 P R / (P + R) per event, which
    is 2 recall / (k + 1) on average)."""
    h = hits2[1:2 * k + 1].astype(np.float64)
    rk = np.arange(1, 2 * k + 1) / 2.0  # the rank of each hits2 slot
    recall = float(h.sum()) / n
    return {f"recall@{k}": recall,
            f"mrr@{k}": float((h / rk).sum()) / n,
            f"ndcg@{k}": float((h / np.log2(rk + 1.0)).sum()) / n,
            f"precision@{k}": recall / k,
            f"f1@{k}": 2.0 * recall / (k + 1)}


# ------------------------------------------------------------ rest of the session
def _evaluate_rest(model, test, cutoffs, session_col, item_col, time_col, candidates,
                   chunk_events, num_threads, show_progress) -> dict:
    """``evaluate(protocol="rest")``: see the module docstring."""
    model, cutoffs, chunk_events, nt = _prologue(model, cutoffs, chunk_events, num_threads)
    # The test's own vocabulary: items the model does not know keep their
    # identity (two different unknown items are two relevant items).
    sd = to_sessions(test, session_col, item_col, time_col, unknown="keep")
    sd = sd.select_sessions(sd.lengths() >= 2)
    N, Nt = len(model.item_ids), len(sd.item_ids)
    to_model = np.r_[model._lookup(list(sd.item_ids)), -1]  # test index -> model (-1 unknown)
    to_test = np.full(N + 1, -1, np.int64)  # model index -> test index; [-1] for none
    known = to_model[:-1] >= 0
    to_test[to_model[:-1][known]] = np.flatnonzero(known)
    cand = _candidates(model, candidates)
    n_ranked = N if cand is None else len(cand)
    K = min(max(cutoffs), n_ranked)
    sums = {k: np.zeros(4) for k in cutoffs}  # precision, recall, f1, ap sums
    n_prefixes = 0
    n_unknown = int((to_model[sd.items] < 0).sum()) if sd.n_events else 0
    bar = _progress_bar(show_progress, sd.n_events, chunk_events, "evaluate")
    for s0, s1 in _chunks(sd.offsets, int(chunk_events)):
        off = sd.offsets[s0:s1 + 1] - sd.offsets[s0]
        t_items = sd.items[sd.offsets[s0]:sd.offsets[s1]].astype(np.int64)  # test indices
        m_items = to_model[t_items]
        hit, n_rel = _rest_hits(model, off, t_items, m_items, to_test, Nt, cand, K, nt)
        n_prefixes += len(n_rel)
        for k in cutoffs:
            sums[k] += _rest_sums(hit[:, :k], n_rel, k)
        if bar is not None:
            bar.update(int(sd.offsets[s1] - sd.offsets[s0]))
    if bar is not None:
        bar.close()
    n = max(n_prefixes, 1)
    out = {}
    for k in cutoffs:
        p, r, f, ap = (float(v) for v in sums[k] / n)
        out.update({f"precision@{k}": p, f"recall@{k}": r, f"f1@{k}": f, f"map@{k}": ap})
    out.update(n_events=int(n_prefixes), n_sessions=int(sd.n_sessions), n_items=int(n_ranked),
               n_unknown_items=n_unknown)
    return out


def _rest_hits(model, off, t_items, m_items, to_test, Nt, cand, K, nt):
    """For every prefix of the chunk's sessions: (hit bool (n_prefixes, K):
    whether the r-th listed item occurs later in the session; |R_t| int64)."""
    L = np.diff(off)
    S = len(L)
    sess = np.repeat(np.arange(S, dtype=np.int64), L)  # [events] session of each event
    pos = np.arange(len(t_items), dtype=np.int64)
    # The last occurrence of each (session, item): key -> position.
    key = sess * (Nt + 1) + (t_items + 1)
    order = np.lexsort((pos, key))
    ks = key[order]
    last_of_group = np.r_[ks[1:] != ks[:-1], True]
    u_key, u_last = ks[last_of_group], order[last_of_group]
    is_last = np.zeros(len(t_items), np.int64)
    is_last[u_last] = 1
    cs = np.cumsum(is_last)
    # prefix row of session s, position t (0 .. L-2) ends at event p = off[s] + t
    p_end = np.flatnonzero(np.r_[np.diff(sess) == 0, False] if len(sess) else np.zeros(0, bool))
    end = off[1:][sess[p_end]] - 1  # last event of the prefix's session
    n_rel = cs[end] - cs[p_end]  # distinct items after the prefix, >= 1
    top = _rest_top(model, off, m_items, cand, K, nt)  # (n_prefixes, K) model indices
    tt = to_test[top]  # test indices (-1: not in the test, or an empty slot)
    qkey = sess[p_end][:, None] * (Nt + 1) + (tt + 1)
    j = np.minimum(np.searchsorted(u_key, qkey), max(len(u_key) - 1, 0))
    hit = (tt >= 0) & (u_key[j] == qkey) & (u_last[j] > p_end[:, None])
    return hit, n_rel


def _rest_top(model, off, m_items, cand, K, nt):
    """Top-K model indices after every prefix (rows in prefix order), ties by
    lower index; -1 in slots the candidates cannot fill."""
    n = len(m_items) - (len(off) - 1)
    if hasattr(model, "_states"):
        from .topk import _topk_csr

        h = model._states(off, m_items.astype(np.int32), all_prefixes=True, num_threads=nt)
        allowed = None
        if cand is not None:
            allowed = np.zeros(len(model.item_ids), bool)
            allowed[cand] = True
        top, _ = _topk_csr(h, model.params["W_y"], model.params["b_y"], K, None, None,
                           allowed, nt)
        return top
    from .base import _topk

    top = np.empty((n, K), np.int64)
    lengths = np.diff(off)
    sess = np.repeat(np.arange(len(lengths)), lengths - 1)
    t = np.arange(n) - np.repeat(off[:-1] - np.arange(len(lengths)), lengths - 1)
    block = _dense_chunk_rows(model.n_items)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        scores = model.score_prefixes([m_items[off[s]:off[s] + tt + 1]
                                       for s, tt in zip(sess[r0:r1], t[r0:r1])])
        if cand is not None:
            top[r0:r1] = cand[_topk(np.ascontiguousarray(scores[:, cand]), K)]
        else:
            top[r0:r1] = _topk(scores, K)
    return top


def _rest_sums(hit: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Sums over prefixes of precision@k, recall@k, f1@k and AP@k (module
    docstring) from the hit matrix (n, <= k) and |R_t|."""
    h = hit.sum(axis=1).astype(np.float64)
    prec = h / k
    rec = h / n_rel
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(h), where=h > 0)
    ranks = np.arange(1, hit.shape[1] + 1)
    ap = (hit * np.cumsum(hit, axis=1) / ranks).sum(axis=1) / np.minimum(k, n_rel)
    return np.array([prec.sum(), rec.sum(), f1.sum(), ap.sum()])
