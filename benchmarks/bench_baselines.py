"""Baseline accuracy (POP, S-POP, Item-KNN, V-SKNN) on the shared data sets, full ranking.

Fits each baseline on a data set's training file and predicts, for every test
session, each next item from the prefix before it. Every item of the training
vocabulary is a candidate (full ranking); a target's rank is 1 + the number of
items scored strictly higher ("standard" tie handling). Targets never seen in
training cannot be ranked: they count as misses and their number is reported.
Prefix items unknown to the model are passed as -1 and ignored by the models.

The evaluator is written here, on ``score_prefixes``, until the library's
evaluator (being rewritten to call ``score_prefixes``) lands.

``--zero-ties`` also reports the kNN figures with the popularity fallback
removed (scores clipped at 0, so unscored items tie at 0), under standard and
conservative (1 + number scored higher or equal, other than the target) tie
handling: how much a 0-tie would flatter a kNN baseline.

Timing columns: ``fit s`` (fit), ``score s`` (time inside score_prefixes),
``eval s`` (the whole evaluation loop with the ranking; with --zero-ties it
includes the two extra rankings).

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
import pandas as pd

import grurec
from grurec import baselines as bl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_baselines.json"

DATASETS = {
    "rsc15-100k": ("rsc15-100k/yoochoose-clicks-100k_train_full.txt",
                   "rsc15-100k/yoochoose-clicks-100k_test.txt"),
    "yoochoose1_64": ("yoochoose1_64/yoochoose1_64_sessions_train.tsv.gz",
                      "yoochoose1_64/yoochoose1_64_sessions_test.tsv.gz"),
    "diginetica": ("diginetica/diginetica_sessions_train.tsv.gz",
                   "diginetica/diginetica_sessions_test.tsv.gz"),
}

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


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    tr, te = DATASETS[name]
    return pd.read_csv(SHARED / tr, sep="\t"), pd.read_csv(SHARED / te, sep="\t")


def test_prefixes(model, test: pd.DataFrame):
    """Every (prefix, target) of the test sessions, prefixes of one session in order."""
    sd = grurec.sessions_from_frame(test, item_ids=model.item_ids, unknown="keep")
    prefixes, targets = [], []
    for s in range(sd.n_sessions):
        seq = sd.items[sd.offsets[s]:sd.offsets[s + 1]]
        for t in range(1, len(seq)):
            prefixes.append(seq[:t])
            targets.append(seq[t])
    return prefixes, np.asarray(targets, np.int64)


def ranks_of(scores: np.ndarray, targets: np.ndarray, mode: str = "standard") -> np.ndarray:
    """Rank of each target among all items; unknown targets (-1) get a huge rank."""
    ts = scores[np.arange(len(targets)), np.maximum(targets, 0)][:, None]
    if mode == "standard":
        r = 1 + (scores > ts).sum(1)
    else:
        r = (scores >= ts).sum(1)  # the target itself counts once: 1 + others >=
    return np.where(targets >= 0, r, np.iinfo(np.int64).max)


def metrics(ranks: np.ndarray, cutoff: int) -> tuple[float, float]:
    hit = ranks <= cutoff
    return float(hit.mean()), float(np.where(hit, 1.0 / np.minimum(ranks, 2**62), 0.0).mean())


def run_one(name: str, make, train, test, cutoff: int, batch: int, zero_ties: bool) -> dict:
    model = make()
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    prefixes, targets = test_prefixes(model, test)
    ranks, ranks_z, ranks_zc = [], [], []
    score_s = 0.0
    t0 = time.perf_counter()
    for c in range(0, len(prefixes), batch):
        t1 = time.perf_counter()
        sc = model.score_prefixes(prefixes[c:c + batch])
        score_s += time.perf_counter() - t1
        tg = targets[c:c + batch]
        ranks.append(ranks_of(sc, tg))
        if zero_ties:
            np.maximum(sc, 0, out=sc)
            ranks_z.append(ranks_of(sc, tg))
            ranks_zc.append(ranks_of(sc, tg, "conservative"))
    eval_s = time.perf_counter() - t0
    ranks = np.concatenate(ranks)
    rec, mrr = metrics(ranks, cutoff)
    out = dict(model=name, params={k: v for k, v in vars(model).items()
                                   if k in ("n_sims", "lmbd", "alpha", "k", "sample_size",
                                            "weighting", "similarity", "idf_weighting")},
               n_items=int(len(model.item_ids)), n_events=int(len(ranks)),
               n_unknown_targets=int((targets < 0).sum()),
               recall=rec, mrr=mrr, fit_s=fit_s, eval_s=eval_s, score_s=score_s,
               events_per_s=len(ranks) / eval_s if eval_s else 0.0)
    if zero_ties:
        for key, rk in (("zero_ties_standard", ranks_z), ("zero_ties_conservative", ranks_zc)):
            r, m = metrics(np.concatenate(rk), cutoff)
            out[key] = dict(recall=r, mrr=m)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=sorted(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   choices=sorted(MODELS) + sorted(ALIASES))
    p.add_argument("--cutoff", type=int, default=20)
    p.add_argument("--batch", type=int, default=256, help="prefixes per score_prefixes call")
    p.add_argument("--zero-ties", action="store_true",
                   help="also report kNN figures with unscored items tied at 0")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    names = [ALIASES.get(m, m) for m in args.models]
    K = args.cutoff

    results = []
    header = (f"{'data':<14} {'model':<9} {'items':>6} {'events':>7} {'unk.tgt':>7} "
              f"{'Recall@' + str(K):>9} {'MRR@' + str(K):>8} {'published P/MRR':>16} "
              f"{'fit s':>6} {'score s':>7} {'eval s':>7}")
    print(header)
    print("-" * len(header))
    for data in args.data:
        train, test = load(data)
        for name in names:
            r = run_one(name, MODELS[name], train, test, K, args.batch,
                        args.zero_ties and name in ("Item-KNN", "V-SKNN"))
            r["data"] = data
            pub = PUBLISHED.get((data, name))
            r["published_p20_mrr20_pct"] = pub
            results.append(r)
            pub_s = f"{pub[0]:.2f}/{pub[1]:.2f}" if pub else "-"
            print(f"{data:<14} {name:<9} {r['n_items']:>6} {r['n_events']:>7} "
                  f"{r['n_unknown_targets']:>7} {100 * r['recall']:>8.2f}% "
                  f"{100 * r['mrr']:>7.2f}% {pub_s:>16} {r['fit_s']:>6.1f} {r['score_s']:>7.1f} "
                  f"{r['eval_s']:>7.1f}", flush=True)
            if "zero_ties_standard" in r:
                zs, zc = r["zero_ties_standard"], r["zero_ties_conservative"]
                print(f"{'':<14}   0-ties: standard {100 * zs['recall']:.2f}%/"
                      f"{100 * zs['mrr']:.2f}%, conservative {100 * zc['recall']:.2f}%/"
                      f"{100 * zc['mrr']:.2f}%", flush=True)
    meta = dict(cutoff=K, batch=args.batch, python=sys.version.split()[0],
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
