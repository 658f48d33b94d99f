"""Serving speed: live sessions, batch recommend, evaluation vs NumPy.

Measured on a GRU4Rec model of the GRU4Rec RSC15 shape (one layer, H = 100,
shared embedding) with random weights over N items (the speed does not
depend on what the weights learned):

* live session: ``s.click(item)`` + ``s.recommend(20)`` per event, latency
  percentiles over many events (one thread, as a service would run one
  session per request thread), with the plain model and after
  ``model.prepare_serving()`` (a TopkIndex of the item table: int8
  prefilter, identical answers; checked before timing);
* batch recommend: ``model.recommend(sessions, k=20)`` sessions/s for
  sessions of 5 events, at 1 and 2 threads;
* evaluation: ``grurec.evaluate`` vs a plain NumPy implementation of the same
  protocol (hidden states stepped with NumPy GRU math, dense score matrix per
  batch, rank = 1 + number of items scored higher), on the same test
  sessions; both results are checked to agree before the timings are
  reported.

Usage: python benchmarks/bench_serving.py [--items 40000] [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import grurec
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_serving.json"


def random_model(n_items: int, H: int = 100, seed: int = 0) -> grurec.GRU4Rec:
    """A fitted-looking model: weights at their initial distribution."""
    m = grurec.GRU4Rec(layers=[H], constrained_embedding=True, show_progress=False)
    m._init_params(n_items, np.random.default_rng(seed))
    m.params["b_y"][:] = np.random.default_rng(seed + 1).normal(0, 0.1, n_items)
    m.item_ids = np.arange(n_items, dtype=np.int64)
    m.popularity = np.ones(n_items, np.int64)
    return m


def bench_live(m, n_events: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, len(m.item_ids), n_events)
    for it in items[:50]:  # warm-up
        m.new_session().click(it).recommend(20)
    lat = np.empty(n_events)
    s = m.new_session()
    for i, it in enumerate(items):
        if i % 10 == 0:
            s = m.new_session()  # sessions of 10 events
        t0 = time.perf_counter()
        s.click(it)
        s.recommend(20)
        lat[i] = time.perf_counter() - t0
    return dict(events=n_events, median_us=float(np.median(lat) * 1e6),
                p90_us=float(np.percentile(lat, 90) * 1e6),
                p99_us=float(np.percentile(lat, 99) * 1e6))


def bench_batch(m, n_sessions: int, threads: int, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    sessions = [list(x) for x in rng.integers(0, len(m.item_ids), (n_sessions, 5))]
    m.num_threads = threads
    m.recommend(sessions[:100], k=20)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        m.recommend(sessions, k=20)
        best = min(best, time.perf_counter() - t0)
    return dict(sessions=n_sessions, threads=threads, seconds=best, sessions_per_s=n_sessions / best)


def numpy_evaluate(m, sd, cutoff=20, batch=512):
    """The same protocol in plain NumPy: the reference a user would write."""
    p = m.params
    H = m.layers[0]
    W_ih, W_hh, b, W_y, b_y = p["W_ih0"], p["W_hh0"], p["b0"], p["W_y"], p["b_y"]
    lengths = np.diff(sd.offsets)
    hits = rr = n = 0
    for s0 in range(0, sd.n_sessions, batch):
        idx = np.arange(s0, min(s0 + batch, sd.n_sessions))
        h = np.zeros((len(idx), H), np.float32)
        for t in range(int(lengths[idx].max()) - 1):
            live = idx[lengths[idx] > t + 1]
            rows = live - s0
            x = W_y[sd.items[sd.offsets[live] + t]]
            hp = h[rows]
            g = x @ W_ih + b
            g[:, :2 * H] += hp @ W_hh[:, :2 * H]
            rz = 1.0 / (1.0 + np.exp(-g[:, :2 * H]))
            r, z = rz[:, :H], rz[:, H:]
            nn = np.tanh(g[:, 2 * H:] + (r * hp) @ W_hh[:, 2 * H:])
            h[rows] = (1 - z) * hp + z * nn
            scores = h[rows] @ W_y.T + b_y
            tgt = sd.items[sd.offsets[live] + t + 1]
            ts = scores[np.arange(len(live)), tgt]
            rank = (scores > ts[:, None]).sum(1) + 1
            hit = rank <= cutoff
            hits += int(hit.sum())
            rr += float((1.0 / rank[hit]).sum())
            n += len(live)
    return hits / n, rr / n, n


def bench_eval(m, n_events: int, threads: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n_events // 5)
    sess = np.repeat(np.arange(len(lengths)), lengths)
    df = pd.DataFrame({"SessionId": sess, "ItemId": rng.integers(0, len(m.item_ids), len(sess)),
                       "Time": np.arange(len(sess), dtype=float)})
    sd = grurec.to_sessions(df, item_ids=m.item_ids)
    t0 = time.perf_counter()
    r_np, m_np, n_np = numpy_evaluate(m, sd)
    t_np = time.perf_counter() - t0
    res = None
    t_gr = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        res = grurec.evaluate(m, sd, cutoffs=(20,), num_threads=threads)
        t_gr = min(t_gr, time.perf_counter() - t0)
    assert res["n_events"] == n_np
    # float32 scores summed in a different order: allow a handful of near-ties
    assert abs(res["recall@20"] - r_np) * n_np <= 3 and abs(res["mrr@20"] - m_np) < 1e-3, \
        (res, r_np, m_np)
    return dict(events=n_np, threads=threads, numpy_s=t_np, grurec_s=t_gr,
                numpy_events_per_s=n_np / t_np, grurec_events_per_s=n_np / t_gr,
                speedup=t_np / t_gr, recall20=res["recall@20"], recall20_numpy=r_np)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--items", type=int, nargs="+", default=[40_000, 1_000_000])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    n_live = 300 if args.quick else 3000
    n_batch = 2000 if args.quick else 20000
    n_eval = 5000 if args.quick else 30000
    out = dict(simd=grurec.simd_level(), live=[], batch=[], evaluate=[])
    for N in args.items:
        m = random_model(N)
        out["live"].append(dict(items=N, prepared=False, **bench_live(m, n_live)))
        s = m.new_session().click(m.item_ids[0]).click(m.item_ids[1])
        want = s.recommend(20)
        m.prepare_serving()
        got = s.recommend(20)
        if not (np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])):
            raise AssertionError("prepare_serving changed a live session's answer")
        out["live"].append(dict(items=N, prepared=True, **bench_live(m, n_live)))
        m._topk_index = None  # batch recommend below: the plain model
        for t in (1, 2):
            out["batch"].append(dict(items=N, **bench_batch(m, n_batch, t)))
        if N <= 100_000:  # the NumPy reference builds a dense batch x N matrix
            for t in (1, 2):
                out["evaluate"].append(dict(items=N, **bench_eval(m, n_eval, t)))
        print(f"done N={N}", file=sys.stderr, flush=True)

    print(f"grurec {grurec.__version__} ({out['simd']}); one layer, H=100, k=20; {cpu_line()}\n")
    print("Live session: click + recommend(20), 1 thread")
    print(f"{'items':>10}{'prepare_serving':>17}{'median us':>11}{'p90 us':>9}{'p99 us':>9}")
    for r in out["live"]:
        print(f"{r['items']:>10,}{'yes' if r['prepared'] else 'no':>17}{r['median_us']:>11.0f}"
              f"{r['p90_us']:>9.0f}{r['p99_us']:>9.0f}")
    print("\nBatch recommend, sessions of 5 events")
    print(f"{'items':>10}{'threads':>8}{'sessions/s':>12}")
    for r in out["batch"]:
        print(f"{r['items']:>10,}{r['threads']:>8}{r['sessions_per_s']:>12,.0f}")
    if out["evaluate"]:
        print("\nEvaluation (full ranking, recall/MRR@20) vs a NumPy implementation")
        print(f"{'items':>10}{'threads':>8}{'events':>8}{'numpy ev/s':>12}{'grurec ev/s':>13}"
              f"{'speedup':>9}")
        for r in out["evaluate"]:
            print(f"{r['items']:>10,}{r['threads']:>8}{r['events']:>8,}"
                  f"{r['numpy_events_per_s']:>12,.0f}{r['grurec_events_per_s']:>13,.0f}"
                  f"{r['speedup']:>8.1f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
