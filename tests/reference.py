"""Plain float64 NumPy references of the math the native kernels implement.

Written from the formulas (Cho et al. 2014; Hidasi et al. 2016), deliberately
simple: no fusing, no in-place tricks. Every C++ kernel is compared to these.
"""
from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru_forward(x, h0, W_ih, W_hh, b, b_hh=None):
    """x (T,B,I), h0 (B,H), W_ih (I,3H), W_hh (H,3H), b (3H,) -> h (T,B,H), cache.
    Without b_hh the reset-before cell (cache rh = r * h_prev); with b_hh (3H,)
    the reset-after (cuDNN) cell, n = tanh(x W_n + b_n + r * (h U_n + b_hh_n))
    (cache rh = h U_n + b_hh_n)."""
    x, h0, W_ih, W_hh, b = (np.asarray(a, np.float64) for a in (x, h0, W_ih, W_hh, b))
    T = x.shape[0]
    H = h0.shape[1]
    Wr, Wz, Wn = W_ih[:, :H], W_ih[:, H : 2 * H], W_ih[:, 2 * H :]
    Ur, Uz, Un = W_hh[:, :H], W_hh[:, H : 2 * H], W_hh[:, 2 * H :]
    br, bz, bn = b[:H], b[H : 2 * H], b[2 * H :]
    c = None if b_hh is None else np.asarray(b_hh, np.float64)
    h = h0
    hs, gates, rhs = [], [], []
    for t in range(T):
        if c is None:
            r = sigmoid(x[t] @ Wr + h @ Ur + br)
            z = sigmoid(x[t] @ Wz + h @ Uz + bz)
            n = np.tanh(x[t] @ Wn + (r * h) @ Un + bn)
            rhs.append(r * h)
        else:
            r = sigmoid(x[t] @ Wr + br + h @ Ur + c[:H])
            z = sigmoid(x[t] @ Wz + bz + h @ Uz + c[H : 2 * H])
            pn = h @ Un + c[2 * H :]
            n = np.tanh(x[t] @ Wn + bn + r * pn)
            rhs.append(pn)
        gates.append(np.concatenate([r, z, n], axis=1))
        h = (1.0 - z) * h + z * n
        hs.append(h)
    return np.stack(hs), (np.stack(gates), np.stack(rhs))


def gru_backward(dh_out, x, h0, W_ih, W_hh, b, b_hh=None):
    """Gradients of sum(h * dh_out) by reverse-mode over the reference forward:
    (dx, dh0, dW_ih, dW_hh, db), plus db_hh for the reset-after cell."""
    x, h0, W_ih, W_hh, b, dh_out = (
        np.asarray(a, np.float64) for a in (x, h0, W_ih, W_hh, b, dh_out)
    )
    hs, (gates, rhs) = gru_forward(x, h0, W_ih, W_hh, b, b_hh)
    T = x.shape[0]
    H = h0.shape[1]
    Ur, Uz, Un = W_hh[:, :H], W_hh[:, H : 2 * H], W_hh[:, 2 * H :]
    dx = np.zeros_like(x)
    dW_ih = np.zeros_like(W_ih)
    dW_hh = np.zeros_like(W_hh)
    db = np.zeros_like(b)
    db_hh = np.zeros(3 * H)
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        hp = h0 if t == 0 else hs[t - 1]
        r, z, n = gates[t][:, :H], gates[t][:, H : 2 * H], gates[t][:, 2 * H :]
        dh = dh_out[t] + carry
        dn = dh * z
        dz = dh * (n - hp)
        dhp = dh * (1.0 - z)
        dan = dn * (1.0 - n**2)
        daz = dz * z * (1.0 - z)
        if b_hh is None:
            drh = dan @ Un.T
            dr = drh * hp
            dhp = dhp + drh * r
            dar = dr * r * (1.0 - r)
            dhp = dhp + dar @ Ur.T + daz @ Uz.T
            dW_hh[:, : 2 * H] += hp.T @ np.concatenate([dar, daz], axis=1)
            dW_hh[:, 2 * H :] += (r * hp).T @ dan
        else:
            pn = rhs[t]
            dar = dan * pn * r * (1.0 - r)
            dp = np.concatenate([dar, daz, dan * r], axis=1)
            dhp = dhp + dp @ W_hh.T
            dW_hh += hp.T @ dp
            db_hh += dp.sum(0)
        dA = np.concatenate([dar, daz, dan], axis=1)
        dx[t] = dA @ W_ih.T
        dW_ih += x[t].T @ dA
        db += dA.sum(0)
        carry = dhp
    if b_hh is None:
        return dx, carry, dW_ih, dW_hh, db
    return dx, carry, dW_ih, dW_hh, db, db_hh


def elu(x, alpha):
    return x if alpha <= 0 else np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


def loss_rows(kind, R, qcorr=None, elu_param=0.0, bpreg=0.0):
    """Per-row losses of the published formulas; row i's target is column i.

    cross-entropy: -log softmax(r - qcorr)_i
    bpr-max (Hidasi & Karatzoglou 2018): -log sum_j s_j sigma(r_i - r_j)
        + bpreg * sum_j s_j r_j^2, s = softmax over the negatives j != i
    top1-max: sum_j s_j (sigma(r_j - r_i) + sigma(r_j^2))
    """
    R = elu(np.asarray(R, np.float64), elu_param)
    B, C = R.shape
    out = np.empty(B)
    for i in range(B):
        r = R[i]
        if kind == "cross-entropy":
            z = r - (0 if qcorr is None else np.asarray(qcorr, np.float64))
            m = z.max()
            out[i] = np.log(np.exp(z - m).sum()) + m - z[i]
            continue
        neg = np.delete(r, i)
        s = np.exp(neg - neg.max())
        s /= s.sum()
        if kind == "bpr-max":
            out[i] = -np.log((s * sigmoid(r[i] - neg)).sum() + 1e-24) + bpreg * (s * neg**2).sum()
        else:
            out[i] = (s * (sigmoid(neg - r[i]) + sigmoid(neg**2))).sum()
    return out


def model_state(m, items):
    """A GRU4Rec model's last-layer state after the item indices ``items``
    (from a zero state), by ``gru_forward`` in float64 over every layer."""
    p = {k: v.astype(np.float64) for k, v in m.params.items()}
    hs = [np.zeros((1, H)) for H in m.layers]
    for it in items:
        x = {0: lambda: np.eye(len(m.item_ids))[[it]], 1: lambda: p["emb"][[it]],
             2: lambda: p["W_y"][[it]]}[m.mode]()
        for l in range(len(m.layers)):
            h, _ = gru_forward(x[None], hs[l], p[f"W_ih{l}"], p[f"W_hh{l}"], p[f"b{l}"],
                               p.get(f"bh{l}"))
            hs[l] = h[0]
            x = hs[l]
    return hs[-1][0]


def session_layout(rows):
    """Plain-Python layout of (session, item, time) rows, as ``to_sessions``
    must produce it: sessions by (first time, id), events by (time, input
    order), vocabulary = sorted unique item ids. Returns (offsets, items,
    vocab, session order, times)."""
    by = {}
    for k, (s, i, t) in enumerate(rows):
        by.setdefault(s, []).append((t, k, i))
    order = sorted(by, key=lambda s: (min(t for t, _, _ in by[s]), s))
    vocab = sorted({i for _, i, _ in rows})
    items, times, offsets = [], [], [0]
    for s in order:
        for t, _, i in sorted(by[s]):
            items.append(vocab.index(i))
            times.append(t)
        offsets.append(len(items))
    return offsets, items, vocab, order, times
