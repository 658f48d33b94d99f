"""Truncated back-propagation through time (UserGRU's training, GRU4Rec's
at T = 1), checked end to end against a float64 NumPy reference.

The reference replays the session-parallel slots (windows of T steps,
padding past a sequence's end, state carried between windows, reset for a
new sequence, slots retiring) and takes each window's gradient by central
finite differences of its loss, computed from the formulas. The native
trainer runs the same epoch with Adagrad turned into plain SGD: every
accumulator starts at 2^40, so sqrt(acc + g^2) is exactly 2^20 for the
small gradients here, and learning_rate = eta * 2^20 makes each step
eta * g. Its weights after the epoch must match the reference's, at every
SIMD level and at 1 and 2 threads. n_sample = 0 (in-batch negatives only)
and no dropout make the loss deterministic.
"""
from __future__ import annotations

import numpy as np
import pytest

import grurec
from grurec import _core
from reference import gru_forward, loss_rows

ACC0 = 2.0 ** 40
ETA = 0.5


def _layout(seqs):
    offsets = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
    items = np.concatenate(seqs).astype(np.int32)
    return offsets, items


def _init(rng, n_items, layers, mode, emb, reset_after):
    p = {}
    in_dim = {0: n_items, 1: emb, 2: layers[-1]}[mode]
    if mode == 1:
        p["emb"] = rng.uniform(-0.5, 0.5, (n_items, emb))
    for l, H in enumerate(layers):
        p[f"W_ih{l}"] = rng.uniform(-0.5, 0.5, (in_dim, 3 * H))
        p[f"W_hh{l}"] = rng.uniform(-0.5, 0.5, (H, 3 * H))
        p[f"b{l}"] = rng.uniform(-0.1, 0.1, 3 * H)
        if reset_after and (l > 0 or mode != 0):
            p[f"bh{l}"] = rng.uniform(-0.1, 0.1, 3 * H)
        in_dim = H
    p["W_y"] = rng.uniform(-0.5, 0.5, (n_items, layers[-1]))
    p["b_y"] = rng.uniform(-0.1, 0.1, n_items)
    return {k: v.astype(np.float32).astype(np.float64) for k, v in p.items()}


def _weights(seqs):
    """Per-event loss weights of the weighted cases (the value column)."""
    n = sum(len(s) for s in seqs)
    return (0.25 + 0.5 * (np.arange(n) % 4)).astype(np.float32)


def _forward_window(p, states, ins, cfg):
    """The GRU stack over a window: (top-layer outputs Y [T, B, H], final
    states of every layer). Padding (-1) reads a zero input."""
    T, B = ins.shape
    n_items = len(p["b_y"])
    hs = [s.copy() for s in states]
    Y = np.zeros((T, B, cfg["layers"][-1]))
    for t in range(T):
        it = ins[t]
        ok = it >= 0
        if cfg["mode"] == 0:
            x = np.zeros((B, n_items))
            x[np.flatnonzero(ok), it[ok]] = 1.0
        else:
            table = p["emb"] if cfg["mode"] == 1 else p["W_y"]
            x = np.where(ok[:, None], table[np.maximum(it, 0)], 0.0)
        for l in range(len(cfg["layers"])):
            h, _ = gru_forward(x[None], hs[l], p[f"W_ih{l}"], p[f"W_hh{l}"], p[f"b{l}"],
                               p.get(f"bh{l}"))
            hs[l] = h[0]
            x = hs[l]
        Y[t] = hs[-1]
    return Y, hs


def _window_loss(p, states, ins, tgs, cfg, wts=None):
    """(sum of the per-position losses, final states of every layer)."""
    Y, hs = _forward_window(p, states, ins, cfg)
    Q = Y.reshape(-1, Y.shape[-1])  # row t*B + b
    tg = tgs.reshape(-1)
    q, tg = Q[tg >= 0], tg[tg >= 0]
    if len(tg) == 0:
        return 0.0, hs
    R = q @ p["W_y"][tg].T + p["b_y"][tg]
    per_row = loss_rows(cfg["loss"], R, None, cfg["elu"], cfg["bpreg"])
    if wts is not None:
        per_row = per_row * wts.reshape(-1)[wts.reshape(-1) >= 0]
    return per_row.sum(), hs


def _fd_grad(f, p, h=1e-6):
    g = {}
    for k, v in p.items():
        gk = np.zeros_like(v)
        flat, gflat = v.reshape(-1), gk.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            fp = f(p)
            flat[i] = old - h
            fm = f(p)
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * h)
        g[k] = gk
    return g


def reference_epoch(p, seqs, cfg, window_loss=None, extra_states=None):
    """SGD (step ETA * gradient) over one epoch of windows; returns the
    weights and the summed per-position loss. ``window_loss(p, states, ins,
    tgs, cfg, wts)`` defaults to the GRU stack's (test_narm passes its
    attention readout's). ``extra_states(B)``: more per-slot arrays (first
    axis B) after the layers' states, moved with the slots and zeroed on a
    reset like them (test_narm's attention memory)."""
    window_loss = window_loss or _window_loss
    p = {k: v.copy() for k, v in p.items()}
    B, T = min(cfg["batch_size"], len(seqs)), cfg["bptt"]
    scale = 1.0 / (cfg["batch_size"] * T)
    local, pos, nxt = list(range(B)), [0] * B, B
    starts = np.cumsum([0] + [len(s) for s in seqs])
    W = _weights(seqs) if cfg.get("weighted") else None
    states = [np.zeros((B, H)) for H in cfg["layers"]]
    if extra_states is not None:
        states += extra_states(B)
    total = 0.0
    while B > 0:
        ins = np.full((T, B), -1)
        tgs = np.full((T, B), -1)
        wts = np.full((T, B), -1.0) if W is not None else None
        for b in range(B):
            s = seqs[local[b]]
            for t in range(T):
                q = pos[b] + t
                if q + 1 < len(s):
                    ins[t, b], tgs[t, b] = s[q], s[q + 1]
                    if wts is not None:
                        wts[t, b] = W[starts[local[b]] + q + 1]
        if cfg["loss"] != "cross-entropy" and (tgs >= 0).sum() < 2:
            # A ranking loss without a negative column: the state only advances.
            new_states = window_loss(p, states, ins, np.full_like(tgs, -1), cfg, None)[1]
        else:
            loss, new_states = window_loss(p, states, ins, tgs, cfg, wts)
            total += loss
            g = _fd_grad(lambda w: window_loss(w, states, ins, tgs, cfg, wts)[0] * scale, p)
            for k in p:
                p[k] -= ETA * g[k]
        # The scheduler's advance: move on T events, take a new sequence or retire.
        reset = [False] * B
        moves = []
        Bn, b = B, 0
        while b < Bn:
            pos[b] += T
            live = pos[b] + 1 < len(seqs[local[b]])
            r = False
            if not live and nxt < len(seqs):
                local[b], pos[b], nxt = nxt, 0, nxt + 1
                live = r = True
            reset[b] = r
            if live:
                b += 1
                continue
            Bn -= 1
            if b == Bn:
                break
            local[b], pos[b] = local[Bn], pos[Bn]
            moves.append((Bn, b))
        for st in new_states:
            for fr, to in moves:
                st[to] = st[fr]
            for bb in range(Bn):
                if reset[bb]:
                    st[bb] = 0.0
        states = [st[:Bn].copy() for st in new_states]
        local, pos, B = local[:Bn], pos[:Bn], Bn
    return p, total


def native_epoch(p, seqs, cfg, num_threads, readout=None, readout_options=None):
    """The native trainer's epoch (Adagrad as exact SGD, see the module
    docstring); ``readout``: names of attention weights in ``p`` (test_narm)."""
    layers = cfg["layers"]
    w = {k: v.astype(np.float32) for k, v in p.items()}
    acc = {k: np.full_like(v, ACC0) for k, v in w.items()}

    def trip(k):
        return (w[k], acc[k], None) if k in w else None

    offsets, items = _layout(seqs)
    n_items = len(p["b_y"])
    pop = np.bincount(items, minlength=n_items).astype(np.float32) + 1
    conf = dict(loss=cfg["loss"], elu_param=cfg["elu"], bpreg=cfg["bpreg"], logq=0.0,
                batch_size=cfg["batch_size"], n_sample=0, sample_alpha=0.5, mode=cfg["mode"],
                dropout_p_embed=0.0, dropout_p_hidden=0.0, learning_rate=ETA * 2.0 ** 20,
                momentum=0.0, seed=1, num_threads=num_threads, workers=1, bptt=cfg["bptt"],
                weights=_weights(seqs) if cfg.get("weighted") else None)
    L = len(layers)
    extra = {} if readout is None else {"readout": dict(
        {k: trip(v) for k, v in readout.items()}, **(readout_options or {}))}
    r = _core.train_epoch([trip(f"W_ih{l}") for l in range(L)],
                          [trip(f"W_hh{l}") for l in range(L)],
                          [trip(f"b{l}") for l in range(L)],
                          [trip(f"bh{l}") for l in range(L)],
                          trip("W_y"), trip("b_y"), trip("emb"), conf, offsets, items, pop,
                          None, **extra)
    return w, r


# Users of different lengths (padding inside windows, slots taking new users
# and retiring), repeated items (duplicate candidate columns).
SEQS = [[0, 1, 2, 3, 4, 5, 6], [2, 3], [4, 0, 4, 1, 6], [5, 6, 5], [1, 2, 3, 0],
        [6, 5, 4, 3, 2, 1], [3, 3, 0]]
CONFIGS = [
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=3, cell="ra"),
    dict(mode=2, layers=[4], loss="bpr-max", elu=0.5, bpreg=0.3, bptt=4, cell="ra"),
    dict(mode=1, layers=[3, 4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=3, cell="rb"),
    dict(mode=0, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=2, cell="ra"),
    dict(mode=2, layers=[4], loss="top1-max", elu=0.0, bpreg=0.0, bptt=5, cell="rb"),
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=1, cell="ra"),
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=3, cell="ra",
         weighted=True),
    dict(mode=2, layers=[4], loss="bpr-max", elu=0.5, bpreg=0.3, bptt=1, cell="ra",
         weighted=True),
]


@pytest.fixture(params=range(len(CONFIGS)), ids=lambda i: "{mode}-{loss}-T{bptt}-{cell}".format(
    **CONFIGS[i]) + f"-L{len(CONFIGS[i]['layers'])}" + ("-weighted" if CONFIGS[i].get("weighted")
                                                       else ""))
def case(request):
    cfg = dict(CONFIGS[request.param], batch_size=3)
    rng = np.random.default_rng(request.param)
    p = _init(rng, 7, cfg["layers"], cfg["mode"], 3, cfg["cell"] == "ra")
    return cfg, p, reference_epoch(p, SEQS, cfg)


def check_native_epoch(case, level, threads, native=None, still=None, rel=None):
    """The native epoch at SIMD ``level`` and ``threads`` against the
    reference's (``case`` = (cfg, p0, (p_ref, loss_ref))): status, events,
    loss, and every table's update (rtol 2e-3, atol 2e-6). Every table must
    move in the reference (the test exercises it) except the biases and
    those ``still(cfg, name)`` names. ``rel`` = (factor, names): those
    tables' updates also within factor x their largest, so that a small but
    wrong gradient cannot hide under atol. ``native``: the epoch function
    (default this file's native_epoch; test_narm and test_bidir pass theirs)."""
    cfg, p0, (p_ref, loss_ref) = case
    old = grurec.simd_level()
    grurec.set_simd_level(level)
    try:
        w, r = (native or native_epoch)(p0, SEQS, cfg, threads)
    finally:
        grurec.set_simd_level(old)
    assert r["status"] == "done"
    assert r["events"] == sum(len(s) - 1 for s in SEQS)
    assert r["loss_sum"] == pytest.approx(loss_ref, rel=1e-4)
    for k in p0:
        d_nat = w[k].astype(np.float64) - p0[k]
        d_ref = p_ref[k] - p0[k]
        may_stay = k.startswith("b") or (still is not None and still(cfg, k))
        assert np.abs(d_ref).max() > 0 or may_stay, k
        np.testing.assert_allclose(d_nat, d_ref, rtol=2e-3, atol=2e-6, err_msg=k)
        if rel is not None and rel[1](k):
            tol = rel[0] * np.abs(d_ref).max() + 3e-7
            np.testing.assert_allclose(d_nat, d_ref, rtol=0, atol=tol, err_msg=k)


@pytest.mark.parametrize("level", grurec.available_simd_levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_bptt_epoch_matches_reference(case, level, threads):
    check_native_epoch(case, level, threads)


def test_padding_and_reset_matter():
    """The reference itself distinguishes what it claims to test: a longer
    window (more BPTT) and a different user order give other weights."""
    cfg = dict(CONFIGS[0], batch_size=3)
    p = _init(np.random.default_rng(0), 7, cfg["layers"], 2, 3, True)
    a, _ = reference_epoch(p, SEQS, cfg)
    b, _ = reference_epoch(p, SEQS, dict(cfg, bptt=1))
    c, _ = reference_epoch(p, SEQS[::-1], cfg)
    assert not np.allclose(a["W_hh0"], b["W_hh0"])
    assert not np.allclose(a["W_hh0"], c["W_hh0"])
