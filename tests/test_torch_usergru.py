"""The PyTorch twin of UserGRU (benchmarks/torch_usergru.py): GRU4Rec's
algorithm over user histories with truncated BPTT over T-step windows.

Skipped without torch (torch is never a dependency of grurec). Checks that
bptt = 1 is the GRU4Rec twin (benchmarks/torch_gru4rec.py, itself checked
against grurec in test_torch_gru4rec.py), that padding positions carry no
loss and touch no row, that states carry over between windows and reset to
zero for a new user, that gradients flow through the whole window, and that
the twin learns.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from grurec.synthetic import generate_sessions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import torch_gru4rec as tg  # noqa: E402
import torch_usergru as tu  # noqa: E402

LOSS_KW = {"cross-entropy": dict(logq=1.0), "bpr-max": dict(elu_param=0.5, bpreg=1.0),
           "top1-max": {}}
MODES = {"onehot": dict(constrained_embedding=False), "embedding": dict(
    constrained_embedding=False, embedding=6), "shared": {}}


def users(n_events=1500, seed=1):
    """Synthetic sequences (lengths 2 and up) standing in for user histories."""
    return generate_sessions(n_events=n_events, n_items=40, mean_length=7, signal=0.8, seed=seed)


def assert_same_params(a, b, tol):
    assert sorted(a) == sorted(b)
    for k in a:
        scale = max(np.abs(a[k]).max(), 1e-3)
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("loss", list(LOSS_KW))
@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_bptt1_is_the_gru4rec_twin(loss, mode, momentum):
    """Same seed, same data: the same initial weights, negatives and updates,
    so the same weights after 3 epochs (up to float rounding: the twins order
    the slots differently once slots retire at the end of an epoch)."""
    df = users()
    cfg = dict(layers=[10, 8], loss=loss, batch_size=5, n_sample=6, sample_alpha=0.6,
               learning_rate=0.1, momentum=momentum, n_epochs=3, num_threads=1, random_state=7,
               **LOSS_KW[loss], **MODES[mode])
    a = tg.TorchGRU4Rec(**cfg).fit(df)
    b = tu.TorchUserGRU(bptt=1, **cfg).fit(df)
    assert [h["events"] for h in b.history] == [h["events"] for h in a.history]
    np.testing.assert_allclose([h["loss"] for h in b.history], [h["loss"] for h in a.history],
                               rtol=1e-4)
    assert_same_params(a.get_params(), b.get_params(), 1e-4)


@pytest.mark.parametrize("mode", list(MODES))
def test_bptt1_is_the_gru4rec_twin_with_dropout(mode):
    """With one slot the twins' slot orders agree everywhere, so the dropout
    masks (drawn in the same order from the same seed) do too."""
    df = users(600)
    cfg = dict(layers=[10, 8], batch_size=1, n_sample=6, learning_rate=0.1, momentum=0.2,
               dropout_p_embed=0.2, dropout_p_hidden=0.3, n_epochs=2, num_threads=1,
               random_state=3, logq=1.0, **MODES[mode])
    a = tg.TorchGRU4Rec(**cfg).fit(df)
    b = tu.TorchUserGRU(bptt=1, **cfg).fit(df)
    np.testing.assert_allclose([h["loss"] for h in b.history], [h["loss"] for h in a.history],
                               rtol=1e-4)
    assert_same_params(a.get_params(), b.get_params(), 1e-4)


@pytest.mark.parametrize("bptt", [1, 3, 8])
@pytest.mark.parametrize("max_len", [0, 4])
def test_every_pair_is_trained_once_per_epoch(bptt, max_len):
    df = users()
    sd = tu.user_sequences(df, max_len)
    lengths = np.diff(sd.offsets)
    if max_len:
        assert lengths.max() == max_len
    m = tu.TorchUserGRU(bptt=bptt, max_len=max_len, layers=[8], batch_size=4, n_sample=5,
                        n_epochs=2, random_state=0).fit(df)
    assert [h["events"] for h in m.history] == [int((lengths - 1).sum())] * 2


def window_model(mode="shared", loss="cross-entropy", momentum=0.3, **kw):
    m = tu.TorchUserGRU(bptt=4, layers=[7, 5], loss=loss, batch_size=3, n_sample=4,
                        momentum=momentum, learning_rate=0.1, num_threads=1, **LOSS_KW[loss],
                        **MODES[mode], **kw)
    m.init_params(20, np.random.default_rng(0))
    return m


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("loss", list(LOSS_KW))
def test_padding_positions_carry_no_loss(mode, loss):
    """The items at padding positions are never read: other items there give
    the same loss, the same updated weights (momentum on: a padding item
    counted as touched would move its row) and the same states."""
    rng = np.random.default_rng(5)
    T, B, N = 4, 3, 20
    valid = np.ones((T, B), bool)
    valid[2:, 1] = False  # slot 1's user ends after 2 pairs, slot 2's after 1
    valid[1:, 2] = False
    inp = rng.integers(0, N, (T, B))
    tgt = rng.integers(0, N, (T, B))
    neg = torch.from_numpy(rng.integers(0, N, 4))
    states = [torch.from_numpy(rng.uniform(-.5, .5, (B, H)).astype(np.float32)) for H in (7, 5)]
    lq = torch.from_numpy(rng.uniform(0, 2, N).astype(np.float32))
    out = []
    for pad in (-1, 1, 2):
        m = window_model(mode, loss)
        m.vel = {k: torch.full_like(v, 0.01) for k, v in m.params.items()}  # momentum already on
        i, t = inp.copy(), tgt.copy()
        if pad >= 0:  # other (real) items at the padding positions
            i[~valid] = np.random.default_rng(pad).integers(0, N, (~valid).sum())
            t[~valid] = np.random.default_rng(pad + 9).integers(0, N, (~valid).sum())
        else:
            i[~valid] = t[~valid] = -1
        new, loss_sum = m._train_window(i, t, neg, [s.clone() for s in states],
                                        lq if loss == "cross-entropy" else None, lq * 0.5,
                                        valid=valid)
        out.append((loss_sum, m.get_params(), [s.numpy() for s in new]))
    for loss_sum, params, new in out[1:]:
        assert loss_sum == pytest.approx(out[0][0], rel=1e-6)
        assert_same_params(out[0][1], params, 1e-6)
        for a, b in zip(out[0][2], new):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_padding_adds_no_loss_to_a_shorter_window():
    """A window of T = 4 whose every slot ends after 2 pairs has the summed
    row loss and the states of the same 2 pairs in a window of T = 2."""
    rng = np.random.default_rng(6)
    B, N = 3, 20
    inp = rng.integers(0, N, (2, B))
    tgt = rng.integers(0, N, (2, B))
    neg = torch.from_numpy(rng.integers(0, N, 4))
    states = [torch.from_numpy(rng.uniform(-.5, .5, (B, H)).astype(np.float32)) for H in (7, 5)]
    pad = np.full((2, B), -1)
    new2, s2 = window_model()._train_window(inp, tgt, neg, [s.clone() for s in states], None, None)
    new4, s4 = window_model()._train_window(np.r_[inp, pad], np.r_[tgt, pad], neg,
                                            [s.clone() for s in states], None, None)
    assert s4 == pytest.approx(s2, rel=1e-6)
    for a, b in zip(new2, new4):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_gradients_flow_through_the_window():
    """From zero states, W_hh gets no gradient at T = 1 (every recurrent
    product reads a zero state) but does at T = 2 (step 2 reads step 1)."""
    rng = np.random.default_rng(8)
    B, N = 3, 20
    neg = torch.from_numpy(rng.integers(0, N, 4))
    moved = {}
    for T in (1, 2):
        m = window_model(momentum=0.0)
        before = m.get_params()
        inp, tgt = rng.integers(0, N, (T, B)), rng.integers(0, N, (T, B))
        m._train_window(inp, tgt, neg, [torch.zeros(B, H) for H in (7, 5)], None, None)
        after = m.get_params()
        moved[T] = {k: np.abs(after[k] - before[k]).max() for k in before}
    assert moved[1]["W_hh0"] == 0 and moved[1]["W_hh1"] == 0
    assert moved[2]["W_hh0"] > 1e-4 and moved[2]["W_hh1"] > 1e-4


@pytest.mark.parametrize("bptt", [1, 3])
def test_states_carry_within_a_user_and_reset_between_users(bptt):
    """Each user has items of its own, so a window's inputs say whose pair
    each slot holds. A slot starting a user gets zero states (every layer);
    a slot continuing one gets exactly the state its previous window carried
    for that user (the last real step's dropped output), also after slots
    moved when others retired."""
    n_users, per = 13, 10
    rng = np.random.default_rng(4)
    lengths = rng.integers(2, 9, n_users)
    items = np.concatenate([u * per + np.arange(n) for u, n in enumerate(lengths)])
    sd = tg.Sessions(np.r_[0, np.cumsum(lengths)].astype(np.int64), items.astype(np.int64),
                     np.arange(n_users * per))
    m = tu.TorchUserGRU(bptt=bptt, layers=[6, 4], batch_size=4, n_sample=3, dropout_p_hidden=0.3,
                        n_epochs=2, random_state=0)
    carried, checked = {}, {"reset": 0, "carry": 0}
    real = m._train_window

    def spy(inp, tgt, neg, states, *a, **kw):
        for b in range(inp.shape[1]):
            first = inp[0, b]
            assert first >= 0  # a window starts with a real pair in every slot
            u, j = divmod(int(first), per)
            for l in range(2):
                if j == 0:
                    assert torch.all(states[l][b] == 0)
                    checked["reset"] += 1
                else:
                    np.testing.assert_array_equal(states[l][b].numpy(), carried[u][l])
                    checked["carry"] += 1
        new, loss = real(inp, tgt, neg, states, *a, **kw)
        for b in range(inp.shape[1]):
            u = int(inp[0, b]) // per
            carried[u] = [s[b].numpy().copy() for s in new]
        return new, loss

    m._train_window = spy
    m.fit(sd)
    assert checked["reset"] == 2 * n_users * 2  # every user starts once per epoch, 2 layers
    assert checked["carry"] > 0


@pytest.mark.parametrize("bptt", [1, 4])
def test_the_twin_learns(bptt):
    df = generate_sessions(n_events=6000, n_items=200, mean_length=6, signal=0.8, seed=3)
    test = generate_sessions(n_events=1500, n_items=200, mean_length=6, signal=0.8, seed=99)
    m = tu.TorchUserGRU(bptt=bptt, layers=[32], batch_size=8, n_sample=16, n_epochs=4,
                        momentum=0.2, dropout_p_hidden=0.1, num_threads=1,
                        random_state=0).fit(df)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    assert m.evaluate(test, cutoffs=(5,))["recall@5"] > 0.5
    # the leave-one-out scorer: the last state after a history, then every item
    hist = [np.array([0, 1, 2]), np.array([5])]
    scores = m.score(hist)
    assert scores.shape == (2, len(m.item_ids)) and np.isfinite(scores).all()


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="bptt"):
        tu.TorchUserGRU(bptt=0)
    with pytest.raises(ValueError, match="max_len"):
        tu.TorchUserGRU(max_len=1)


def test_leave_one_out_evaluator_ranks_all_items_without_history():
    """benchmarks/_loo.py: rank = 1 + items scored strictly higher, history
    items excluded (so a target in the history is a miss), NDCG = 1/log2(1 + rank)."""
    import _loo
    from grurec.data import SessionData

    # users: history -> target; 6 items, scores fixed per user below
    seqs = [[0, 1, 2], [3, 4], [5, 0, 5]]
    sd = SessionData(np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64),
                     np.concatenate(seqs).astype(np.int32), np.arange(6), np.arange(3))
    scores = np.array([[9., 8., 1., 7., 0., 0.],  # history {0, 1} excluded: 3 beats 2 -> rank 2
                       [0., 5., 5., 9., 1., 6.],  # history {3}: 1, 2, 5 beat 4 -> rank 4
                       [1., 2., 3., 4., 5., 6.]])  # target 5 is in the history: a miss
    calls = []

    def score(hist):
        calls.append([h.tolist() for h in hist])
        return scores[:len(hist)] if len(calls) == 1 else scores[len(scores) - len(hist):]

    r = _loo.evaluate(score, sd, 6, cutoffs=(1, 2, 4), batch_size=2)
    assert calls == [[[0, 1], [3]], [[5, 0]]]
    assert r["n_users"] == 3 and r["n_target_in_history"] == 1
    assert r["hr@1"] == 0 and r["hr@2"] == pytest.approx(1 / 3) and r["hr@4"] == pytest.approx(2 / 3)
    assert r["ndcg@4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / 3)
