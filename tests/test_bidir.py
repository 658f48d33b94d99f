"""The bidirectional readout (cpp/core/bidir.hpp, grurec.BiGRU4Rec), checked
end to end against a float64 NumPy reference, as tests/test_bptt.py checks
truncated BPTT and tests/test_narm.py the attention: the reference replays
the session-parallel windows, takes each window's gradient by central finite
differences of its loss (through the forward GRU stack, the reversed GRU
over every position's span and the loss: each query reads its span's
states backwards, so the differences reach every forward state a span
read), and steps plain SGD; the native trainer runs the same epoch with
Adagrad turned into exact SGD. Every SIMD level, 1 and 2 threads. Then
inference (queries after every prefix, unknown items, spans shorter than a
session, session embeddings, leave-one-out queries) against the same
formulas, and the untrained model against GRU4Rec.
"""
from __future__ import annotations

import numpy as np
import pytest

import grurec
from grurec import _core
from reference import gru_forward, loss_rows
import test_bptt as bptt
from test_bptt import SEQS, _forward_window, _init, _layout


def _reverse(p, Y):
    """The reversed GRU's final state after reading Y [n, H] from its last
    row to its first, from a zero state."""
    Hr = p["bi_W_hh"].shape[0]
    h, _ = gru_forward(Y[::-1][:, None], np.zeros((1, Hr)), p["bi_W_ih"], p["bi_W_hh"],
                       p["bi_b"], p["bi_bh"])
    return h[-1, 0]


def _query(p, Y):
    """The query after the last row of a span's states Y [n, H]."""
    return np.concatenate([Y[-1], _reverse(p, Y)]) @ p["bi_W_q"]


def _window_loss(p, states, ins, tgs, cfg, wts=None):
    """test_bptt's window loss with the bidirectional readout between the GRU
    stack and the scores (position t's query reads the window's states t..0)."""
    assert wts is None
    T, B = ins.shape
    Y, hs = _forward_window(p, states, ins, cfg)
    q, tg = [], []
    for t in range(T):  # rows in the trainer's order: t * B + b
        for b in range(B):
            if tgs[t, b] >= 0:
                q.append(_query(p, Y[:t + 1, b]))
                tg.append(tgs[t, b])
    if not tg:
        return 0.0, hs
    q, tg = np.array(q), np.array(tg)
    R = q @ p["W_y"][tg].T + p["b_y"][tg]
    return loss_rows(cfg["loss"], R, None, cfg["elu"], cfg["bpreg"]).sum(), hs


def reference_epoch(p, seqs, cfg):
    return bptt.reference_epoch(p, seqs, cfg, _window_loss)


def _bi_init(rng, p, H, Hr):
    p = dict(p)
    p["bi_W_ih"] = rng.uniform(-0.8, 0.8, (H, 3 * Hr))
    p["bi_W_hh"] = rng.uniform(-0.8, 0.8, (Hr, 3 * Hr))
    p["bi_b"] = rng.uniform(-0.2, 0.2, 3 * Hr)
    p["bi_bh"] = rng.uniform(-0.2, 0.2, 3 * Hr)
    p["bi_W_q"] = rng.uniform(-0.6, 0.6, (H + Hr, H))
    return {k: v.astype(np.float32).astype(np.float64) for k, v in p.items()}


NAMES = {"W_ih_r": "bi_W_ih", "W_hh_r": "bi_W_hh", "b_r": "bi_b", "bh_r": "bi_bh",
         "W_q": "bi_W_q"}


def native_epoch(p, seqs, cfg, num_threads):
    return bptt.native_epoch(p, seqs, cfg, num_threads, readout=NAMES)


CONFIGS = [
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=4, cell="ra", Hr=3),
    dict(mode=1, layers=[3, 4], loss="bpr-max", elu=0.5, bpreg=0.3, bptt=3, cell="rb", Hr=4),
    dict(mode=0, layers=[4], loss="top1-max", elu=0.0, bpreg=0.0, bptt=6, cell="ra", Hr=2),
    dict(mode=2, layers=[4], loss="cross-entropy", elu=0.0, bpreg=0.0, bptt=1, cell="ra", Hr=3),
]


@pytest.fixture(scope="module", params=range(len(CONFIGS)),
                ids=lambda i: "{mode}-{loss}-T{bptt}-Hr{Hr}".format(**CONFIGS[i]))
def case(request):
    cfg = dict(CONFIGS[request.param], batch_size=3)
    rng = np.random.default_rng(200 + request.param)
    p = _init(rng, 7, cfg["layers"], cfg["mode"], 3, cfg["cell"] == "ra")
    p = _bi_init(rng, p, cfg["layers"][-1], cfg["Hr"])
    return cfg, p, reference_epoch(p, SEQS, cfg)


@pytest.mark.parametrize("level", grurec.available_simd_levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_bidir_epoch_matches_reference(case, level, threads):
    # Every update also relative to its table's largest: a small but wrong
    # gradient (one that drops a path) cannot hide under atol.
    bptt.check_native_epoch(case, level, threads, native_epoch, rel=(1e-2, lambda k: True))


def test_the_reference_sees_the_reversed_gru():
    """With the reversed half of W_q zero (nothing flows through the reversed
    GRU until W_q learns it) the forward weights move differently: the epoch
    test above would notice a readout that did nothing."""
    cfg = dict(CONFIGS[0], batch_size=3)
    rng = np.random.default_rng(0)
    p = _bi_init(rng, _init(rng, 7, cfg["layers"], 2, 3, True), 4, 3)
    a, _ = reference_epoch(p, SEQS, cfg)
    W_q = p["bi_W_q"].copy()
    W_q[4:] = 0.0
    b, _ = reference_epoch(dict(p, bi_W_q=W_q), SEQS, cfg)
    assert not np.allclose(a["W_hh0"], b["W_hh0"])
    assert np.abs(a["bi_W_hh"] - p["bi_W_hh"]).max() > 1e-6


# ------------------------------------------------------------------- inference
def _ref_states(p, layers, mode, seq):
    """Top-layer states after every known item of one sequence (-1: unknown,
    no position)."""
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
    return np.array(Y)


def _span(t, window):
    return (t // window) * window if window > 0 else 0


INF_SEQS = [[1, 2, 3, 4, 5, 6, 7], [8, -1, 0, 0], [3], [-1, 2, 5, -1, 6, 1, 1, 2], [4, 4], [-1]]


@pytest.mark.parametrize("mode,layers,Hr,window", [(2, [5], 3, 0), (1, [4, 5], 5, 3),
                                                   (0, [5], 2, 2)])
def test_inference_queries_match_the_formulas(simd, mode, layers, Hr, window):
    rng = np.random.default_rng(7)
    p = _bi_init(rng, _init(rng, 9, layers, mode, 4, True), layers[-1], Hr)
    seqs = INF_SEQS[:-1]
    offsets, items = _layout(seqs)
    w = {k: v.astype(np.float32) for k, v in p.items()}
    for nt in (1, 2):
        allp = _core.session_states(w, layers, mode, offsets, items, True, nt, readout=True,
                                    window=window)
        last = _core.session_states(w, layers, mode, offsets, items, False, nt, readout=True,
                                    window=window)
        for s, seq in enumerate(seqs):
            Y = _ref_states(p, layers, mode, seq)
            Q = np.array([_query(p, Y[_span(t, window):t + 1]) for t in range(len(Y))])
            known = np.cumsum(np.asarray(seq) >= 0) - 1  # last known position <= t
            for t in range(len(seq) - 1):
                want = Q[known[t]] if known[t] >= 0 else np.zeros(layers[-1])
                np.testing.assert_allclose(allp[offsets[s] - s + t], want, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(last[s], Q[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [0, 3])
def test_session_embeddings_match_the_formulas(simd, window):
    rng = np.random.default_rng(5)
    mode, layers, Hr = 2, [5], 4
    p = _bi_init(rng, _init(rng, 9, layers, mode, 4, True), layers[-1], Hr)
    offsets, items = _layout(INF_SEQS)
    w = {k: v.astype(np.float32) for k, v in p.items()}
    E = _core.session_states(w, layers, mode, offsets, items, False, 2, readout=True,
                             window=window, embed=True)
    assert E.shape == (len(INF_SEQS), layers[-1] + Hr)
    for s, seq in enumerate(INF_SEQS):
        Y = _ref_states(p, layers, mode, seq)
        if len(Y) == 0:
            assert not E[s].any()
            continue
        want = np.concatenate([Y[-1], _reverse(p, Y[_span(len(Y) - 1, window):])])
        np.testing.assert_allclose(E[s], want, rtol=1e-4, atol=1e-5)


def test_drop_one_queries_equal_the_sequences_without_each_click(simd):
    rng = np.random.default_rng(3)
    for mode, layers, window in [(2, [6], 4), (1, [6], 0), (0, [5, 6], 3)]:
        p = _bi_init(rng, _init(rng, 11, layers, mode, 4, True), layers[-1], 4)
        w = {k: v.astype(np.float32) for k, v in p.items()}
        seq = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5], np.int32)
        q, alpha = _core.drop_one_queries(w, layers, mode, seq, readout=True, window=window)
        assert alpha is None  # attention weights: NARM only
        variants = [seq] + [np.delete(seq, i) for i in range(len(seq))]
        offsets, items = _layout(variants)
        want = _core.session_states(w, layers, mode, offsets, items, False, 1, readout=True,
                                    window=window)
        np.testing.assert_allclose(q, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- model
KW = dict(layers=[16], batch_size=8, n_sample=16, num_threads=1, random_state=0,
          show_progress=False)


@pytest.fixture(scope="module")
def train():
    from grurec.synthetic import generate_sessions

    return generate_sessions(n_events=3000, n_items=120, mean_length=5, signal=0.8, seed=11)


def test_bigru4rec_learns_and_starts_as_gru4rec(train):
    m0 = grurec.BiGRU4Rec(n_epochs=0, **KW).fit(train)
    assert set(m0.params) >= {"bi_W_ih", "bi_W_hh", "bi_b", "bi_bh", "bi_W_q"}
    # Untrained: the query is h_t (W_q = [I; 0]), GRU4Rec's readout.
    ids = train.ItemId.unique()
    seqs = [list(ids[:4]), list(ids[10:19])]
    idx = [m0._lookup(s) for s in seqs]
    g = grurec.GRU4Rec(n_epochs=0, **KW).fit(train)
    g.params = {k: v for k, v in m0.params.items() if not k.startswith("bi_")}
    g._opt = {k: m0._opt[k] for k in g.params}
    np.testing.assert_allclose(m0.score_prefixes(idx), g.score_prefixes(idx), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(m0.recommend(seqs, k=5)[1], g.recommend(seqs, k=5)[1],
                               rtol=1e-5, atol=1e-6)
    m = grurec.BiGRU4Rec(n_epochs=3, **KW).fit(train)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    assert not np.allclose(m.params["bi_W_hh"], m0.params["bi_W_hh"])
    assert not np.allclose(m.params["bi_W_q"][16:], 0)


def test_session_embeddings_api(train):
    m = grurec.BiGRU4Rec(n_epochs=1, bptt=3, **KW).fit(train)
    ids = train.ItemId.unique()
    sessions = [list(ids[:5]), [ids[7]], [], ["no such item"] if ids.dtype == object else [-99]]
    E = m.session_embeddings(sessions)
    assert E.shape == (4, 32) and E.dtype == np.float32
    assert not E[2].any() and not E[3].any()
    # The forward half is GRU4Rec's state after the session.
    h = grurec.GRU4Rec._states(m, *(_layout([m._lookup(sessions[0])])))
    np.testing.assert_allclose(E[0, :16], h[0], rtol=1e-5, atol=1e-6)
    # window=None: the last span of bptt clicks, as the last query reads.
    Ew = m.session_embeddings(sessions[:1], window=None)
    np.testing.assert_allclose(Ew[0, :16], E[0, :16])
    assert not np.allclose(Ew[0, 16:], E[0, 16:])
    with pytest.raises(ValueError, match="session 0"):
        m.session_embeddings(["abc"])


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="bptt"):
        grurec.BiGRU4Rec(bptt=0)
    with pytest.raises(ValueError, match="reverse_size"):
        grurec.BiGRU4Rec(reverse_size=0)


def test_reverse_size_shapes_and_save_load(train, tmp_path):
    m = grurec.BiGRU4Rec(n_epochs=1, bptt=3, reverse_size=5, **KW).fit(train)
    assert m.params["bi_W_hh"].shape == (5, 15) and m.params["bi_W_q"].shape == (21, 16)
    m.save(tmp_path / "m.grurec")
    m2 = grurec.load(tmp_path / "m.grurec")
    assert type(m2) is grurec.BiGRU4Rec and m2.reverse_size == 5 and m2.bptt == 3
    ids = train.ItemId.unique()
    s = [list(ids[:6])]
    np.testing.assert_array_equal(m.recommend(s, k=5)[0], m2.recommend(s, k=5)[0])
    np.testing.assert_array_equal(m.session_embeddings(s), m2.session_embeddings(s))
