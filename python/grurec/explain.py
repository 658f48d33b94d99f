"""Explanations: how much each click of a sequence moved each recommended
item's score (``model.explain(sequence, items=None, k=10)``).

The contribution of click j to item i is the leave-one-click-out score
change: score(i | sequence) - score(i | sequence without click j). All n
variants run in C++ as one batch that shares their prefixes with the whole
sequence (``cpp/infer.hpp`` drop_one_queries), so a 20-click session costs
about 10 sequences' worth of GRU steps. A click that cannot matter (its
removal leaves the scores unchanged) gets exactly what its removal changes:
zero; a click on an item the model does not know is skipped by the model,
and gets zero. NARM adds the attention weights of the sequence's last
position (``attention``), the readout's own account of what it looked at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _core
from .base import _check_int

__all__ = ["Explanation", "explain"]


@dataclass
class Explanation:
    """items: the explained item ids [m] (the top k, best first, or those
    given); scores: their scores after the whole sequence [m]; clicks: the
    sequence's item ids as given [n]; contributions: float32 [m, n], the
    score change of item i when click j is left out (positive: the click
    raised the item); attention: float32 [n], NARM's attention weights of
    the last position (sum 1 over its span, 0 for unknown clicks), else None."""

    items: np.ndarray
    scores: np.ndarray
    clicks: np.ndarray
    contributions: np.ndarray
    attention: Optional[np.ndarray] = None

    def top_clicks(self, i: int = 0) -> np.ndarray:
        """Positions of the clicks, most raising first, for explained item ``i``."""
        return np.argsort(-self.contributions[i], kind="stable")


def explain(model, sequence, items=None, k: int = 10, coerce_ids: bool = False) -> Explanation:
    m = model._snapshot()
    m._check_weights_match()
    if isinstance(sequence, (str, bytes)) or not hasattr(sequence, "__len__"):
        raise ValueError(f"sequence: expected a list of item ids, got {type(sequence).__name__}")
    seq = list(sequence)
    idx = m._lookup(seq, lambda j: f"sequence, position {j}", coerce_ids)
    known = np.flatnonzero(idx >= 0)
    W, b = m.params["W_y"], m.params["b_y"]
    params, mode = m._input_params()
    attention = "att_W_q" in m.params
    readout = attention or "bi_W_q" in m.params  # NARM's or BiGRU4Rec's query
    window = int(getattr(m, "bptt", 0)) if readout else 0
    memory = int(getattr(m, "attention_memory", 0)) if readout else 0
    D = W.shape[1]
    alpha_full = np.zeros(len(seq), np.float32) if attention else None
    if len(known):
        q, alpha = _core.drop_one_queries(params, m.layers, mode,
                                          np.ascontiguousarray(idx[known], np.int32),
                                          readout=readout, window=window, memory=memory)
        if attention:
            alpha_full[known] = alpha
    else:
        q = np.zeros((1, D), np.float32)
    if items is None:
        k = _check_int("k", k, 1)
        from .topk import _topk_csr

        top, _ = _topk_csr(q[:1], W, b, min(k, m.n_items), None, None, None, 1,
                           index=m._topk_index)
        it = top[0]
    else:
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
            items = [items]
        it = m._lookup(list(items), lambda j: f"items, position {j}", coerce_ids)
        if (it < 0).any():
            j = int(np.flatnonzero(it < 0)[0])
            raise ValueError(f"items, position {j}: item {list(items)[j]!r} is not in the "
                             "model's vocabulary")
    Wi = W[it]  # [m, D]
    scores = (q @ Wi.T + b[it]).astype(np.float32)  # [1 + n_known, m]
    contrib = np.zeros((len(it), len(seq)), np.float32)
    if len(known):
        contrib[:, known] = (scores[0][None, :] - scores[1:]).T
    return Explanation(items=m.item_ids[it], scores=scores[0], clicks=np.asarray(seq, dtype=object)
                       if m.item_ids.dtype == object else np.asarray(seq),
                       contributions=contrib, attention=alpha_full)
