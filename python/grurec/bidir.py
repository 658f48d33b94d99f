"""BiGRU4Rec: GRU4Rec with a bidirectional readout.

Beside the forward GRU stack, a reversed GRU reads the forward top-layer
states of each prefix backwards, newest click first, from a zero state; its
final state ``b_t`` joins the query ``q_t = [h_t ; b_t] W_q``
(``cpp/core/bidir.hpp``). Every prefix is re-encoded by the reversed GRU, so
a window of T positions costs T (T + 1) / 2 reversed steps beside the forward
stack's T. The spans are NARM's: aligned windows of ``bptt`` positions, in
training and inference alike (a session of up to ``bptt`` clicks is read as a
whole). ``W_q`` starts as ``[I; 0]``: an untrained model scores as GRU4Rec.
``session_embeddings`` gives ``[h_last ; b_last]`` per session for similarity
or clustering. ``docs/bidirectional.md`` has the design and the measurements.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from . import _core
from .base import _as_int, register
from .model import GRU4Rec
from .narm import _NarmLiveSession
from .session import LiveSession


@register
class BiGRU4Rec(GRU4Rec):
    """Session-based recommender: a GRU stack with a bidirectional readout.

    Hyperparameters are GRU4Rec's (same names and meanings, see
    ``grurec.GRU4Rec``) plus:

    bptt: steps per truncated back-propagation window, and the span the
        reversed GRU reads (sessions up to this long are read as a whole).
    reverse_size: units Hr of the reversed GRU (None: the last layer's size).

    Extra weights: ``bi_W_ih`` [H, 3Hr], ``bi_W_hh`` [Hr, 3Hr], ``bi_b``,
    ``bi_bh`` [3Hr] (a reset-after GRU cell), ``bi_W_q`` [H + Hr, H]
    (initialised so that the query starts as h_t, GRU4Rec's).
    """

    def __init__(
        self,
        layers: Sequence[int] = (224,),
        loss: str = "bpr-max",
        elu_param: float = 0.5,
        bpreg: float = 1.95,
        logq: float = 0.0,
        batch_size: int = 80,
        n_sample: int = 2048,
        sample_alpha: float = 0.4,
        embedding: int = 0,
        constrained_embedding: bool = True,
        dropout_p_embed: float = 0.5,
        dropout_p_hidden: float = 0.05,
        learning_rate: float = 0.05,
        momentum: float = 0.4,
        n_epochs: int = 10,
        momentum_type: str = "heavy-ball",
        optimizer: str = "adagrad",
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        gru_cell: str = "reset-after",
        feature_mode: str = "input",
        id_dropout: float = 0.0,
        num_threads: int = 0,
        random_state: Optional[int] = None,
        show_progress: bool = True,
        parallel: str = "hogwild",
        bptt: int = 5,
        reverse_size: Optional[int] = None,
    ):
        self.bptt = bptt
        self.reverse_size = reverse_size
        super().__init__(
            layers=layers, loss=loss, elu_param=elu_param, bpreg=bpreg, logq=logq,
            batch_size=batch_size, n_sample=n_sample, sample_alpha=sample_alpha,
            embedding=embedding, constrained_embedding=constrained_embedding,
            dropout_p_embed=dropout_p_embed, dropout_p_hidden=dropout_p_hidden,
            learning_rate=learning_rate, momentum=momentum, n_epochs=n_epochs,
            momentum_type=momentum_type, optimizer=optimizer, adam_betas=adam_betas,
            adam_eps=adam_eps, gru_cell=gru_cell, feature_mode=feature_mode,
            id_dropout=id_dropout, num_threads=num_threads, random_state=random_state,
            show_progress=show_progress, parallel=parallel)

    def _check_params(self) -> None:
        super()._check_params()
        self.bptt = _as_int("bptt", self.bptt, 1)
        if self.reverse_size is not None:
            self.reverse_size = _as_int("reverse_size", self.reverse_size, 1)

    def _train_window(self) -> int:
        return self.bptt

    def _rev_size(self) -> int:
        return self.reverse_size or self.layers[-1]

    def _param_shapes(self, n_items: int) -> dict[str, tuple[int, ...]]:
        shapes = super()._param_shapes(n_items)
        H, Hr = self.layers[-1], self._rev_size()
        shapes.update(bi_W_ih=(H, 3 * Hr), bi_W_hh=(Hr, 3 * Hr), bi_b=(3 * Hr,),
                      bi_bh=(3 * Hr,), bi_W_q=(H + Hr, H))
        return shapes

    def _init_params(self, n_items: int, rng: np.random.Generator) -> None:
        super()._init_params(n_items, rng)
        H, Hr = self.layers[-1], self._rev_size()

        def gate_blocks(rows):  # each gate block on its own fan, as GRU4Rec's layers
            s = math.sqrt(6.0 / (rows + Hr))
            return np.concatenate([rng.uniform(-s, s, (rows, Hr)) for _ in range(3)],
                                  axis=1).astype(np.float32)

        W_q = np.zeros((H + Hr, H), np.float32)
        W_q[:H] = np.eye(H, dtype=np.float32)  # q = h_t at the start: GRU4Rec's query
        new = dict(bi_W_ih=gate_blocks(H), bi_W_hh=gate_blocks(Hr),
                   bi_b=np.zeros(3 * Hr, np.float32), bi_bh=np.zeros(3 * Hr, np.float32),
                   bi_W_q=W_q)
        for k, w in new.items():
            self.params[k] = w
            self._opt[k] = np.zeros_like(w)
            if self._uses_vel():
                self._vel[k] = np.zeros_like(w)

    def _readout_args(self) -> dict:
        return {"W_ih_r": self._triple("bi_W_ih"), "W_hh_r": self._triple("bi_W_hh"),
                "b_r": self._triple("bi_b"), "bh_r": self._triple("bi_bh"),
                "W_q": self._triple("bi_W_q")}

    def _states(self, offsets: np.ndarray, items: np.ndarray, all_prefixes: bool = False,
                num_threads: Optional[int] = None) -> np.ndarray:
        """Bidirectional queries in place of GRU4Rec's last-layer states (the
        same rows; see ``GRU4Rec._states``), in C++ with the GIL released."""
        self._check_fitted()
        params, mode = self._input_params()
        return _core.session_states(params, self.layers, mode,
                                    np.ascontiguousarray(offsets, np.int64),
                                    np.ascontiguousarray(items, np.int32), all_prefixes,
                                    self.num_threads if num_threads is None else num_threads,
                                    readout=True, window=self.bptt)

    def session_embeddings(self, sessions, window: Optional[int] = 0,
                           coerce_ids: bool = False) -> np.ndarray:
        """float32 [len(sessions), H + Hr]: ``[h_last ; b_last]`` per session
        (a list of sequences of item ids, oldest first), for similarity or
        clustering. ``h_last`` is the forward GRU's top-layer state after the
        session; ``b_last`` the reversed GRU's final state after reading the
        session backwards from its last click: over the whole session
        (``window=0``, the default) or over the last aligned span of
        ``window`` clicks (``window=None``: ``bptt``, what the query of the
        last position reads). Unknown items are skipped; a session without
        known items gets zeros. Compare with cosine similarity; the forward
        half alone is ``[:, :H]``."""
        self._check_weights_match()
        window = self.bptt if window is None else _as_int("window", window, 0)
        if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__len__"):
            raise ValueError("sessions: expected a list of sequences of item ids, got "
                             f"{type(sessions).__name__}")
        lengths, flat = [], []
        for j, s in enumerate(sessions):
            if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
                raise ValueError(f"session {j}: expected a sequence of item ids, got "
                                 f"{type(s).__name__} {s!r}")
            lengths.append(len(s))
            flat.extend(list(s))
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        srows = np.repeat(np.arange(len(lengths)), lengths)
        idx = self._lookup(flat, lambda j: f"session {srows[j]}, position "
                                           f"{j - offsets[srows[j]]}", coerce_ids)
        params, mode = self._input_params()
        return _core.session_states(params, self.layers, mode, offsets,
                                    np.ascontiguousarray(idx, np.int32), False,
                                    self.num_threads, readout=True, window=window, embed=True)

    def new_session(self) -> LiveSession:
        """A live session (``click``, ``recommend``) whose query after every
        click is the bidirectional readout over the clicks so far; ``state``
        is that query. Recomputed per click (one native call over the
        session: sessions are short)."""
        self._check_weights_match()
        return _NarmLiveSession(self)


__all__ = ["BiGRU4Rec"]
