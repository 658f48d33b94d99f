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


# Issue 16, item 2: the official parameter files, value for value (loss, layers,
# batch, dropout_p_embed / dropout_p_hidden, lr, momentum, sample_alpha, bpreg,
# elu_param, logq); all: constrained embedding, n_sample 2048, 10 epochs.
OFFICIAL_FILES = {
    "rsc15_xe_shared_100": ("cross-entropy", [100], 32, 0.0, 0.4, 0.2, 0.2, 0.5, 0, 0, 1),
    "yoochoose_xe_shared": ("cross-entropy", [480], 48, 0.0, 0.2, 0.07, 0.0, 0.2, 0, 0, 1),
    "retailrocket_bprmax_shared": ("bpr-max", [224], 80, 0.5, 0.05, 0.05, 0.4, 0.4, 1.95, 0.5, 0),
    "diginetica_bprmax_shared": ("bpr-max", [512], 128, 0.5, 0.3, 0.05, 0.15, 0.3, 0.9, 1, 0),
    "rees46_xe_shared": ("cross-entropy", [512], 240, 0.45, 0.0, 0.065, 0.0, 0.5, 0, 0, 1),
    "coveo_bprmax_shared": ("bpr-max", [512], 144, 0.35, 0.0, 0.05, 0.4, 0.2, 1.85, 1, 0),
}
KEYS = ("loss", "layers", "batch_size", "dropout_p_embed", "dropout_p_hidden", "learning_rate",
        "momentum", "sample_alpha", "bpreg", "elu_param", "logq")


@pytest.mark.parametrize("name", sorted(OFFICIAL_FILES))
def test_official_presets_equal_the_parameter_files(name):
    p = presets.get(name)
    assert tuple(p[k] for k in KEYS) == OFFICIAL_FILES[name]
    assert (p["constrained_embedding"], p["n_sample"], p["n_epochs"]) == (True, 2048, 10)
    # ... trained with the official algorithm
    assert (p["gru_cell"], p["momentum_type"]) == ("reset-after", "heavy-ball")
    assert presets.PRESETS[name].official


def test_only_the_official_files_are_called_official():
    assert sorted(n for n, p in presets.PRESETS.items() if p.official) == sorted(OFFICIAL_FILES)
    for name, p in presets.PRESETS.items():
        if not p.official:
            assert name.startswith("search_") and name.endswith("_valid")
            assert "official" not in p.source and "published" not in p.source


def test_old_names_say_what_replaced_them():
    with pytest.raises(ValueError, match=r"unknown name 'rsc15' \(renamed: use rsc15_xe_shared_100"):
        presets.get("rsc15")
    with pytest.raises(ValueError, match="renamed: use retailrocket_bprmax_shared"):
        grurec.GRU4Rec.from_preset("retailrocket")


def test_get_returns_a_fresh_copy():
    a = presets.get("rsc15_xe_shared_100")
    a["layers"].append(7)
    a["loss"] = "bpr-max"
    assert presets.get("rsc15_xe_shared_100")["layers"] == [100]
    assert presets.get("rsc15_xe_shared_100")["loss"] == "cross-entropy"
    with pytest.raises(TypeError):
        presets.PRESETS["rsc15_xe_shared_100"].params["loss"] = "x"  # read-only view


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown name 'rsc16'.*rsc15_xe_shared_100.*retailrocket_bprmax_shared"):
        grurec.GRU4Rec.from_preset("rsc16")
    with pytest.raises(ValueError, match="preset"):
        presets.get(["rsc15_xe_shared_100"])


def test_from_preset_overrides_and_checks():
    m = grurec.GRU4Rec.from_preset("retailrocket_bprmax_shared", n_epochs=2, layers=[16], num_threads=1,
                                   random_state=3, show_progress=False)
    assert (m.n_epochs, m.layers, m.num_threads, m.random_state) == (2, [16], 1, 3)
    assert (m.loss, m.bpreg, m.momentum) == ("bpr-max", 1.95, 0.4)
    with pytest.raises(ValueError, match="learning_rate"):
        grurec.GRU4Rec.from_preset("rsc15_xe_shared_100", learning_rate=-1)
    with pytest.raises(TypeError):
        grurec.GRU4Rec.from_preset("rsc15_xe_shared_100", no_such_option=1)


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

    m = fit("--preset", "retailrocket_bprmax_shared", "--momentum", "0.1")
    assert (m.loss, m.batch_size, m.bpreg, m.elu_param, m.dropout_p_embed) == (
        "bpr-max", 80, 1.95, 0.5, 0.5)                     # from the preset
    assert (m.layers, m.n_epochs, m.n_sample, m.momentum) == ([8], 1, 16, 0.1)  # typed
    m = fit()                                               # no preset: the defaults
    d = grurec.GRU4Rec()
    assert (m.loss, m.batch_size, m.bpreg, m.momentum) == (d.loss, d.batch_size, d.bpreg,
                                                           d.momentum)
    out = subprocess.run([sys.executable, "-m", "grurec", "train", str(tmp_path / "train.csv"),
                          "-o", str(tmp_path / "x"), "--preset", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'nope'" in out.stderr


def test_defaults_are_the_chosen_official_file():
    """GRU4Rec()'s defaults are retailrocket_bprmax_shared, the setting with the
    best mean rank in benchmarks/choose_defaults.py (docs/own-data.md)."""
    d = grurec.GRU4Rec().get_params()
    for k, v in presets.get("retailrocket_bprmax_shared").items():
        assert d[k] == v, k


# The model families with presets of their own: (class, getter, names, the
# key describe() lists them under, a hyperparameter of their own to check).
FAMILIES = {
    "UserGRU": (grurec.UserGRU, presets.get_user, presets.user_names(), "{}", "bptt"),
    "NARM": (grurec.NARM, presets.get_narm, presets.narm_names(), "NARM {}",
             "attention_memory"),
    "UserNARM": (grurec.UserNARM, presets.get_user_narm, presets.user_narm_names(),
                 "UserNARM {}", "attention_adagrad_init"),
}


@pytest.mark.parametrize("family,name", [(f, n) for f, v in FAMILIES.items() for n in v[2]])
def test_every_family_preset_sets_every_hyperparameter(family, name):
    cls, get, _, key, own = FAMILIES[family]
    hyper = [n for n in inspect.signature(cls.__init__).parameters if n not in RUNTIME]
    p = get(name)
    assert sorted(p) == sorted(hyper), f"a preset must not depend on {family}'s defaults"
    m = cls.from_preset(name, show_progress=False)
    assert m.get_params()[own] == p[own]
    assert presets.describe()[key.format(name)].startswith("grurec:")


def test_user_presets_are_their_own_family():
    assert set(presets.user_names()) == {"beauty-s3rec", "beauty-s3rec-attributes",
                                         "amazon-beauty", "ml-100k"}
    with pytest.raises(ValueError, match="a UserGRU preset: use UserGRU.from_preset"):
        grurec.GRU4Rec.from_preset("beauty-s3rec")
    with pytest.raises(ValueError, match="a GRU4Rec preset: use GRU4Rec.from_preset"):
        grurec.UserGRU.from_preset("rsc15_xe_shared_100")


def test_user_narm_takes_user_presets_too():
    m = grurec.UserNARM.from_preset("amazon-beauty", attention_memory=3)
    assert m.attention_memory == 3 and m.n_sample == presets.get_user("amazon-beauty")["n_sample"]
    with pytest.raises(ValueError, match="UserNARM preset: unknown name"):
        grurec.UserNARM.from_preset("yoochoose1_64")


def test_narm_takes_gru4rec_presets_too():
    m = grurec.NARM.from_preset("search_yoochoose1_64_valid", bptt=5)
    assert m.bptt == 5 and m.attention_memory == 0
    assert m.learning_rate == presets.get("search_yoochoose1_64_valid")["learning_rate"]
    with pytest.raises(ValueError, match="NARM preset: unknown name 'nope'"):
        grurec.NARM.from_preset("nope")
