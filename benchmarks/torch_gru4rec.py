"""GRU4Rec in plain PyTorch (CPU): the baseline grurec is benchmarked against.

A clean-room implementation of the published algorithm (Hidasi et al. ICLR
2016; Hidasi & Karatzoglou CIKM 2018), written from the papers and from
grurec's own description of what it computes (docs/training.md,
cpp/gru.hpp, cpp/train.hpp), as a PyTorch
user would write it: one batched step per mini-batch, autograd for the
gradients, no Python loop over items. It is a benchmark baseline and a
cross-check of grurec, not part of the package: torch is never a dependency
of grurec.

Dimension names: B batch (live slots), H_l hidden size of layer l, I input
size, N items, S sampled negatives, C = B + S candidates per mini-batch.

What one mini-batch does (``_train_batch``):

* Session-parallel mini-batches. B slots each walk one session (sessions in
  the order of their first event); a slot's input is its current item and
  its target the next one. A slot whose session has no next item takes the
  next unused session and its hidden state (every layer) is reset to zero;
  when no session is left the slot retires and the batch shrinks, so every
  event is trained. Hidden states carry over between mini-batches, detached:
  one-step back-propagation, no gradient into the previous state.
* Input: ``constrained_embedding`` (shared table, the input vector of an item
  is its output row W_y[item]), a separate embedding table (``embedding`` =
  size), or one-hot (layer 0's W_ih is an item table [N, 3H_0] and the input
  product is a row lookup). Dropout ``dropout_p_embed`` on the input vector
  (for one-hot input: on the single active input, i.e. per row),
  ``dropout_p_hidden`` on every layer's output; inverted dropout, kept values
  scaled by 1 / (1 - p). Hidden dropout is carried: a layer's output after
  dropout is both what the next layer (or the scoring) reads and the layer's
  state at the next step.
* The GRU (Cho et al. 2014), written with torch ops so the math is grurec's:
  gate order [r | z | n] on the last axis of W_ih [I, 3H], W_hh [H, 3H] and
  b [3H]; two cell forms (``gru_cell``):
    "reset-after" (default; cuDNN / torch.nn.GRU's form, with a second,
    recurrent bias bh [3H]):
      [a_r | a_z | a_n] = x W_ih + b,  [p_r | p_z | p_n] = h W_hh + bh
      r = sigmoid(a_r + p_r),  z = sigmoid(a_z + p_z),  n = tanh(a_n + r * p_n)
    "reset-before" (the papers' original form, one bias):
      r = sigmoid(x W_r + h U_r + b_r),  z = sigmoid(x W_z + h U_z + b_z)
      n = tanh(x W_n + (r * h) U_n + b_n)
    both: h' = (1 - z) * h + z * n.
  Layer 0 of one-hot input is always reset-before (no bh0), as in grurec.
* Scores R[B, C] = y W_y[cand]^T + b_y[cand], cand = the mini-batch's targets
  (in-batch negatives for each other) followed by S items shared by the
  mini-batch, drawn with probability ~ popularity^sample_alpha (cumulative
  table + searchsorted, drawn in large blocks). Row i's target is column i.
* Losses, with the final activation ELU(elu_param) (0 = linear) on the scores:
  cross-entropy over all C columns with logQ correction (logq * log count for
  in-batch columns, logq * sample_alpha * log count for sampled ones,
  unnormalised, subtracted from the logits); BPR-max
  -log(sum_j s_j sigmoid(a_i - a_j)) + bpreg * sum_j s_j a_j^2 and TOP1-max
  sum_j s_j (sigmoid(a_j - a_i) + sigmoid(a_j^2)) with s = softmax over the
  columns other than the target's own. The loss is the sum over the rows
  divided by the configured ``batch_size``, also in the shrinking batches at
  the end of an epoch (so a short batch takes no larger steps per row).
  With a ranking loss and a single column (n_sample = 0 and one live slot)
  there is nothing to compare with: the step only advances the states.
* Adagrad with momentum, implemented here (not torch.optim):
      acc += g^2;  s = lr * g / sqrt(acc + 1e-6);  mu = 0: w -= s
      mu > 0: v = mu * v - s;  w += v              (momentum_type="heavy-ball")
              v = mu * v - s;  w += mu * v - s     (momentum_type="nesterov")
  dense for the GRU weights; for the item tables (W_y, b_y, the embedding or
  one-hot W_ih_0) only on the rows the mini-batch touched, each touched row's
  gradient summed over its occurrences first (torch.unique over the touched
  item ids, then a leaf tensor of just those rows takes the gradient). b_y's
  touched rows are the candidates only (an item that is only an input of the
  mini-batch moves its W_y row in the shared mode, not its b_y entry).
* Scores are computed once per distinct candidate row and gathered into the
  C columns (a popular item drawn twice, or a target also drawn, costs one
  dot product per row of the batch), as grurec does; the maths is unchanged.

Usage (see benchmarks/bench_train.py):

    model = TorchGRU4Rec(layers=[100], loss="cross-entropy", n_sample=2048, ...)
    model.fit(train_df)                           # SessionId, ItemId, Time
    print(model.evaluate(test_df, cutoffs=(5, 20)))
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("cross-entropy", "bpr-max", "top1-max")
GRU_CELLS = ("reset-after", "reset-before")
MOMENTUM_TYPES = ("heavy-ball", "nesterov")
EPS = 1e-6  # Adagrad's epsilon


# ------------------------------------------------------------------ data


@dataclass
class Sessions:
    """Sessions in training order: ``items[offsets[s]:offsets[s+1]]`` is session s."""

    offsets: np.ndarray  # int64 [n_sessions + 1]
    items: np.ndarray  # int64 [n_events], indices into item_ids
    item_ids: np.ndarray  # [N] the original ids, index -> id

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)


def prepare(df, item_ids: Optional[np.ndarray] = None, session_col="SessionId",
            item_col="ItemId", time_col="Time", min_length: int = 2) -> Sessions:
    """Events -> Sessions: sessions ordered by their first event's time, events
    by time within a session (stable), sessions shorter than ``min_length``
    dropped. Without ``item_ids`` the vocabulary is the sorted unique ids of
    the data; with it, unknown items become -1 (evaluation only)."""
    d = df[[session_col, item_col, time_col]].copy()
    d.columns = ["s", "i", "t"]
    d["first"] = d.groupby("s")["t"].transform("min")
    d = d.sort_values(["first", "s", "t"], kind="stable")
    length = d.groupby("s", sort=False)["s"].transform("size")
    d = d[length.to_numpy() >= min_length]
    raw = d["i"].to_numpy()
    if item_ids is None:
        item_ids, items = np.unique(raw, return_inverse=True)
    else:
        order = np.argsort(item_ids)
        pos = np.minimum(np.searchsorted(item_ids, raw, sorter=order), len(item_ids) - 1)
        items = order[pos]
        items = np.where(item_ids[items] == raw, items, -1)
    s = d["s"].to_numpy()
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    offsets = np.r_[starts, len(s)].astype(np.int64)
    return Sessions(offsets, items.astype(np.int64), np.asarray(item_ids))


# ------------------------------------------------------------------ pieces


class PopularitySampler:
    """Draws item indices with probability ~ pop^alpha (items with pop 0 never,
    also at alpha = 0): a cumulative float64 table and searchsorted over large
    blocks of uniform draws, sliced per mini-batch."""

    def __init__(self, pop: np.ndarray, alpha: float, generator: torch.Generator,
                 block: int = 1 << 18):
        w = np.where(pop > 0, pop.astype(np.float64) ** alpha, 0.0)
        self.cdf = torch.from_numpy(np.cumsum(w))
        self.total = float(self.cdf[-1])
        self.n = len(w)
        self.gen = generator
        self.block = block
        self.buf = torch.empty(0, dtype=torch.int64)
        self.used = 0

    def draw(self, n: int) -> torch.Tensor:
        if self.used + n > len(self.buf):
            u = torch.rand(max(self.block, n), dtype=torch.float64, generator=self.gen)
            u.mul_(self.total)
            self.buf = torch.searchsorted(self.cdf, u, right=True).clamp_(max=self.n - 1)
            self.used = 0
        out = self.buf[self.used:self.used + n]
        self.used += n
        return out


def gru_cell(gi: torch.Tensor, h: torch.Tensor, W_hh: torch.Tensor, H: int,
             bh: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One GRU step from the input part gi[B, 3H] = x W_ih + b (already
    computed) and the previous state h[B, H]. Without ``bh`` the reset gate
    scales the state before the recurrent product (reset-before); with the
    recurrent bias bh[3H] it scales the product, bias included (reset-after)."""
    if bh is None:
        rz = torch.sigmoid(torch.addmm(gi[:, :2 * H], h, W_hh[:, :2 * H]))  # [B, 2H]
        r, z = rz[:, :H], rz[:, H:]
        n = torch.tanh(torch.addmm(gi[:, 2 * H:], r * h, W_hh[:, 2 * H:]))  # [B, H]
    else:
        gh = torch.addmm(bh, h, W_hh)  # [B, 3H] = h W_hh + bh
        rz = torch.sigmoid(gi[:, :2 * H] + gh[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = torch.tanh(torch.addcmul(gi[:, 2 * H:], r, gh[:, 2 * H:]))
    return torch.lerp(h, n, z)  # h + z (n - h) = (1 - z) h + z n


def final_activation(R: torch.Tensor, elu: float) -> torch.Tensor:
    return F.elu(R, alpha=elu) if elu > 0 else R


def loss_rows(kind: str, R: torch.Tensor, qcorr: Optional[torch.Tensor], elu: float,
              bpreg: float) -> torch.Tensor:
    """Per-row losses L_i [B] of scores R[B, C] whose row i's target is column i."""
    B = R.shape[0]
    a = final_activation(R, elu)
    diag = torch.arange(B)
    if kind == "cross-entropy":
        if qcorr is not None:
            a = a - qcorr
        return torch.logsumexp(a, 1) - a[diag, diag]
    target = a[diag, diag].unsqueeze(1)  # [B, 1]
    off_target = torch.ones_like(a, dtype=torch.bool)
    off_target[diag, diag] = False
    s = torch.softmax(a.masked_fill(~off_target, float("-inf")), 1)  # 0 on the target
    if kind == "bpr-max":
        p = (s * torch.sigmoid(target - a)).sum(1)
        return -torch.log(p + 1e-24) + bpreg * (s * a * a).sum(1)
    return (s * (torch.sigmoid(a - target) + torch.sigmoid(a * a))).sum(1)  # top1-max


class AdagradMomentum:
    """acc += g^2; s = lr g / sqrt(acc + eps); mu = 0: w -= s; mu > 0:
    v = mu v - s, then w += v (heavy ball) or w += mu v - s (Nesterov).
    ``dense`` updates a whole tensor, ``rows`` the given (distinct) rows of an
    item table with their already summed gradients."""

    def __init__(self, lr: float, momentum: float, nesterov: bool = False):
        self.lr, self.mu, self.nesterov = lr, momentum, nesterov

    @torch.no_grad()
    def dense(self, w, acc, vel, g):
        acc.addcmul_(g, g)
        s = g / (acc + EPS).sqrt_()
        s.mul_(self.lr)
        if self.mu > 0:
            vel.mul_(self.mu).sub_(s)
            if self.nesterov:
                w.add_(vel, alpha=self.mu).sub_(s)
            else:
                w.add_(vel)
        else:
            w.sub_(s)

    @torch.no_grad()
    def rows(self, w, acc, vel, idx, g):
        a = acc.index_select(0, idx).addcmul_(g, g)
        acc.index_copy_(0, idx, a)
        s = g / a.add_(EPS).sqrt_()
        s.mul_(self.lr)
        wr = w.index_select(0, idx)
        if self.mu > 0:
            v = vel.index_select(0, idx).mul_(self.mu).sub_(s)
            vel.index_copy_(0, idx, v)
            if self.nesterov:
                wr.add_(v, alpha=self.mu).sub_(s)
            else:
                wr.add_(v)
        else:
            wr.sub_(s)
        w.index_copy_(0, idx, wr)


# ------------------------------------------------------------------ model


class TorchGRU4Rec:
    """GRU4Rec trained with PyTorch; hyperparameters as ``grurec.GRU4Rec``.

    Parameters (``self.params``, float32 torch tensors, grurec's names and
    layouts): ``W_ih{l}`` [I_l, 3H_l], ``W_hh{l}`` [H_l, 3H_l], ``b{l}`` [3H_l],
    ``bh{l}`` [3H_l] (reset-after layers only), ``W_y`` [N, H_L], ``b_y`` [N],
    ``emb`` [N, E] (separate embedding only).
    """

    def __init__(self, layers: Sequence[int] = (100,), loss: str = "cross-entropy",
                 elu_param: float = 0.0, bpreg: float = 0.0, logq: float = 0.0,
                 batch_size: int = 32, n_sample: int = 2048, sample_alpha: float = 0.75,
                 embedding: int = 0, constrained_embedding: bool = True,
                 dropout_p_embed: float = 0.0, dropout_p_hidden: float = 0.0,
                 learning_rate: float = 0.1, momentum: float = 0.0, n_epochs: int = 10,
                 momentum_type: str = "heavy-ball", gru_cell: str = "reset-after",
                 num_threads: int = 0, random_state: Optional[int] = None):
        if loss not in LOSSES:
            raise ValueError(f"loss: must be one of {LOSSES}, got {loss!r}")
        if momentum_type not in MOMENTUM_TYPES:
            raise ValueError(f"momentum_type: must be one of {MOMENTUM_TYPES}, got {momentum_type!r}")
        if gru_cell not in GRU_CELLS:
            raise ValueError(f"gru_cell: must be one of {GRU_CELLS}, got {gru_cell!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size!r}")
        self.layers = [int(h) for h in (layers if isinstance(layers, (list, tuple)) else [layers])]
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers: needs one or more positive sizes, got {layers!r}")
        self.loss, self.elu_param, self.bpreg, self.logq = loss, float(elu_param), float(bpreg), float(logq)
        self.batch_size, self.n_sample = int(batch_size), int(n_sample)
        self.sample_alpha = float(sample_alpha)
        self.embedding, self.constrained_embedding = int(embedding), bool(constrained_embedding)
        self.dropout_p_embed, self.dropout_p_hidden = float(dropout_p_embed), float(dropout_p_hidden)
        self.learning_rate, self.momentum = float(learning_rate), float(momentum)
        self.momentum_type, self.gru_cell = momentum_type, gru_cell
        self.n_epochs, self.num_threads = int(n_epochs), int(num_threads)
        self.random_state = random_state
        self.params: dict[str, torch.Tensor] = {}
        self.item_ids: Optional[np.ndarray] = None
        self.history: list[dict] = []

    @property
    def mode(self) -> int:
        """0 one-hot input, 1 separate embedding, 2 shared (constrained)."""
        if self.constrained_embedding:
            return 2
        return 1 if self.embedding > 0 else 0

    def reset_after(self, layer: int) -> bool:
        """Whether layer ``layer`` is a reset-after cell (has a recurrent bias
        ``bh{layer}``): every layer not fed by one-hot ids, when gru_cell is
        "reset-after"."""
        return self.gru_cell == "reset-after" and (layer > 0 or self.mode != 0)

    # -------------------------------------------------------------- params
    def init_params(self, n_items: int, rng: np.random.Generator) -> None:
        """Glorot-uniform per gate block, zero biases (grurec's scheme; the
        draws in grurec's order, so a seed gives grurec's initial weights)."""
        def uniform(rows, cols):
            s = math.sqrt(6.0 / (rows + cols))
            return rng.uniform(-s, s, (rows, cols)).astype(np.float32)

        p = {}
        in_dim = {0: n_items, 1: self.embedding, 2: self.layers[-1]}[self.mode]
        if self.mode == 1:
            p["emb"] = uniform(n_items, self.embedding)
        for l, H in enumerate(self.layers):
            p[f"W_ih{l}"] = np.concatenate([uniform(in_dim, H) for _ in range(3)], 1)
            p[f"W_hh{l}"] = np.concatenate([uniform(H, H) for _ in range(3)], 1)
            p[f"b{l}"] = np.zeros(3 * H, np.float32)
            if self.reset_after(l):
                p[f"bh{l}"] = np.zeros(3 * H, np.float32)
            in_dim = H
        p["W_y"] = uniform(n_items, self.layers[-1])
        p["b_y"] = np.zeros(n_items, np.float32)
        self.set_params(p)

    def set_params(self, params: dict, acc_init: float = 0.0) -> None:
        """Copies NumPy (or torch) arrays in grurec's layout; resets the
        optimizer state (accumulators to ``acc_init``, velocities to 0).
        Reset-after layers need ``bh{l}``, reset-before ones must not have it."""
        for l in range(len(self.layers)):
            if (f"bh{l}" in params) != self.reset_after(l):
                raise ValueError(f"params: bh{l} {'missing' if self.reset_after(l) else 'given'} "
                                 f"for a {'reset-after' if self.reset_after(l) else 'reset-before'} "
                                 f"layer {l} (gru_cell={self.gru_cell!r}, mode {self.mode})")
        self.params = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in params.items()}
        for k in self._dense_names():  # autograd leaves; item tables are not (see _train_batch)
            self.params[k].requires_grad_(True)
        self.opt = AdagradMomentum(self.learning_rate, self.momentum,
                                   nesterov=self.momentum_type == "nesterov")
        self.acc = {k: torch.full_like(v, acc_init) for k, v in self.params.items()}
        self.vel = {k: torch.zeros_like(v) for k, v in self.params.items()} if self.momentum > 0 else {}
        self.n_items = self.params["W_y"].shape[0]

    def get_params(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.params.items()}

    def _item_tables(self) -> list[str]:
        """Tables updated row-wise: W_y and b_y always, plus the input table."""
        return ["W_y", "b_y"] + {0: ["W_ih0"], 1: ["emb"], 2: []}[self.mode]

    def _dense_names(self) -> list[str]:
        sparse = set(self._item_tables())
        return [k for k in self.params if k not in sparse]

    # -------------------------------------------------------------- fit
    def fit(self, data, sampler_factory: Optional[Callable] = None) -> "TorchGRU4Rec":
        """Trains ``n_epochs`` epochs on a DataFrame (SessionId, ItemId, Time)
        or prepared ``Sessions``. ``self.history`` gets each epoch's loss,
        events and training seconds (data preparation excluded).

        ``sampler_factory(pop, alpha, epoch)`` may replace the negative
        sampler: it returns an object with ``draw(n) -> LongTensor`` (used by
        the tests to feed grurec's exact negatives)."""
        sd = data if isinstance(data, Sessions) else prepare(data)
        if sd.n_sessions == 0:
            raise ValueError("no session has 2 or more events: nothing to learn from")
        if self.num_threads > 0:
            torch.set_num_threads(self.num_threads)
        rng = np.random.default_rng(self.random_state)
        self.item_ids = sd.item_ids
        n_items = len(sd.item_ids)
        if not self.params:
            self.init_params(n_items, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63)))  # negatives
        torch.manual_seed(int(rng.integers(0, 2**63)))  # dropout (F.dropout takes no generator)
        pop = np.bincount(sd.items, minlength=n_items).astype(np.float64)
        lq_in = lq_s = None
        if self.loss == "cross-entropy" and self.logq > 0:
            logpop = np.log(np.maximum(pop, 1e-12))
            lq_in = torch.from_numpy((self.logq * logpop).astype(np.float32))
            lq_s = torch.from_numpy((self.logq * self.sample_alpha * logpop).astype(np.float32))
        self.history = []
        for epoch in range(self.n_epochs):
            sampler = None
            if self.n_sample > 0:
                sampler = (sampler_factory(pop, self.sample_alpha, epoch) if sampler_factory
                           else PopularitySampler(pop, self.sample_alpha, gen))
            t0 = time.perf_counter()
            events, loss_sum = self._epoch(sd, sampler, lq_in, lq_s)
            dt = time.perf_counter() - t0
            self.history.append(dict(epoch=epoch + 1, loss=loss_sum / max(events, 1),
                                     events=events, seconds=dt,
                                     events_per_s=events / dt if dt > 0 else 0.0))
        return self

    def _epoch(self, sd: Sessions, sampler, lq_in, lq_s) -> tuple[int, float]:
        offsets, items = sd.offsets, sd.items
        n_sessions = sd.n_sessions
        B = min(self.batch_size, n_sessions)
        sess = np.arange(B)  # slot -> session
        pos = offsets[:B].copy()  # slot -> position of its current input event
        ends = offsets[1:]
        next_session = B
        states = [torch.zeros(B, H) for H in self.layers]
        events, loss_sum = 0, 0.0
        while B > 0:
            inp = torch.from_numpy(items[pos])
            tgt = torch.from_numpy(items[pos + 1])
            neg = sampler.draw(self.n_sample) if sampler is not None else None
            states, loss = self._train_batch(inp, tgt, neg, states, lq_in, lq_s)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} after {events} events")
            loss_sum += loss  # the batch's summed row losses
            events += B
            # Advance the slots; finished ones take the next sessions (state
            # reset) in slot order; when none is left they retire.
            pos += 1
            done = np.flatnonzero(pos + 1 >= ends[sess])
            if len(done):
                n_new = min(len(done), n_sessions - next_session)
                take = done[:n_new]
                if n_new:
                    sess[take] = np.arange(next_session, next_session + n_new)
                    pos[take] = offsets[sess[take]]
                    next_session += n_new
                    t = torch.from_numpy(take)
                    for h in states:
                        h.index_fill_(0, t, 0.0)
                if n_new < len(done):
                    keep = np.ones(B, bool)
                    keep[done[n_new:]] = False
                    sess, pos = sess[keep], pos[keep]
                    k = torch.from_numpy(np.flatnonzero(keep))
                    states = [h.index_select(0, k) for h in states]
                    B = len(sess)
        return events, loss_sum

    def _train_batch(self, inp, tgt, neg, states, lq_in, lq_s):
        """Forward, backward and update for one mini-batch. inp, tgt [B] and neg
        [S] (or None) are item indices; states the detached hidden states
        [B, H_l]. Returns the new states (every layer's output after dropout)
        and the sum of the row losses (the update uses that sum over the
        configured batch_size)."""
        p, mode = self.params, self.mode
        B = len(inp)
        cand = tgt if neg is None else torch.cat([tgt, neg])  # [C]
        C = len(cand)
        rows_y, inv_y, Wy_r, col, Wy_c, by_c, dense, sparse = self._output_rows(cand, inp)

        # ---- forward: input, GRU layers, scores
        pe, ph = self.dropout_p_embed, self.dropout_p_hidden
        if mode == 0:
            rows_in, inv_in = torch.unique(inp, return_inverse=True)
            W0_r = p["W_ih0"].index_select(0, rows_in).requires_grad_()  # [R_in, 3H_0]
            sparse["W_ih0"] = (rows_in, W0_r)
            a0 = W0_r.index_select(0, inv_in)  # [B, 3H_0]: one-hot x W_ih0
            if pe > 0:  # dropout on the single active input of each row
                a0 = a0 * F.dropout(torch.ones(B, 1), pe, True)
            x = None
        else:
            if mode == 2:
                x = Wy_r.index_select(0, inv_y[C:])  # [B, H_L]
            else:
                rows_in, inv_in = torch.unique(inp, return_inverse=True)
                E_r = p["emb"].index_select(0, rows_in).requires_grad_()
                sparse["emb"] = (rows_in, E_r)
                x = E_r.index_select(0, inv_in)  # [B, E]
            if pe > 0:
                x = F.dropout(x, pe, True)
        new_states = []
        for l, H in enumerate(self.layers):
            gi = (a0 + dense["b0"]) if x is None else torch.addmm(dense[f"b{l}"], x, dense[f"W_ih{l}"])
            h = gru_cell(gi, states[l], dense[f"W_hh{l}"], H, dense.get(f"bh{l}"))  # [B, H]
            x = F.dropout(h, ph, True) if ph > 0 else h
            new_states.append(x.detach())  # carried: the dropped output is the next state
        if self.loss != "cross-entropy" and C < 2:
            # A ranking loss has no other column to compare the target with
            # (n_sample = 0, one live slot): the step only advances the states.
            return new_states, 0.0
        # Scores of the distinct candidate rows, then every column
        R = torch.addmm(by_c, x, Wy_c.t()).index_select(1, col)  # [B, U] -> [B, C]
        qcorr = None
        if lq_in is not None:
            qcorr = lq_in.index_select(0, tgt) if neg is None else torch.cat(
                [lq_in.index_select(0, tgt), lq_s.index_select(0, neg)])
        row_sum = loss_rows(self.loss, R, qcorr, self.elu_param, self.bpreg).sum()
        loss = row_sum / self.batch_size  # the configured size, also in a shrinking batch

        # ---- backward and update
        loss.backward()
        self._update(dense, sparse)
        return new_states, row_sum.item()

    def _output_rows(self, cand: torch.Tensor, inp: torch.Tensor):
        """The rows of W_y and b_y a mini-batch touches, as autograd leaves:
        the candidates cand [C], plus the inputs inp [B] in the shared mode.
        Returns rows_y [R] (distinct item ids), inv_y [C (+ B)] (each
        candidate's, then each input's, position in rows_y), Wy_r [R, H_L]
        (leaf), col [C] (each column's row in Wy_c), Wy_c [U, H_L] and by_c
        [U] (leaf) for the U distinct candidates, and the dense and sparse
        parameter dicts ``_update`` takes."""
        p, mode = self.params, self.mode
        C = len(cand)
        # Touched rows of W_y (and b_y): candidates, plus inputs when shared.
        touched = torch.cat([cand, inp]) if mode == 2 else cand
        rows_y, inv_y = torch.unique(touched, return_inverse=True)
        Wy_r = p["W_y"].index_select(0, rows_y).requires_grad_()  # [R, H_L]
        inv_c = inv_y[:C]  # column -> its row in rows_y
        if mode == 2:  # rows_y also holds input-only rows: pick the candidate ones
            is_cand = torch.zeros(len(rows_y), dtype=torch.bool)
            is_cand[inv_c] = True
            ci = is_cand.nonzero().squeeze(1)  # [U] positions in rows_y
            col = (is_cand.cumsum(0) - 1).index_select(0, inv_c)  # column -> 0..U-1
            Wy_c = Wy_r.index_select(0, ci)  # [U, H_L]
            rows_c = rows_y.index_select(0, ci)
        else:
            col, Wy_c, rows_c = inv_c, Wy_r, rows_y
        by_c = p["b_y"].index_select(0, rows_c).requires_grad_()  # [U]
        dense = {k: p[k] for k in self._dense_names()}  # leaves that require grad
        sparse = {"W_y": (rows_y, Wy_r), "b_y": (rows_c, by_c)}
        return rows_y, inv_y, Wy_r, col, Wy_c, by_c, dense, sparse

    def _update(self, dense: dict, sparse: dict) -> None:
        """Adagrad(-momentum) step after backward: every dense leaf, and each
        sparse table's touched rows (name -> (rows, leaf of those rows))."""
        opt, p = self.opt, self.params
        for k, w in dense.items():
            opt.dense(w, self.acc[k], self.vel.get(k), w.grad)
            w.grad = None
        for k, (rows, sub) in sparse.items():
            g = sub.grad if sub.grad is not None else torch.zeros_like(sub)
            opt.rows(p[k], self.acc[k], self.vel.get(k), rows, g)

    # -------------------------------------------------------------- inference
    @torch.inference_mode()
    def step(self, states: list[torch.Tensor], inp: torch.Tensor) -> list[torch.Tensor]:
        """One GRU step (no dropout) for item indices inp [B]; returns the new states."""
        p = self.params
        x = {0: None, 1: p["emb"] if self.mode == 1 else None, 2: p["W_y"]}[self.mode]
        x = x.index_select(0, inp) if x is not None else None
        out = []
        for l, H in enumerate(self.layers):
            if x is None:
                gi = p["W_ih0"].index_select(0, inp) + p["b0"]
            else:
                gi = torch.addmm(p[f"b{l}"], x, p[f"W_ih{l}"])
            x = gru_cell(gi, states[l], p[f"W_hh{l}"], H, p.get(f"bh{l}"))
            out.append(x)
        return out

    @torch.inference_mode()
    def evaluate(self, test, cutoffs=(5, 20), batch_size: int = 512) -> dict:
        """Next-item prediction over all items (full ranking). The hidden state
        starts at zero for every test session; rank = 1 + the number of items
        scored strictly higher than the target (standard ties). Unknown target
        items count as misses; an unknown input item leaves the state as it was."""
        sd = test if isinstance(test, Sessions) else prepare(test, item_ids=self.item_ids)
        offsets, items = sd.offsets, sd.items
        lengths = np.diff(offsets)
        W_y, b_y = self.params["W_y"], self.params["b_y"]
        ranks = []
        for start in range(0, sd.n_sessions, batch_size):
            chunk = np.arange(start, min(start + batch_size, sd.n_sessions))
            states = [torch.zeros(len(chunk), H) for H in self.layers]
            for t in range(int(lengths[chunk].max()) - 1):
                live = np.flatnonzero(lengths[chunk] > t + 1)
                inp = items[offsets[chunk[live]] + t]
                tgt = items[offsets[chunk[live]] + t + 1]
                idx = torch.from_numpy(live)
                sub = [h.index_select(0, idx) for h in states]
                new = self.step(sub, torch.from_numpy(np.maximum(inp, 0)))
                known = torch.from_numpy(inp >= 0).unsqueeze(1)
                for l in range(len(states)):
                    states[l].index_copy_(0, idx, torch.where(known, new[l], sub[l]))
                scores = torch.addmm(b_y, states[-1].index_select(0, idx), W_y.t())  # [B, N]
                ts = scores.gather(1, torch.from_numpy(np.maximum(tgt, 0)).unsqueeze(1))
                r = (scores > ts).sum(1).numpy() + 1
                ranks.append(np.where(tgt >= 0, r, np.iinfo(np.int64).max))
        ranks = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
        out = {"n_events": int(len(ranks)), "n_unknown_targets": int((ranks == np.iinfo(np.int64).max).sum())}
        for k in cutoffs:
            hit = ranks <= k
            out[f"recall@{k}"] = float(hit.mean()) if len(ranks) else 0.0
            out[f"mrr@{k}"] = float(np.where(hit, 1.0 / np.minimum(ranks, 2**62), 0).mean()) if len(ranks) else 0.0
        return out


# ------------------------------------------------------------------ accuracy check

# grurec parameters the twin does not have, and the values at which grurec
# trains as the twin does (the Adam option, item-feature settings).
TWIN_NEUTRAL = {"optimizer": ("adagrad",), "adam_betas": None, "adam_eps": None,
                "feature_mode": None, "id_dropout": (0, 0.0)}


def twin_kwargs(cfg: dict) -> dict:
    """grurec GRU4Rec parameters (a preset) as TorchGRU4Rec's: the keys it
    does not take dropped, an error where one is set to something the twin
    would silently not do."""
    known = inspect.signature(TorchGRU4Rec.__init__).parameters
    out = {}
    for k, v in cfg.items():
        if k in known:
            out[k] = v
        elif k not in TWIN_NEUTRAL:
            raise ValueError(f"the PyTorch twin has no parameter {k!r} (= {v!r})")
        elif TWIN_NEUTRAL[k] is not None and v not in TWIN_NEUTRAL[k]:
            raise ValueError(f"the PyTorch twin cannot train with {k}={v!r}")
    return out


def _published(name: str) -> dict:
    """A published setting from grurec.presets (imported only for this check, so the
    twin itself stays independent of grurec)."""
    import grurec

    return twin_kwargs({k: v for k, v in grurec.presets.get(name).items() if k != "n_epochs"})


# The official parameter files benchmarks/bench_train.py times (grurec.presets).
CONFIGS = ("rsc15_xe_shared_100", "retailrocket_bprmax_shared")


def main(argv=None) -> int:
    """Train both implementations on a train file, evaluate both on a test file
    (full ranking, standard ties): the accuracy cross-check of the baseline."""
    import argparse
    import json

    import pandas as pd

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsc15-100k"
    p = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, default=data / "yoochoose-clicks-100k_train_full.txt")
    p.add_argument("--test", type=Path, default=data / "yoochoose-clicks-100k_test.txt")
    p.add_argument("--config", choices=CONFIGS, default=CONFIGS[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="0 = torch's / grurec's default")
    p.add_argument("--no-grurec", action="store_true", help="train only the torch model")
    args = p.parse_args(argv)
    train = pd.read_csv(args.train, sep="\t")
    test = pd.read_csv(args.test, sep="\t")
    cfg = dict(_published(args.config), n_epochs=args.epochs, random_state=args.seed,
               num_threads=args.threads)
    out = {}
    m = TorchGRU4Rec(**cfg).fit(train)
    out["torch"] = dict(m.evaluate(test, cutoffs=(5, 20)), history=m.history)
    if not args.no_grurec:
        import grurec

        g = grurec.GRU4Rec(**cfg, show_progress=False).fit(train)
        out["grurec"] = dict(grurec.evaluate(g, test, cutoffs=(5, 20)), history=g.history)
    for impl, r in out.items():
        eps = sum(h["events"] for h in r["history"]) / sum(h["seconds"] for h in r["history"])
        print(f"{args.config} {args.epochs} epochs seed {args.seed} {impl:>6}: "
              f"Recall@20 {r['recall@20']:.4f}  MRR@20 {r['mrr@20']:.4f}  "
              f"Recall@5 {r['recall@5']:.4f}  MRR@5 {r['mrr@5']:.4f}  "
              f"loss {r['history'][-1]['loss']:.4f}  {eps:,.0f} events/s  "
              f"({r['n_events']} test events)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
