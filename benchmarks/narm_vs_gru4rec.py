"""NARM (GRU4Rec + attention readout) against GRU4Rec on a prepared data set:
both start from GRU4Rec's searched preset, NARM adds the readout. Trains on
the set's train split and reports grurec.evaluate's MRR@20 / Recall@20 on
its test split (full ranking), with seconds per epoch.

    python benchmarks/narm_vs_gru4rec.py yoochoose1_64 --epochs 3 --seed 0
"""
from __future__ import annotations

import argparse
import json
import time

import grurec
from grurec import presets

PRESET = {"yoochoose1_64": "search_yoochoose1_64_valid",
          "diginetica": "search_diginetica_valid"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", choices=sorted(PRESET))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bptt", type=int, default=20)
    ap.add_argument("--memory", type=int, default=0, help="NARM's attention_memory")
    ap.add_argument("--models", default="GRU4Rec,NARM")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    ds = grurec.datasets.load_prepared(a.dataset)
    base = dict(presets.get(PRESET[a.dataset]), n_epochs=a.epochs, random_state=a.seed,
                num_threads=a.threads, show_progress=False)
    for name in a.models.split(","):
        kw = dict(base, bptt=a.bptt, attention_memory=a.memory) if name == "NARM" else base
        m = getattr(grurec, name)(**kw)
        t0 = time.perf_counter()
        m.fit(ds.train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = grurec.evaluate(m, ds.test, cutoffs=(20,), show_progress=False)
        print(json.dumps(dict(dataset=a.dataset, model=name, epochs=a.epochs, seed=a.seed,
                              bptt=a.bptt if name == "NARM" else 1,
                              memory=a.memory if name == "NARM" else None,
                              mrr20=round(100 * r["mrr@20"], 2),
                              recall20=round(100 * r["recall@20"], 2),
                              epoch_s=[round(h["seconds"], 1) for h in m.history],
                              fit_s=round(fit_s, 1),
                              eval_s=round(time.perf_counter() - t0, 1))), flush=True)


if __name__ == "__main__":
    main()
