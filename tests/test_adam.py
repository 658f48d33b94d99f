"""optimizer="adam": the model-level contract (the kernel and one training
step against float64 references are in test_loss.py and test_train.py)."""
import logging

import numpy as np
import pytest

import grurec
from grurec.synthetic import generate_sessions


def small(cls=grurec.GRU4Rec, **kw):
    base = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=1, random_state=0,
                show_progress=False, num_threads=1, optimizer="adam", learning_rate=0.01)
    base.update(kw)
    return cls(**base)


@pytest.fixture(scope="module")
def synth():
    return generate_sessions(n_events=3000, n_items=60, mean_length=6, signal=0.8, seed=1)


def test_adam_learns_the_planted_signal(synth):
    m = small(n_epochs=4, layers=[32], num_threads=2, loss="cross-entropy").fit(synth)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    test = generate_sessions(n_events=1500, n_items=60, mean_length=6, signal=0.8, seed=99)
    assert grurec.evaluate(m, test, cutoffs=(5,))["recall@5"] > 0.5


def test_user_gru_trains_with_adam(synth):
    ev = synth.rename(columns={"SessionId": "UserId"})
    m = small(grurec.UserGRU, bptt=4, n_epochs=3, loss="cross-entropy").fit(ev)
    assert m.history[-1]["loss"] < m.history[0]["loss"]
    ids, scores = m.recommend(users=[ev.UserId.iloc[0]], k=5)
    assert ids.shape == (1, 5) and np.isfinite(scores).all()


def test_steps_count_across_epochs_and_warm_starts(synth):
    m = small(n_epochs=1).fit(synth)
    one = m._opt_step
    assert one > 0
    m2 = small(n_epochs=2).fit(synth)
    assert m2._opt_step == 2 * one  # one worker: the same mini-batches every epoch
    m.fit(synth, warm_start=True)
    assert m._opt_step == 2 * one
    assert small(optimizer="adagrad").fit(synth)._opt_step == 0


def test_warm_start_from_a_file_continues_exactly(tmp_path, synth):
    """Saved with optimizer=True, the moments and the step count travel: a
    warm start from the file equals one from the model in memory."""
    m = small(n_epochs=2).fit(synth)
    m.save(tmp_path / "m.grurec", optimizer=True)
    loaded = grurec.load(tmp_path / "m.grurec")
    assert loaded._opt_step == m._opt_step and loaded._opt_of == "adam"
    new = generate_sessions(n_events=600, n_items=60, mean_length=6, signal=0.8, seed=2)
    a = loaded.fit(new, warm_start=True)
    b = m.fit(new, warm_start=True)
    assert a._opt_step == b._opt_step
    for k in b.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def test_switching_the_optimizer_starts_fresh_state(synth, caplog):
    m = small(optimizer="adagrad", momentum=0.0).fit(synth)
    assert not m._vel
    m.optimizer = "adam"
    with caplog.at_level(logging.INFO, logger="grurec"):
        m.fit(synth, warm_start=True)
    assert "adagrad's and the model now uses adam" in caplog.text
    assert m._opt_of == "adam" and set(m._vel) == set(m.params)
    assert m._opt_step > 0 and all(np.isfinite(w).all() for w in m.params.values())


@pytest.mark.parametrize("kw, match", [
    (dict(optimizer="sgd"), "optimizer: must be one of"),
    (dict(adam_betas=(0.9,)), "adam_betas: must be two numbers"),
    (dict(adam_betas=(0.9, 1.0)), "adam_betas: must be two numbers"),
    (dict(adam_betas="ab"), "adam_betas: must be two numbers"),
    (dict(adam_eps=0.0), "adam_eps: must be > 0"),
])
def test_bad_adam_settings_are_rejected(synth, kw, match):
    with pytest.raises(ValueError, match=match):
        small(**kw).fit(synth)


def test_narm_adagrad_init_is_refused_with_adam():
    with pytest.raises(ValueError, match="attention_adagrad_init"):
        grurec.NARM(optimizer="adam", attention_adagrad_init=1.0)


def test_get_params_round_trip():
    m = grurec.UserGRU(optimizer="adam", adam_betas=[0.8, 0.99], adam_eps=1e-7)
    p = m.get_params()
    assert p["optimizer"] == "adam" and p["adam_betas"] == [0.8, 0.99]
    assert grurec.UserGRU(**p).get_params() == p
