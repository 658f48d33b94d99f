"""What the bidirectional readout costs as the window grows: seconds of one
training epoch and of grurec.evaluate (queries after every test prefix) for
GRU4Rec (bptt 1), NARM and BiGRU4Rec at each --bptts value, from GRU4Rec's
searched yoochoose1_64 preset, one thread, on a small prepared set.

    python benchmarks/bidir_cost.py --data rsc15-100k --bptts 1,2,5,10,20

One JSON line per run, then a Markdown table and the CPU line. Seconds on a
shared machine vary from run to run: compare within one invocation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import grurec
from grurec import presets

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import cpu_line  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="rsc15-100k")
    ap.add_argument("--preset", default="search_yoochoose1_64_valid")
    ap.add_argument("--bptts", default="1,2,5,10,20")
    ap.add_argument("--models", default="NARM,BiGRU4Rec")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="append the JSON lines to this file")
    a = ap.parse_args()
    ds = grurec.datasets.load_prepared(a.data)
    base = dict(presets.get(a.preset), n_epochs=1, random_state=0, num_threads=a.threads,
                show_progress=False)
    runs = [("GRU4Rec", 1)] + [(m, int(t)) for t in a.bptts.split(",")
                               for m in a.models.split(",")]
    rows = []
    for name, T in runs:
        kw = base if name == "GRU4Rec" else dict(base, bptt=T)
        m = getattr(grurec, name)(**kw).fit(ds.train)
        t0 = time.perf_counter()
        r = grurec.evaluate(m, ds.test, cutoffs=(20,), show_progress=False)
        row = dict(data=a.data, model=name, bptt=T, epoch_s=round(m.history[0]["seconds"], 2),
                   eval_s=round(time.perf_counter() - t0, 2),
                   mrr20=round(100 * r["mrr@20"], 2), recall20=round(100 * r["recall@20"], 2))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    g = rows[0]
    print("\n| model | bptt | s / epoch | x GRU4Rec | evaluate s | MRR@20 | Recall@20 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['bptt']} | {r['epoch_s']:.1f} | "
              f"{r['epoch_s'] / g['epoch_s']:.1f} | {r['eval_s']:.1f} | {r['mrr20']:.2f} | "
              f"{r['recall20']:.2f} |")
    print(cpu_line())


if __name__ == "__main__":
    main()
