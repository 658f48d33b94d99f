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
import sys
import time
from pathlib import Path

import numpy as np

import grurec
from grurec import evaluation, presets
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


def _variant(model, args) -> str:
    """NARM's cache-name suffix: its window and memory (none for the defaults
    bptt 5 / memory 0, the names of earlier runs)."""
    if model != "NARM" or (args.bptt == 5 and args.memory == 0 and args.adagrad_init == 0):
        return ""
    return f"_T{args.bptt}_M{args.memory}" + (f"_G{args.adagrad_init:g}" if args.adagrad_init
                                              else "")


def trained(name, model, part, data, seed, args):
    path = Path(args.cache) / f"{name}_{model}{_variant(model, args)}_{part}_s{seed}.grurec"
    if path.exists():
        return grurec.load(path), None
    kw = dict(presets.get(PRESET[name]), random_state=seed, num_threads=1, show_progress=False)
    if args.epochs:
        kw["n_epochs"] = args.epochs
    if model == "NARM":
        kw["bptt"] = args.bptt
        kw["attention_memory"] = args.memory
        kw["attention_adagrad_init"] = args.adagrad_init
    m = getattr(grurec, model)(**kw)
    t0 = time.perf_counter()
    m.fit(data)
    fit_s = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return m, fit_s


def repeat_flags(test) -> np.ndarray:
    """Per evaluated event (grurec.evaluate's order): whether the target
    already occurs earlier in its session."""
    sd = grurec.to_sessions(test)
    sd = sd.select_sessions(sd.lengths() >= 2)
    out = []
    for s in range(sd.n_sessions):
        its = sd.items[sd.offsets[s]:sd.offsets[s + 1]]
        seen = {int(its[0])}
        for x in its[1:]:
            out.append(int(x) in seen)
            seen.add(int(x))
    return np.array(out, bool)


def ranks_of(model, test):
    """(grurec.evaluate's result at K=20, the rank of every event), the ranks
    captured from the evaluation's own accumulator (inf: a miss)."""
    got = []
    orig = evaluation._Accumulator.add

    def add(self, ranks, known, top):
        got.append(np.asarray(ranks, np.float64).copy())
        return orig(self, ranks, known, top)

    evaluation._Accumulator.add = add
    try:
        t0 = time.perf_counter()
        r = grurec.evaluate(model, test, cutoffs=(20,), show_progress=False, num_threads=1)
        r["eval_s"] = time.perf_counter() - t0
    finally:
        evaluation._Accumulator.add = orig
    return r, np.concatenate(got)


def metrics(ranks, mask):
    r = ranks[mask]
    hit = r <= 20
    return (round(100 * float(np.where(hit, 1 / r, 0).mean()), 2),
            round(100 * float(hit.mean()), 2))


def run(name, model, seed, m_tr, m_full, valid, test, args, mixture_seed):
    rep = repeat_flags(test)
    out = []

    def row(label, m, extra=None):
        r, ranks = ranks_of(m, test)
        assert len(ranks) == len(rep) == r["n_events"]
        d = dict(data=name, model=label, seed=seed, n_events=r["n_events"],
                 repeat_share=round(100 * float(rep.mean()), 1),
                 n_unknown_targets=r["n_unknown_targets"])
        d["mrr20"], d["recall20"] = metrics(ranks, np.ones(len(rep), bool))
        d["mrr20_repeat"], d["recall20_repeat"] = metrics(ranks, rep)
        d["mrr20_new"], d["recall20_new"] = metrics(ranks, ~rep)
        d["eval_s"] = round(r["eval_s"], 1)
        d.update(extra or {})
        print(json.dumps(d), flush=True)
        out.append(d)

    if model == args.models.split(",")[0] and seed == 0:  # S-POP has no seed: once
        row("S-POP", grurec.baselines.SessionPopularity().fit(grurec.datasets.load_prepared(
            name).train))
    label = model + _variant(model, args)
    row(label, m_full)
    for explore in args.explore.split(","):
        betas = [float(b) for b in args.betas.split(",")] if args.betas else None
        tag = f"b{args.betas.replace(',', '_')}" if args.betas else "grid"
        path = Path(args.cache) / (f"{name}_{model}{_variant(model, args)}_mix_{explore}_{tag}"
                                   f"_s{mixture_seed}.grurec")
        t0 = time.perf_counter()
        if path.exists():
            ra_tr, fit_s = grurec.load(path), None
        else:
            ra_tr = grurec.RepeatAware(m_tr, explore=explore, beta=betas).fit_mixture(valid)
            fit_s = round(time.perf_counter() - t0, 1)
            ra_tr.save(path)
        ra = ra_tr.with_model(m_full)
        row(f"{label}+repeat({explore})", ra,
            dict(mixture_seed=mixture_seed, mixture_fit_s=fit_s,
                 valid_events=getattr(ra_tr, "n_fit_events", None),
                 valid_nll=[round(ra_tr.fit_history[0], 4), round(ra_tr.fit_history[-1], 4)]
                 if ra_tr.fit_history else None,
                 beta_nll={round(b, 3): round(v, 4) for b, v in ra_tr.beta_nll.items()},
                 beta_mrr={round(b, 3): round(v, 4) for b, v in ra_tr.beta_mrr.items()},
                 params={k: round(v, 3) for k, v in ra_tr.params().items()}))
    return out


def table(rows):
    print("\n| data | model | seed | MRR@20 | R@20 | MRR@20 repeat | R@20 repeat | "
          "MRR@20 new | R@20 new | eval s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in rows:
        print(f"| {d['data']} | {d['model']} | {d['seed']} | {d['mrr20']:.2f} | "
              f"{d['recall20']:.2f} | {d['mrr20_repeat']:.2f} | {d['recall20_repeat']:.2f} | "
              f"{d['mrr20_new']:.2f} | {d['recall20_new']:.2f} | {d['eval_s']} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="rsc15-100k")
    ap.add_argument("--models", default="GRU4Rec")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--bptt", type=int, default=5, help="NARM's window")
    ap.add_argument("--memory", type=int, default=0, help="NARM's attention_memory")
    ap.add_argument("--adagrad-init", type=float, default=0.0,
                    help="NARM's attention_adagrad_init")
    ap.add_argument("--cache", default="/tmp/grurec_repeat_models")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--explore", default="all,new")
    ap.add_argument("--betas", default="", help="candidate score scales (default: "
                    "grurec.repeat.BETAS)")
    ap.add_argument("--mixture-seed", type=int, default=-1,
                    help="fit the mixture with this seed's validation-training model for "
                         "every seed (-1: each seed its own)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    rows = []
    for name in args.data.split(","):
        tr_tr, valid, train, test = splits(name)
        for seed in (int(s) for s in args.seeds.split(",")):
            for model in args.models.split(","):
                ms = seed if args.mixture_seed < 0 else args.mixture_seed
                m_tr, s1 = trained(name, model, "train_tr", tr_tr, ms, args)
                m_full, s2 = trained(name, model, "train", train, seed, args)
                print(json.dumps(dict(data=name, model=model, seed=seed, fit_train_tr_s=s1,
                                      fit_train_s=s2)), flush=True)
                if args.train_only:
                    continue
                rows.extend(run(name, model, seed, m_tr, m_full, valid, test, args, ms))
    if not args.train_only:
        table(rows)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
