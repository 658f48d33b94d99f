"""The command line on a user's own files (issue 23, item 5): --sep, --model /
--param, train --valid / --patience, `grurec compare TRAIN TEST`."""
import json
import re

import pytest

import grurec
from grurec import cli
from grurec.synthetic import generate_sessions

GRU = ["--layers", "8", "--batch-size", "8", "--n-sample", "16", "--n-epochs", "2",
       "--num-threads", "1", "--random-state", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    tr = generate_sessions(n_events=3000, n_items=60, mean_length=5, signal=0.6, seed=1)
    te = generate_sessions(n_events=600, n_items=60, mean_length=5, signal=0.6, seed=2)
    te["SessionId"] += 10**6
    tr.to_csv(d / "train.csv", sep=";", index=False)
    te.to_csv(d / "test.csv", sep=";", index=False)
    tr.to_csv(d / "train.txt", sep="|", index=False)
    return d


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_compare_prints_every_model_on_own_files(files, capsys):
    rc, out, err = run(capsys, "compare", files / "train.csv", files / "test.csv", "--sep", ";",
                       "--quiet", *GRU)
    assert rc == 0, err
    rows = {m.group(1): float(m.group(3)) for m in re.finditer(
        r"^(GRU4Rec|POP|S-POP|Item-KNN|V-SKNN)\s+([\d.]+)\s+([\d.]+)", out, re.M)}
    assert set(rows) == {"GRU4Rec", "POP", "S-POP", "Item-KNN", "V-SKNN"}
    # the table's figures are grurec.evaluate's
    sd = grurec.to_sessions(files / "train.csv", sep=";")
    test = grurec.to_sessions(files / "test.csv", sep=";")
    pop = grurec.evaluate(grurec.baselines.Popularity().fit(sd), test, cutoffs=20)
    assert rows["POP"] == pytest.approx(pop["mrr@20"], abs=5e-5)


def test_wrong_separator_names_the_fix(files, capsys):
    rc, out, err = run(capsys, "compare", files / "train.csv", files / "test.csv", "--quiet")
    assert rc == 2 and "pass sep=';'" in err and "--sep ';'" in err
    with pytest.raises(ValueError, match=r"separator looks like '\|': pass sep='\|'"):
        grurec.to_sessions(files / "train.txt", sep=",")
    assert grurec.to_sessions(files / "train.txt", sep="|").n_events == 3000


def test_train_with_validation_keeps_the_best_epoch(files, tmp_path, capsys):
    out_file = tmp_path / "m.grurec"
    rc, out, err = run(capsys, "train", files / "train.csv", "-o", out_file, "--sep", ";",
                       "--quiet", "--valid", "0.2", "--patience", "1", "--metric", "recall@10",
                       *GRU[:-6], "--n-epochs", "3", "--num-threads", "1", "--random-state", "0")
    assert rc == 0, err
    m = grurec.load(out_file)
    assert re.search(rf"kept epoch {m.epochs_trained} of \d: validation recall@10 0\.\d+", out)


def test_train_valid_from_a_file(files, tmp_path, capsys):
    rc, out, err = run(capsys, "train", files / "train.csv", "-o", tmp_path / "m.grurec",
                       "--sep", ";", "--quiet", "--valid", files / "test.csv", *GRU)
    assert rc == 0, err
    assert "kept epoch" in out


def test_train_and_evaluate_any_model(files, tmp_path, capsys):
    rc, out, err = run(capsys, "train", files / "train.csv", "--sep", ";", "--test",
                       files / "test.csv", "--model", "vsknn", "--param", "k=20",
                       "--param", "weighting=div", "--cutoffs", "20", "--json")
    assert rc == 0, err
    res = json.loads(out[out.index("{"):])
    sd = grurec.to_sessions(files / "train.csv", sep=";")
    test = grurec.to_sessions(files / "test.csv", sep=";")
    ref = grurec.evaluate(grurec.baselines.VSKNN(k=20, weighting="div").fit(sd), test,
                          cutoffs=20)
    assert res["mrr@20"] == pytest.approx(ref["mrr@20"], rel=1e-12)
    out_file = tmp_path / "v.grurec"
    rc, out, err = run(capsys, "train", files / "train.csv", "-o", out_file, "--sep", ";",
                       "--model", "vsknn")
    if callable(getattr(grurec.baselines.VSKNN, "save", None)):
        assert rc == 0, err
        assert type(grurec.load(out_file)).__name__ == "VSKNN"
    else:  # no model file for baselines: refused before training
        assert rc == 2 and "VSKNN models have no model file" in err
        assert not out_file.exists()


def test_compare_a_subset(files, capsys):
    rc, out, err = run(capsys, "compare", files / "train.csv", files / "test.csv", "--sep", ";",
                       "--models", "pop", "itemknn")
    assert rc == 0, err
    names = re.findall(r"^(GRU4Rec|POP|S-POP|Item-KNN|V-SKNN)\s", out, re.M)
    assert names == ["POP", "Item-KNN"]
    assert "beats" not in out


@pytest.mark.parametrize("argv,match", [
    (["--model", "knn"], "--model: unknown model 'knn'"),
    (["--param", "nope=1"], "--param 'nope=1': expected NAME=VALUE"),
    (["--param", "n_epochs=two"], "--param n_epochs: cannot read 'two' as int"),
    (["--model", "itemknn", "--n-epochs", "3"], "apply to GRU4Rec only"),
    (["--patience", "2"], "patience: early stopping needs validation data"),
    (["--valid", "0.1", "--metric", "auc@5"], "metric: expected one of"),
])
def test_train_option_errors(files, tmp_path, capsys, argv, match):
    rc, out, err = run(capsys, "train", files / "train.csv", "-o", tmp_path / "x.grurec",
                       "--sep", ";", "--quiet", *argv)
    assert rc == 2 and match in err
    assert not (tmp_path / "x.grurec").exists()


def test_train_needs_an_output_or_a_test(files, capsys):
    rc, out, err = run(capsys, "train", files / "train.csv", "--sep", ";")
    assert rc == 2 and "nothing to do: give -o MODEL" in err
