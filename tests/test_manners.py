"""Ecosystem manners every model shares (issue 23, item 6): scikit-learn's
get_params / set_params / clone, repr, similar_items / item_vectors, py.typed,
a clean dir(grurec), save() of an unfitted model, progress bars."""
import importlib.resources
import inspect

import numpy as np
import pytest

import grurec
from grurec import base
from grurec.synthetic import generate_sessions

CLASSES = sorted(base.model_classes().items())
NON_DEFAULT = {  # a hyperparameter setting other than the defaults, per class
    "GRU4Rec": dict(layers=[8, 4], loss="top1-max", learning_rate=0.2, n_epochs=2,
                    random_state=3, show_progress=False, num_threads=1),
    "ItemKNN": dict(n_sims=7, lmbd=0.5, alpha=0.25),
    "UserGRU": dict(layers=[8, 4], loss="top1-max", learning_rate=0.2, n_epochs=2, bptt=3,
                    max_len=20, random_state=3, show_progress=False, num_threads=1),
    "UserNARM": dict(layers=[8, 4], loss="top1-max", learning_rate=0.2, n_epochs=2, bptt=3,
                     attention_memory=2, attention_dim=5, max_len=20, random_state=3,
                     show_progress=False, num_threads=1),
    "VSKNN": dict(k=5, sample_size=50, weighting="div", similarity="dot", idf_weighting=True),
}


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=3000, n_items=60, mean_length=5, seed=1)


def small(name, **kw):
    cls = base.model_class(name)
    if name in ("GRU4Rec", "UserGRU", "UserNARM"):
        kw = dict(dict(layers=[8], batch_size=8, n_sample=8, n_epochs=2, num_threads=1,
                       random_state=0, show_progress=False), **kw)
    return cls(**kw)


def _as(name, events):
    """Events as the model takes them: UserGRU groups by a user column."""
    return (events.rename(columns={"SessionId": "UserId"}) if name in ("UserGRU", "UserNARM")
            else events)


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_get_params_names_every_init_argument(name, cls):
    m = cls(**NON_DEFAULT.get(name, {}))
    p = m.get_params()
    assert list(p) == [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    for k, v in NON_DEFAULT.get(name, {}).items():
        assert p[k] == v
    assert cls(**p).get_params() == p


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_init_stores_what_it_is_given(name, cls):
    # sklearn.base.clone's own check, without scikit-learn: rebuilding from
    # get_params() must store the very objects passed.
    m = cls(**NON_DEFAULT.get(name, {}))
    p = m.get_params(deep=False)
    again = cls(**p)
    for k, v in again.get_params(deep=False).items():
        assert v is p[k], k


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_sklearn_clone(name, cls, events):
    sk = pytest.importorskip("sklearn.base", reason="scikit-learn not installed (.ci/run "
                             "installs it for the docs step and reruns this file)")
    m = small(name, **NON_DEFAULT.get(name, {})).fit(_as(name, events))
    c = sk.clone(m)
    assert type(c) is cls and c is not m
    assert c.get_params() == m.get_params()
    with pytest.raises(RuntimeError, match="not fitted"):
        c.recommend([[events.ItemId.iloc[0]]])


def test_set_params_checks_and_names_the_parameter():
    m = grurec.GRU4Rec()
    assert m.set_params(n_epochs=3, layers=[16]) is m
    assert m.n_epochs == 3 and m.layers == [16]
    with pytest.raises(ValueError, match="learning_rat: not a hyperparameter of GRU4Rec"):
        m.set_params(learning_rat=0.1)
    with pytest.raises(ValueError, match="dropout_p_hidden"):
        m.set_params(n_epochs=5, dropout_p_hidden=1.5)
    assert m.n_epochs == 3 and m.dropout_p_hidden == grurec.GRU4Rec().dropout_p_hidden
    k = grurec.baselines.VSKNN()
    with pytest.raises(ValueError, match="weighting"):
        k.set_params(weighting="cubic")
    assert k.weighting == "linear"


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_repr_shows_changed_parameters_and_rebuilds(name, cls):
    assert repr(cls()) == f"{name}()"
    m = cls(**NON_DEFAULT.get(name, {}))
    r = repr(m)
    assert "object at 0x" not in r
    for k in NON_DEFAULT.get(name, {}):
        assert f"{k}=" in r
    ns = {name: cls}
    assert eval(r, ns).get_params() == m.get_params()


def test_gru4rec_similar_items_is_cosine_of_the_output_table(events):
    m = small("GRU4Rec").fit(events)
    V = m.item_vectors()
    assert V.shape == (m.n_items, m.layers[-1]) and V.dtype == np.float32
    np.testing.assert_array_equal(V, m.params["W_y"])
    V[:] = 0  # a copy: the model is untouched
    assert np.abs(m.params["W_y"]).sum() > 0
    item = m.item_ids[5]
    ids, sims = m.similar_items(item, k=7)
    W = m.params["W_y"].astype(np.float64)
    ref = W @ W[5] / (np.linalg.norm(W, axis=1) * np.linalg.norm(W[5]))
    ref[5] = -np.inf
    order = np.argsort(-ref, kind="stable")[:7]
    assert item not in ids and len(ids) == 7
    np.testing.assert_allclose(sims, ref[order], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ids, m.item_ids[order])


def test_itemknn_similar_items_are_its_neighbours(events):
    m = grurec.baselines.ItemKNN(n_sims=5).fit(events)
    i = 3
    ids, sims = m.similar_items(m.item_ids[i], k=5)
    a, b = m.sim_indptr[i], m.sim_indptr[i + 1]
    np.testing.assert_array_equal(ids[:b - a], m.item_ids[m.sim_indices[a:b]])
    np.testing.assert_array_equal(sims[:b - a], m.sim_data[a:b])


def test_vsknn_similar_items_and_capped_k(events):
    m = grurec.baselines.VSKNN().fit(events)
    item = m.item_ids[0]
    ids, _ = m.similar_items(item, k=10_000)
    assert len(ids) == m.n_items - 1 and item not in ids
    rec, _ = m.recommend([[item]], k=3, exclude_seen=True)
    np.testing.assert_array_equal(m.similar_items(item, 3)[0], rec[0])


@pytest.mark.parametrize("name", ["Popularity", "SessionPopularity"])
def test_popularity_models_have_no_similarity(name, events):
    m = small(name).fit(events)
    with pytest.raises(NotImplementedError, match="no item similarity"):
        m.similar_items(m.item_ids[0])
    with pytest.raises(NotImplementedError, match="no item vectors"):
        m.item_vectors()


def test_similar_items_bad_input(events):
    m = grurec.baselines.ItemKNN().fit(events)
    with pytest.raises(ValueError, match="item: 123456789 is not in the model's vocabulary"):
        m.similar_items(123456789)
    with pytest.raises(TypeError, match="item: item id 'nope' is a string"):
        m.similar_items("nope")
    with pytest.raises(ValueError, match="k: must be >= 1"):
        m.similar_items(m.item_ids[0], k=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        grurec.GRU4Rec().similar_items(1)


def test_py_typed_and_a_clean_namespace():
    assert (importlib.resources.files("grurec") / "py.typed").is_file()
    assert "annotations" not in dir(grurec)
    for name in grurec.__all__:
        assert hasattr(grurec, name), name


def test_save_of_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        grurec.GRU4Rec().save(tmp_path / "m.grurec")
    assert not (tmp_path / "m.grurec").exists()
    assert grurec.load(grurec.GRU4Rec().to_bytes()).params == {}  # pickling still works


def test_evaluate_progress_bar(events, capsys):
    m = grurec.baselines.Popularity().fit(events)
    quiet = grurec.evaluate(m, events, show_progress=False, chunk_events=500)
    assert capsys.readouterr().err == ""
    loud = grurec.evaluate(m, events, show_progress=True, chunk_events=500)
    assert "evaluate" in capsys.readouterr().err
    assert loud == quiet
    grurec.evaluate(m, events, chunk_events=500)  # None: more than one chunk -> a bar
    assert "evaluate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="show_progress"):
        grurec.evaluate(m, events, show_progress="yes")


@pytest.mark.parametrize("name", ["GRU4Rec", "ItemKNN"])
def test_recommend_progress_bar_in_chunks_gives_the_same_lists(name, events, capsys,
                                                               monkeypatch):
    m = small(name).fit(events)
    sessions = [list(g) for _, g in events.groupby("SessionId").ItemId][:300]
    want = m.recommend(sessions, k=5, exclude_seen=True, show_progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(base, "_PROGRESS_SESSIONS", 40)  # chunks of 10 sessions
    got = m.recommend(sessions, k=5, exclude_seen=True)
    assert "recommend" in capsys.readouterr().err
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_fit_show_progress_overrides_the_model(events, capsys):
    m = small("GRU4Rec", show_progress=True)
    m.fit(events, show_progress=False)
    assert capsys.readouterr().err == ""
    m.fit(events)
    assert "epoch 1/2" in capsys.readouterr().err
    with pytest.raises(TypeError, match="show_progress"):
        m.fit(events, show_progress="no")


def test_progress_bar_never_shows_a_zero_loss(events, monkeypatch):
    """The native loop sends loss_sum 0 while it waits for other workers; the
    bar keeps the last real reading instead of flashing loss=0.0000."""
    shown = []

    class Bar:
        def __init__(self, *a, **k):
            pass

        def update(self, n):
            pass

        def set_postfix(self, **k):
            shown.append(k["loss"])

        def close(self):
            pass

    import tqdm.auto

    real = grurec._core.train_epoch

    def train_epoch(*args):
        progress = args[-1]
        progress(10, 25.0, 1)
        progress(20, 0.0, 2)  # a frame without a loss reading
        return real(*args)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr(grurec._core, "train_epoch", train_epoch)
    small("GRU4Rec", n_epochs=1, show_progress=True).fit(events)
    assert shown[0] == "2.5000" and "0.0000" not in shown and len(shown) >= 2


@pytest.mark.parametrize("name,cls", CLASSES, ids=[n for n, _ in CLASSES])
def test_every_model_takes_fit_show_progress(name, cls, events, capsys):
    m = small(name).fit(_as(name, events), show_progress=False)
    assert m.n_items > 0 and capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="show_progress"):
        small(name).fit(_as(name, events), show_progress="quiet")
