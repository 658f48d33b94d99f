"""fit(valid=..., patience=..., metric=...): per-epoch validation with the
evaluate code, the best epoch's weights kept, early stopping (issue 23, item 2)."""
import numpy as np
import pytest

import grurec
from grurec.synthetic import generate_sessions


@pytest.fixture(scope="module")
def data():
    train = generate_sessions(n_events=4000, n_items=80, mean_length=5, signal=0.6, seed=1)
    valid = generate_sessions(n_events=800, n_items=80, mean_length=5, signal=0.6, seed=2)
    valid["SessionId"] += 10**6
    return train, valid


def model(**kw):
    return grurec.GRU4Rec(**dict(dict(layers=[8], batch_size=8, n_sample=16, n_epochs=6,
                                      num_threads=1, random_state=5, show_progress=False), **kw))


def same_weights(a, b):
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def scripted(monkeypatch, values):
    """Make the per-epoch validation return ``values`` in turn (the rest of
    fit is real)."""
    it = iter(values)
    real = grurec.evaluation.evaluate

    def fake(m, test, cutoffs, **kw):
        out = real(m, test, cutoffs=cutoffs, **kw)
        return dict(out, **{f"mrr@{cutoffs[0]}": next(it)})

    monkeypatch.setattr(grurec.evaluation, "evaluate", fake)


def test_history_holds_the_evaluate_metric_of_every_epoch(data):
    train, valid = data
    m = model(n_epochs=3).fit(train, valid=valid, metric="recall@10")
    assert [h["epoch"] for h in m.history] == [1, 2, 3]
    best = int(np.argmax([h["recall@10"] for h in m.history])) + 1
    assert m.best_epoch == best and m.epochs_trained == best
    # the kept weights score exactly what the history says, by grurec.evaluate
    assert grurec.evaluate(m, valid, cutoffs=10)["recall@10"] == m.history[best - 1]["recall@10"]
    # each epoch's figure is grurec.evaluate's on that epoch's weights
    for e in (1, 2):
        ref = model(n_epochs=e).fit(train)
        assert grurec.evaluate(ref, valid, cutoffs=10)["recall@10"] == \
            m.history[e - 1]["recall@10"]


def test_patience_stops_and_restores_the_best_epoch(data, monkeypatch):
    train, valid = data
    scripted(monkeypatch, [0.10, 0.30, 0.20, 0.29, 0.99, 0.99])
    m = model(n_epochs=6).fit(train, valid=valid, patience=2)
    assert [h["mrr@20"] for h in m.history] == [0.10, 0.30, 0.20, 0.29]  # stopped after 4
    assert m.best_epoch == 2 and m.epochs_trained == 2
    same_weights(m, model(n_epochs=2).fit(train))  # epoch 2's weights, not epoch 4's


def test_without_patience_all_epochs_run_and_the_best_is_kept(data, monkeypatch):
    train, valid = data
    scripted(monkeypatch, [0.1, 0.4, 0.2, 0.3])
    m = model(n_epochs=4).fit(train, valid=valid)
    assert len(m.history) == 4 and m.best_epoch == 2
    same_weights(m, model(n_epochs=2).fit(train))


def test_last_epoch_best_keeps_the_final_weights(data, monkeypatch):
    train, valid = data
    scripted(monkeypatch, [0.1, 0.2, 0.3])
    m = model(n_epochs=3).fit(train, valid=valid, patience=1)
    assert m.best_epoch == 3
    same_weights(m, model(n_epochs=3).fit(train))


def test_valid_fraction_is_carved_from_the_end_by_time(data):
    train, _ = data
    m = model(n_epochs=2).fit(train, valid=0.2)
    assert len(m.history) == 2 and all("mrr@20" in h for h in m.history)
    cut = np.quantile(train.Time.to_numpy(), 0.8)
    sp = grurec.splits.time_split(train, cut=cut, straddling="truncate", min_length=1)
    # trained only on the events before the cut, validated on the sessions after it
    same_weights(m, model(n_epochs=m.best_epoch).fit(sp.train))
    assert grurec.evaluate(m, sp.test, cutoffs=20)["mrr@20"] == \
        m.history[m.best_epoch - 1]["mrr@20"]


@pytest.mark.parametrize("kw,match", [
    (dict(patience=2), "patience: early stopping needs validation data"),
    (dict(valid=0.2, patience=0), "patience: must be >= 1"),
    (dict(valid=1.5), r"valid: a fraction of the training data must be in \(0, 1\)"),
    (dict(valid=True), "valid: expected held-out events or a fraction"),
    (dict(valid=0.2, metric="auc@20"), "metric: expected one of mrr@K"),
    (dict(valid=0.2, metric="mrr"), "metric:"),
    (dict(valid=0.2, metric="mrr@0"), "metric:"),
])
def test_bad_arguments_name_the_parameter(data, kw, match):
    with pytest.raises(ValueError, match=match):
        model().fit(data[0], **kw)


def test_a_validation_set_with_nothing_to_predict_is_refused(data):
    train, valid = data
    one = valid.drop_duplicates("SessionId")  # every session one event long
    with pytest.raises(ValueError, match="valid: no validation session has 2 or more events"):
        model().fit(train, valid=one)
