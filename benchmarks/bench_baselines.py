"""Baseline accuracy (POP, S-POP, Item-KNN, V-SKNN) on the shared data sets, full ranking.

Fits each baseline on a data set's training file and predicts, for every test
session, each next item from the prefix before it. Every item of the training
vocabulary is a candidate (full ranking); a target's rank is 1 + the number of
items scored strictly higher ("standard" tie handling). Targets never seen in
training cannot be ranked: they count as misses and their number is reported.
Prefix items unknown to the model are passed as -1 and ignored by the models.

The evaluation is ``grurec.evaluate`` (the library's: it calls the models'
``score_prefixes`` and ranks with the native code).

``--zero-ties`` also reports the kNN figures with the popularity fallback
removed (scores clipped at 0, so unscored items tie at 0), under standard and
conservative (1 + number scored higher or equal, other than the target) tie
handling: how much a 0-tie would flatter a kNN baseline.

Timing columns: ``fit s`` (fit), ``eval s`` (grurec.evaluate, scoring
included).

Usage:
    python benchmarks/bench_baselines.py                       # all data sets, all models
    python benchmarks/bench_baselines.py --data diginetica --models ItemKNN VSKNN
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import grurec
from grurec import baselines as bl
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)

from bench_accuracy import load  # the shared data sets, one table for all benchmarks

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_baselines.json"
DATASETS = ("rsc15-100k", "yoochoose1_64", "diginetica")

MODELS = {
    "POP": lambda: bl.Popularity(),
    "S-POP": lambda: bl.SessionPopularity(),
    "Item-KNN": lambda: bl.ItemKNN(),
    "V-SKNN": lambda: bl.VSKNN(),
}
ALIASES = {"Popularity": "POP", "SessionPopularity": "S-POP", "ItemKNN": "Item-KNN",
           "VSKNN": "V-SKNN"}

# SR-GNN (Wu et al., AAAI 2019), Table 2: P@20 / MRR@20 in %.
PUBLISHED = {
    ("diginetica", "POP"): (0.89, 0.20), ("diginetica", "S-POP"): (21.06, 13.68),
    ("diginetica", "Item-KNN"): (35.75, 11.57),
    ("yoochoose1_64", "POP"): (6.71, 1.65), ("yoochoose1_64", "S-POP"): (30.44, 18.35),
    ("yoochoose1_64", "Item-KNN"): (51.60, 21.81),
}


class _ZeroTies:
    """A model seen with its popularity fallback removed: scores clipped at 0,
    so every item without kNN evidence ties at 0 (what a plain kNN scores)."""

    def __init__(self, model):
        self._m = model
        self.item_ids = model.item_ids
        self.popularity = model.popularity
        self.n_items = model.n_items

    def _check_fitted(self):
        self._m._check_fitted()

    def _lookup(self, ids):
        return self._m._lookup(ids)

    def score_prefixes(self, prefixes):
        return np.maximum(self._m.score_prefixes(prefixes), 0)


def run_one(name: str, make, train, test, cutoff: int, zero_ties: bool) -> dict:
    model = make()
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = grurec.evaluate(model, test, cutoffs=(cutoff,))
    eval_s = time.perf_counter() - t0
    out = dict(model=name, params={k: v for k, v in vars(model).items()
                                   if k in ("n_sims", "lmbd", "alpha", "k", "sample_size",
                                            "weighting", "similarity", "idf_weighting")},
               n_items=int(len(model.item_ids)), n_events=res["n_events"],
               n_unknown_targets=res["n_unknown_targets"],
               recall=res[f"recall@{cutoff}"], mrr=res[f"mrr@{cutoff}"], fit_s=fit_s,
               eval_s=eval_s, events_per_s=res["n_events"] / eval_s if eval_s else 0.0)
    if zero_ties:
        for mode in ("standard", "conservative"):
            z = grurec.evaluate(_ZeroTies(model), test, cutoffs=(cutoff,), mode=mode)
            out[f"zero_ties_{mode}"] = dict(recall=z[f"recall@{cutoff}"], mrr=z[f"mrr@{cutoff}"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=sorted(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   choices=sorted(MODELS) + sorted(ALIASES))
    p.add_argument("--cutoff", type=int, default=20)
    p.add_argument("--zero-ties", action="store_true",
                   help="also report kNN figures with unscored items tied at 0")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    names = [ALIASES.get(m, m) for m in args.models]
    K = args.cutoff

    results = []
    header = (f"{'data':<14} {'model':<9} {'items':>6} {'events':>7} {'unk.tgt':>7} "
              f"{'Recall@' + str(K):>9} {'MRR@' + str(K):>8} {'published P/MRR':>16} "
              f"{'fit s':>6} {'eval s':>7}")
    print(cpu_line())
    print(header)
    print("-" * len(header))
    for data in args.data:
        train, test = load(data)
        for name in names:
            r = run_one(name, MODELS[name], train, test, K,
                        args.zero_ties and name in ("Item-KNN", "V-SKNN"))
            r["data"] = data
            pub = PUBLISHED.get((data, name))
            r["published_p20_mrr20_pct"] = pub
            results.append(r)
            pub_s = f"{pub[0]:.2f}/{pub[1]:.2f}" if pub else "-"
            print(f"{data:<14} {name:<9} {r['n_items']:>6} {r['n_events']:>7} "
                  f"{r['n_unknown_targets']:>7} {100 * r['recall']:>8.2f}% "
                  f"{100 * r['mrr']:>7.2f}% {pub_s:>16} {r['fit_s']:>6.1f} "
                  f"{r['eval_s']:>7.1f}", flush=True)
            if "zero_ties_standard" in r:
                zs, zc = r["zero_ties_standard"], r["zero_ties_conservative"]
                print(f"{'':<14}   0-ties: standard {100 * zs['recall']:.2f}%/"
                      f"{100 * zs['mrr']:.2f}%, conservative {100 * zc['recall']:.2f}%/"
                      f"{100 * zc['mrr']:.2f}%", flush=True)
    meta = dict(cutoff=K, python=sys.version.split()[0],
                numpy=np.__version__, machine=platform.machine(),
                cpu_count=os.cpu_count(), processor=platform.processor(),
                tie_handling="standard: rank = 1 + number of items scored strictly higher",
                unknown_targets="counted as misses")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(meta=meta, results=results), indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
