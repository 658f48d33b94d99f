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
``grurec.NARM`` does. The four weights are dense parameters of the same
Adagrad. It is written as a PyTorch user would (broadcast [T, T, B, A]
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

    def __init__(self, *, attention_dim: int = 0, **kw):
        super().__init__(**kw)
        self.attention_dim = int(attention_dim)

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
        H = x.shape[1]
        y = x.view(T, B, H)
        a1 = y @ dense["att_A1"]  # [T, B, A]
        a2 = y @ dense["att_A2"]
        e = torch.sigmoid(a1[:, None] + a2[None, :]) @ dense["att_v"]  # [T(t), T(j), B]
        later = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # j > t
        alpha = torch.softmax(e.masked_fill(later[:, :, None], float("-inf")), dim=1)
        c = torch.einsum("tjb,jbh->tbh", alpha, y)
        q = torch.cat([y, c], dim=2).view(T * B, 2 * H) @ dense["att_W_q"]
        return q.index_select(0, vidx)
