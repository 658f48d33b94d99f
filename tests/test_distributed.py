"""grurec.distributed: Dask batch recommend / evaluate equal the single-process
calls, on the threaded scheduler and on a LocalCluster of 2 worker processes
(one of them killed mid-run)."""
from __future__ import annotations

import os
import signal
import time

import pandas as pd
import pytest

import grurec
from grurec.synthetic import generate_sessions
from optional_deps import need

dask = need("dask", "dask")
dd = need("dask.dataframe", "dask")
import grurec.distributed as gd  # noqa: E402


@pytest.fixture(scope="module")
def data():
    tr = generate_sessions(n_events=3000, n_items=150, mean_length=5, signal=0.8, seed=1)
    te = generate_sessions(n_events=1500, n_items=170, mean_length=5, signal=0.8, seed=2)
    te["SessionId"] += 10**6  # a test id never equals a training id
    m = grurec.GRU4Rec(layers=[24], n_epochs=1, n_sample=64, random_state=0, num_threads=1,
                       show_progress=False).fit(tr)
    return m, te


def sorted_frame(df):
    return df.sort_values(["SessionId", "rank"]).reset_index(drop=True)


def expected_recs(m, te, **kw):
    ids, scores = m.recommend(te, **kw)
    return sorted_frame(gd.to_frame(m.last_session_ids, ids, scores))


def shuffled(te, n):
    """Rows in random order, so that sessions straddle partitions."""
    return dd.from_pandas(te.sample(frac=1, random_state=0), npartitions=n)


@pytest.mark.parametrize("kw", [dict(k=5), dict(k=7, exclude_seen=True),
                                dict(k=3, filter_items=list(range(0, 150, 3)))])
def test_recommend_equals_single_process(data, kw):
    m, te = data
    with dask.config.set(scheduler="threads"):
        got = gd.recommend(m, shuffled(te, 4), **kw).compute()
    pd.testing.assert_frame_equal(sorted_frame(got), expected_recs(m, te, **kw),
                                  check_exact=True)


@pytest.mark.parametrize("mode", ["standard", "median"])
def test_evaluate_equals_single_process_exactly(data, mode):
    m, te = data
    want = grurec.evaluate(m, te, cutoffs=(1, 5, 20), mode=mode)
    with dask.config.set(scheduler="threads"):
        got = gd.evaluate(m, shuffled(te, 5), cutoffs=(1, 5, 20), mode=mode, fan_in=2)
        cand = gd.evaluate(m, shuffled(te, 3), cutoffs=(5,), candidates=range(0, 170, 2))
    assert got == want  # bit for bit: the counts add up exactly
    assert want["n_unknown_targets"] > 0 and want["recall@20"] > 0
    assert cand == grurec.evaluate(m, te, cutoffs=(5,), candidates=range(0, 170, 2))


def test_session_index_with_divisions_and_string_ids(data):
    m, te = data
    te = te.assign(ItemId=te["ItemId"].map(lambda i: f"i{i}"))
    tr = generate_sessions(n_events=3000, n_items=150, mean_length=5, signal=0.8, seed=1)
    tr["ItemId"] = tr["ItemId"].map(lambda i: f"i{i}")
    ms = grurec.GRU4Rec(layers=[16], n_epochs=1, n_sample=32, random_state=0, num_threads=1,
                        show_progress=False).fit(tr)
    ddf = dd.from_pandas(te.set_index("SessionId").sort_index(), npartitions=3)
    assert ddf.known_divisions
    with dask.config.set(scheduler="threads"):
        got = gd.recommend(ms, ddf, k=4).compute()
        ev = gd.evaluate(ms, ddf, cutoffs=(4,))
    pd.testing.assert_frame_equal(sorted_frame(got), expected_recs(ms, te, k=4),
                                  check_exact=True, check_dtype=False)
    assert ev == grurec.evaluate(ms, te, cutoffs=(4,))


def test_model_is_loaded_once_per_process(data, monkeypatch):
    import grurec.io

    m, te = data
    loads = []
    real = grurec.io.from_bytes
    monkeypatch.setattr(grurec.io, "from_bytes", lambda b, cls=None: loads.append(1) or real(b))
    gd._CACHE.clear()
    with dask.config.set(scheduler="threads"):
        gd.recommend(m, shuffled(te, 6), k=3).compute()
        gd.evaluate(m, shuffled(te, 6), cutoffs=(3,))
    assert len(loads) == 1


def test_bad_input_is_named(data):
    m, te = data
    with pytest.raises(TypeError, match="ddf: expected a dask.dataframe.DataFrame"):
        gd.recommend(m, te)
    with pytest.raises(ValueError, match="no column 'Session' \\(session_col\\)"):
        gd.evaluate(m, shuffled(te, 2), session_col="Session")
    with pytest.raises(ValueError, match="k: must be >= 1"):
        gd.recommend(m, shuffled(te, 2), k=0)
    with pytest.raises(TypeError, match="model: expected a fitted grurec model"):
        gd.evaluate("model.grurec", shuffled(te, 2))


def test_local_cluster_of_two_processes_and_a_killed_worker(data):
    distributed = need("distributed", "dask")
    m, te = data
    big = pd.concat([te.assign(SessionId=te["SessionId"] + r * 10**7) for r in range(8)])
    ddf = shuffled(big, 24)
    want_recs = expected_recs(m, big, k=5)
    want_eval = grurec.evaluate(m, big, cutoffs=(5, 20))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None,
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        got = gd.recommend(m, ddf, k=5).compute()
        pd.testing.assert_frame_equal(sorted_frame(got), want_recs, check_exact=True)
        assert gd.evaluate(m, ddf, cutoffs=(5, 20)) == want_eval
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        # Kill one worker process while the graph runs: Dask reruns its tasks.
        fut = client.compute(gd.recommend(m, ddf, k=5))
        t0 = time.time()
        while not any(client.processing().values()) and time.time() - t0 < 60:
            time.sleep(0.01)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        got = fut.result(timeout=300)
        pd.testing.assert_frame_equal(sorted_frame(got), want_recs, check_exact=True)
        assert set(client.run(os.getpid).values()) != set(pids.values())  # one was replaced


def test_without_dask_the_error_says_what_to_install(data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r'pip install "grurec\[dask\]"'):
        gd.recommend(data[0], data[1])
