"""Concurrency (issue 6): many Python threads on one model give the answers
one thread gives; training one model while other threads serve another is
safe; fit() on a model while other threads use that same model never
crashes (what they see is documented in README "Reliability and security").

The native calls release the GIL, so these threads really run at once (the
ASan/UBSan run of .ci/run executes this file too).
"""
import threading

import numpy as np
import pytest

import grurec
from grurec import baselines
from grurec.synthetic import generate_sessions

N_THREADS = 8


def run_threads(fn, n=N_THREADS):
    """fn(i) on n threads started together; re-raises the first error."""
    barrier = threading.Barrier(n)
    errors = [None] * n
    out = [None] * n

    def body(i):
        try:
            barrier.wait()
            out[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[i] = e

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive(), "a thread hung"
    for e in errors:
        if e is not None:
            raise e
    return out


@pytest.fixture(scope="module")
def data():
    train = generate_sessions(n_events=6000, n_items=200, mean_length=6, signal=0.8, seed=3)
    test = generate_sessions(n_events=1500, n_items=200, mean_length=6, signal=0.8, seed=4)
    return train, test


@pytest.fixture(scope="module")
def model(data):
    return grurec.GRU4Rec(layers=[24], batch_size=16, n_sample=64, n_epochs=1, num_threads=1,
                          random_state=0, show_progress=False).fit(data[0])


def workload(model, test, sessions):
    """Everything a service does with a model, in one thread: batch
    recommend (with and without exclusions and a filter), live sessions,
    score_prefixes and a full evaluation."""
    ids = model.item_ids
    out = {"rec": model.recommend(sessions, k=10),
           "rec_ex": model.recommend(sessions, k=7, exclude_seen=True,
                                     filter_items=ids[::3]),
           "prefix": model.score_prefixes([model._lookup(s) for s in sessions[:5]])}
    for j, s in enumerate(sessions[:6]):
        live = model.new_session()
        for it in s:
            live.click(it)
        out[f"live{j}"] = live.recommend(10, exclude_seen=j % 2 == 1)
    out["eval"] = grurec.evaluate(model, test, cutoffs=(1, 5, 20), chunk_events=500)
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k == "eval":
            assert a[k] == b[k]
        elif isinstance(a[k], tuple):
            for x, y in zip(a[k], b[k]):
                np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def sessions_of(model, seed, n=40):
    rng = np.random.default_rng(seed)
    ids = model.item_ids
    return [list(ids[rng.integers(0, len(ids), rng.integers(1, 9))]) for _ in range(n)]


def test_eight_threads_on_one_model_equal_one_thread(model, data):
    test = data[1]
    sessions = [sessions_of(model, i) for i in range(N_THREADS)]
    want = [workload(model, test, s) for s in sessions]  # one thread, one after another
    for rounds in range(2):
        got = run_threads(lambda i: workload(model, test, sessions[i]))
        for g, w in zip(got, want):
            assert_same(g, w)


def test_thread_count_inside_calls_does_not_change_answers(model, data):
    """The same calls with num_threads 0/1/2 from 8 threads at once (nested
    OpenMP teams under Python threads)."""
    test = data[1]
    sessions = sessions_of(model, 99, n=300)
    want = model.recommend(sessions, k=20)
    want_eval = grurec.evaluate(model, test, num_threads=1)

    def job(i):
        nt = (0, 1, 2)[i % 3]
        live = model.new_session()
        for it in sessions[i]:
            live.click(it)
        return (model.recommend(sessions, k=20), grurec.evaluate(model, test, num_threads=nt),
                live.recommend(20, num_threads=nt))

    for rec, ev, live in run_threads(job):
        np.testing.assert_array_equal(rec[0], want[0])
        np.testing.assert_array_equal(rec[1], want[1])
        assert ev == want_eval
    for i, (_, _, live) in enumerate(run_threads(job)):
        np.testing.assert_array_equal(live[0], want[0][i])


def test_baselines_serve_many_threads(data):
    train, test = data
    for cls in (baselines.Popularity, baselines.SessionPopularity, baselines.ItemKNN,
                baselines.VSKNN):
        m = cls().fit(train)
        sessions = sessions_of(m, 5, n=60)
        want = (m.recommend(sessions, k=10), grurec.evaluate(m, test, cutoffs=(5, 20)))
        for rec, ev in run_threads(lambda i: (m.recommend(sessions, k=10),
                                              grurec.evaluate(m, test, cutoffs=(5, 20)))):
            np.testing.assert_array_equal(rec[0], want[0][0])
            np.testing.assert_array_equal(rec[1], want[0][1])
            assert ev == want[1]


def test_training_while_other_threads_serve_another_model(model, data):
    """Thread 0 trains a new model (single-threaded, fixed seed: its weights
    are reproducible); threads 1..7 serve `model` meanwhile. Serving answers
    equal the quiet ones, and the trained weights equal a quiet fit's."""
    train, test = data
    kw = dict(layers=[24], batch_size=16, n_sample=64, n_epochs=2, num_threads=1,
              random_state=7, show_progress=False)
    quiet = grurec.GRU4Rec(**kw).fit(train)
    sessions = [sessions_of(model, 100 + i) for i in range(N_THREADS)]
    want = [workload(model, test, s) for s in sessions]
    stop = threading.Event()

    def job(i):
        if i == 0:
            try:
                return grurec.GRU4Rec(**kw).fit(train)
            finally:
                stop.set()
        rounds = 0
        while not stop.is_set() or rounds == 0:
            assert_same(workload(model, test, sessions[i]), want[i])
            rounds += 1
        return rounds

    out = run_threads(job)
    trained = out[0]
    assert all(r >= 1 for r in out[1:])
    for k in quiet.params:
        np.testing.assert_array_equal(trained.params[k], quiet.params[k], err_msg=k)


def test_hogwild_training_alongside_serving(model, data):
    """Multi-threaded (Hogwild) training in one thread, serving in others:
    serving answers are unchanged, the trained model is finite and useful."""
    train, test = data
    sessions = [sessions_of(model, 200 + i) for i in range(4)]
    want = [workload(model, test, s) for s in sessions]
    done = threading.Event()

    def job(i):
        if i == 4:
            try:
                return grurec.GRU4Rec(layers=[24], batch_size=16, n_sample=64, n_epochs=2,
                                      num_threads=2, show_progress=False).fit(train)
            finally:
                done.set()
        while True:
            assert_same(workload(model, test, sessions[i]), want[i])
            if done.is_set():
                return True

    out = run_threads(job, n=5)
    trained = out[4]
    assert all(np.isfinite(a).all() for a in trained.params.values())
    assert grurec.evaluate(trained, test)["recall@20"] > 0.3


def test_fit_on_a_model_that_other_threads_are_using(data):
    """The documented behaviour of fit() on a model other threads are
    calling: the process never crashes, every call either answers
    (well-formed, from the old or the new weights) or raises ValueError or
    RuntimeError, and the model fit() leaves equals a quiet fit."""
    train, test = data
    kw = dict(layers=[16], batch_size=16, n_sample=32, n_epochs=3, num_threads=1,
              random_state=3, show_progress=False)
    other = generate_sessions(n_events=4000, n_items=300, mean_length=6, seed=9)
    m = grurec.GRU4Rec(**kw).fit(train)
    done = threading.Event()
    outcomes = {"answers": 0, "errors": []}
    lock = threading.Lock()

    def job(i):
        if i == 0:
            try:
                return m.fit(other)
            finally:
                done.set()
        rng = np.random.default_rng(i)
        while not done.is_set():
            try:
                ids = m.item_ids
                s = list(ids[rng.integers(0, len(ids), 4)])
                what = i % 3
                if what == 0:
                    r_ids, r_sc = m.recommend([s, s[:1]], k=5)
                    assert r_ids.shape == r_sc.shape and r_ids.shape[0] == 2
                    assert np.isfinite(r_sc).all()
                elif what == 1:
                    live = m.new_session()
                    for it in s:
                        live.click(it)
                    r_ids, r_sc = live.recommend(5)
                    assert np.isfinite(r_sc).all()
                else:
                    grurec.evaluate(m, test, cutoffs=(5,))
                with lock:
                    outcomes["answers"] += 1
            except (ValueError, RuntimeError) as e:
                with lock:
                    outcomes["errors"].append(f"{type(e).__name__}: {e}")
        return None

    run_threads(job, n=4)
    kinds = sorted({e.split(":")[0] + ":" + e.split(":")[1][:40] for e in outcomes["errors"]})
    print(f"\nduring fit(): {outcomes['answers']} answers, {len(outcomes['errors'])} errors {kinds}")
    assert outcomes["answers"] > 0
    quiet = grurec.GRU4Rec(**kw).fit(other)
    for k in quiet.params:
        np.testing.assert_array_equal(m.params[k], quiet.params[k], err_msg=k)
    np.testing.assert_array_equal(m.item_ids, quiet.item_ids)
