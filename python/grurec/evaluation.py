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
``recall@K`` (hit rate), ``mrr@K`` (1/rank if rank <= K else 0) and
``ndcg@K`` (1/log2(rank + 1) if rank <= K else 0; one relevant item, so the
ideal DCG is 1). Over the top-K lists of all test events: ``coverage@K``
(fraction of the model's items that appear in any list) and
``popularity@K`` (mean training popularity of the listed items, relative to
the most popular item's).

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


def evaluate(model, test, cutoffs=(1, 5, 10, 20), mode: str = "standard",
             session_col: str = "SessionId", item_col: str = "ItemId", time_col: str = "Time",
             candidates=None, chunk_events: int = 32768, num_threads: int | None = None,
             show_progress: bool | None = None) -> dict:
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
    Returns a dict: the metrics for every K, ``n_events`` (predictions made,
    unknown targets included), ``n_sessions``, ``n_unknown_targets``,
    ``n_items`` (items ranked among).
    """
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
    sd = to_sessions(test, session_col, item_col, time_col, item_ids=model.item_ids,
                     unknown="keep")
    sd = sd.select_sessions(sd.lengths() >= 2)
    N = len(model.item_ids)
    cand = None
    if candidates is not None:
        cand = np.unique(model._filter_indices(candidates, "skip", "candidates")[0])
        cand = cand[cand >= 0]
        if len(cand) == 0:
            raise ValueError("candidates: none of the given items is known to the model")
    n_ranked = N if cand is None else len(cand)
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
        if hasattr(model, "_states"):
            ranks, top = _gru_ranks(model, off, items, targets, known, cand, K, mode, nt)
        else:
            ranks, top = _dense_ranks(model, off, items, targets, known, cand, K, mode, nt)
        acc.add(ranks, known, top)
        if bar is not None:
            bar.update(int(sd.offsets[s1] - sd.offsets[s0]))
    if bar is not None:
        bar.close()
    return acc, int(sd.n_sessions)


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
        r = np.arange(len(self.hits2)) / 2.0  # the rank of each hits2 slot
        out = {}
        for k in self.cutoffs:
            h = self.hits2[1:2 * k + 1].astype(np.float64)
            rk = r[1:2 * k + 1]
            out[f"recall@{k}"] = float(h.sum()) / n
            out[f"mrr@{k}"] = float((h / rk).sum()) / n
            out[f"ndcg@{k}"] = float((h / np.log2(rk + 1.0)).sum()) / n
            listed = self.listed[k]
            out[f"coverage@{k}"] = float((listed > 0).mean()) if self.n_items else 0.0
            n_listed = int(listed.sum())
            out[f"popularity@{k}"] = (float(listed @ self.rel_pop) / n_listed
                                      if self.rel_pop is not None and n_listed else None)
        out["n_events"] = int(self.n)
        out["n_unknown_targets"] = int(self.n_unknown)
        out["n_items"] = int(self.n_items)
        return out
