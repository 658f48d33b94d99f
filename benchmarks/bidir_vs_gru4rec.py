"""BiGRU4Rec (GRU4Rec + bidirectional readout) against GRU4Rec (and NARM) on a
prepared data set: every model starts from GRU4Rec's searched preset, the
readout models add their readout and train on windows of --bptt steps.
Trains on the set's train split and reports grurec.evaluate's MRR@20 /
Recall@20 on its test split (full ranking), with seconds per epoch. With
--embeddings, a session-similarity check: for every test session of 3+
events, its prefix without the last event is embedded, the nearest other
prefix by cosine is found, and the share of pairs whose last events agree
is reported, for BiGRU4Rec's [h ; b], its h and b alone, and GRU4Rec's h.

    python benchmarks/bidir_vs_gru4rec.py yoochoose1_64 --epochs 3 --bptt 5 \\
        --models GRU4Rec,BiGRU4Rec --embeddings --out bidir.json

One JSON line per model (and one for the embeddings), then a Markdown
table and the CPU line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import grurec
from grurec import presets

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _machine import cpu_line  # noqa: E402

PRESET = {"yoochoose1_64": "search_yoochoose1_64_valid",
          "diginetica": "search_diginetica_valid"}


def _prefixes(test):
    """(prefixes, last items) of the test sessions (a SessionData) with 3+
    events: the prefixes as item ids without the items the test split's
    vocabulary marks unknown (-1), the last items as indices, an unknown one
    as a value of its own (it agrees with nothing)."""
    ids, pre, last = test.item_ids, [], []
    for k, (a, b) in enumerate(zip(test.offsets[:-1], test.offsets[1:])):
        if b - a < 3:
            continue
        it = test.items[a:b]
        pre.append([ids[i] for i in it[:-1] if i >= 0])
        last.append(int(it[-1]) if it[-1] >= 0 else -2 - k)
    return pre, np.asarray(last)


def _nn_agreement(E, last, chunk=2048):
    """Share of rows whose nearest other row by cosine has the same last item
    (rows with a zero embedding are skipped as queries and as neighbours)."""
    n = np.linalg.norm(E, axis=1)
    ok = n > 0
    X = (E[ok] / n[ok, None]).astype(np.float32)
    y = last[ok]
    hit = 0
    for i in range(0, len(X), chunk):
        S = X[i:i + chunk] @ X.T
        S[np.arange(S.shape[0]), np.arange(i, i + S.shape[0])] = -np.inf
        hit += int((y[S.argmax(1)] == y[i:i + chunk]).sum())
    return round(100.0 * hit / len(X), 2), int(len(X))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", choices=sorted(PRESET))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bptt", type=int, default=5)
    ap.add_argument("--models", default="GRU4Rec,BiGRU4Rec")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embeddings", action="store_true")
    ap.add_argument("--out", default=None, help="append the JSON lines to this file")
    a = ap.parse_args()
    ds = grurec.datasets.load_prepared(a.dataset)
    base = dict(presets.get(PRESET[a.dataset]), n_epochs=a.epochs, random_state=a.seed,
                num_threads=a.threads, show_progress=False)
    rows, models = [], {}
    for name in a.models.split(","):
        windowed = name in ("NARM", "BiGRU4Rec")
        kw = dict(base, bptt=a.bptt) if windowed else base
        m = getattr(grurec, name)(**kw)
        t0 = time.perf_counter()
        m.fit(ds.train, callback=lambda e, loss: print(
            f"  {name} epoch {e}: loss {loss:.4f}, {time.perf_counter() - t0:.0f} s since "
            "fit began", file=sys.stderr, flush=True))
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = grurec.evaluate(m, ds.test, cutoffs=(20,), show_progress=False)
        row = dict(dataset=a.dataset, model=name, epochs=a.epochs, seed=a.seed,
                   bptt=a.bptt if windowed else 1, mrr20=round(100 * r["mrr@20"], 2),
                   recall20=round(100 * r["recall@20"], 2),
                   epoch_s=[round(h["seconds"], 1) for h in m.history],
                   fit_s=round(fit_s, 1), eval_s=round(time.perf_counter() - t0, 1),
                   threads=a.threads)
        rows.append(row)
        models[name] = m
        print(json.dumps(row), flush=True)
    if a.embeddings and "BiGRU4Rec" in models:
        pre, last = _prefixes(ds.test)
        bi = models["BiGRU4Rec"]
        H = bi.layers[-1]
        E = bi.session_embeddings(pre)  # whole prefix read backwards (window=0)
        res = dict(dataset=a.dataset, kind="embeddings", sessions=len(pre))
        for key, X in (("bi_h_b", E), ("bi_h", E[:, :H]), ("bi_b", E[:, H:])):
            res[key], res["queries"] = _nn_agreement(X, last)
        if "GRU4Rec" in models:
            g = models["GRU4Rec"]
            idx = [g._lookup(s) for s in pre]
            off = np.r_[0, np.cumsum([len(s) for s in idx])].astype(np.int64)
            h = g._states(off, np.concatenate(idx).astype(np.int32))
            res["gru4rec_h"], _ = _nn_agreement(h, last)
        rows.append(res)
        print(json.dumps(res), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print("\n| data set | model | bptt | epochs | MRR@20 | Recall@20 | s / epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "model" in r:
            s = r["epoch_s"]
            print(f"| {r['dataset']} | {r['model']} | {r['bptt']} | {r['epochs']} | "
                  f"{r['mrr20']:.2f} | {r['recall20']:.2f} | "
                  f"{min(s):.0f}-{max(s):.0f} |" if len(s) > 1 else
                  f"| {r['dataset']} | {r['model']} | {r['bptt']} | {r['epochs']} | "
                  f"{r['mrr20']:.2f} | {r['recall20']:.2f} | {s[0]:.0f} |")
    print(cpu_line())


if __name__ == "__main__":
    main()
