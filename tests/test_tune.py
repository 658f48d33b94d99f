"""grurec.tune (Optuna) on tiny data: spaces, validation split, per-epoch
pruning, seeds, resuming an SQLite study, best setting, CLI, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import grurec
from grurec.synthetic import generate_sessions
from optional_deps import need

optuna = need("optuna", "tune")
import grurec.tune as gt  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Tiny and fast: small layers, few negatives (the searched values stay).
FAST = {"layers": [16], "n_sample": 32, "batch_size": 16}


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=500, n_items=40, mean_length=5, signal=0.8, seed=3)


def run(events, tmp_path, **kw):
    args = dict(n_trials=2, n_epochs=1, num_threads=1, storage=tmp_path / "t.db",
                fixed=FAST, seed=0)
    args.update(kw)
    return gt.tune(events, **args)


def test_published_gru4rec_ranges_per_loss():
    xe, bpr = gt.space_for("GRU4Rec", "cross-entropy"), gt.space_for("GRU4Rec", "bpr-max")
    common = {"layers": ("int", 64, 512, 32), "batch_size": ("int", 32, 256, 16),
              "dropout_p_embed": ("float", 0.0, 0.85, 0.05),
              "dropout_p_hidden": ("float", 0.0, 0.85, 0.05),
              "learning_rate": ("float", 0.01, 0.25, 0.005),
              "momentum": ("float", 0.0, 0.9, 0.05), "sample_alpha": ("float", 0.0, 1.0, 0.1)}
    for sp in (xe, bpr):
        assert {k: sp[k] for k in common} == common
    assert xe["logq"] == ("categorical", [0.0, 1.0]) and "bpreg" not in xe
    assert bpr["bpreg"] == ("float", 0.0, 2.0, 0.05)
    assert bpr["elu_param"] == ("float", 0.0, 1.0, 0.05) and "logq" not in bpr


def test_validation_split_is_by_time_and_never_overlaps(events):
    tr, va = gt.split_validation(events, valid_fraction=0.2)
    assert tr.times.max() < va.times.min()
    assert set(va.item_ids) <= set(tr.item_ids)  # unseen validation items dropped
    n_sess = events["SessionId"].nunique()
    assert 0.1 * n_sess < va.n_sessions <= 0.2 * n_sess + 1


def test_trial_value_is_the_validation_metric_of_its_seeded_model(events, tmp_path):
    r = run(events, tmp_path, n_trials=2, n_epochs=2, metric="mrr", cutoff=5, pruner="none")
    tr, va = gt.split_validation(events)
    t = r.study.trials[1]
    p = dict(t.user_attrs["params"])
    assert p["random_state"] == 1 and p["n_epochs"] == 2  # seed + trial number
    m = grurec.GRU4Rec(**p).fit(tr)
    assert grurec.evaluate(m, va, cutoffs=(5,))["mrr@5"] == t.intermediate_values[2]
    assert t.value == max(t.intermediate_values.values())
    assert r.objective == "mrr@5"


def test_every_epoch_is_reported_and_the_pruner_stops_the_trial(events, tmp_path):
    # A pruner that stops everything below 2.0 (recall never is): each trial
    # is pruned at its first report, so later epochs never run.
    r = run(events, tmp_path, n_trials=3, n_epochs=4,
            pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    ts = r.study.trials
    assert [t.state for t in ts] == [optuna.trial.TrialState.PRUNED] * 3
    assert all(list(t.intermediate_values) == [1] for t in ts)
    assert r.best_params is None
    # No pruning: every epoch reported, the best epoch becomes n_epochs.
    r = run(events, tmp_path, study_name="all", n_trials=1, n_epochs=3, pruner="none")
    t = r.study.trials[0]
    assert sorted(t.intermediate_values) == [1, 2, 3]
    assert r.best_params["n_epochs"] == t.user_attrs["best_epoch"]
    assert t.intermediate_values[r.best_params["n_epochs"]] == r.best_value


def test_sqlite_study_resumes_to_n_trials(events, tmp_path):
    a = run(events, tmp_path, n_trials=2)
    first = [(t.params, t.value) for t in a.study.trials]
    b = run(events, tmp_path, n_trials=3)
    assert len(b.study.trials) == 3
    assert [(t.params, t.value) for t in b.study.trials[:2]] == first
    c = run(events, tmp_path, n_trials=3)  # complete already: runs nothing
    assert len(c.study.trials) == 3 and c.best_value == b.best_value


def test_seeded_searches_repeat(events, tmp_path):
    a = run(events, tmp_path, storage=tmp_path / "a.db")
    b = run(events, tmp_path, storage=tmp_path / "b.db")
    assert [t.params for t in a.study.trials] == [t.params for t in b.study.trials]
    assert [t.value for t in a.study.trials] == [t.value for t in b.study.trials]


def test_best_setting_as_dict_and_preset_builds_the_model(events, tmp_path):
    r = run(events, tmp_path, loss=["cross-entropy", "bpr-max"], n_trials=3)
    bp = r.best_params
    assert bp["loss"] in ("cross-entropy", "bpr-max") and bp["layers"] == [16]
    assert not set(bp) & {"num_threads", "random_state", "show_progress"}
    assert {"momentum_type", "gru_cell", "embedding"} <= set(bp)  # defaults recorded too
    m = grurec.GRU4Rec.from_params(r.preset, num_threads=1, show_progress=False)
    assert {k: getattr(m, k) for k in bp} == bp
    assert r.preset.params == bp and not r.preset.official
    m2 = r.make_model(num_threads=1)
    assert m2.learning_rate == bp["learning_rate"]
    df = r.table()
    assert len(df) == 3 and df["value"].iloc[0] == r.best_value
    assert {"number", "state", "value", "best_epoch", "worker", "learning_rate"} <= set(df)


def test_from_params_rejects_unknown_names():
    with pytest.raises(ValueError, match="'hidden' is not a GRU4Rec hyperparameter"):
        grurec.GRU4Rec.from_params({"hidden": 100})
    with pytest.raises(TypeError, match="params: expected a dict or a Preset"):
        grurec.GRU4Rec.from_params([("layers", [10])])
    m = grurec.GRU4Rec.from_params(grurec.presets.PRESETS["rsc15_xe_shared_100"],
                                     n_epochs=1)
    assert m.layers == [100] and m.n_epochs == 1 and m.logq == 1.0


def test_baseline_models_have_their_own_spaces(events, tmp_path):
    r = run(events, tmp_path, model="ItemKNN", fixed=None, n_trials=2)
    assert set(r.best_params) == {"n_sims", "lmbd", "alpha"}
    assert r.study.trials[0].params.keys() == {"lmbd", "alpha"}  # searched
    assert r.make_model().lmbd == r.best_params["lmbd"]


@pytest.mark.parametrize("kw, match", [
    (dict(metric="auc"), "metric: expected one of"),
    (dict(cutoff=0), "cutoff: must be >= 1"),
    (dict(loss="hinge"), "loss: expected one of"),
    (dict(model="NoSuchModel"), "model: expected a grurec model class"),
    (dict(space={"layers": ("int", 10)}), r"space\['layers'\]"),
    (dict(pruner="sometimes"), "pruner: expected"),
    (dict(valid_fraction=1.5), "valid_fraction: must be a number in"),
    (dict(storage=3.5), "storage: expected a file path"),
])
def test_bad_arguments_name_the_parameter(events, tmp_path, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run(events, tmp_path, **kw)


def test_a_study_keeps_its_objective(events, tmp_path):
    run(events, tmp_path, n_trials=1)
    with pytest.raises(ValueError, match="optimizes objective 'recall@20', not 'mrr@20'"):
        run(events, tmp_path, n_trials=1, metric="mrr")


def test_cli_tune_writes_a_best_setting_from_params_takes(events, tmp_path, capsys):
    from grurec.cli import main

    path = tmp_path / "ev.csv"
    events.to_csv(path, index=False)
    best = tmp_path / "best.json"
    rc = main(["tune", str(path), "--storage", str(tmp_path / "cli.db"), "--n-trials", "2",
               "--n-epochs", "1", "--num-threads", "1", "--quiet", "--fixed", "layers=[16]",
               "n_sample=32", "--best-json", str(best)])
    out = capsys.readouterr().out
    assert rc == 0 and "study 'grurec': 2 trials" in out and "best: trial" in out
    doc = json.loads(best.read_text())
    assert doc["objective"] == "recall@20" and doc["best_params"]["n_sample"] == 32
    m = grurec.GRU4Rec.from_params(gt.load_best(best), num_threads=1, show_progress=False)
    m.fit(events)
    assert np.isfinite(m.params["W_y"]).all()
    with pytest.raises(SystemExit) as e:
        main(["tune", str(path), "--storage", str(tmp_path / "cli.db"), "--metric", "auc"])
    assert e.value.code == 2
    assert main(["tune", str(path), "--storage", str(tmp_path / "cli.db"), "--cutoff", "0"]) == 2
    assert "cutoff: must be >= 1" in capsys.readouterr().err


def test_without_optuna_the_error_says_what_to_install(events, monkeypatch, capsys):
    import sys

    from grurec.cli import main

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ImportError, match=r'pip install "grurec\[tune\]"'):
        gt.tune(events)
    assert main(["tune", "events.csv"]) == 2
    assert 'pip install "grurec[tune]"' in capsys.readouterr().err
