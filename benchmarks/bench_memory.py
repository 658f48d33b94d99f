"""Peak memory of training and serving with a 1M-item catalogue.

Each measurement runs in a child process of its own. Before the measured call
the child resets the kernel's peak-RSS counter (``/proc/self/clear_refs``,
Linux >= 4.0) so ``VmHWM`` afterwards is the peak *during* that call; the
figure reported is that peak minus the RSS just before the call (what the call
itself needed on top of the data and the model), next to the size of the
model's arrays and of the dense n_queries x n_items float32 matrix that a
naive implementation would build.

Measurements (defaults):
  fit        GRU4Rec(layers=[100], batch_size=32, n_sample=2048, 1 epoch,
             all cores) on 1M synthetic events covering all 1M items
  recommend  recommend(100,000 sessions of 3 items, k=20, exclude_seen=True)
             on a 1M-item model (random weights, H=16: the memory does not
             depend on H beyond the table; H keeps the run short)
  live       10,000 live sessions kept at once, 3 clicks + recommend(20) each
  evaluate   evaluate(100,000 test events in 20,000 sessions), full ranking
  popularity Popularity().recommend(2,048 sessions): the baselines score
             dense chunks of 512 sessions x n_items

Usage:
    python benchmarks/bench_memory.py                  # all, 1M items
    python benchmarks/bench_memory.py --items 100000 --only recommend evaluate
Prints a table and JSON (also written to benchmarks/results/bench_memory.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_memory.json"
KINDS = ("fit", "recommend", "live", "evaluate", "popularity")


# ----------------------------------------------------------------- the child
def _status():
    with open("/proc/self/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                if line.startswith(("VmRSS", "VmHWM"))}


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(fn):
    import gc

    gc.collect()
    exact = _reset_peak()
    before = _status()["VmRSS"]
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    st = _status()
    return out, {"rss_before": before, "peak": st["VmHWM"], "extra": st["VmHWM"] - before,
                 "rss_after": st["VmRSS"], "seconds": seconds, "peak_is_per_call": exact}


def _events(n_items, n_events, seed=0):
    """Sessions of 2-8 events whose items cover every one of n_items (each
    item once, shuffled), the rest drawn from a Zipf-like popularity."""
    import numpy as np

    rng = np.random.default_rng(seed)
    extra = max(0, n_events - n_items)
    ranks = np.minimum(rng.zipf(1.2, extra), n_items) - 1
    items = np.concatenate([rng.permutation(n_items), rng.permutation(n_items)[ranks]])
    items = items[rng.permutation(len(items))]
    lengths = rng.integers(2, 9, len(items) // 2)
    sess = np.repeat(np.arange(len(lengths)), lengths)[: len(items)]
    items = items[: len(sess)]
    return {"SessionId": sess, "ItemId": items * 3 + 1,
            "Time": np.arange(len(sess), dtype=np.float64)}


def _random_model(n_items, hidden):
    import numpy as np

    import grurec

    rng = np.random.default_rng(0)
    m = grurec.GRU4Rec(layers=[hidden], num_threads=0, show_progress=False)
    m.item_ids = np.arange(n_items, dtype=np.int64) * 3 + 1
    m._init_params(n_items, rng)
    m._opt, m._vel = {}, {}
    m.popularity = rng.integers(1, 1000, n_items)
    return m


def child(kind, a) -> dict:
    import numpy as np

    import grurec

    N = a.items
    res = {"kind": kind, "n_items": N}
    if kind == "fit":
        data = grurec.to_sessions(_events(N, a.events))
        grurec.GRU4Rec(layers=[4], n_epochs=1, n_sample=4, show_progress=False).fit(
            grurec.to_sessions(_events(100, 400)))  # warm up
        m = grurec.GRU4Rec(layers=[a.fit_hidden], batch_size=32, n_sample=2048, n_epochs=1,
                           loss="cross-entropy", learning_rate=0.1, num_threads=0,
                           show_progress=False)
        _, r = _measure(lambda: m.fit(data))
        res.update(r, n_events=int(data.n_events), hidden=a.fit_hidden,
                   model_bytes=sum(v.nbytes for v in m.params.values()),
                   optimizer_bytes=sum(v.nbytes for v in m._opt.values()),
                   n_items=len(m.item_ids), events_per_s=m.history[-1]["events_per_s"])
        return res
    if kind == "popularity":
        from grurec import baselines

        data = grurec.to_sessions(_events(N, 2 * N))
        m = baselines.Popularity().fit(data)
        m.recommend([list(m.item_ids[:3])], k=20)  # warm up
        rng = np.random.default_rng(1)
        S = a.baseline_sessions
        sessions = [list(m.item_ids[rng.integers(0, N, 3)]) for _ in range(S)]
        (ids, _), r = _measure(lambda: m.recommend(sessions, k=20))
        res.update(r, n_sessions=S, dense_bytes=S * N * 4, chunk_rows=512,
                   model_bytes=int(m.popularity.nbytes))
        return res
    m = _random_model(N, a.hidden)
    res.update(hidden=a.hidden, model_bytes=sum(v.nbytes for v in m.params.values()))
    rng = np.random.default_rng(1)
    # Warm up: lazy imports (pandas for the id lookup), OpenMP thread pools.
    m.recommend([list(m.item_ids[:3])], k=20, exclude_seen=True)
    m.new_session().click(m.item_ids[0]).recommend(20)
    grurec.evaluate(m, {"SessionId": [0, 0], "ItemId": m.item_ids[:2], "Time": [0.0, 1.0]})
    if kind == "recommend":
        S = a.sessions
        sessions = [list(m.item_ids[rng.integers(0, N, 3)]) for _ in range(S)]
        (ids, _), r = _measure(lambda: m.recommend(sessions, k=20, exclude_seen=True))
        assert ids.shape == (S, 20)
        res.update(r, n_sessions=S, dense_bytes=S * N * 4)
    elif kind == "live":
        S = a.live
        clicks = m.item_ids[rng.integers(0, N, (S, 3))]

        def run():
            live = [m.new_session() for _ in range(S)]
            for s, c in zip(live, clicks):
                for it in c:
                    s.click(it)
                s.recommend(20)
            return live

        _, r = _measure(run)
        res.update(r, n_sessions=S, dense_bytes=S * N * 4)
    elif kind == "evaluate":
        S, L = a.eval_sessions, 5
        test = {"SessionId": np.repeat(np.arange(S), L),
                "ItemId": m.item_ids[rng.integers(0, N, S * L)],
                "Time": np.arange(S * L, dtype=np.float64)}
        out, r = _measure(lambda: grurec.evaluate(m, test, cutoffs=(1, 5, 20)))
        res.update(r, n_sessions=S, n_predictions=out["n_events"],
                   dense_bytes=out["n_events"] * N * 4)
    return res


# ----------------------------------------------------------------- the parent
def _mb(b):
    return f"{b / 2**20:,.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=1_000_000, help="training events (fit)")
    p.add_argument("--fit-hidden", type=int, default=100)
    p.add_argument("--hidden", type=int, default=16, help="H of the serving model")
    p.add_argument("--sessions", type=int, default=100_000, help="recommend batch")
    p.add_argument("--live", type=int, default=10_000, help="live sessions kept")
    p.add_argument("--eval-sessions", type=int, default=20_000)
    p.add_argument("--baseline-sessions", type=int, default=2048)
    p.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a)))
        return 0

    import grurec

    rows = []
    for kind in a.only:
        args = [sys.executable, os.path.abspath(__file__), "--child", kind] + [
            x for k, v in vars(a).items() if k not in ("only", "json", "child")
            for x in (f"--{k.replace('_', '-')}", str(v))]
        t0 = time.perf_counter()
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{kind} failed")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - t0
        rows.append(r)
        print(f"{kind}: extra peak {_mb(r['extra'])} MB in {r['seconds']:.1f} s", flush=True)

    report = {
        "benchmark": "bench_memory",
        "grurec": grurec.__version__, "simd": grurec.simd_level(),
        "cores": os.cpu_count(), "machine": platform.machine(),
        "processor": platform.processor() or platform.uname().machine,
        "python": platform.python_version(), "results": rows,
    }
    print()
    print(cpu_line())
    print(f"{'measurement':<12}{'items':>11}{'what':>30}{'model MB':>10}{'RSS before':>12}"
          f"{'peak extra MB':>15}{'dense MB':>12}{'seconds':>9}")
    for r in rows:
        what = {"fit": f"{r.get('n_events', 0):,} events, H={r.get('hidden')}",
                "recommend": f"{r.get('n_sessions', 0):,} sessions, H={r.get('hidden')}",
                "live": f"{r.get('n_sessions', 0):,} live sessions",
                "evaluate": f"{r.get('n_predictions', 0):,} predictions",
                "popularity": f"{r.get('n_sessions', 0):,} sessions"}[r["kind"]]
        model = r.get("model_bytes", 0) + r.get("optimizer_bytes", 0)
        dense = _mb(r["dense_bytes"]) if "dense_bytes" in r else "-"
        print(f"{r['kind']:<12}{r['n_items']:>11,}{what:>30}{_mb(model):>10}"
              f"{_mb(r['rss_before']):>12}{_mb(r['extra']):>15}{dense:>12}{r['seconds']:>9.1f}")
    print()
    print(json.dumps(report, indent=2))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
