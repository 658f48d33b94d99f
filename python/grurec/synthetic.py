"""Synthetic session data with a learnable signal, for demos and benchmarks.

Item popularity follows a Zipf law; session lengths are 2 + geometric; each
next item is, with probability ``signal``, the fixed successor of the current
item (a random permutation, so a sequence model can learn it and a
popularity model cannot), otherwise a popularity-weighted draw.
"""
from __future__ import annotations

import numpy as np


def generate_sessions(n_events: int = 100_000, n_items: int = 5_000, mean_length: float = 5.0,
                      zipf: float = 1.0, signal: float = 0.5, seed: int = 0,
                      world_seed: int = 0):
    """Return a pandas DataFrame with columns SessionId, ItemId, Time.

    ``world_seed`` fixes the item popularity ranking and the successor map;
    ``seed`` the draws. Two sets with the same world_seed and different seeds
    are a train and a test set of the same world.
    """
    import pandas as pd

    if n_events < 2 or n_items < 2:
        raise ValueError("n_events and n_items must be >= 2")
    if mean_length < 2:
        raise ValueError(f"mean_length must be >= 2, got {mean_length}")
    if not 0 <= signal <= 1:
        raise ValueError(f"signal must be in [0, 1], got {signal}")
    world = np.random.default_rng(world_seed)
    item_of_rank = world.permutation(n_items)
    successor = world.permutation(n_items)
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** zipf
    weights /= weights.sum()
    lengths = []
    total = 0
    p = 1.0 / (mean_length - 1.0)
    while total < n_events:
        n = 1 + int(rng.geometric(p))
        n = min(n, n_events - total) if n_events - total >= 2 else 2
        lengths.append(n)
        total += n
    lengths = np.array(lengths)
    n_ev = int(lengths.sum())
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pop_draw = item_of_rank[rng.choice(n_items, size=n_ev, p=weights)]
    follow = rng.random(n_ev) < signal
    items = np.empty(n_ev, np.int64)
    is_start = np.zeros(n_ev, bool)
    is_start[starts] = True
    prev = 0
    for i in range(n_ev):  # sequential by nature; a few 100k events/s
        cur = pop_draw[i] if (is_start[i] or not follow[i]) else successor[prev]
        items[i] = cur
        prev = cur
    session = np.repeat(np.arange(len(lengths)), lengths)
    return pd.DataFrame({"SessionId": session, "ItemId": items,
                         "Time": np.arange(n_ev, dtype=np.float64)})
