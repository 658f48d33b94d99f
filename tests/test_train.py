"""The GRU4Rec trainer: parameters, data checks, determinism, sampling,
session boundaries, shared embedding, learning a planted signal."""
import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import _core
from grurec.synthetic import generate_sessions

import reference as ref


def small_model(**kw):
    base = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=1, random_state=0,
                show_progress=False, num_threads=1)
    base.update(kw)
    return grurec.GRU4Rec(**base)


@pytest.fixture(scope="module")
def synth():
    return generate_sessions(n_events=6000, n_items=200, mean_length=6, signal=0.8, seed=3)


@pytest.mark.parametrize("name,value,msg", [
    ("loss", "hinge", "loss: must be one of"),
    ("layers", [], "layers: needs one or more"),
    ("dropout_p_hidden", 1.0, r"dropout_p_hidden: must be in \[0, 1\)"),
    ("learning_rate", 0.0, "learning_rate: must be > 0"),
    ("momentum", 1.0, "momentum: must be < 1"),
    ("batch_size", 0, "batch_size: must be >= 1"),
    ("n_sample", -1, "n_sample: must be >= 0"),
    ("num_threads", -1, "num_threads: must be >= 0"),
    ("sample_alpha", float("nan"), "sample_alpha: must be a finite number"),
])
def test_invalid_hyperparameters_name_the_parameter(name, value, msg):
    with pytest.raises(ValueError, match=msg):
        small_model(**{name: value})


def test_data_errors_are_clear():
    m = small_model()
    with pytest.raises(ValueError, match="item column 'ItemId' not found"):
        m.fit(pd.DataFrame({"SessionId": [1, 1], "Item": [1, 2], "Time": [0, 1]}))
    with pytest.raises(ValueError, match="no events"):
        m.fit(pd.DataFrame({"SessionId": [], "ItemId": [], "Time": []}))
    with pytest.raises(ValueError, match=r"column 'ItemId': missing value .* at row 1"):
        m.fit(pd.DataFrame({"SessionId": [1, 1], "ItemId": [1.0, np.nan], "Time": [0, 1]}))
    with pytest.raises(ValueError, match=r"column 'Time': NaN time at row 0"):
        m.fit(pd.DataFrame({"SessionId": [1, 1], "ItemId": [1, 2], "Time": [np.nan, 1]}))
    with pytest.raises(ValueError, match="no session has 2 or more events"):
        m.fit(pd.DataFrame({"SessionId": [1, 2], "ItemId": [1, 2], "Time": [0, 1]}))


def test_string_item_ids_and_custom_columns():
    df = pd.DataFrame({"s": [1, 1, 1, 2, 2], "i": ["a", "b", "c", "b", "a"], "t": [0, 1, 2, 3, 4]})
    m = small_model(n_sample=2, batch_size=2).fit(df, session_col="s", item_col="i", time_col="t")
    assert list(m.item_ids) == ["a", "b", "c"]


def test_runs_n_epochs_and_reports_them(synth):
    seen = []
    m = small_model(n_epochs=3).fit(synth, callback=lambda e, loss: seen.append((e, loss)))
    assert m.epochs_trained == 3 and [e for e, _ in seen] == [1, 2, 3]
    assert len(m.history) == 3
    n_targets = len(synth) - synth.SessionId.nunique()
    assert all(h["events"] == n_targets for h in m.history)  # every event is trained


def test_same_seed_one_thread_gives_identical_weights(synth):
    a = small_model(n_epochs=2, dropout_p_embed=0.2, dropout_p_hidden=0.1).fit(synth)
    b = small_model(n_epochs=2, dropout_p_embed=0.2, dropout_p_hidden=0.1).fit(synth)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    c = small_model(n_epochs=2, random_state=1).fit(synth)
    assert not np.array_equal(a.params["W_y"], c.params["W_y"])


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("emb", [dict(constrained_embedding=True),
                                 dict(constrained_embedding=False, embedding=0),
                                 dict(constrained_embedding=False, embedding=12)])
def test_every_loss_and_embedding_mode_learns_the_signal(synth, loss, emb):
    kw = dict(elu_param=0.5, bpreg=1.0) if loss == "bpr-max" else {}
    if loss == "cross-entropy":
        kw = dict(logq=1.0)
    m = small_model(loss=loss, n_epochs=4, learning_rate=0.1, layers=[32], momentum=0.2,
                    **kw, **emb).fit(synth)
    losses = [h["loss"] for h in m.history]
    assert losses[-1] < losses[0]
    test = generate_sessions(n_events=1500, n_items=200, mean_length=6, signal=0.8, seed=99)
    res = grurec.evaluate(m, test, cutoffs=(5,))
    # Popularity alone cannot predict the planted successor; 80% of the
    # next items follow it, so a sequence model that learned it scores high.
    assert res["recall@5"] > 0.5, res


def test_two_layers_train(synth):
    m = small_model(layers=[24, 16], n_epochs=2, dropout_p_hidden=0.1).fit(synth)
    assert m.params["W_ih1"].shape == (24, 48)
    assert m.history[-1]["loss"] < m.history[0]["loss"]


def test_shared_embedding_shares_input_and_output_vectors(synth):
    m = small_model(constrained_embedding=True).fit(synth)
    assert "emb" not in m.params and m.params["W_ih0"].shape == (16, 48)
    item = np.array([3], np.int32)
    h1 = m._step([np.zeros((1, 16), np.float32)], item)
    m.params["W_y"][3] += 1.0  # moving the output vector moves the input
    h2 = m._step([np.zeros((1, 16), np.float32)], item)
    assert not np.allclose(h1, h2)
    m2 = small_model(constrained_embedding=False, embedding=8).fit(synth)
    h1 = m2._step([np.zeros((1, 16), np.float32)], item)
    m2.params["W_y"][3] += 1.0
    np.testing.assert_array_equal(h1, m2._step([np.zeros((1, 16), np.float32)], item))


def test_session_scores_do_not_depend_on_neighbours(synth):
    """Hidden state starts at zero for every test session: evaluating a
    session alone or among others gives the same metrics for it."""
    m = small_model(n_epochs=1).fit(synth)
    s = synth[synth.SessionId.isin([5, 6, 7])]
    alone = [grurec.evaluate(m, s[s.SessionId == k], cutoffs=(1, 3)) for k in (5, 6, 7)]
    together = grurec.evaluate(m, s, cutoffs=(1, 3))
    n = sum(a["n_events"] for a in alone)
    assert together["n_events"] == n
    for key in ("recall@3", "mrr@3"):
        assert together[key] == pytest.approx(sum(a[key] * a["n_events"] for a in alone) / n)


def test_reset_matches_manual_gru_recurrence(synth):
    """The model's step equals the reference GRU run from a zero state."""
    m = small_model(constrained_embedding=False, embedding=6).fit(synth)
    items = np.array([4, 9, 4], np.int32)
    states = [np.zeros((1, 16), np.float32)]
    for it in items:
        out = m._step(states, np.array([it], np.int32))
    x = m.params["emb"][items][:, None, :]
    h, _ = ref.gru_forward(x, np.zeros((1, 16)), m.params["W_ih0"], m.params["W_hh0"],
                           m.params["b0"], m.params["bh0"])
    np.testing.assert_allclose(out, h[-1], atol=1e-5)


def test_negative_samples_follow_popularity_power_alpha():
    """Chi-square goodness of fit of the alias sampler."""
    pop = np.array([1, 2, 5, 10, 50, 100, 0, 400], np.float32)
    for alpha in (0.0, 0.4, 1.0):
        n = 200_000
        draws = _core.sample_popularity(pop, alpha, n, 7)
        counts = np.bincount(draws, minlength=len(pop))
        w = np.where(pop > 0, pop.astype(np.float64) ** alpha, 0.0)
        expected = n * w / w.sum()
        assert counts[6] == 0  # zero popularity is never drawn
        used = expected > 0
        chi2 = (((counts - expected) ** 2)[used] / expected[used]).sum()
        # 6 degrees of freedom: P(chi2 > 22.46) = 0.001
        assert chi2 < 22.46, (alpha, counts, expected)


def test_exploding_training_raises_model_fit_error(synth):
    # Adagrad steps are bounded by the learning rate (kernels_impl.hpp), so
    # only a rate near the float32 limit makes the scores overflow at once.
    m = small_model(learning_rate=3e38, n_epochs=3)
    with pytest.raises(grurec.ModelFitError, match=r"epoch \d+, mini-batch \d+"):
        m.fit(synth)


def _one_step_reference_check(mode, loss, nthreads, logq=0.0, elu=0.0, bpreg=0.0, seed=0,
                              cell="reset-after", momentum=0.0, momentum_type="heavy-ball",
                              optimizer="adagrad"):
    """One whole training step of the native trainer against float64 finite
    differences of the loss written plainly with the reference GRU and losses.

    Sessions of length 2 and batch_size = number of sessions make one epoch
    exactly one mini-batch; n_sample = 0 and no dropout make it deterministic.
    Adagrad accumulators start at 1, so the update is close to linear in the
    gradient: w_new = w - lr * g / sqrt(1 + g^2 + eps) checks every gradient's
    magnitude, not just its sign. With momentum mu (velocity starting at 0)
    the first step is the same for heavy ball and (1 + mu) times it for Nesterov.
    Adam starts from first moments 0, second moments 1 and 4 steps taken
    (so the bias corrections are step 5's); rows of the item tables that the
    mini-batch does not touch keep their moments.
    The reset-after cell has a recurrent bias b_hh (not for one-hot input,
    whose layer is always reset-before).
    """
    reset_after = cell == "reset-after" and mode != 0
    rng = np.random.default_rng(seed)
    S, N, H, E = 5, 7, 4, 3
    inp = rng.integers(0, N, S).astype(np.int32)
    tgt = rng.integers(0, N, S).astype(np.int32)
    items = np.stack([inp, tgt], 1).ravel().astype(np.int32)
    offsets = np.arange(0, 2 * S + 1, 2, dtype=np.int64)
    pop = np.bincount(items, minlength=N).astype(np.float32) + 0.5
    I0 = {0: N, 1: E, 2: H}[mode]
    P = {"W_ih": rng.uniform(-.5, .5, (I0, 3 * H)), "W_hh": rng.uniform(-.5, .5, (H, 3 * H)),
         "b": rng.uniform(-.2, .2, 3 * H), "W_y": rng.uniform(-.5, .5, (N, H)),
         "b_y": rng.uniform(-.2, .2, N)}
    if reset_after:
        P["b_hh"] = rng.uniform(-.2, .2, 3 * H)
    if mode == 1:
        P["emb"] = rng.uniform(-.5, .5, (N, E))
    P = {k: v.astype(np.float32) for k, v in P.items()}
    # logQ: log count for the in-batch columns (all of them here)
    qcorr = logq * np.log(pop[tgt].astype(np.float64)) if logq > 0 else None

    def mean_loss(Q):
        x = {0: lambda: np.eye(N)[inp], 1: lambda: Q["emb"][inp], 2: lambda: Q["W_y"][inp]}[mode]()
        h, _ = ref.gru_forward(x[None], np.zeros((S, H)), Q["W_ih"], Q["W_hh"], Q["b"],
                               Q.get("b_hh"))
        R = h[0] @ Q["W_y"][tgt].T + Q["b_y"][tgt]
        return ref.loss_rows(loss, R, qcorr, elu, bpreg).mean()

    base = {k: v.astype(np.float64) for k, v in P.items()}
    grads = {}
    for name, v in base.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            plus = {a: b.copy() for a, b in base.items()}
            minus = {a: b.copy() for a, b in base.items()}
            plus[name][idx] += 1e-6
            minus[name][idx] -= 1e-6
            g[idx] = (mean_loss(plus) - mean_loss(minus)) / 2e-6
        grads[name] = g

    lr, eps = 0.1, 1e-6
    W = {k: v.copy() for k, v in P.items()}
    acc = {k: np.ones_like(v) for k, v in P.items()}
    adam = optimizer == "adam"
    triple = {k: (W[k], acc[k], np.zeros_like(v) if momentum > 0 or adam else None)
              for k, v in P.items()}
    b1, b2, aeps, t = 0.5, 0.9, 1e-8, 5
    cfg = dict(loss=loss, elu_param=elu, bpreg=bpreg, logq=logq, batch_size=S, n_sample=0,
               sample_alpha=1.0, mode=mode, dropout_p_embed=0.0, dropout_p_hidden=0.0,
               learning_rate=lr, momentum=momentum, momentum_type=momentum_type, seed=1,
               num_threads=nthreads, optimizer=optimizer, adam_beta1=b1, adam_beta2=b2,
               adam_eps=aeps, opt_step=t - 1)
    r = _core.train_epoch([triple["W_ih"]], [triple["W_hh"]], [triple["b"]],
                          [triple.get("b_hh")], triple["W_y"], triple["b_y"], triple.get("emb"),
                          cfg, offsets, items, pop)
    assert r["batches"] == 1 and r["events"] == S
    assert r["loss_sum"] / S == pytest.approx(mean_loss(base), rel=1e-5)
    if adam:
        assert r["opt_step"] == t
        touched = set(tgt.tolist()) | (set(inp.tolist()) if mode == 2 else set())
        untouched = [i for i in range(N) if i not in touched]
        np.testing.assert_array_equal(acc["W_y"][untouched], 1.0)  # lazy: moments kept
        np.testing.assert_array_equal(acc["b_y"][untouched], 1.0)
    else:
        assert "opt_step" not in r
    for name in P:
        g = grads[name]
        if adam:
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            m, v = (1 - b1) * g, b2 + (1 - b2) * g ** 2
            want = base[name] - lr * (m / c1) / (np.sqrt(v / c2) + aeps)
        else:
            step = lr * g / np.sqrt(1 + g ** 2 + eps)
            want = base[name] - (1 + momentum if momentum_type == "nesterov" else 1) * step
        scale = lr * max(np.abs(grads[name]).max(), 1e-3)
        np.testing.assert_allclose(W[name], want, rtol=0, atol=2e-4 * scale + 1e-7, err_msg=name)


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["onehot", "embedding", "shared"])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("cell", ["reset-after", "reset-before"])
def test_training_step_equals_reference_gradient_and_adagrad(simd, nthreads, mode, loss, cell):
    kw = {"cross-entropy": dict(logq=1.0), "bpr-max": dict(elu=0.5, bpreg=1.0),
          "top1-max": {}}[loss]
    _one_step_reference_check(mode, loss, nthreads, cell=cell, **kw)


@pytest.mark.parametrize("momentum_type", ["heavy-ball", "nesterov"])
def test_training_step_momentum_forms(simd, nthreads, momentum_type):
    _one_step_reference_check(2, "cross-entropy", nthreads, logq=1.0, momentum=0.3,
                              momentum_type=momentum_type)


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["onehot", "embedding", "shared"])
def test_training_step_adam(simd, nthreads, mode):
    _one_step_reference_check(mode, "cross-entropy", nthreads, logq=1.0, optimizer="adam")


def test_sync_parallel_gives_identical_weights_at_any_thread_count(synth):
    """parallel="sync" splits only the kernels, each output element summed in
    the same order, so 2 threads reproduce 1 thread bit for bit."""
    kw = dict(n_epochs=1, layers=[40], batch_size=16, n_sample=64, dropout_p_embed=0.1,
              dropout_p_hidden=0.1, momentum=0.3, parallel="sync")
    a = small_model(num_threads=1, **kw).fit(synth)
    b = small_model(num_threads=2, **kw).fit(synth)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_hogwild_trains_every_event_and_learns(synth, loss):
    """Two workers, each its own session stream: every event is trained once
    per epoch and the model learns the planted signal as well as one worker."""
    kw = dict(elu_param=0.5, bpreg=1.0) if loss == "bpr-max" else dict(logq=1.0)
    m = small_model(loss=loss, n_epochs=4, layers=[32], num_threads=2, parallel="hogwild",
                    **kw).fit(synth)
    n_targets = len(synth) - synth.SessionId.nunique()
    assert all(h["events"] == n_targets for h in m.history)
    test = generate_sessions(n_events=1500, n_items=200, mean_length=6, signal=0.8, seed=99)
    assert grurec.evaluate(m, test, cutoffs=(5,))["recall@5"] > 0.5


def test_parallel_must_be_known():
    with pytest.raises(ValueError, match="parallel: must be one of"):
        small_model(parallel="threads")


@pytest.mark.parametrize("parallel", ["hogwild", "sync"])
def test_ctrl_c_stops_between_batches_and_leaves_a_usable_model(tmp_path, parallel):
    """SIGINT during fit with on_interrupt="keep": training stops after the
    current mini-batch, fit returns normally with ``interrupted`` set, and the
    model recommends with finite scores. (The default, raising, is in
    test_reliability.py.)"""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "fit.py"
    script.write_text(f"""
import sys, numpy as np, grurec
from grurec.synthetic import generate_sessions
df = generate_sessions(n_events=30_000, n_items=1000, seed=0)
def cb(epoch, loss):
    print("epoch", epoch, flush=True)
m = grurec.GRU4Rec(layers=[32], n_sample=256, n_epochs=1000, num_threads=2, parallel={parallel!r},
                   show_progress=False, random_state=0)
print("fitting", flush=True)
m.fit(df, callback=cb, on_interrupt="keep")
assert m.interrupted and m.history[-1]["interrupted"]
ids, scores = m.recommend([[df.ItemId[0], df.ItemId[1]]], k=5)
print("done", m.epochs_trained, bool(np.isfinite(scores).all()),
      all(np.isfinite(v).all() for v in m.params.values()), flush=True)
""")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("fitting")
        assert p.stdout.readline().startswith("epoch 1")  # training really runs
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "done" and 1 <= int(last[1]) < 1000
    assert last[2] == "True" and last[3] == "True"
