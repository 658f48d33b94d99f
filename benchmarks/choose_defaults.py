"""Choose GRU4Rec()'s defaults by mean rank over every session data set.

A small candidate set (the current defaults and official parameter files
from ``grurec.presets``) is trained on each session data set of ``../shared/data``
and scored by MRR@20 on a validation split carved from that set's *training*
data (the test files are never read):

    rsc15-100k      the prepared train_tr / train_valid pair (GRU4Rec's
                    official tuning split: the last day of training)
    yoochoose1_64,  the sessions that start in the last 10% of the training
    diginetica      events (their Time is an event counter, not seconds):
                    grurec.fitting's carve, as fit(valid=0.1) makes it

Every run: 1 thread, random_state 0, each candidate's own n_epochs, no early
stopping (the defaults are what GRU4Rec() trains). Results go to a JSON file
one (data set, candidate) at a time, so an interrupted run resumes where it
stopped; the table (MRR@20, Recall@20, rank per set, mean rank, share of the
best MRR@20) is printed in Markdown.

    python benchmarks/choose_defaults.py --out defaults.json
    python benchmarks/choose_defaults.py --out defaults.json --data rsc15-100k \\
        --candidates defaults rsc15_xe_shared_100     # a subset
    python benchmarks/choose_defaults.py --out defaults.json --table   # print only
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time

import grurec
from grurec import datasets, presets
from grurec.fitting import ValidationPlan

DATA = ("rsc15-100k", "yoochoose1_64", "diginetica")

# The candidates besides the defaults: official parameter files from
# grurec.presets (any preset name may be given with --candidates). The two
# here are the small ones (100 and 224 units); the 480/512-unit files cost
# 5-10x more to train at 1 thread.
CANDIDATES = ("rsc15_xe_shared_100", "retailrocket_bprmax_shared")


def defaults() -> dict:
    """GRU4Rec()'s algorithm hyperparameters as this checkout has them."""
    skip = {"self", "num_threads", "random_state", "show_progress", "parallel"}
    return {n: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for n, p in inspect.signature(grurec.GRU4Rec.__init__).parameters.items()
            if n not in skip}


def candidates(names) -> dict:
    out = {}
    for n in names:
        out[n] = defaults() if n == "defaults" else presets.get(n)
    return out


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def validation_split(name: str):
    """(train, valid) SessionData from the set's training data only."""
    ds = datasets.load_prepared(name)
    if ds.train_tr is not None and ds.valid is not None:
        return ds.train_tr, ds.valid
    plan = ValidationPlan(0.1, None, "mrr@20")
    train = plan.carve(ds.train, "SessionId", "ItemId", "Time")
    return train, plan.valid_sd


def run_one(train, valid, params: dict, threads: int) -> dict:
    m = grurec.GRU4Rec(**params, num_threads=threads, random_state=0, show_progress=False)
    t0 = time.perf_counter()
    m.fit(train)
    fit_s = time.perf_counter() - t0
    r = grurec.evaluate(m, valid, cutoffs=(20,), show_progress=False)
    return {"mrr@20": r["mrr@20"], "recall@20": r["recall@20"], "fit_s": fit_s,
            "n_events": r["n_events"], "n_unknown_targets": r["n_unknown_targets"],
            "params": params}


def table(results: dict, data, names) -> str:
    """Markdown: per set MRR@20 / Recall@20 and rank; mean rank; worst share of the best."""
    rows = []
    ranks = {n: [] for n in names}
    share = {n: [] for n in names}
    for d in data:
        got = {n: results[d][n]["mrr@20"] for n in names if n in results.get(d, {})}
        order = sorted(got, key=lambda n: -got[n])
        best = got[order[0]] if order else None
        for n in got:
            ranks[n].append(order.index(n) + 1)
            share[n].append(got[n] / best if best else float("nan"))
    head = "| candidate | " + " | ".join(f"{d} MRR@20 / R@20 (rank)" for d in data) + \
        " | mean rank | worst share of the best MRR@20 |"
    rows.append(head)
    rows.append("|" + "---|" * (len(data) + 3))
    for n in sorted(names, key=lambda n: (sum(ranks[n]) / max(len(ranks[n]), 1), n)):
        cells = []
        for d in data:
            r = results.get(d, {}).get(n)
            if r is None:
                cells.append("-")
                continue
            rank = sorted((-results[d][x]["mrr@20"], x) for x in names
                          if x in results[d]).index((-r["mrr@20"], n)) + 1
            cells.append(f"{100 * r['mrr@20']:.2f} / {100 * r['recall@20']:.2f} ({rank})")
        mr = sum(ranks[n]) / len(ranks[n]) if ranks[n] else float("nan")
        ws = min(share[n]) if share[n] else float("nan")
        rows.append(f"| {n} | " + " | ".join(cells) + f" | {mr:.2f} | {100 * ws:.1f}% |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="results JSON (read first: resumes)")
    p.add_argument("--data", nargs="+", default=list(DATA), choices=DATA)
    p.add_argument("--candidates", nargs="+", default=["defaults", *CANDIDATES],
                   help="'defaults' and preset names (default: defaults "
                        f"{' '.join(CANDIDATES)})")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="print the table of --out only")
    args = p.parse_args(argv)
    names = args.candidates
    for n in names:
        if n != "defaults" and n not in presets.PRESETS:
            p.error(f"unknown candidate {n!r}; known: defaults, {', '.join(presets.PRESETS)}")
    cands = candidates(names)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    if not args.table:
        for d in args.data:
            train, valid = None, None
            for n in names:
                done = results.get(d, {}).get(n)
                if done is not None and done["params"] == cands[n]:
                    continue  # measured with these very hyperparameters
                if train is None:
                    train, valid = validation_split(d)
                    log(f"{d}: train {train.n_events} events, valid {valid.n_events} events")
                log(f"{d}: {n} ...")
                r = run_one(train, valid, cands[n], args.threads)
                log(f"{d}: {n}: MRR@20 {r['mrr@20']:.4f} Recall@20 {r['recall@20']:.4f} "
                    f"({r['fit_s']:.0f} s)")
                results.setdefault(d, {})[n] = r
                with open(args.out + ".tmp", "w") as f:
                    json.dump(results, f, indent=1)
                os.replace(args.out + ".tmp", args.out)
    print(table(results, [d for d in args.data if d in results], names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
