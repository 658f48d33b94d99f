"""grurec.presets, GRU4Rec.from_preset and the CLI's --preset."""
import inspect
import subprocess
import sys

import pytest

import grurec
from grurec import presets
from grurec.synthetic import generate_sessions

# Options that say how to run, not what to train: presets leave them alone.
RUNTIME = {"self", "num_threads", "random_state", "show_progress", "parallel"}
HYPER = [n for n in inspect.signature(grurec.GRU4Rec.__init__).parameters if n not in RUNTIME]


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_sets_every_hyperparameter_and_is_valid(name):
    p = presets.get(name)
    assert sorted(p) == sorted(HYPER), "a preset must not depend on GRU4Rec's defaults"
    m = grurec.GRU4Rec.from_preset(name, show_progress=False)
    for k, v in p.items():
        assert getattr(m, k) == v, k
    assert presets.describe()[name]


def test_published_settings_are_those_issue_3_names():
    # Issue 3, item 7: the RSC15 and RetailRocket configurations.
    rsc15 = presets.get("rsc15")
    assert {k: rsc15[k] for k in ("loss", "layers", "batch_size", "n_sample", "sample_alpha",
                                  "logq", "dropout_p_embed", "learning_rate",
                                  "constrained_embedding", "n_epochs")} == dict(
        loss="cross-entropy", layers=[100], batch_size=32, n_sample=2048, sample_alpha=0.75,
        logq=1.0, dropout_p_embed=0.1, learning_rate=0.1, constrained_embedding=True,
        n_epochs=10)
    rr = presets.get("retailrocket")
    assert {k: rr[k] for k in ("loss", "layers", "batch_size", "dropout_p_embed",
                               "dropout_p_hidden", "learning_rate", "momentum", "n_sample",
                               "sample_alpha", "bpreg", "elu_param", "constrained_embedding")} == dict(
        loss="bpr-max", layers=[224], batch_size=80, dropout_p_embed=0.5, dropout_p_hidden=0.05,
        learning_rate=0.05, momentum=0.4, n_sample=2048, sample_alpha=0.4, bpreg=1.95,
        elu_param=0.5, constrained_embedding=True)
    assert [n for n, p in presets.PRESETS.items() if p.published] == ["rsc15", "retailrocket"]


def test_get_returns_a_fresh_copy():
    a = presets.get("rsc15")
    a["layers"].append(7)
    a["loss"] = "bpr-max"
    assert presets.get("rsc15")["layers"] == [100]
    assert presets.get("rsc15")["loss"] == "cross-entropy"
    with pytest.raises(TypeError):
        presets.PRESETS["rsc15"].params["loss"] = "x"  # read-only view


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown name 'rsc16'.*rsc15.*retailrocket"):
        grurec.GRU4Rec.from_preset("rsc16")
    with pytest.raises(ValueError, match="preset"):
        presets.get(["rsc15"])


def test_from_preset_overrides_and_checks():
    m = grurec.GRU4Rec.from_preset("retailrocket", n_epochs=2, layers=[16], num_threads=1,
                                   random_state=3, show_progress=False)
    assert (m.n_epochs, m.layers, m.num_threads, m.random_state) == (2, [16], 1, 3)
    assert (m.loss, m.bpreg, m.momentum) == ("bpr-max", 1.95, 0.4)
    with pytest.raises(ValueError, match="learning_rate"):
        grurec.GRU4Rec.from_preset("rsc15", learning_rate=-1)
    with pytest.raises(TypeError):
        grurec.GRU4Rec.from_preset("rsc15", no_such_option=1)


def test_cli_preset_with_explicit_options_overriding(tmp_path):
    train = generate_sessions(n_events=2000, n_items=60, mean_length=5, seed=5)
    train.to_csv(tmp_path / "train.csv", index=False)

    def fit(*extra):
        out = subprocess.run([sys.executable, "-m", "grurec", "train", str(tmp_path / "train.csv"),
                              "-o", str(tmp_path / "m.grurec"), "--quiet", "--layers", "8",
                              "--n-epochs", "1", "--n-sample", "16", *extra],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return grurec.load(tmp_path / "m.grurec")

    m = fit("--preset", "retailrocket", "--momentum", "0.1")
    assert (m.loss, m.batch_size, m.bpreg, m.elu_param, m.dropout_p_embed) == (
        "bpr-max", 80, 1.95, 0.5, 0.5)                     # from the preset
    assert (m.layers, m.n_epochs, m.n_sample, m.momentum) == ([8], 1, 16, 0.1)  # typed
    m = fit()                                               # no preset: the defaults
    assert (m.loss, m.batch_size, m.bpreg, m.momentum) == ("cross-entropy", 32, 0.0, 0.0)
    out = subprocess.run([sys.executable, "-m", "grurec", "train", str(tmp_path / "train.csv"),
                          "-o", str(tmp_path / "x"), "--preset", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'nope'" in out.stderr
