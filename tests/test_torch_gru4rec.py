"""The PyTorch baseline of benchmarks/bench_train.py computes what grurec does.

Skipped without torch (torch is never a dependency of grurec). With no
dropout, grurec's training is deterministic given its negatives, and its first
mini-batch's negatives are exactly ``_core.sample_popularity(pop, alpha, S,
seed)`` (the trainer draws them first from a generator seeded the same way;
later batches continue the same stream), so both trainers can be fed the same
negatives and must reach the same weights up to float32 rounding: both GRU
cells (reset-after, reset-before), both momentum forms (heavy ball, Nesterov),
the loss over the configured batch_size in the shrinking batches. Carried
hidden dropout (random masks, so not comparable bit for bit) is checked on the
twin alone.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import grurec  # noqa: E402
from grurec import _core  # noqa: E402
from grurec.synthetic import generate_sessions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import torch_gru4rec as tg  # noqa: E402

CELLS = ["reset-after", "reset-before"]
LOSS_KW = {"cross-entropy": dict(logq=1.0), "bpr-max": dict(elu_param=0.5, bpreg=1.0),
           "top1-max": {}}


class FixedSampler:
    """Replays a given stream of negatives, n per draw."""

    def __init__(self, stream):
        self.stream, self.used = torch.from_numpy(stream.astype(np.int64)), 0

    def draw(self, n):
        out = self.stream[self.used:self.used + n]
        assert len(out) == n, "the test did not provide enough negatives"
        self.used += n
        return out


def reset_after(cell, mode, l):
    """grurec's rule: every layer not fed by one-hot ids takes the configured cell."""
    return cell == "reset-after" and (l > 0 or mode != 0)


def random_params(rng, mode, layers, N, E=3, cell="reset-after"):
    I0 = {0: N, 1: E, 2: layers[-1]}[mode]
    P = {}
    if mode == 1:
        P["emb"] = rng.uniform(-.5, .5, (N, E))
    for l, H in enumerate(layers):
        P[f"W_ih{l}"] = rng.uniform(-.5, .5, (I0, 3 * H))
        P[f"W_hh{l}"] = rng.uniform(-.5, .5, (H, 3 * H))
        P[f"b{l}"] = rng.uniform(-.2, .2, 3 * H)
        if reset_after(cell, mode, l):
            P[f"bh{l}"] = rng.uniform(-.2, .2, 3 * H)
        I0 = H
    P["W_y"] = rng.uniform(-.5, .5, (N, layers[-1]))
    P["b_y"] = rng.uniform(-.2, .2, N)
    return {k: v.astype(np.float32) for k, v in P.items()}


def run_both(P, offsets, items, mode, loss, layers, batch_size, n_sample, momentum,
             epochs, kw, acc_init=1.0, seeds=(11, 12, 13), cell="reset-after",
             momentum_type="heavy-ball"):
    """``epochs`` epochs of grurec's trainer and of the torch one from the same
    weights and optimizer state, fed the same negatives; returns both weights
    and the number of mini-batches of each epoch. Both report the same mean
    training loss per event."""
    N = P["W_y"].shape[0]
    pop = np.bincount(items, minlength=N).astype(np.float32)
    alpha, lr = 0.6, 0.1
    L = len(layers)
    W = {k: v.copy() for k, v in P.items()}
    acc = {k: np.full_like(v, acc_init) for k, v in P.items()}
    vel = {k: np.zeros_like(v) for k, v in P.items()}
    trip = {k: (W[k], acc[k], vel[k] if momentum > 0 else None) for k in P}
    n_batches = []
    streams = []
    losses = []
    for e in range(epochs):
        cfg = dict(loss=loss, elu_param=kw.get("elu_param", 0.0), bpreg=kw.get("bpreg", 0.0),
                   logq=kw.get("logq", 0.0), batch_size=batch_size, n_sample=n_sample,
                   sample_alpha=alpha, mode=mode, dropout_p_embed=0.0, dropout_p_hidden=0.0,
                   learning_rate=lr, momentum=momentum, momentum_type=momentum_type,
                   seed=seeds[e], num_threads=1)
        r = _core.train_epoch([trip[f"W_ih{l}"] for l in range(L)],
                              [trip[f"W_hh{l}"] for l in range(L)],
                              [trip[f"b{l}"] for l in range(L)],
                              [trip.get(f"bh{l}") for l in range(L)], trip["W_y"], trip["b_y"],
                              trip.get("emb"), cfg, offsets, items, pop)
        assert r["status"] == "done"
        n_batches.append(r["batches"])
        losses.append(r["loss_sum"] / r["events"])
        streams.append(_core.sample_popularity(pop, alpha, max(r["batches"] * n_sample, 1),
                                               seeds[e]))

    m = tg.TorchGRU4Rec(layers=layers, loss=loss, batch_size=batch_size, n_sample=n_sample,
                        sample_alpha=alpha, constrained_embedding=(mode == 2),
                        embedding=3 if mode == 1 else 0, learning_rate=lr, momentum=momentum,
                        momentum_type=momentum_type, gru_cell=cell, n_epochs=epochs,
                        num_threads=1, **kw)
    m.set_params(P, acc_init=acc_init)
    sd = tg.Sessions(offsets, items.astype(np.int64), np.arange(N))
    m.fit(sd, sampler_factory=lambda pop_, a, e: FixedSampler(streams[e]))
    assert [h["events"] for h in m.history] == [len(items) - len(offsets) + 1] * epochs
    np.testing.assert_allclose([h["loss"] for h in m.history], losses, rtol=1e-5)
    T = m.get_params()
    assert sorted(T) == sorted(W)
    return W, T, n_batches


def assert_close(W, T, tol):
    for k in W:
        scale = max(np.abs(W[k]).max(), 1e-3)
        np.testing.assert_allclose(T[k], W[k], rtol=0, atol=tol * scale, err_msg=k)


MOMENTA = [(0.0, "heavy-ball"), (0.4, "heavy-ball"), (0.4, "nesterov")]
MOMENTUM_IDS = ["mu0", "heavyball.4", "nesterov.4"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["onehot", "embedding", "shared"])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("momentum,momentum_type", MOMENTA, ids=MOMENTUM_IDS)
def test_one_step_matches_grurec(mode, loss, momentum, momentum_type, cell):
    """Length-2 sessions and batch_size = number of sessions: one epoch is one
    mini-batch. Two epochs = two steps (the second checks the optimizer state
    carried over: accumulators, velocities). Accumulators start at 1, so
    updates are close to linear in the gradients and check their magnitude.
    Two layers, so one-hot input has a reset-before layer 0 under a
    reset-after layer 1."""
    rng = np.random.default_rng(0)
    S, N, layers = 5, 9, [4, 3]
    inp, tgt = rng.integers(0, N, S), rng.integers(0, N, S)
    items = np.stack([inp, tgt], 1).ravel().astype(np.int32)
    items[-1] = N - 1  # every item is seen (pop > 0) except possibly a few
    offsets = np.arange(0, 2 * S + 1, 2, dtype=np.int64)
    P = random_params(rng, mode, layers, N, cell=cell)
    W, T, nb = run_both(P, offsets, items, mode, loss, layers, S, 6, momentum, 2, LOSS_KW[loss],
                        cell=cell, momentum_type=momentum_type)
    assert nb == [1, 1]
    # the step really moved the weights, by far more than the tolerance
    assert max(np.abs(W[k] - P[k]).max() for k in P) > 2e-3
    assert_close(W, T, 1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("momentum_type", ["heavy-ball", "nesterov"])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("mode", [0, 2], ids=["onehot", "shared"])
def test_whole_epoch_matches_grurec(loss, mode, momentum_type, cell):
    """Sessions of different lengths, batch_size < number of sessions: slots
    take new sessions with a reset state and retire at the end, where the
    shrinking batches' loss is still divided by the configured batch_size;
    two layers."""
    df = generate_sessions(n_events=400, n_items=30, mean_length=4, seed=5)
    sd = tg.prepare(df)
    layers = [6, 5]
    P = random_params(np.random.default_rng(1), mode, layers, len(sd.item_ids), cell=cell)
    W, T, nb = run_both(P, sd.offsets, sd.items.astype(np.int32), mode, loss, layers, 7, 10,
                        0.3, 2, LOSS_KW[loss], acc_init=0.0, cell=cell,
                        momentum_type=momentum_type)
    assert nb[0] > 40
    assert_close(W, T, 5e-5)


def test_short_batches_divide_by_the_configured_batch_size():
    """One mini-batch of 3 sessions with batch_size 8: the update is that of
    the summed loss over 8, not of the mean over the 3 rows. With the
    accumulators at 100, Adagrad's step is lr * g / sqrt(100 + g^2), linear in
    g to about 1e-4 here (lr 1 for steps far above float32 rounding), so the weights move 3/8 as far as with the mean
    (up to float32 rounding of the weights, atol)."""
    rng = np.random.default_rng(4)
    S, N, layers = 3, 7, [4]
    items = rng.integers(0, N, 2 * S).astype(np.int32)
    offsets = np.arange(0, 2 * S + 1, 2, dtype=np.int64)
    P = random_params(rng, 2, layers, N)
    sd = tg.Sessions(offsets, items.astype(np.int64), np.arange(N))
    moved = {}
    for bs in (3, 8):
        m = tg.TorchGRU4Rec(layers=layers, batch_size=bs, n_sample=4, n_epochs=1,
                            learning_rate=1.0, num_threads=1, random_state=0)
        m.set_params(P, acc_init=100.0)
        stream = np.arange(4) % N
        m.fit(sd, sampler_factory=lambda pop_, a, e: FixedSampler(stream))
        moved[bs] = {k: v - P[k] for k, v in m.get_params().items()}
    for k in ("W_ih0", "b0", "W_y", "b_y"):  # (W_hh0 reads the zero first state: no gradient)
        assert np.abs(moved[3][k]).max() > 1e-3, k
        np.testing.assert_allclose(moved[8][k], moved[3][k] * 3 / 8, rtol=1e-3, atol=2e-7,
                                   err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_hidden_dropout_is_carried_into_the_next_state(cell):
    """A layer's output after dropout is the state of the next step: every
    entry of the new state is 0 (dropped) or the undropped output / (1 - p).
    lr = 0, so the weights stay those the undropped output is computed with."""
    rng = np.random.default_rng(2)
    N, layers, B, p = 11, [16, 8], 6, 0.4
    m = tg.TorchGRU4Rec(layers=layers, dropout_p_hidden=p, learning_rate=0.0, n_sample=5,
                        batch_size=B, gru_cell=cell, num_threads=1)
    m.set_params(random_params(rng, 2, layers, N, cell=cell))
    states = [torch.from_numpy(rng.uniform(-.5, .5, (B, H)).astype(np.float32)) for H in layers]
    inp = torch.from_numpy(rng.integers(0, N, B))
    tgt = torch.from_numpy(rng.integers(0, N, B))
    neg = torch.from_numpy(rng.integers(0, N, 5))
    torch.manual_seed(0)
    new, _ = m._train_batch(inp, tgt, neg, states, None, None)
    # what each layer computes from the carried (dropped) output of the layer below
    x = m.params["W_y"].detach().index_select(0, inp)
    for l, H in enumerate(layers):
        p_ = {k: v.detach() for k, v in m.params.items()}
        gi = x @ p_[f"W_ih{l}"] + p_[f"b{l}"]
        out = tg.gru_cell(gi, states[l], p_[f"W_hh{l}"], H, p_.get(f"bh{l}")).numpy()
        got = new[l].numpy()
        dropped = got == 0
        assert 0.15 < dropped.mean() < 0.65, dropped.mean()
        np.testing.assert_allclose(got[~dropped], out[~dropped] / (1 - p), rtol=1e-5, atol=1e-7)
        x = new[l]


def test_evaluation_matches_grurec():
    df = generate_sessions(n_events=3000, n_items=60, mean_length=5, signal=0.8, seed=2)
    test = generate_sessions(n_events=600, n_items=80, mean_length=5, signal=0.8, seed=3)
    g = grurec.GRU4Rec(layers=[8, 6], n_sample=8, batch_size=8, n_epochs=1, show_progress=False,
                       random_state=0, num_threads=1).fit(df)
    assert "bh0" in g.params and "bh1" in g.params  # reset-after (the default)
    m = tg.TorchGRU4Rec(layers=[8, 6])
    m.set_params(g.params)
    m.item_ids = g.item_ids
    want = grurec.evaluate(g, test, cutoffs=(1, 5, 20))
    got = m.evaluate(test, cutoffs=(1, 5, 20))
    assert got["n_events"] == want["n_events"] and want["n_unknown_targets"] > 0
    for k in ("recall@1", "recall@5", "recall@20", "mrr@20"):
        assert got[k] == pytest.approx(want[k], abs=2e-3), k


def test_sampler_follows_popularity_power_alpha():
    pop = np.array([1, 2, 5, 10, 50, 100, 0, 400], np.float64)
    for alpha in (0.0, 0.4, 1.0):
        s = tg.PopularitySampler(pop, alpha, torch.Generator().manual_seed(3), block=4096)
        n = 100_000
        counts = np.bincount(torch.cat([s.draw(1000) for _ in range(n // 1000)]).numpy(),
                             minlength=len(pop))
        w = np.where(pop > 0, pop ** alpha, 0.0)
        expected = n * w / w.sum()
        assert counts[6] == 0
        used = expected > 0
        chi2 = (((counts - expected) ** 2)[used] / expected[used]).sum()
        assert chi2 < 22.46, (alpha, counts, expected)  # 6 dof, p = 0.001


def test_torch_model_learns_the_signal():
    df = generate_sessions(n_events=6000, n_items=200, mean_length=6, signal=0.8, seed=3)
    test = generate_sessions(n_events=1500, n_items=200, mean_length=6, signal=0.8, seed=99)
    m = tg.TorchGRU4Rec(layers=[32], loss="bpr-max", elu_param=0.5, bpreg=1.0, batch_size=8,
                        n_sample=16, n_epochs=4, momentum=0.2, dropout_p_embed=0.1,
                        dropout_p_hidden=0.1, num_threads=1, random_state=0).fit(df)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    assert m.evaluate(test, cutoffs=(5,))["recall@5"] > 0.5
