"""Cold-item evaluation (issue 18): hold items out of training, rank every
test target among all items, report all / warm-target / cold-target metrics.

    split = cold_item_split(events, fraction=0.15, test_sessions=0.2, seed=0)
    report = evaluate_cold(model, split, cutoffs=(10, 20))

``cold_item_split`` draws the cold items (a random ``fraction`` of the items,
or with ``cut`` the items first seen at or after that time) and the test
sessions (a random ``test_sessions`` share, or with ``cut`` the sessions that
start at or after it); training keeps the other sessions without their cold
items' events, so no cold item is seen in training. ``evaluate_cold`` predicts
every next event of the test sessions from the prefix before it and ranks the
target among the union of all items (training items and cold items): an item
a model does not know scores -inf (a miss). Ranks as ``grurec.evaluate``'s
``mode``: "standard" (1 + #items scoring strictly higher), "conservative" or
"median" (ties count half). A model whose scores tie a lot (ContentKNN over
coarse features: items with the same categories score the same) looks far
better under "standard" than it is: compare models with "median". Dense
scores, a chunk of prefixes at a time: for catalogues up to some 100k items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["ColdSplit", "cold_item_split", "evaluate_cold"]


@dataclass
class ColdSplit:
    train: "object"  # pandas DataFrame of training events (no cold item)
    test: "object"  # pandas DataFrame of test events (all items)
    cold_items: np.ndarray  # ids held out of training
    items: np.ndarray  # every item id of the events (the ranking universe)


def cold_item_split(events, fraction: float = 0.15, test_sessions: float = 0.2,
                    cut: Optional[float] = None, seed: int = 0, session_col: str = "SessionId",
                    item_col: str = "ItemId", time_col: str = "Time") -> ColdSplit:
    """See the module docstring. ``events``: a pandas DataFrame."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: must be in (0, 1), got {fraction!r}")
    if not 0 < test_sessions < 1:
        raise ValueError(f"test_sessions: must be in (0, 1), got {test_sessions!r}")
    for c in (session_col, item_col, time_col):
        if c not in events.columns:
            raise ValueError(f"column {c!r} not found; the events have {list(events.columns)}")
    rng = np.random.default_rng(seed)
    items = np.unique(events[item_col].to_numpy())
    sessions = np.unique(events[session_col].to_numpy())
    if cut is None:
        cold = np.sort(rng.choice(items, max(1, int(round(fraction * len(items)))),
                                  replace=False))
        test_s = rng.choice(sessions, max(1, int(round(test_sessions * len(sessions)))),
                            replace=False)
    else:
        first_item = events.groupby(item_col)[time_col].min()
        cold = np.sort(first_item.index[first_item.to_numpy() >= cut].to_numpy())
        first_sess = events.groupby(session_col)[time_col].min()
        test_s = first_sess.index[first_sess.to_numpy() >= cut].to_numpy()
    is_test = events[session_col].isin(test_s).to_numpy()
    is_cold = events[item_col].isin(cold).to_numpy()
    train = events[~is_test & ~is_cold].reset_index(drop=True)
    test = events[is_test].reset_index(drop=True)
    return ColdSplit(train, test, cold, items)


def _ranks(scores: np.ndarray, targets: np.ndarray, mode: str = "standard") -> np.ndarray:
    t = scores[np.arange(len(targets)), targets][:, None]
    gt = (scores > t).sum(axis=1)
    if mode == "standard":
        return 1.0 + gt
    eq = (scores == t).sum(axis=1) - 1  # other items tied with the target
    return 1.0 + gt + (eq if mode == "conservative" else eq / 2.0)


def evaluate_cold(model, split: ColdSplit, cutoffs=(10, 20), session_col: str = "SessionId",
                  item_col: str = "ItemId", time_col: str = "Time", chunk: int = 1024,
                  mode: str = "standard") -> dict:
    """{"all" | "warm" | "cold": {"recall@K", "mrr@K", "n_events"}}: warm
    targets were seen in training, cold ones were held out. ``mode``: how
    ties rank (module docstring)."""
    import pandas as pd

    from .evaluation import MODES

    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")

    from .data import to_sessions

    universe = np.asarray(split.items)
    sd = to_sessions(split.test, session_col, item_col, time_col, item_ids=universe,
                     unknown="error")
    known = np.asarray(model.item_ids)
    # universe index -> model index (-1: the model cannot score it)
    to_model = pd.Index(known).get_indexer(universe)
    is_cold = np.isin(universe, split.cold_items)
    prefixes, targets = [], []
    for s in range(sd.n_sessions):
        seq = sd.items[sd.offsets[s]:sd.offsets[s + 1]]
        for t in range(1, len(seq)):
            prefixes.append(seq[:t])
            targets.append(seq[t])
    targets = np.asarray(targets, np.int64)
    ranks = np.empty(len(targets), np.float64)
    for c0 in range(0, len(targets), chunk):
        c1 = min(len(targets), c0 + chunk)
        pre = [to_model[p] for p in prefixes[c0:c1]]
        if hasattr(model, "_states"):  # GRU4Rec: final states of the prefixes
            lens = np.array([len(p) for p in pre])
            off = np.zeros(len(pre) + 1, np.int64)
            np.cumsum(lens, out=off[1:])
            h = model._states(off, np.concatenate(pre).astype(np.int32))
            s_model = model.score_items(h)
        else:
            s_model = model.score_prefixes(pre)
        scores = np.full((c1 - c0, len(universe)), -np.inf, np.float32)
        ok = to_model >= 0
        scores[:, ok] = s_model[:, to_model[ok]]
        ranks[c0:c1] = _ranks(scores, targets[c0:c1], mode)
    out = {}
    for name, sel in (("all", np.ones(len(targets), bool)), ("warm", ~is_cold[targets]),
                      ("cold", is_cold[targets])):
        r = ranks[sel]
        m = {"n_events": int(sel.sum())}
        for K in cutoffs:
            hit = r <= K
            m[f"recall@{K}"] = float(hit.mean()) if len(r) else float("nan")
            m[f"mrr@{K}"] = float(np.where(hit, 1.0 / r, 0.0).mean()) if len(r) else float("nan")
        out[name] = m
    return out
