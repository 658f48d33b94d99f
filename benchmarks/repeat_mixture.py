"""Repeat-aware scoring (``grurec.RepeatAware``, docs/repeat.md) against the
plain model and S-POP, on the session data sets we carry.

For every data set and seed: the base model (GRU4Rec with the data set's
preset; NARM = the same plus the readout) is trained twice, on the
validation-training part (the training file without its last sessions) and
on the whole training file. The mixture is fitted on the validation part with
the first model's scores, then put on top of the second model (the mixture's
parameters are kept, the model is the refit one) and evaluated on the test
split with full ranking (grurec.evaluate, mode "standard"). Validation split:
rsc15-100k's own train_tr / train_valid files; yoochoose1_64 and diginetica:
the last sessions of the training file, as many as the test file has
(``time_split(train, cut=<first event of that session>, straddling="drop",
drop_unseen_items=True)``, as benchmarks/tune.py does). Figures: MRR@20 and
Recall@20 (%), also split by whether the target already occurs earlier in
its session ("repeat") or not ("new").

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/repeat_mixture.py \
        --data rsc15-100k,yoochoose1_64,diginetica --models GRU4Rec --seeds 0

Trained models are cached under ``--cache`` (default /tmp/grurec_repeat_models), so
``--train-only`` can run first and a later call only fits and evaluates.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import grurec
from grurec import presets
from grurec.splits import time_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line  # noqa: E402

PRESET = {"rsc15-100k": "rsc15_xe_shared_100", "yoochoose1_64": "search_yoochoose1_64_valid",
          "diginetica": "search_diginetica_valid"}


def splits(name: str):
    """(validation-training part, validation part, train, test) as SessionData."""
    ds = grurec.datasets.load_prepared(name)
    if ds.train_tr is not None and ds.valid is not None:
        return ds.train_tr, ds.valid, ds.train, ds.test
    tr = ds.train
    first = tr.times[tr.offsets[:-1]]
    cut = float(first[tr.n_sessions - ds.test.n_sessions])
    sp = time_split(tr, cut=cut, straddling="drop", drop_unseen_items=True)
    return sp.train, sp.test, ds.train, ds.test


def trained(name, model, part, data, seed, args):
    path = Path(args.cache) / f"{name}_{model}_{part}_s{seed}.grurec"
    if path.exists():
        return grurec.load(path), None
    kw = dict(presets.get(PRESET[name]), random_state=seed, num_threads=1, show_progress=False)
    if args.epochs:
        kw["n_epochs"] = args.epochs
    if model == "NARM":
        kw["bptt"] = args.bptt
    m = getattr(grurec, model)(**kw)
    t0 = time.perf_counter()
    m.fit(data)
    fit_s = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return m, fit_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="rsc15-100k")
    ap.add_argument("--models", default="GRU4Rec")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--bptt", type=int, default=5)
    ap.add_argument("--cache", default="/tmp/grurec_repeat_models")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    rows = []
    for name in args.data.split(","):
        tr_tr, valid, train, test = splits(name)
        for seed in (int(s) for s in args.seeds.split(",")):
            for model in args.models.split(","):
                m_tr, s1 = trained(name, model, "train_tr", tr_tr, seed, args)
                m_full, s2 = trained(name, model, "train", train, seed, args)
                print(json.dumps(dict(data=name, model=model, seed=seed, fit_train_tr_s=s1,
                                      fit_train_s=s2)), flush=True)
                if args.train_only:
                    continue
                rows.extend(run(name, model, seed, m_tr, m_full, valid, test, args))
    if not args.train_only:
        table(rows)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
