"""Next-item evaluation with full ranking (every item is a candidate).

For every test session, each next item is predicted from the prefix before
it; the hidden state starts at zero for every test session. A target's rank
is 1 + the number of items scored strictly higher ("standard"), or 1 + the
number scored higher or equal other than the target ("conservative").
Targets never seen in training cannot be ranked and count as misses.
"""
from __future__ import annotations

import numpy as np

from .data import to_sessions


def evaluate(model, test, cutoffs=(1, 5, 10, 20), mode: str = "standard",
             session_col="SessionId", item_col="ItemId", time_col="Time",
             batch_size: int = 512) -> dict:
    if mode not in ("standard", "conservative"):
        raise ValueError(f"mode must be 'standard' or 'conservative', got {mode!r}")
    model._check_fitted()
    sd = to_sessions(test, session_col, item_col, time_col, item_ids=model.item_ids,
                     unknown="keep")
    return _evaluate_sessions(model, sd, cutoffs, mode, batch_size)


def _evaluate_sessions(model, sd, cutoffs, mode, batch_size):
    offsets, items = sd.offsets, sd.items
    lengths = np.diff(offsets)
    sessions = np.flatnonzero(lengths >= 2)
    ranks = []
    n_unknown_targets = 0
    for start in range(0, len(sessions), batch_size):
        chunk = sessions[start:start + batch_size]
        states = [np.zeros((len(chunk), H), np.float32) for H in model.layers]
        max_len = int(lengths[chunk].max())
        for t in range(max_len - 1):
            live = lengths[chunk] > t + 1
            idx = np.flatnonzero(live)
            if len(idx) == 0:
                break
            inp = items[offsets[chunk[idx]] + t]
            tgt = items[offsets[chunk[idx]] + t + 1]
            sub = [s[idx] for s in states]
            known_in = inp >= 0
            h = model._step(sub, np.where(known_in, inp, 0))
            # An unknown input item leaves the state as it was.
            for l in range(len(states)):
                new = np.where(known_in[:, None], sub[l], states[l][idx])
                states[l][idx] = new
            h = states[-1][idx]
            scores = model.score_items(h)
            known_t = tgt >= 0
            n_unknown_targets += int((~known_t).sum())
            ts = scores[np.arange(len(idx)), np.maximum(tgt, 0)][:, None]
            if mode == "standard":
                r = (scores > ts).sum(1) + 1
            else:
                r = (scores >= ts).sum(1)
            r = np.where(known_t, r, np.iinfo(np.int64).max)
            ranks.append(r)
    ranks = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    out = {"n_events": int(len(ranks)), "n_unknown_targets": n_unknown_targets}
    for k in cutoffs:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / np.minimum(ranks, 2**62), 0).mean()) if len(ranks) else 0.0
    return out
