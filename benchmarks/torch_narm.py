"""NARM's attention readout on the UserGRU twin, in plain PyTorch (CPU): the
speed twin of ``grurec.NARM`` for benchmarks/bench_train_users.py.

The training algorithm is torch_usergru.py's (GRU4Rec's sampling, losses,
dropout and Adagrad with momentum over T-step windows, a slot taking a new
sequence only at a window boundary); the query of position t is NARM's
readout as docs/narm.md defines it, over the last layer's outputs y_j of
the window's positions j <= t:

    e_tj = v . sigmoid(A1^T y_t + A2^T y_j),  alpha_t = softmax_j(e_tj),
    c_t = sum_j alpha_tj y_j,                  q_t = [y_t ; c_t] W_q

with W_q initialised to [I; 0] and A1, A2, v Glorot-uniform, as
``grurec.NARM`` does. With ``attention_memory=M`` the span also takes up to
M states of the slot's earlier windows of the same sequence, detached
(``grurec.NARM``'s memory: the weights get gradients through them, the GRU
none), kept per slot as [M, B, H] and moved or cleared with the slots. The
four weights are dense parameters of the same Adagrad. It is written as a PyTorch user would (broadcast [T, T, B, A]
scores, masked softmax, einsum) and timed, not checked against grurec's
NARM step for step (padding positions, at a window's end only, read no
state and have no query).

    python benchmarks/bench_train_users.py --model NARM --data yoochoose1_64 --bptt 5 20
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_usergru as tu  # noqa: E402


class TorchNARM(tu.TorchUserGRU):
    """The UserGRU twin with NARM's attention readout (``attention_dim``:
    A, default the last layer's size)."""

    def __init__(self, *, attention_dim: int = 0, attention_memory: int = 0, **kw):
        super().__init__(**kw)
        self.attention_dim = int(attention_dim)
        self.attention_memory = int(attention_memory)
        self._mem = None  # [M, B, H] detached states, the most recent last
        self._mem_n = None  # [B] how many of them belong to the slot's sequence

    def _epoch(self, sd, sampler, lq_in, lq_s):
        self._mem = self._mem_n = None
        return super()._epoch(sd, sampler, lq_in, lq_s)

    def _slots_moved(self, moves, reset, B):
        if self._mem is None:
            return
        for src, dst in moves:
            self._mem[:, dst] = self._mem[:, src]
            self._mem_n[dst] = self._mem_n[src]
        self._mem_n[reset] = 0
        self._mem, self._mem_n = self._mem[:, :B], self._mem_n[:B]

    def init_params(self, n_items: int, rng: np.random.Generator) -> None:
        super().init_params(n_items, rng)
        p = self.get_params()
        H = self.layers[-1]
        A = self.attention_dim or H

        def uniform(shape, fan):
            s = math.sqrt(6.0 / fan)
            return rng.uniform(-s, s, shape).astype(np.float32)

        W_q = np.zeros((2 * H, H), np.float32)
        W_q[:H] = np.eye(H, dtype=np.float32)
        p.update(att_A1=uniform((H, A), H + A), att_A2=uniform((H, A), H + A),
                 att_v=uniform((A,), A + 1), att_W_q=W_q)
        self.set_params(p)

    def _readout(self, x, T, B, vidx, dense):
        H, M = x.shape[1], self.attention_memory
        y = x.view(T, B, H)
        later = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # j > t
        if M == 0:
            keys, hidden = y, later[:, :, None]  # [T(t), T(j), 1]
        else:
            if self._mem is None or self._mem.shape[1] != B:
                self._mem = y.new_zeros(M, B, H)
                self._mem_n = np.zeros(B, np.int64)
            keys = torch.cat([self._mem, y])  # [M + T, B, H]
            # memory row m belongs to the slot's sequence iff m >= M - mem_n
            old = torch.from_numpy(np.arange(M)[:, None] < M - self._mem_n[None, :])  # [M, B]
            hidden = torch.cat([old[None].expand(T, M, B),
                                later[:, :, None].expand(T, T, B)], dim=1)  # [T, M+T, B]
        a1 = y @ dense["att_A1"]  # [T, B, A]
        a2 = keys @ dense["att_A2"]
        e = torch.sigmoid(a1[:, None] + a2[None, :]) @ dense["att_v"]  # [T(t), J, B]
        alpha = torch.softmax(e.masked_fill(hidden, float("-inf")), dim=1)
        c = torch.einsum("tjb,jbh->tbh", alpha, keys)
        q = torch.cat([y, c], dim=2).view(T * B, 2 * H) @ dense["att_W_q"]
        if M:  # the window's valid states (a prefix per slot) join the memory
            v = np.bincount(vidx.numpy() % B, minlength=B)  # valid positions per slot
            full = torch.cat([self._mem, y.detach()])  # [M + T, B, H]
            rows = torch.from_numpy(v[None, :] + np.arange(M)[:, None])  # [M, B]
            self._mem = full.gather(0, rows[:, :, None].expand(M, B, H))
            self._mem_n = np.minimum(M, self._mem_n + v)
        return q.index_select(0, vidx)
