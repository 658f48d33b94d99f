"""Property-based fuzzing of the model-facing API (issue 6): GRU4Rec's
hyperparameters, recommend, live sessions, score_prefixes, evaluate (GRU4Rec
and the four baselines), grurec.topk and grurec.gru_forward/gru_backward.

Every example ends in one of two ways, and the test checks which one is right:
a correct result (checked against a plain NumPy reference or the documented
invariants), or a ValueError/TypeError whose message names the argument at
fault. Anything else -- another exception, an unhelpful message, a wrong
answer, a crash of the process -- fails. Examples are derandomized and their
number fixed per test (tests/fuzzing.py).
"""
import math
import re

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import grurec  # noqa: E402
from grurec import baselines  # noqa: E402
from grurec.synthetic import generate_sessions  # noqa: E402

import reference as ref  # noqa: E402
from fuzzing import (Rejected, counted, fuzz_settings, hashable, is_int,  # noqa: E402
                     nasty_values, object_array, outcome, real, whole)

NASTY = st.sampled_from(nasty_values())


# ------------------------------------------------------------------ fixtures
def _train(seed=3, n_items=40):
    return generate_sessions(n_events=800, n_items=n_items, mean_length=5, signal=0.8, seed=seed)


@pytest.fixture(scope="module")
def gru():
    return grurec.GRU4Rec(layers=[8], batch_size=8, n_sample=16, n_epochs=1, num_threads=1,
                          random_state=0, show_progress=False).fit(_train())


@pytest.fixture(scope="module")
def gru_str():
    df = _train()
    df["ItemId"] = "i" + df["ItemId"].astype(str)
    return grurec.GRU4Rec(layers=[6, 5], embedding=4, constrained_embedding=False, batch_size=8,
                          n_sample=8, n_epochs=1, num_threads=1, random_state=0,
                          show_progress=False).fit(df)


@pytest.fixture(scope="module")
def models(gru, gru_str):
    train = _train()
    out = {"gru": gru, "gru_str": gru_str}
    for cls in (baselines.Popularity, baselines.SessionPopularity, baselines.ItemKNN,
                baselines.VSKNN):
        out[cls.__name__] = cls().fit(train)
    return out


MODEL_NAMES = ["gru", "gru_str", "Popularity", "SessionPopularity", "ItemKNN", "VSKNN"]


def known_index(model, e) -> int:
    """The documented id rule: an id is known if it equals a vocabulary id of
    the same kind (integers, whole floats and NumPy integers for an integer
    vocabulary; str for a string vocabulary; never a bool); else -1. -2: not
    an id at all (unhashable: a list, an array...) or an id of the other kind
    (a str for integer ids, a number for string ids), which must be refused."""
    if not hashable(e):
        return -2
    vocab = model.item_ids
    pos = {v: i for i, v in enumerate(vocab.tolist())}
    if vocab.dtype.kind in "iu" and isinstance(e, (str, bytes)):
        return -2
    if (vocab.dtype.kind not in "iu" and isinstance(e, (int, float, np.integer, np.floating))
            and not isinstance(e, (bool, np.bool_))):
        return -2
    if vocab.dtype.kind in "iu":
        if isinstance(e, (bool, np.bool_)) or not whole(e):
            return -1
        return pos.get(int(e), -1)
    return pos.get(e, -1) if isinstance(e, str) else -1


def ref_scores(model, items) -> np.ndarray:
    """float64 scores of every item after the known item indices ``items``."""
    if isinstance(model, grurec.GRU4Rec):
        W, b = model.params["W_y"].astype(np.float64), model.params["b_y"].astype(np.float64)
        return W @ ref.model_state(model, items) + b
    # Baselines: score_prefixes is the reference scorer (tested against plain
    # references in test_baselines.py); recommend must rank by it.
    return model.score_prefixes([np.asarray(items, np.int64)])[0].astype(np.float64)


def check_topk(ids_row, scores_row, ref, eligible, k, atol):
    """ids_row/scores_row are a correct top-k of ``ref`` over ``eligible``
    item indices: right length, descending, scores agree with the reference,
    nothing better left out (up to ``atol``: near-ties may order either way)."""
    assert len(ids_row) == k
    assert np.all(np.isfinite(scores_row))
    assert np.all(np.diff(scores_row.astype(np.float64)) <= atol)
    assert len(set(ids_row.tolist())) == k
    assert set(ids_row.tolist()) <= set(eligible.tolist())
    np.testing.assert_allclose(scores_row, ref[ids_row], rtol=1e-4, atol=atol)
    rest = np.setdiff1d(eligible, ids_row)
    if len(rest) and k:
        assert ref[rest].max() <= scores_row.astype(np.float64).min() + atol


# ------------------------------------------------------------------ GRU4Rec(...)
INT_HP = {"batch_size": 1, "n_sample": 0, "embedding": 0, "n_epochs": 0, "num_threads": 0}
FLOAT_HP = {"elu_param": (0, math.inf), "bpreg": (0, math.inf), "logq": (0, math.inf),
            "sample_alpha": (0, math.inf), "momentum": (0, 1), "learning_rate": (0, math.inf),
            "dropout_p_embed": (0, 1), "dropout_p_hidden": (0, 1)}
BOOL_HP = ("constrained_embedding", "show_progress")
CHOICE_HP = {"loss": ("cross-entropy", "bpr-max", "top1-max"), "parallel": ("hogwild", "sync")}
ALL_HP = sorted([*INT_HP, *FLOAT_HP, *BOOL_HP, *CHOICE_HP, "layers", "random_state"])


def hp_valid(name, v) -> bool:
    """The documented rule for each hyperparameter (README, GRU4Rec docstring)."""
    if name in INT_HP:
        return whole(v) and INT_HP[name] <= v < 2**31
    if name in FLOAT_HP:
        lo, hi = FLOAT_HP[name]
        if not real(v) or not math.isfinite(v):
            return False
        if name == "learning_rate":
            return v > 0
        return lo <= v < hi if hi == 1 else v >= lo
    if name in BOOL_HP:
        return isinstance(v, (bool, np.bool_)) or (is_int(v) and v in (0, 1))
    if name in CHOICE_HP:
        return isinstance(v, str) and v in CHOICE_HP[name]
    if name == "layers":
        seq = list(v) if isinstance(v, (list, tuple)) or (
            isinstance(v, np.ndarray) and v.ndim == 1) else [v]
        return bool(seq) and all(whole(h) and 1 <= h < 2**31 for h in seq)
    if name == "random_state":
        return v is None or (is_int(v) and v >= 0) or isinstance(
            v, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator))
    raise AssertionError(name)


HP_VALUES = st.one_of(NASTY, st.integers(-3, 2**32), st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from(["cross-entropy", "bpr-max", "top1-max", "hogwild", "sync",
                                       "CROSS-ENTROPY", [8], [8, 4], (4,), [0], [8, -1],
                                       np.array([3, 4]), [2.0], [2.5], ["8"]]))


@fuzz_settings(600)
@given(name=st.sampled_from(ALL_HP), value=HP_VALUES)
@counted
def test_hyperparameters_are_checked_by_name(name, value):
    try:
        m = outcome(lambda: grurec.GRU4Rec(**{name: value}), name)
    except Rejected:
        assert not hp_valid(name, value), f"{name}={value!r} is valid but was rejected"
        return
    assert hp_valid(name, value), f"{name}={value!r} is invalid but was accepted"
    v = getattr(m, name)
    if name in INT_HP:
        assert type(v) is int and v == value
    elif name in FLOAT_HP:
        assert type(v) is float and v == float(value)
    elif name in BOOL_HP:
        assert type(v) is bool and v == bool(value)
    elif name == "layers":
        assert all(type(h) is int for h in v) and v == [int(h) for h in np.ravel(value)]
    # a model that accepts its hyperparameters writes a model file that loads
    if name not in ("random_state",) or is_int(value) or value is None:
        back = grurec.GRU4Rec.from_bytes(m.to_bytes())
        if name != "random_state":
            assert getattr(back, name) == v


@fuzz_settings(40)
@given(name=st.sampled_from(ALL_HP), value=HP_VALUES)
@counted
def test_hyperparameters_set_after_construction_are_checked_by_fit(gru, name, value):
    m = grurec.GRU4Rec(layers=[4], batch_size=4, n_sample=4, n_epochs=1, num_threads=1,
                       show_progress=False)
    setattr(m, name, value)
    assume(not hp_valid(name, value))
    with pytest.raises((ValueError, TypeError), match=name):
        m.fit(_train())


# ------------------------------------------------------------------ recommend
def ids_for(model, draw_known, junk):
    """A strategy of single item ids: known ids of the model, or junk."""
    vocab = model.item_ids.tolist()
    return st.one_of(st.sampled_from(vocab), st.sampled_from(vocab).map(draw_known), junk)


JUNK_IDS = st.one_of(NASTY, st.integers(-10**20, 10**20), st.floats(), st.text(max_size=3))


def as_kind(v):
    """Known ids in another but equivalent form (NumPy scalars, whole floats)."""
    if isinstance(v, int):
        return [np.int32(v), np.int64(v), float(v), np.uint16(v) if 0 <= v < 2**16 else v][v % 4]
    return np.str_(v)


@st.composite
def sessions_strategy(draw, model):
    ident = ids_for(model, as_kind, JUNK_IDS)
    n = draw(st.integers(0, 6))
    sessions = [draw(st.lists(ident, max_size=6)) for _ in range(n)]
    container = draw(st.sampled_from(["list", "tuple", "arrays"]))
    if container == "tuple":
        sessions = tuple(tuple(s) for s in sessions)
    elif container == "arrays":
        sessions = [object_array(s) for s in sessions]
    return sessions


K_VALUES = st.one_of(st.integers(-2, 60), st.sampled_from([10**9, 2**63, 2.0, 3.5, None, "3", True,
                                                          np.int64(5), np.int8(2)]))


def check_raises_naming(call, problems):
    """``call`` must raise ValueError/TypeError naming one of ``problems``
    (regular expressions) -- or, with no problems, return its result."""
    if not problems:
        return call()
    try:
        call()
    except (ValueError, TypeError) as e:
        assert any(re.search(p, str(e)) for p in problems), (problems, str(e))
        return None
    raise AssertionError(f"accepted although {problems}")


@fuzz_settings(300)
@given(data=st.data(), name=st.sampled_from(MODEL_NAMES), k=K_VALUES,
       exclude_seen=st.booleans(), unknown=st.sampled_from(["skip", "skip", "error", "oops"]),
       use_filter=st.booleans())
@counted
def test_recommend_is_correct_or_rejected(models, data, name, k, exclude_seen, unknown,
                                          use_filter):
    model = models[name]
    sessions = data.draw(sessions_strategy(model), label="sessions")
    filt = None
    if use_filter:
        filt = data.draw(st.lists(ids_for(model, as_kind, JUNK_IDS), max_size=8), label="filter")
    known = [[known_index(model, e) for e in s] for s in sessions]
    fknown = None if filt is None else [known_index(model, e) for e in filt]
    n_unknown = sum(i == -1 for s in known for i in s) + sum(i == -1 for i in fknown or [])
    problems = []
    if unknown not in ("skip", "error"):
        problems.append(r"\bunknown\b")
    if not is_int(k) or k < 1:
        problems.append(r"\bk\b")
    if any(i == -2 for s in known for i in s):
        problems.append(r"session \d+, position \d+")
    if fknown and any(i == -2 for i in fknown):
        problems.append(r"filter_items")
    if unknown == "error" and n_unknown:
        problems.append(r"vocabulary")
    out = check_raises_naming(lambda: model.recommend(
        sessions, k=k, exclude_seen=exclude_seen, filter_items=filt, unknown=unknown), problems)
    if problems:
        return
    ids, scores = out
    N = len(model.item_ids)
    assert model.last_unknown_count == n_unknown
    cand = np.arange(N) if filt is None else np.unique([i for i in fknown if i >= 0])
    cand = cand.astype(np.int64)
    eligible = []
    for s in known:
        seen = {i for i in s if i >= 0}
        eligible.append(np.setdiff1d(cand, list(seen)) if exclude_seen else cand)
    k_eff = min([k, len(cand)] + [len(e) for e in eligible])
    assert ids.shape == scores.shape == (len(sessions), k_eff)
    assert scores.dtype == np.float32
    index = {v: i for i, v in enumerate(model.item_ids.tolist())}
    atol = 1e-4 if name.startswith("gru") else 0.0
    for b, s in enumerate(known):
        row = np.array([index[v] for v in ids[b].tolist()], np.int64)
        check_topk(row, scores[b], ref_scores(model, [i for i in s if i >= 0]), eligible[b],
                   k_eff, atol)


# ------------------------------------------------------------------ live sessions
@fuzz_settings(150)
@given(data=st.data(), name=st.sampled_from(["gru", "gru_str"]), k=K_VALUES,
       exclude_seen=st.booleans(), use_filter=st.booleans(),
       num_threads=st.sampled_from([0, 1, 2, 3, -1, 1.5, None, 2**40]))
@counted
def test_live_session_equals_recommend_or_rejects(models, data, name, k, exclude_seen,
                                                   use_filter, num_threads):
    model = models[name]
    clicks = data.draw(st.lists(ids_for(model, as_kind, JUNK_IDS), max_size=8), label="clicks")
    live = model.new_session()
    known = []
    for c in clicks:
        i = known_index(model, c)
        if i == -2:
            with pytest.raises(TypeError, match="item id"):
                live.click(c)
            continue
        if i == -1:
            with pytest.raises(ValueError, match="vocabulary"):
                live.click(c, unknown="error")
        live.click(c)
        if i >= 0:
            known.append(i)
    assert live.n_unknown == sum(known_index(model, c) == -1 for c in clicks)
    np.testing.assert_array_equal(live.items, model.item_ids[np.asarray(known, np.int64)])
    filt = None
    if use_filter:
        filt = data.draw(st.lists(ids_for(model, as_kind, JUNK_IDS), max_size=8), label="filter")
    problems = []
    if not is_int(k) or k < 1:
        problems.append(r"\bk\b")
    if not is_int(num_threads) or num_threads < 0:
        problems.append(r"num_threads")
    if filt and any(known_index(model, e) == -2 for e in filt):
        problems.append(r"filter_items")
    got = check_raises_naming(lambda: live.recommend(k, exclude_seen=exclude_seen,
                                                     filter_items=filt,
                                                     num_threads=num_threads), problems)
    if problems:
        return
    want = model.recommend([model.item_ids[known]], k=k, exclude_seen=exclude_seen,
                           filter_items=filt)
    np.testing.assert_array_equal(got[0], want[0][0])
    np.testing.assert_array_equal(got[1], want[1][0])


# ------------------------------------------------------------------ score_prefixes
@st.composite
def prefixes_strategy(draw, N):
    kind = draw(st.sampled_from(["lists", "arrays", "padded", "floats", "junk"]))
    idx = st.integers(-3, N + 2)
    if kind == "padded":
        rows, cols = draw(st.integers(0, 5)), draw(st.integers(0, 6))
        a = np.array(draw(st.lists(idx, min_size=rows * cols, max_size=rows * cols)),
                     np.int64).reshape(rows, cols)
        return a
    n = draw(st.integers(0, 5))
    seqs = [draw(st.lists(idx, max_size=6)) for _ in range(n)]
    if kind == "arrays":
        return [np.array(s, dtype=draw(st.sampled_from([np.int64, np.int32, np.int16])))
                for s in seqs]
    if kind == "floats":
        return [np.array(s, dtype=np.float64) for s in seqs]
    if kind == "junk":
        return [s + [draw(NASTY)] for s in seqs] or [[draw(NASTY)]]
    return seqs


@fuzz_settings(200)
@given(data=st.data(), name=st.sampled_from(MODEL_NAMES))
@counted
def test_score_prefixes_is_correct_or_rejected(models, data, name):
    model = models[name]
    N = len(model.item_ids)
    prefixes = data.draw(prefixes_strategy(N), label="prefixes")
    try:
        scores = outcome(lambda: model.score_prefixes(prefixes), "prefix", "prefixes", "item ind")
    except Rejected:
        def valid(p):
            try:
                a = np.asarray(p)
            except ValueError:
                return False
            return a.ndim == 1 and (a.size == 0 or (
                a.dtype.kind in "iu" and a.min() >= -1 and a.max() < N))
        assert not all(valid(p) for p in prefixes), "valid prefixes rejected"
        return
    rows = [np.asarray(p).ravel() for p in prefixes]
    for r in rows:  # accepted: integer indices in [-1, N) only
        assert r.size == 0 or (r.dtype.kind in "iu" and r.min() >= -1 and r.max() < N)
    assert scores.shape == (len(rows), N) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # -1 entries are ignored: the same scores as without them
    clean = model.score_prefixes([r[r >= 0] for r in rows]) if rows else scores
    np.testing.assert_array_equal(scores, clean)
    for r, row in zip(rows, scores):
        np.testing.assert_allclose(row, ref_scores(model, r[r >= 0].tolist()), rtol=1e-4,
                                   atol=1e-4)


# ------------------------------------------------------------------ evaluate
@st.composite
def events_for(draw, model):
    ident = ids_for(model, lambda v: v, st.integers(10**6, 10**6 + 5) if
                    model.item_ids.dtype.kind in "iu" else st.sampled_from(["zz", "yy"]))
    n = draw(st.integers(1, 25))
    sess = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    items = draw(st.lists(ident, min_size=n, max_size=n))
    times = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))  # unsorted
    return {"SessionId": np.array(sess), "ItemId": np.array(items, dtype=object)
            if model.item_ids.dtype.kind == "O" else np.array(items, np.int64),
            "Time": np.array(times)}


CUTOFF_VALUES = st.one_of(st.lists(st.integers(1, 50), min_size=1, max_size=4).map(tuple),
                          st.integers(-1, 50), NASTY, st.sampled_from([(5, 2.5), ("5",), [0, 5]]))


def cutoffs_valid(c):
    """An integer >= 1, or a non-empty list, tuple or 1-D array of them."""
    seq = list(c) if isinstance(c, (list, tuple)) or (
        isinstance(c, np.ndarray) and c.ndim == 1) else [c]
    return bool(seq) and all(is_int(x) and x >= 1 for x in seq)


@fuzz_settings(150)
@given(data=st.data(), name=st.sampled_from(MODEL_NAMES), cutoffs=CUTOFF_VALUES,
       mode=st.sampled_from(["standard", "conservative", "median", "optimistic"]),
       chunk=st.sampled_from([32768, 1, 3, 0, -1, 2.5, None]),
       num_threads=st.sampled_from([None, 1, 2, 0, -1, "2", 1.5]))
@counted
def test_evaluate_is_consistent_or_rejected(models, data, name, cutoffs, mode, chunk,
                                            num_threads):
    model = models[name]
    test = data.draw(events_for(model), label="test")
    try:
        r = outcome(lambda: grurec.evaluate(model, test, cutoffs=cutoffs, mode=mode,
                                            chunk_events=chunk, num_threads=num_threads),
                    "cutoffs", "mode", "chunk_events", "num_threads")
    except Rejected:
        assert (not cutoffs_valid(cutoffs) or mode == "optimistic"
                or not (is_int(chunk) and chunk >= 1)
                or not (num_threads is None or (is_int(num_threads) and num_threads >= 0)))
        return
    assert cutoffs_valid(cutoffs) and mode != "optimistic" and is_int(chunk) and chunk >= 1
    ks = sorted(set(int(c) for c in np.ravel(cutoffs)))
    # the number of predictions: every event after the first of each session
    lengths = np.bincount(np.unique(test["SessionId"], return_inverse=True)[1])
    assert r["n_events"] == int((lengths[lengths >= 2] - 1).sum())
    assert r["n_sessions"] == int((lengths >= 2).sum())
    for a, b in zip(ks, ks[1:]):
        assert r[f"recall@{a}"] <= r[f"recall@{b}"] + 1e-12
    for K in ks:
        rec, mrr, ndcg = r[f"recall@{K}"], r[f"mrr@{K}"], r[f"ndcg@{K}"]
        assert 0 <= mrr <= ndcg + 1e-12 <= rec + 2e-12 <= 1 + 3e-12
        assert 0 <= r[f"coverage@{K}"] <= 1
    # the same metrics in one chunk on one thread
    one = grurec.evaluate(model, test, cutoffs=cutoffs, mode=mode, num_threads=1)
    for key in one:
        if one[key] is None:
            assert r[key] is None
        else:
            assert r[key] == pytest.approx(one[key], rel=1e-9, abs=1e-12), key


@fuzz_settings(30)
@given(bad=st.sampled_from([object(), None, "model", 3, baselines.Popularity(),
                            grurec.GRU4Rec()]))
@counted
def test_evaluate_rejects_what_is_not_a_fitted_model(bad):
    test = {"SessionId": [1, 1], "ItemId": [1, 2], "Time": [0.0, 1.0]}
    with pytest.raises((TypeError, ValueError, RuntimeError), match="model|fit"):
        grurec.evaluate(bad, test)


# ------------------------------------------------------------------ topk
@st.composite
def float_array(draw, shape, allow_bad=True):
    """An array of ``shape`` in a random dtype and memory layout, sometimes
    with a non-finite value planted."""
    n = int(np.prod(shape))
    vals = np.array(draw(st.lists(st.floats(-4, 4, width=32), min_size=n, max_size=n)),
                    np.float64).reshape(shape)
    if allow_bad and n and draw(st.integers(0, 9)) == 0:
        vals.flat[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int8,
                                  np.complex64, np.bool_, object]))
    if dtype in (np.int32, np.int8, np.bool_) and not np.isfinite(vals).all():
        dtype = np.float32
    a = vals.astype(dtype) if dtype is not object else vals.astype(object)
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed"]))
    if a.ndim == 2 and layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        a = big[tuple(slice(None, None, 2) for _ in a.shape)]
    elif layout == "reversed" and a.ndim:
        a = a[::-1][::-1]
    return a


def as_real(a):
    return np.asarray(a.astype(np.float64) if a.dtype != object else a.astype(np.float64))


@fuzz_settings(400)
@given(data=st.data(), Q=st.integers(0, 4), N=st.integers(0, 30), D=st.integers(0, 5),
       one_d=st.booleans(), k=st.one_of(st.integers(-1, 35), st.sampled_from([2.0, None, True])),
       use_bias=st.booleans(), use_exclude=st.booleans(), use_allowed=st.booleans(),
       num_threads=st.sampled_from([0, 1, 2, 3, -1, 1.5, None, 2**40]))
@counted
def test_topk_is_correct_or_rejected(data, Q, N, D, one_d, k, use_bias, use_exclude,
                                     use_allowed, num_threads):
    q = data.draw(float_array((D,) if one_d else (Q, D)), label="queries")
    x = data.draw(float_array((N, D)), label="items")
    bias = data.draw(float_array((N,)), label="bias") if use_bias else None
    Qn = 1 if one_d else Q
    exclude = None
    if use_exclude:
        exclude = [data.draw(st.lists(st.integers(-1, N), max_size=4)) for _ in range(Qn)]
        if one_d:
            exclude = exclude[0]
    allowed = data.draw(st.lists(st.booleans(), min_size=N, max_size=N).map(
        lambda v: np.array(v, dtype=bool))) if use_allowed else None
    names = ("queries", "items", "bias", "k", "exclude", "num_threads", "allowed", "scores")
    try:
        idx, sc = outcome(lambda: grurec.topk(q, x, k, bias=bias, exclude=exclude,
                                              num_threads=num_threads, allowed=allowed), *names)
    except Rejected as e:
        def ok(a):
            return a.dtype.kind in "iuf" and np.isfinite(a.astype(np.float64)).all()
        valid = (ok(q) and ok(x) and (bias is None or ok(bias)) and is_int(k) and k >= 1
                 and is_int(num_threads) and num_threads >= 0
                 and (exclude is None or all(0 <= i < N for r in
                                             ([exclude] if one_d else exclude) for i in r)))
        # a valid call may only be refused for overflowing float32 scores
        assert not valid or "overflow" in str(e), f"valid call rejected: {e}"
        return
    # items (and bias) are not scanned up front: a non-finite one surfaces as
    # a non-finite score, so with no query there is nothing to reject.
    for a in (q,) + ((x,) + (() if bias is None else (bias,)) if Qn else ()):
        assert a.dtype.kind in "iuf" and np.isfinite(a.astype(np.float64)).all()
    assert is_int(k) and k >= 1
    qq = np.atleast_2d(as_real(q).astype(np.float32)).astype(np.float64)
    xx = as_real(x).astype(np.float32).astype(np.float64)
    bb = 0.0 if bias is None else as_real(bias).astype(np.float32).astype(np.float64)
    ref_s = qq @ xx.T + bb
    idx, sc = np.atleast_2d(idx), np.atleast_2d(sc)
    kk = min(k, N)
    assert idx.shape == sc.shape == (Qn, kk) and idx.dtype == np.int64 and sc.dtype == np.float32
    for r in range(Qn):
        elig = np.arange(N)
        if allowed is not None:
            elig = elig[allowed]
        if exclude is not None:
            elig = np.setdiff1d(elig, [exclude] if one_d else exclude[r])
        n_real = min(kk, len(elig))
        assert (idx[r, n_real:] == -1).all() and np.isneginf(sc[r, n_real:]).all()
        check_topk(idx[r, :n_real], sc[r, :n_real], ref_s[r], elig, n_real,
                   atol=1e-5 * (1 + np.abs(ref_s).max(initial=0)))


# ------------------------------------------------------------------ gru_forward / backward
@fuzz_settings(250)
@given(data=st.data(), T=st.integers(0, 3), B=st.integers(0, 3), I=st.integers(0, 4),
       H=st.integers(0, 4), single=st.booleans(), mismatch=st.sampled_from(
           [None, None, None, "h0", "W_ih", "W_hh", "b", "dh", "h"]),
       num_threads=st.sampled_from([0, 1, 2, -1, 1.5, None]), b_none=st.integers(0, 14))
@counted
def test_gru_ops_are_correct_or_rejected(data, T, B, I, H, single, mismatch, num_threads,
                                         b_none):
    T = 1 if single else T
    shapes = {"x": (B, I) if single else (T, B, I), "h0": (B, H), "W_ih": (I, 3 * H),
              "W_hh": (H, 3 * H), "b": (3 * H,)}
    if mismatch in shapes:
        s = list(shapes[mismatch])
        s[-1] += 1
        shapes[mismatch] = tuple(s)
    arr = {n: data.draw(float_array(s), label=n) for n, s in shapes.items()}
    if b_none == 0:
        arr["b"] = None
    names = ("x", "h0", "W_ih", "W_hh", "b", "num_threads")
    try:
        h, cache = outcome(lambda: grurec.gru_forward(arr["x"], arr["h0"], arr["W_ih"],
                                                      arr["W_hh"], arr["b"],
                                                      num_threads=num_threads), *names)
    except Rejected:
        fine = all(a is not None and a.dtype.kind in "iuf"
                   and np.isfinite(a.astype(np.float64)).all() for a in arr.values())
        assert not fine or mismatch in shapes or not is_int(num_threads) or num_threads < 0
        return
    assert mismatch not in shapes and arr["b"] is not None and is_int(num_threads)
    f64 = {n: as_real(a).astype(np.float32).astype(np.float64) for n, a in arr.items()}
    x3 = f64["x"][None] if single else f64["x"]
    if T == 0:
        want = np.zeros((0, B, H))
    else:
        want, _ = ref.gru_forward(x3, f64["h0"], f64["W_ih"], f64["W_hh"], f64["b"])
    np.testing.assert_allclose(h, want[0] if single else want, rtol=1e-4, atol=1e-5)

    dh = data.draw(float_array(np.shape(h)), label="dh")
    hh = h
    if mismatch == "dh":
        dh = np.zeros(dh.shape[:-1] + (dh.shape[-1] + 1,), np.float32)
    if mismatch == "h":
        hh = np.zeros(h.shape[:-1] + (h.shape[-1] + 1,), np.float32)
    bad_cache = data.draw(st.sampled_from([None, None, None, None, "none", "tuple"]))
    c = {None: cache, "none": None, "tuple": (cache[0][:0], cache[1])}[bad_cache]
    names = ("dh", "cache", "x", "h0", "h", "W_ih", "W_hh", "num_threads", "gates", "rh")
    try:
        g = outcome(lambda: grurec.gru_backward(dh, c, arr["x"], arr["h0"], hh, arr["W_ih"],
                                                arr["W_hh"], num_threads=num_threads), *names)
    except Rejected:
        fine = dh.dtype.kind in "iuf" and np.isfinite(dh.astype(np.float64)).all()
        assert not fine or mismatch in ("dh", "h") or bad_cache
        return
    assert mismatch not in ("dh", "h") and not bad_cache
    d64 = as_real(dh).astype(np.float32).astype(np.float64)
    if T == 0:
        want_g = (np.zeros((0, B, I)), np.zeros((B, H)), np.zeros((I, 3 * H)),
                  np.zeros((H, 3 * H)), np.zeros(3 * H))
    else:
        want_g = ref.gru_backward(d64[None] if single else d64, x3, f64["h0"], f64["W_ih"],
                                  f64["W_hh"], f64["b"])
    got = (g.dx[None] if single else g.dx, g.dh0, g.dW_ih, g.dW_hh, g.db)
    for a, w in zip(got, want_g):
        np.testing.assert_allclose(a, w, rtol=1e-3, atol=1e-4)
