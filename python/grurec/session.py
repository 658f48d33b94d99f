"""Live sessions: recommend for a session while it happens.

``s = model.new_session()``; ``s.click(item_id)`` runs one GRU step (the same
native kernel as training and batch inference, for one row);
``s.recommend(k)`` scores every item from the current state with the native
top-k. The answers equal ``model.recommend([items clicked so far], k)``.

A session object holds only its hidden state (one small array per layer) and
the items clicked; it reads the model's weights without copying them. It
keeps the model it was started from: a ``fit`` of that model meanwhile (in
another thread) does not reach a running session, whose state belongs to the
old weights; sessions started after the fit use the new model. Use
one session object from one thread at a time; different sessions of the same
model may be used from different threads at once (the native calls release
the GIL and write only to the session's own state).
"""
from __future__ import annotations

import logging

import numpy as np

from . import _core

log = logging.getLogger("grurec")


class LiveSession:
    """The state of one ongoing session of a fitted GRU4Rec model."""

    __slots__ = ("_model", "_states", "_items", "n_unknown", "_gates", "_rh", "_h")

    def __init__(self, model):
        # One consistent model for the session's whole life (see the module
        # docstring): a shallow copy of its attributes, taken in one step.
        self._model = model._snapshot()
        self._states = [np.zeros((1, H), np.float32) for H in model.layers]
        self._items: list[int] = []  # known item indices clicked, in order
        self.n_unknown = 0  # clicks on items the model does not know (skipped)
        # Step buffers, reused by every click.
        self._gates = [np.empty((1, 1, 3 * H), np.float32) for H in model.layers]
        self._rh = [np.empty((1, 1, H), np.float32) for H in model.layers]
        self._h = [np.empty((1, 1, H), np.float32) for H in model.layers]

    @property
    def items(self) -> np.ndarray:
        """The user's ids of the (known) items clicked so far, oldest first."""
        return self._model.item_ids[np.asarray(self._items, np.int64)]

    @property
    def state(self) -> np.ndarray:
        """The last layer's hidden state (H_L,), a copy."""
        return self._states[-1][0].copy()

    def click(self, item_id, unknown: str = "skip", coerce_ids: bool = False) -> "LiveSession":
        """Advance the session by one event. An id the model does not know is
        skipped (counted in ``n_unknown``; the state is unchanged, as in
        ``recommend``) or, with ``unknown="error"``, raises ValueError. An id
        of the wrong kind (a string for integer ids, ...) raises TypeError
        unless ``coerce_ids`` converts it, as in ``recommend``."""
        if unknown not in ("skip", "error"):
            raise ValueError(f"unknown: must be 'skip' or 'error', got {unknown!r}")
        idx = int(self._model._lookup([item_id], lambda j: "click", coerce_ids)[0])
        if idx < 0:
            if unknown == "error":
                raise ValueError(f"item {item_id!r} is not in the model's vocabulary")
            self.n_unknown += 1
            return self
        self._step(idx)
        return self

    def _step(self, idx: int) -> None:
        """One GRU step for the known item index ``idx`` (a model with another
        query, NARM's, overrides it)."""
        m = self._model
        p, mode = m._input_params()
        x = None
        if mode == 1:
            x = p["emb"][idx][None, None, :]
        elif mode == 2:
            x = p["W_y"][idx][None, None, :]
        for l, H in enumerate(m.layers):
            h = self._h[l]
            if l == 0 and mode == 0:
                np.add(p["W_ih0"][idx], p["b0"], out=self._gates[0][0, 0])
                _core.gru_forward_gates(h, self._gates[0], self._rh[0], self._states[0],
                                        p["W_hh0"], 1)
            else:
                _core.gru_forward(h, self._gates[l], self._rh[l], x, self._states[l],
                                  p[f"W_ih{l}"], p[f"W_hh{l}"], p[f"b{l}"], p.get(f"bh{l}"), 1)
            self._states[l][...] = h[0]
            x = h
        self._items.append(idx)

    def recommend(self, k: int = 20, exclude_seen: bool = False, filter_items=None,
                  num_threads: int = 1):
        """The k best next items from the current state: (ids, scores), 1-D,
        best first, ties by lower item index; the same rules as
        ``GRU4Rec.recommend`` (k capped so that every returned item is real).

        ``num_threads`` defaults to 1: a service answers many sessions at once
        from its own threads, and one query is a single pass over the table.
        """
        from .base import _check_int
        from .topk import _threads, _topk_csr

        k = _check_int("k", k, 1)
        num_threads = _threads(num_threads)
        m = self._model
        N = m.n_items
        allowed = None
        n_cand = N
        if filter_items is not None:
            fidx, _ = m._filter_indices(filter_items, "skip")
            allowed = np.zeros(N, bool)
            allowed[fidx[fidx >= 0]] = True
            n_cand = int(allowed.sum())
        ex_off = ex_idx = None
        if exclude_seen and self._items:
            ex_idx = np.unique(np.asarray(self._items, np.int64))
            ex_off = np.array([0, len(ex_idx)], np.int64)
            n_cand -= int(ex_idx.size if allowed is None else allowed[ex_idx].sum())
        k = min(k, n_cand)
        if k < 1:
            return m.item_ids[:0], np.zeros(0, np.float32)
        W, b = m._output_params()
        top, scores = _topk_csr(self._states[-1], W, b, k, ex_off,
                                ex_idx, allowed, num_threads, index=m._topk_index)
        return m.item_ids[top[0]], scores[0]
