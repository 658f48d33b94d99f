"""Evaluation for users: each user's whole history is the condition.

``evaluate_users(model, data, protocol)`` predicts items of user sequences
(one sequence per user, oldest first) from everything the user did before
them, with full ranking over ALL the model's items. It works for every
``grurec.base.SessionRecommender`` (GRU4Rec fed the history as one session,
the baselines, user models): it calls ``score_prefixes`` on a chunk of
histories at a time and ranks the dense scores with the native rank counter,
so memory stays bounded (a few hundred rows of n_items scores).

Protocols:

==============  ==============================================================
``"loo"``       leave-one-out (SASRec, BERT4Rec, S3-Rec): every user with at
                least ``min_length`` (3) events; the last event is the target,
                the events before it the history. The model is trained on
                ``grurec.splits.leave_last_out(...).train`` (all but the last
                two events of those users).
``"loo-valid"`` (or ``valid=True``) the same users; the second-to-last event
                is the target, the events before it the history (the
                validation set of model selection).
``"time"``      a global time ``cut`` (``grurec.splits.user_time_split``):
                every event at or after the cut is a target, predicted from
                all the user's earlier events (earlier test events included);
                an event with no earlier event of its user is not predicted.
==============  ==============================================================

``exclude_seen=True`` (the default, as in the S3-Rec / ICLRec evaluation
code): the items of the user's conditioning history are removed from the
ranking (their scores set to -inf before ranking). A target that is itself in
the history can then never be ranked: it counts as a miss, as in that code
(``n_targets_in_history`` says how often). A target the model does not know
counts as a miss (``n_unknown_targets``).

Ranks, with r the target's score among the ranked items (``mode``, as
``grurec.evaluate``): standard 1 + #{> r}; conservative 1 + #{>= r, other
than the target}; median the mean of the two. Metrics per K, averaged over the
predictions (``n_events``; one per user under loo):

    hr@K, recall@K  1 if rank <= K (with one target, hit rate = recall)
    ndcg@K          1 / log2(rank + 1) if rank <= K (ideal DCG 1)
    mrr@K           1 / rank if rank <= K
    precision@K     hits / K
    f1@K            2 P R / (P + R) per prediction = 2 hr@K / (K + 1)
"""
from __future__ import annotations

import numpy as np

from .data import SessionData, to_sessions
from .evaluation import _progress_bar, _prologue, _rank_metrics
from .topk import _rank_counts_dense, _ranks

__all__ = ["evaluate_users", "USER_PROTOCOLS"]

USER_PROTOCOLS = ("loo", "loo-valid", "time")


def evaluate_users(model, data, protocol: str = "loo", cutoffs=(5, 10, 20),
                   exclude_seen: bool = True, *, valid: bool = False, cut=None,
                   unit: str = "s", mode: str = "standard", min_length: int = 3,
                   user_col: str = "UserId", item_col: str = "ItemId", time_col: str = "Time",
                   chunk_users: int | None = None, num_threads: int | None = None,
                   show_progress: bool | None = None) -> dict:
    """Full-ranking evaluation of a fitted model on user sequences.

    data: the users' whole sequences: anything ``grurec.to_sessions`` takes
        (a DataFrame with ``user_col``, ``item_col``, ``time_col``; a
        ``SessionData`` with sessions = users), a ``grurec.splits.Split``
        (its ``test``: whole sequences; for ``"time"`` also its ``cut``) or a
        ``grurec.datasets.Dataset`` (its ``events``, else its ``test``).
    protocol: ``"loo"``, ``"loo-valid"`` or ``"time"`` (module docstring);
        ``valid=True`` turns ``"loo"`` into ``"loo-valid"``.
    cutoffs: the K of the metrics. exclude_seen: drop the history's items
        from the ranking (module docstring).
    cut, unit: the time cut of ``"time"`` (a number in the data's time unit
        or a date/time, as ``grurec.splits.user_time_split``); taken from a
        ``Split`` when not given.
    mode: tie handling, ``"standard"``, ``"conservative"`` or ``"median"``.
    min_length: the fewest events a user needs under loo (>= 3).
    chunk_users: predictions scored at a time (default: as many rows of
        n_items float32 scores as fit in about 32 MiB, at most 512).
    Returns a dict: ``hr@K``, ``recall@K``, ``ndcg@K``, ``mrr@K``,
    ``precision@K``, ``f1@K`` for every K; ``n_users`` (users with a
    prediction), ``n_events`` (predictions, unknown targets included),
    ``n_unknown_targets``, ``n_targets_in_history`` (0 unless
    ``exclude_seen``), ``n_items`` (items ranked among), ``protocol``.
    """
    from .base import _check_int, _dense_chunk_rows, _is_bool

    if not isinstance(protocol, str) or protocol not in USER_PROTOCOLS:
        raise ValueError(f"protocol must be one of {USER_PROTOCOLS}, got {protocol!r}")
    if not _is_bool(valid):
        raise TypeError(f"valid: must be True or False, got {valid!r}")
    if not _is_bool(exclude_seen):
        raise TypeError(f"exclude_seen: must be True or False, got {exclude_seen!r}")
    if valid:
        if protocol == "time":
            raise ValueError("valid=True: only for protocol='loo' (the second-to-last event)")
        protocol = "loo-valid"
    min_length = _check_int("min_length", min_length, 3)
    model, cutoffs, _, nt = _prologue(model, cutoffs, 1, num_threads, mode)
    N = len(model.item_ids)
    if chunk_users is None:
        chunk_users = _dense_chunk_rows(N)
    chunk_users = _check_int("chunk_users", chunk_users, 1)

    sd, cut = _sequences(data, protocol, cut, user_col, item_col, time_col)
    sd = to_sessions(sd, user_col, item_col, time_col, item_ids=model.item_ids, unknown="keep")
    if protocol == "time":
        from .splits import _SECONDS, _cut_value

        if cut is None:
            raise ValueError("protocol='time' needs cut= (or a Split from "
                             "grurec.splits.user_time_split)")
        if not isinstance(unit, str) or unit not in _SECONDS:
            raise ValueError(f"unit must be one of {tuple(_SECONDS)}, got {unit!r}")
        if sd.times is None:
            raise ValueError("protocol='time' needs event times; this SessionData has none")
        users, ends = _time_targets(sd, _cut_value(cut, unit))
    else:
        users, ends = _loo_targets(sd, min_length, protocol == "loo-valid")

    starts = sd.offsets[users]
    targets = sd.items[ends].astype(np.int64)  # -1: unknown to the model
    hits2 = np.zeros(2 * max(cutoffs) + 1, np.int64)  # [2 * rank] -> targets
    n_in_hist = 0
    bar = _progress_bar(show_progress, len(users), chunk_users, "evaluate_users")
    for r0 in range(0, len(users), chunk_users):
        r1 = min(r0 + chunk_users, len(users))
        ranks, in_hist = _chunk_ranks(model, sd.items, starts[r0:r1], ends[r0:r1],
                                      targets[r0:r1], exclude_seen, mode, nt)
        n_in_hist += int(in_hist.sum())
        r2 = 2 * ranks
        r2 = r2[r2 <= len(hits2) - 1].astype(np.int64)  # inf (misses) drop out
        hits2 += np.bincount(r2, minlength=len(hits2))
        if bar is not None:
            bar.update(r1 - r0)
    if bar is not None:
        bar.close()

    n = max(len(users), 1)
    out = {}
    for k in cutoffs:
        m = _rank_metrics(hits2, n, k)
        out[f"hr@{k}"] = m[f"recall@{k}"]
        out.update(m)
    out.update(n_users=int(len(np.unique(users))), n_events=int(len(users)),
               n_unknown_targets=int((targets < 0).sum()), n_targets_in_history=n_in_hist,
               n_items=int(N), protocol=protocol)
    return out


def _sequences(data, protocol, cut, user_col, item_col, time_col):
    """(the users' whole sequences, the time cut) from what ``data`` is."""
    from .datasets import Dataset
    from .splits import Split

    if isinstance(data, Split):
        if protocol == "time" and cut is None:
            cut = data.cut
        return data.test, cut
    if isinstance(data, Dataset):
        sd = data.events if data.events is not None else data.test
        if sd is None:
            raise ValueError(f"data: the Dataset {data.name!r} has neither events nor test")
        return sd, cut
    if isinstance(data, SessionData):
        return data, cut
    return to_sessions(data, user_col, item_col, time_col, unknown="keep"), cut


def _loo_targets(sd: SessionData, min_length: int, valid: bool):
    """(user of each prediction, event index of its target): the last (or,
    for validation, the second-to-last) event of each user with at least
    ``min_length`` events."""
    users = np.flatnonzero(sd.lengths() >= min_length)
    ends = sd.offsets[users + 1] - (2 if valid else 1)
    return users, ends.astype(np.int64)


def _time_targets(sd: SessionData, cut_v: float):
    """Every event at or after ``cut_v`` with an earlier event of its user."""
    lengths = sd.lengths()
    user = np.repeat(np.arange(sd.n_sessions), lengths)
    first = np.repeat(sd.offsets[:-1], lengths) == np.arange(sd.n_events)
    ends = np.flatnonzero((sd.times >= cut_v) & ~first)
    return user[ends], ends.astype(np.int64)


def _chunk_ranks(model, items, starts, ends, targets, exclude_seen, mode, nt):
    """Ranks (float, inf = miss) of ``targets`` after the histories
    ``items[starts[b]:ends[b]]``, and whether each target is in its history
    (a miss under ``exclude_seen``)."""
    n = len(starts)
    hist_len = ends - starts
    scores = model.score_prefixes([items[a:b] for a, b in zip(starts, ends)])  # [n, N]
    known = targets >= 0
    g, e = _rank_counts_dense(scores, np.where(known, targets, 0), num_threads=nt)
    in_hist = np.zeros(n, bool)
    if exclude_seen and hist_len.sum():
        N = scores.shape[1]
        rows = np.repeat(np.arange(n, dtype=np.int64), hist_len)
        hist = items[np.arange(hist_len.sum()) + np.repeat(starts - np.cumsum(hist_len)
                                                           + hist_len, hist_len)]
        ok = hist >= 0
        key = np.unique(rows[ok] * N + hist[ok])  # each (row, item) of the history once
        r, j = key // N, key % N
        t = targets[r]
        is_target = j == t
        in_hist[r[is_target]] = True
        r, j = r[~is_target], j[~is_target]
        st, sj = scores[r, targets[r]], scores[r, j]
        # Set to -inf: the excluded item no longer scores above or equal to the target.
        g -= np.bincount(r[sj > st], minlength=n)
        e -= np.bincount(r[sj == st], minlength=n)
    in_hist &= known
    ranks = np.full(n, np.inf)
    ok = known & ~in_hist
    ranks[ok] = _ranks(g[ok], e[ok], mode)
    return ranks, in_hist
