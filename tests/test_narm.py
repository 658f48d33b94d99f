"""NARM's attention readout (cpp/core/attention.hpp), checked end to end
against a float64 NumPy reference, as tests/test_bptt.py checks truncated
BPTT: the reference replays the session-parallel windows, takes each
window's gradient by central finite differences of its loss (attention
included: every query reads the states of its window, so the differences go
through the attention into the GRU), and steps plain SGD; the native trainer
runs the same epoch with Adagrad turned into exact SGD. Every SIMD level, 1
and 2 threads. Then inference (queries after every prefix, unknown items,
spans shorter than a session) against the same formulas.
"""
from __future__ import annotations

import numpy as np
import pytest

import grurec
from grurec import _core
from reference import gru_forward, loss_rows
import test_bptt as bptt
from test_bptt import SEQS, _forward_window, _init, _layout


def _attend(p, Y, mem=None):
    """Queries [n, D] after each position of one sequence's states Y [n, H]
    (spans: the whole sequence), optionally preceded by memory states mem
    [m, H] that every position also reads."""
    K = Y if mem is None else np.concatenate([mem, Y])
    m = 0 if mem is None else len(mem)
    a1, a2 = Y @ p["att_A1"], K @ p["att_A2"]
    Q = []
    for t in range(len(Y)):
        e = (1 / (1 + np.exp(-(a1[t] + a2[:m + t + 1])))) @ p["att_v"]
        a = np.exp(e - e.max())
        a /= a.sum()
        c = a @ K[:m + t + 1]
        Q.append(np.concatenate([Y[t], c]) @ p["att_W_q"])
    return np.array(Q)


def _window_loss(p, states, ins, tgs, cfg, wts=None):
    """test_bptt's window loss with the attention readout between the GRU
    stack and the scores (query of position t from the window's states 0..t
    and, with cfg["M"] > 0, the slot's memory: the states of its sequence's
    last M earlier positions, from earlier windows, constants here)."""
    assert wts is None  # no weighted cases here
    T, B = ins.shape
    M = cfg.get("M", 0)
    L = len(cfg["layers"])
    Y, hs = _forward_window(p, states[:L], ins, cfg)
    mem, cnt = (states[L], states[L + 1]) if M else (None, None)

    def keys(b):
        return None if not M else mem[b, M - int(cnt[b]):]
    q, tg = [], []
    for t in range(T):  # rows in the trainer's order: t * B + b
        for b in range(B):
            if tgs[t, b] >= 0:
                q.append(_attend(p, Y[:t + 1, b], keys(b))[t])
                tg.append(tgs[t, b])
    if M:  # the window's valid states (a prefix) join the memory, the last M kept
        new_mem, new_cnt = np.zeros_like(mem), np.zeros_like(cnt)
        for b in range(B):
            rows = np.concatenate([mem[b, M - int(cnt[b]):], Y[ins[:, b] >= 0, b]])[-M:]
            new_mem[b, M - len(rows):] = rows
            new_cnt[b] = len(rows)
        hs = list(hs) + [new_mem, new_cnt]
    if not tg:
        return 0.0, hs
    q, tg = np.array(q), np.array(tg)
    R = q @ p["W_y"][tg].T + p["b_y"][tg]
    return loss_rows(cfg["loss"], R, None, cfg["elu"], cfg["bpreg"]).sum(), hs


def reference_epoch(p, seqs, cfg):
    """test_bptt.reference_epoch with the attention in the window loss."""
    M, H = cfg.get("M", 0), cfg["layers"][-1]
    extra = (lambda B: [np.zeros((B, M, H)), np.zeros(B)]) if M else None
    return bptt.reference_epoch(p, seqs, cfg, _window_loss, extra)


def _att_init(rng, p, H, A):
    p = dict(p)
    # Large enough that the sigmoids differ across positions: A1's gradient
    # is a second-order effect (A1^T h_t is common to every j of a softmax).
    p["att_A1"] = rng.uniform(-2.0, 2.0, (H, A))
    p["att_A2"] = rng.uniform(-2.0, 2.0, (H, A))
    p["att_v"] = rng.uniform(-3.0, 3.0, A)
    p["att_W_q"] = rng.uniform(-0.6, 0.6, (2 * H, H))
    return {k: v.astype(np.float32).astype(np.float64) for k, v in p.items()}


def native_epoch(p, seqs, cfg, num_threads):
    return bptt.native_epoch(p, seqs, cfg, num_threads,
                             readout={k: f"att_{k}" for k in ("A1", "A2", "v", "W_q")},
                             readout_options={"memory": cfg.get("M", 0)})


CONFIGS = [
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=4, cell="ra", A=3),
    dict(mode=1, layers=[3, 4], loss="bpr-max", elu=0.5, bpreg=0.3, bptt=3, cell="rb", A=2),
    dict(mode=0, layers=[4], loss="top1-max", elu=0.0, bpreg=0.0, bptt=7, cell="ra", A=5),
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=1, cell="ra", A=3),
    # The memory: earlier windows' states read as constants.
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=1, cell="ra", A=3,
         M=2),
    dict(mode=1, layers=[3, 4], loss="bpr-max", elu=0.5, bpreg=0.3, bptt=2, cell="rb", A=2,
         M=3),
    dict(mode=0, layers=[4], loss="top1-max", elu=0.0, bpreg=0.0, bptt=3, cell="ra", A=3,
         M=1),
]


@pytest.fixture(scope="module", params=range(len(CONFIGS)),
                ids=lambda i: "{mode}-{loss}-T{bptt}-A{A}".format(**CONFIGS[i])
                + "-M{}".format(CONFIGS[i].get("M", 0)))
def case(request):
    cfg = dict(CONFIGS[request.param], batch_size=3)
    rng = np.random.default_rng(100 + request.param)
    p = _init(rng, 7, cfg["layers"], cfg["mode"], 3, cfg["cell"] == "ra")
    p = _att_init(rng, p, cfg["layers"][-1], cfg["A"])
    return cfg, p, reference_epoch(p, SEQS, cfg)


@pytest.mark.parametrize("level", grurec.available_simd_levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_attention_epoch_matches_reference(case, level, threads):
    # T = 1: one state to attend to, alpha = 1, nothing reaches A1, A2, v.
    # The attention weights' updates are small: also relative to their own size.
    bptt.check_native_epoch(
        case, level, threads, native_epoch,
        still=lambda cfg, k: (cfg["bptt"] == 1 and not cfg.get("M")
                              and k in ("att_A1", "att_A2", "att_v")),
        rel=(2e-2, lambda k: k.startswith("att_")))


def test_the_reference_sees_the_attention():
    """Without the attention block the reference moves other weights: the
    test above would notice a readout that did nothing."""
    cfg = dict(CONFIGS[0], batch_size=3)
    rng = np.random.default_rng(0)
    p = _att_init(rng, _init(rng, 7, cfg["layers"], 2, 3, True), 4, 3)
    a, _ = reference_epoch(p, SEQS, cfg)
    q = dict(p, att_v=np.zeros(3))  # uniform attention
    b, _ = reference_epoch(q, SEQS, cfg)
    assert not np.allclose(a["W_hh0"], b["W_hh0"])
    assert np.abs(a["att_A1"] - p["att_A1"]).max() > 1e-6


# ------------------------------------------------------------------- inference
def _ref_queries(p, layers, mode, seq, window, memory=0):
    """Queries after every position of one sequence (item indices, -1 =
    unknown: no position), spans of `window` plus `memory` earlier positions."""
    hs = [np.zeros(H) for H in layers]
    Y = []
    n_items = len(p["b_y"])
    for it in seq:
        if it < 0:
            continue
        x = (np.eye(n_items)[it] if mode == 0 else (p["emb"] if mode == 1 else p["W_y"])[it])
        for l in range(len(layers)):
            h, _ = gru_forward(x[None, None], hs[l][None], p[f"W_ih{l}"], p[f"W_hh{l}"],
                               p[f"b{l}"], p.get(f"bh{l}"))
            hs[l] = h[0, 0]
            x = hs[l]
        Y.append(hs[-1])
    Y = np.array(Y)
    Q = []
    for t in range(len(Y)):
        s0 = max(0, (t // window) * window - memory) if window > 0 else 0
        Q.append(_attend(p, Y[s0:t + 1])[-1])
    return np.array(Q)


@pytest.mark.parametrize("mode,layers,window,memory", [(2, [5], 0, 0), (1, [4, 5], 3, 0),
                                                       (0, [5], 2, 0), (2, [5], 1, 2),
                                                       (1, [4, 5], 3, 1), (0, [5], 2, 9)])
def test_inference_queries_match_the_formulas(simd, mode, layers, window, memory):
    rng = np.random.default_rng(7)
    p = _att_init(rng, _init(rng, 9, layers, mode, 4, True), layers[-1], 3)
    seqs = [[1, 2, 3, 4, 5, 6, 7], [8, -1, 0, 0], [3], [-1, 2, 5, -1, 6, 1, 1, 2], [4, 4]]
    offsets, items = _layout(seqs)
    w = {k: v.astype(np.float32) for k, v in p.items()}
    for nt in (1, 2):
        allp = _core.session_states(w, layers, mode, offsets, items, True, nt, readout=True,
                                    window=window, memory=memory)
        last = _core.session_states(w, layers, mode, offsets, items, False, nt, readout=True,
                                    window=window, memory=memory)
        for s, seq in enumerate(seqs):
            Q = _ref_queries(p, layers, mode, seq, window, memory)
            known = np.cumsum(np.asarray(seq) >= 0) - 1  # last known position <= t
            for t in range(len(seq) - 1):
                want = Q[known[t]] if known[t] >= 0 else np.zeros(layers[-1])
                np.testing.assert_allclose(allp[offsets[s] - s + t], want, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(last[s], Q[-1], rtol=1e-4, atol=1e-5)


def test_drop_one_queries_equal_the_sequences_without_each_click(simd):
    rng = np.random.default_rng(3)
    for mode, layers, readout, window, memory in [
            (2, [6], True, 4, 0), (0, [5, 6], False, 0, 0), (1, [6], True, 0, 0),
            (2, [6], False, 0, 0), (2, [6], True, 2, 3)]:
        p = _init(rng, 11, layers, mode, 4, True)
        if readout:
            p = _att_init(rng, p, layers[-1], 3)
        w = {k: v.astype(np.float32) for k, v in p.items()}
        seq = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5], np.int32)
        q, alpha = _core.drop_one_queries(w, layers, mode, seq, readout=readout, window=window,
                                          memory=memory)
        variants = [seq] + [np.delete(seq, i) for i in range(len(seq))]
        offsets, items = _layout(variants)
        want = _core.session_states(w, layers, mode, offsets, items, False, 1,
                                    readout=readout, window=window, memory=memory)
        np.testing.assert_allclose(q, want, rtol=1e-5, atol=1e-6)
        assert (alpha is None) == (not readout)
        if readout:
            span = max(0, (len(seq) - 1) // window * window - memory) if window else 0
            assert alpha[:span].sum() == 0 and alpha[span:].sum() == pytest.approx(1, rel=1e-5)


# ---------------------------------------------------------------------- model
def test_narm_learns_and_starts_as_gru4rec():
    from grurec.synthetic import generate_sessions

    tr = generate_sessions(n_events=3000, n_items=120, mean_length=5, signal=0.8, seed=11)
    kw = dict(layers=[16], batch_size=8, n_sample=16, num_threads=1, random_state=0,
              show_progress=False)
    m0 = grurec.NARM(n_epochs=0, **kw).fit(tr)
    assert set(m0.params) >= {"att_A1", "att_A2", "att_v", "att_W_q"}
    # Untrained: the query is h_t (W_q = [I; 0]), GRU4Rec's readout.
    seqs = [list(tr.ItemId.unique()[:4])]
    idx = [m0._lookup(s) for s in seqs]
    g = grurec.GRU4Rec(n_epochs=0, **kw).fit(tr)
    g.params = {k: v for k, v in m0.params.items() if not k.startswith("att_")}
    g._opt = {k: m0._opt[k] for k in g.params}
    np.testing.assert_allclose(m0.score_prefixes(idx), g.score_prefixes(idx), rtol=1e-5,
                               atol=1e-6)
    m = grurec.NARM(n_epochs=3, **kw).fit(tr)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    assert not np.allclose(m.params["att_A1"], m0.params["att_A1"])
    assert not np.allclose(m.params["att_W_q"][16:], 0)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="bptt"):
        grurec.NARM(bptt=0)
    with pytest.raises(ValueError, match="attention_dim"):
        grurec.NARM(attention_dim=0)
    with pytest.raises(ValueError, match="attention_memory"):
        grurec.NARM(attention_memory=-1)
    with pytest.raises(ValueError, match="attention_adagrad_init"):
        grurec.NARM(attention_adagrad_init=-1.0)


def test_attention_adagrad_init_sets_only_the_readouts_accumulators():
    from grurec.synthetic import generate_sessions

    tr = generate_sessions(n_events=600, n_items=40, mean_length=5, seed=2)
    kw = dict(layers=[8], batch_size=8, n_sample=8, num_threads=1, random_state=0,
              show_progress=False, bptt=1, attention_memory=3, n_epochs=0)
    m = grurec.NARM(attention_adagrad_init=1.5, **kw).fit(tr)
    for k, acc in m._opt.items():
        assert np.all(acc == (1.5 if k.startswith("att_") else 0.0)), k
    # ... and the first updates then differ (smaller) from those of 0.
    a = grurec.NARM(**dict(kw, n_epochs=1)).fit(tr)
    b = grurec.NARM(attention_adagrad_init=1.5, **dict(kw, n_epochs=1)).fit(tr)
    w0 = m.params["att_W_q"]
    assert np.abs(b.params["att_W_q"] - w0).max() < np.abs(a.params["att_W_q"] - w0).max()


def test_memory_lets_a_one_step_window_attend(tmp_path):
    """bptt=1 with a memory: the attention weights learn (with bptt=1 and no
    memory they cannot: one state to attend to), the model's queries are the
    spans' (window 1 + memory), and the setting survives save/load."""
    from grurec.synthetic import generate_sessions

    tr = generate_sessions(n_events=3000, n_items=120, mean_length=6, signal=0.8, seed=5)
    kw = dict(layers=[16], batch_size=8, n_sample=16, num_threads=1, random_state=0,
              show_progress=False, bptt=1, n_epochs=2)
    m0 = grurec.NARM(**kw).fit(tr)
    m = grurec.NARM(attention_memory=4, **kw).fit(tr)
    assert np.array_equal(m0.params["att_A1"], grurec.NARM(**dict(kw, n_epochs=0)).fit(
        tr).params["att_A1"])
    assert not np.allclose(m.params["att_A2"], m0.params["att_A2"])
    seq = list(tr.ItemId.unique()[:9])
    idx = np.asarray(m._lookup(seq), np.int32)
    params, mode = m._input_params()
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    want = _ref_queries(p64, m.layers, mode, idx, 1, 4)[-1]
    got = m._states(np.array([0, len(idx)], np.int64), idx)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    m.save(tmp_path / "m.grurec")
    m2 = grurec.load(tmp_path / "m.grurec")
    assert m2.attention_memory == 4
    np.testing.assert_array_equal(m2.recommend([seq], k=5)[0], m.recommend([seq], k=5)[0])
    e = m.explain(seq, k=3)
    assert e.attention[:-5].sum() == 0 and e.attention[-5:].sum() == pytest.approx(1, rel=1e-5)
