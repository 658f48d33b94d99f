"""Latency of model.explain (leave-one-click-out contributions, NARM's
attention weights): one 20-click session, top 10 of 40k items, H = 100, one
thread; median and 90th percentile of repeated calls (weights untrained:
the cost does not depend on their values).

    python benchmarks/bench_explain.py [--items 40000 --hidden 100 --clicks 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import grurec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=40000)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=300)
    a = ap.parse_args()
    N = a.items
    # Sessions (i, i + 1): every item is in the vocabulary; no training needed.
    df = pd.DataFrame({"SessionId": np.repeat(np.arange(N // 2), 2), "ItemId": np.arange(N),
                       "Time": np.arange(N)})
    rng = np.random.default_rng(0)
    seq = list(rng.integers(0, N, a.clicks))
    print(f"simd={grurec.simd_level()} items={N} H={a.hidden} clicks={a.clicks}")
    for cls in (grurec.GRU4Rec, grurec.UserGRU, grurec.NARM):
        kw = dict(layers=[a.hidden], n_epochs=0, num_threads=1, show_progress=False,
                  random_state=0)
        m = cls(**kw).fit(df.rename(columns={"SessionId": "UserId"}) if cls is grurec.UserGRU
                          else df)
        m.explain(seq, k=10)  # warm up
        t = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            m.explain(seq, k=10)
            t.append(time.perf_counter() - t0)
        t = np.array(t) * 1e3
        print(f"{cls.__name__:8s} explain: median {np.median(t):.3f} ms, p90 "
              f"{np.percentile(t, 90):.3f} ms")


if __name__ == "__main__":
    main()
