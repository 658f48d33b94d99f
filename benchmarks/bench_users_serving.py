"""Serving known users: ``UserGRU.update`` (one GRU step from the stored state)
+ ``recommend(users=[u], k=20)`` against recommending from the replayed
history (what a model without stored user states must do).

A UserGRU of H = 100 (shared embedding) trained for one epoch on
beauty-s3rec (12,101 items, 22,363 users; ``../shared/data``), or on
synthetic data of the same shape when the file is absent. For each of
``--calls`` events: a user (cycling over the users with the longest
histories) gets one new item; the time of ``update`` + ``recommend`` is one
sample, and, separately, ``recommend([history + new items])`` from scratch.
1 thread, median and p99 in microseconds, with and without
``prepare_serving()`` (the int8 item table).

Usage:
    python benchmarks/bench_users_serving.py [--calls 3000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

import grurec
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)


def load(n_users: int | None):
    try:
        ds = grurec.datasets.load_prepared("beauty-s3rec")
        sd = ds.valid  # all but each user's last event
        return sd.to_frame(session_col="UserId"), "beauty-s3rec"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        n = 200_000
        df = pd.DataFrame(dict(UserId=rng.integers(0, 22_000, n),
                               ItemId=rng.zipf(1.3, n) % 12_000, Time=np.arange(n)))
        return df, "synthetic (beauty-s3rec shape)"


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e6, q))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--layers", type=int, nargs="+", default=[100])
    args = p.parse_args(argv)
    print(cpu_line())
    df, name = load(None)
    m = grurec.UserGRU(layers=args.layers, n_epochs=1, bptt=8, batch_size=16, num_threads=1,
                       random_state=0, show_progress=False).fit(df)
    hist = {u: g.ItemId.tolist() for u, g in df.groupby("UserId", sort=False)}
    users = sorted(hist, key=lambda u: -len(hist[u]))[:200]
    rng = np.random.default_rng(1)
    new_items = m.item_ids[rng.integers(0, m.n_items, 2 * args.calls)]
    rows = []
    extra = {u: [] for u in users}  # items update() added, per user (both rounds)
    for prepared in (False, True):
        if prepared:
            m.prepare_serving(num_threads=1)
        m.num_threads = 1
        live, replay = [], []
        for j in range(args.calls):
            u = users[j % len(users)]
            it = new_items[j + (args.calls if prepared else 0)]
            t0 = time.perf_counter()
            m.update(u, [it])
            a = m.recommend(users=[u], k=20)
            t1 = time.perf_counter()
            extra[u].append(it)
            t2 = time.perf_counter()
            b = m.recommend([hist[u] + extra[u]], k=20, exclude_seen=True)
            t3 = time.perf_counter()
            live.append(t1 - t0)
            replay.append(t3 - t2)
            if j < 50:  # the two answers agree (the stored state is the replay's)
                assert np.array_equal(a[0], b[0]), "stored state and replay disagree"
        mean_len = float(np.mean([len(hist[u]) for u in users]))
        rows.append(dict(data=name, n_items=int(m.n_items), H=args.layers[-1],
                         prepare_serving=prepared, calls=args.calls,
                         mean_history=round(mean_len, 1),
                         live_median_us=round(pct(live, 50), 1),
                         live_p99_us=round(pct(live, 99), 1),
                         replay_median_us=round(pct(replay, 50), 1),
                         replay_p99_us=round(pct(replay, 99), 1),
                         simd=grurec.simd_level()))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'':<22}{'update+recommend':>18}{'replay+recommend':>18}   (median / p99 us)")
    for r in rows:
        label = "prepare_serving" if r["prepare_serving"] else "plain"
        print(f"{label:<22}{r['live_median_us']:>9.0f} /{r['live_p99_us']:>6.0f}"
              f"{r['replay_median_us']:>11.0f} /{r['replay_p99_us']:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
