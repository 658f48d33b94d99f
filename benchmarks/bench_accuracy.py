"""GRU4Rec accuracy on the shared data sets: named configurations, several seeds.

Trains on a data set's training file and evaluates next-item prediction over all
items (full ranking, standard tie handling: rank = 1 + number of items scored
strictly higher) on its test file, with the hidden state reset for every test
session. Targets never seen in training count as misses and are reported.

Configurations (``CONFIGS``) are ``grurec.presets``: the official GRU4Rec parameter
files (``rsc15_xe_shared_100``, ``retailrocket_bprmax_shared``, ...) and the settings
grurec's search found (``search_<data>_valid``). Prints a table and writes JSON;
``--anchors`` prints the official implementation's figures on the same data
(``../shared/anchors``) beside them.

Usage:
    python benchmarks/bench_accuracy.py --config rsc15_xe_shared_100 --threads 1 --anchors
    python benchmarks/bench_accuracy.py --config retailrocket_bprmax_shared --set n_epochs=3
    python benchmarks/bench_accuracy.py --config rsc15_xe_shared_100 --set gru_cell=reset-before
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

import grurec
from _machine import cpu_line, cpu_model  # (benchmarks/, the script's folder, is on sys.path)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_accuracy.json"
ANCHORS = SHARED.parent / "anchors" / "official-gru4rec-rsc15-100k.json"
# Preset -> the anchors file's config measured with the same parameter file.
ANCHOR_CONFIGS = {"rsc15_xe_shared_100": "rsc15_official_paramfile",
                  "retailrocket_bprmax_shared": "retailrocket_official_paramfile"}

DATASETS = {
    "rsc15-100k": ("rsc15-100k/yoochoose-clicks-100k_train_full.txt",
                   "rsc15-100k/yoochoose-clicks-100k_test.txt"),
    "rsc15-100k-valid": ("rsc15-100k/yoochoose-clicks-100k_train_tr.txt",
                         "rsc15-100k/yoochoose-clicks-100k_train_valid.txt"),
    "yoochoose1_64": ("yoochoose1_64/yoochoose1_64_sessions_train.tsv.gz",
                      "yoochoose1_64/yoochoose1_64_sessions_test.tsv.gz"),
    "diginetica": ("diginetica/diginetica_sessions_train.tsv.gz",
                   "diginetica/diginetica_sessions_test.tsv.gz"),
}

# Named settings (grurec.presets): the official parameter files and the settings
# grurec's search found for a data set.
CONFIGS = {name: grurec.presets.get(name) for name in grurec.presets.names()}


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    tr, te = DATASETS[name]
    return (pd.read_csv(SHARED / tr, sep="\t"), pd.read_csv(SHARED / te, sep="\t"))


def parse_set(items: list[str]) -> dict:
    """KEY=VALUE pairs: VALUE as JSON (numbers, lists, true/false) or else a string."""
    out = {}
    for it in items:
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def anchor_means(config: str):
    """Mean final-epoch Recall@20 / MRR@20 of the official runs of ``config``'s
    parameter file (``../shared/anchors``), or None."""
    name = ANCHOR_CONFIGS.get(config)
    if name is None or not ANCHORS.exists():
        return None
    runs = [r for r in json.loads(ANCHORS.read_text())["runs"] if r["config"] == name]
    if not runs:
        return None
    last = [r["epochs"][-1] for r in runs]
    return {"n": len(runs), "recall@20": statistics.mean(e["recall@20"] for e in last),
            "mrr@20": statistics.mean(e["mrr@20"] for e in last)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", default="rsc15-100k", choices=sorted(DATASETS))
    p.add_argument("--config", default="rsc15_xe_shared_100", choices=sorted(CONFIGS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override hyperparameters, e.g. n_epochs=3 layers=[200]")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--parallel", default="hogwild", choices=["hogwild", "sync"])
    p.add_argument("--cutoffs", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--anchors", action="store_true",
                   help="print the official implementation's figures (rsc15-100k) beside")
    args = p.parse_args(argv)

    train, test = load(args.data)
    params = dict(CONFIGS[args.config], **parse_set(args.set))
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model = grurec.GRU4Rec(**params, random_state=seed, num_threads=args.threads,
                               parallel=args.parallel, show_progress=False).fit(train)
        fit_s = time.perf_counter() - t0
        res = grurec.evaluate(model, test, cutoffs=tuple(args.cutoffs))
        ev = sum(h["events"] for h in model.history)
        runs.append(dict(seed=seed, fit_seconds=fit_s, events_per_s=ev / fit_s, **res))
        print(f"seed {seed}: " + " ".join(f"{k}={v:.4f}" for k, v in res.items()
                                          if k.startswith(("recall", "mrr")))
              + f"  ({fit_s:.1f} s, {ev / fit_s:,.0f} ev/s)", file=sys.stderr, flush=True)

    keys = [k for k in runs[0] if k.startswith(("recall@", "mrr@"))]
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    print(f"\n{cpu_line()}")
    print(f"{args.data}, config {args.config} {parse_set(args.set) or ''}, "
          f"{len(runs)} seed(s), {runs[0]['n_events']} test events, "
          f"{runs[0]['n_unknown_targets']} targets unseen in training (misses)")
    print(f"{'seed':>6}" + "".join(f"{k:>11}" for k in keys) + f"{'fit s':>8}")
    for r in runs:
        print(f"{r['seed']:>6}" + "".join(f"{r[k]:>11.4f}" for k in keys)
              + f"{r['fit_seconds']:>8.1f}")
    print(f"{'mean':>6}" + "".join(f"{mean[k]:>11.4f}" for k in keys))
    official = anchor_means(args.config) if args.anchors and args.data == "rsc15-100k" else None
    if official:
        print(f"official GRU4Rec, same parameter file, mean of {official['n']} seeds: "
              f"recall@20 {official['recall@20']:.4f}  mrr@20 {official['mrr@20']:.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(data=args.data, config=args.config, params=params,
                                         threads=args.threads, parallel=args.parallel,
                                         runs=runs, mean=mean, official=official,
                                         cpu=cpu_model(), simd=grurec.simd_level()),
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
