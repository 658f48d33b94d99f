"""NARM: GRU4Rec with an attention readout (Li et al., CIKM 2017).

The query that scores the next item after position t is built from the last
hidden state h_t and an attention-weighted sum c_t of the session's states,
``q_t = [h_t ; c_t] W_q`` with ``alpha_tj = softmax_j(v . sigmoid(A1^T h_t +
A2^T h_j))`` (``cpp/core/attention.hpp``). Training is GRU4Rec's (the same
sampled losses, optimizer, session-parallel slots) with truncated
back-propagation through ``bptt``-step windows: the attention reads the
states of its window, and gradients flow from every query into every state
it read. A session no longer than ``bptt`` is inside one window, so its
attention spans the whole session; a longer one attends within aligned
windows of ``bptt`` positions, in training and inference alike.
``docs/narm.md`` has the design and the measurements.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from . import _core
from .base import _as_float, _as_int, register
from .model import GRU4Rec
from .session import LiveSession


@register
class NARM(GRU4Rec):
    """Session-based recommender: a GRU stack with NARM's attention readout.

    Hyperparameters are GRU4Rec's (same names and meanings, see
    ``grurec.GRU4Rec``) plus:

    bptt: steps per truncated back-propagation window, and the attention's
        span (sessions up to this long are attended as a whole).
    attention_dim: width A of the attention's hidden layer (A1, A2: H x A;
        None: the last layer's size).
    attention_memory: how many positions before the current window the
        attention also reads (0: the window only). In training they are the
        states the slot computed in its earlier windows, kept as constants;
        at inference the same spans are used. ``bptt=1, attention_memory=M``
        trains with GRU4Rec's update schedule and attends over the last
        M + 1 states.
    attention_adagrad_init: the starting value of the attention weights'
        Adagrad accumulators (the others start at 0). At 0 Adagrad's first
        step moves every element of W_q by about the learning rate, which
        with bpr-max and a large bpreg blew up the first epoch on diginetica
        (loss 9.2 against GRU4Rec's 0.44); 1.0 makes the first steps
        proportional to the gradient (docs/narm.md).

    Extra weights: ``att_A1``, ``att_A2`` [H, A], ``att_v`` [A], ``att_W_q``
    [2H, H] (initialised so that the query starts as h_t, GRU4Rec's).
    ``explain`` adds the attention weights of the session's last position.
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
        bptt: int = 20,
        attention_dim: Optional[int] = None,
        attention_memory: int = 0,
        attention_adagrad_init: float = 0.0,
    ):
        self.bptt = bptt
        self.attention_dim = attention_dim
        self.attention_memory = attention_memory
        self.attention_adagrad_init = attention_adagrad_init
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

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "NARM":
        """A model with NARM preset ``name``'s hyperparameters (named after the
        data set: ``grurec.presets.narm_names()``, e.g. ``"yoochoose1_64"``),
        or a GRU4Rec preset's (``"search_yoochoose1_64_valid"``; NARM's own
        options then at their defaults), any of them overridden by keyword."""
        from . import presets

        return cls(**dict(presets.get_narm(name), **overrides))

    def _check_params(self) -> None:
        super()._check_params()
        self.bptt = _as_int("bptt", self.bptt, 1)
        if self.attention_dim is not None:
            self.attention_dim = _as_int("attention_dim", self.attention_dim, 1)
        self.attention_memory = _as_int("attention_memory", self.attention_memory, 0)
        v = _as_float("attention_adagrad_init", self.attention_adagrad_init)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"attention_adagrad_init: must be a finite number >= 0, got {v!r}")
        self.attention_adagrad_init = v
        if v > 0 and self.optimizer != "adam" or v == 0:
            return
        raise ValueError("attention_adagrad_init: an Adagrad setting; with optimizer='adam' "
                         f"it must be 0, got {v!r}")

    def _train_window(self) -> int:
        return self.bptt

    def _att_dim(self) -> int:
        return self.attention_dim or self.layers[-1]

    def _param_shapes(self, n_items: int) -> dict[str, tuple[int, ...]]:
        shapes = super()._param_shapes(n_items)
        H, A = self.layers[-1], self._att_dim()
        shapes.update(att_A1=(H, A), att_A2=(H, A), att_v=(A,), att_W_q=(2 * H, H))
        return shapes

    def _init_params(self, n_items: int, rng: np.random.Generator) -> None:
        super()._init_params(n_items, rng)
        H, A = self.layers[-1], self._att_dim()

        def uniform(shape, fan):
            s = math.sqrt(6.0 / fan)
            return rng.uniform(-s, s, shape).astype(np.float32)

        W_q = np.zeros((2 * H, H), np.float32)
        W_q[:H] = np.eye(H, dtype=np.float32)  # q = h_t at the start: GRU4Rec's query
        new = dict(att_A1=uniform((H, A), H + A), att_A2=uniform((H, A), H + A),
                   att_v=uniform((A,), A + 1), att_W_q=W_q)
        for k, w in new.items():
            self.params[k] = w
            self._opt[k] = np.full_like(w, self.attention_adagrad_init)
            if self._uses_vel():
                self._vel[k] = np.zeros_like(w)

    def _readout_args(self) -> dict:
        return {"A1": self._triple("att_A1"), "A2": self._triple("att_A2"),
                "v": self._triple("att_v"), "W_q": self._triple("att_W_q"),
                "memory": self.attention_memory}

    def _states(self, offsets: np.ndarray, items: np.ndarray, all_prefixes: bool = False,
                num_threads: Optional[int] = None) -> np.ndarray:
        """Attention queries in place of GRU4Rec's last-layer states (the same
        rows; see ``GRU4Rec._states``), in C++ with the GIL released."""
        self._check_fitted()
        params, mode = self._input_params()
        return _core.session_states(params, self.layers, mode,
                                    np.ascontiguousarray(offsets, np.int64),
                                    np.ascontiguousarray(items, np.int32), all_prefixes,
                                    self.num_threads if num_threads is None else num_threads,
                                    readout=True, window=self.bptt,
                                    memory=self.attention_memory)

    def new_session(self) -> "LiveSession":
        """A live session (``click``, ``recommend``) whose query after every
        click is the attention readout over the clicks so far; ``state`` is
        that query. The states are recomputed per click (one native call over
        the session: sessions are short)."""
        self._check_weights_match()
        return _NarmLiveSession(self)


class _NarmLiveSession(LiveSession):
    __slots__ = ()

    def _step(self, idx: int) -> None:
        m = self._model
        self._items.append(idx)
        seq = np.asarray(self._items, np.int32)
        # _states[-1] is what LiveSession.recommend scores: here the query.
        self._states[-1] = m._states(np.array([0, len(seq)], np.int64), seq, num_threads=1)


__all__ = ["NARM"]
