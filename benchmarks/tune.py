"""Hyperparameter search for GRU4Rec on a shared data set (Optuna TPE), then the
chosen settings trained on the full training file and evaluated once on the test file.

Validation split (``search``): the training file's last N sessions, N = the number of
test sessions, validate; the sessions before them train. The yoochoose1_64 and
diginetica ``Time`` columns are ordinal event counters and every session's events
are contiguous in them, so the split is ``time_split(train, cut=<first event of the
N-th last session>)``: no session straddles the cut, and the validation set has the
test set's size and its position right after the training data. As in the SR-GNN
preprocessing of the test files, validation events on items absent from the
validation-training part are dropped (they are misses for every configuration, so
they would only scale the objective), then sessions shorter than 2.

Objective: Recall@20 on the validation set, full ranking over every item,
``grurec.evaluate`` in ``mode="standard"`` (MRR@20 is recorded too). The model is
evaluated inside the ``fit`` callback after every second epoch and the last one
(evaluation costs more than a yoochoose1_64 epoch; early trials evaluated epochs 1-4
too), and the best evaluated epoch is the trial's value and its ``n_epochs``. A trial
stops early (pruned) from its second epoch on when its Recall@20 is below 90% of the
best completed trial's, and from its fourth when it is in the bottom quarter of earlier
trials at that epoch (Optuna's PercentilePruner). The 90% rule can stop slow starters:
on diginetica it pruned the best yoochoose1_64 settings at epoch 2 (0.4841 against a bar
of 0.4848).

The official parameter files rsc15_xe_shared_100 and retailrocket_bprmax_shared
(grurec.presets) are enqueued as the first two trials (every trial trains with
grurec's default cell and momentum, reset-after and heavy ball); ``--enqueue-from DATA`` also enqueues the best trials of another data set's
study (its validation results only), a warm start for the costlier set.

Search space (around the published GRU4Rec settings, Hidasi & Czapp, RecSys 2023):
loss cross-entropy (logq 0 or 1) or bpr-max (elu_param 0 / 0.5 / 1, bpreg 0-2);
one GRU layer of 100-500 units; batch_size 32, 64, 80, 128, 256 (80: the published
RetailRocket value); learning_rate 0.01-0.3 log-uniform; momentum 0-0.5 (step 0.05);
dropout_p_embed and dropout_p_hidden 0-0.5 (step 0.05); n_sample 1024/2048/4096;
sample_alpha 0-1 (step 0.05); constrained (shared) embedding.

Progress is saved in an Optuna SQLite file (``benchmarks/results/tune_<data>.db``,
git-ignored): running ``search`` again resumes the study.

Usage:
    python benchmarks/tune.py search --data yoochoose1_64 --trials 30 --timeout 2700
    python benchmarks/tune.py search --data diginetica --enqueue-from yoochoose1_64 --timeout 3000
    python benchmarks/tune.py show   --data yoochoose1_64
    python benchmarks/tune.py final  --data yoochoose1_64 --seeds 0 1 2
"""
from __future__ import annotations

import os

# Evaluation runs NumPy matrix products between grurec's own OpenMP calls; on a
# small shared machine OpenBLAS's busy-waiting threads and grurec's compete for
# the cores and evaluation ran 2-6x slower. One BLAS thread (set before NumPy is
# imported; override from the environment) and num_threads=1 while evaluating.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import optuna  # noqa: E402  (benchmark-only dependency)

import grurec  # noqa: E402
from grurec import datasets  # noqa: E402
from grurec.model import ModelFitError  # noqa: E402
from grurec.splits import time_split  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
RESULTS = HERE / "results"
DATASETS = ("yoochoose1_64", "diginetica", "rsc15-100k")



def _as_trial(p: dict) -> dict:
    """A grurec hyperparameter dict as Optuna trial params of ``suggest``'s space."""
    t = {k: p[k] for k in ("loss", "batch_size", "learning_rate", "momentum",
                           "dropout_p_embed", "dropout_p_hidden", "n_sample", "sample_alpha")}
    t["hidden"] = p["layers"][0]
    if p["loss"] == "cross-entropy":
        t["logq"] = p["logq"]
    else:
        t.update(elu_param=p["elu_param"], bpreg=p["bpreg"])
    return t


# The published configurations, the official GRU4Rec parameter files
# (grurec.presets), enqueued first.
PUBLISHED = {name: _as_trial(grurec.presets.get(name))
             for name in ("rsc15_xe_shared_100", "retailrocket_bprmax_shared")}
CUTOFFS = (5, 10, 20)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def load(name: str, root: Path = SHARED):
    """(train, test) of the full files as SessionData."""
    ds = datasets.load_prepared(name, root)
    return ds.train, ds.test


def validation_split(train, n_valid_sessions: int):
    """Last ``n_valid_sessions`` sessions (by first event) validate, the rest trains."""
    first = train.times[train.offsets[:-1]]
    cut = float(first[train.n_sessions - n_valid_sessions])
    sp = time_split(train, cut=cut, straddling="drop", drop_unseen_items=True)
    return sp


def suggest(trial: optuna.Trial) -> dict:
    """A trial's hyperparameters in grurec's names."""
    p = {}
    p["loss"] = trial.suggest_categorical("loss", ["cross-entropy", "bpr-max"])
    if p["loss"] == "cross-entropy":
        p["logq"] = trial.suggest_categorical("logq", [0.0, 1.0])
        p["elu_param"], p["bpreg"] = 0.0, 0.0
    else:
        p["logq"] = 0.0
        p["elu_param"] = trial.suggest_categorical("elu_param", [0.0, 0.5, 1.0])
        p["bpreg"] = trial.suggest_float("bpreg", 0.0, 2.0, step=0.05)
    p["layers"] = [trial.suggest_int("hidden", 100, 500)]
    p["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 80, 128, 256])
    p["learning_rate"] = trial.suggest_float("learning_rate", 0.01, 0.3, log=True)
    p["momentum"] = trial.suggest_float("momentum", 0.0, 0.5, step=0.05)
    p["dropout_p_embed"] = trial.suggest_float("dropout_p_embed", 0.0, 0.5, step=0.05)
    p["dropout_p_hidden"] = trial.suggest_float("dropout_p_hidden", 0.0, 0.5, step=0.05)
    p["n_sample"] = trial.suggest_categorical("n_sample", [1024, 2048, 4096])
    p["sample_alpha"] = trial.suggest_float("sample_alpha", 0.0, 1.0, step=0.05)
    p["constrained_embedding"] = True
    p["embedding"] = 0
    return p


def params_from_trial(params: dict) -> dict:
    """grurec hyperparameters from a stored trial's Optuna params."""
    t = optuna.trial.FixedTrial(params)
    return suggest(t)


def eval_epochs(max_epochs: int) -> set:
    # Every second epoch and the last: evaluation costs more than a yoochoose1_64 epoch.
    return {e for e in range(1, max_epochs + 1) if e % 2 == 0 or e == max_epochs}


def evaluate(model, sd) -> dict:
    nt = model.num_threads
    model.num_threads = 1  # see the note at the top
    try:
        return grurec.evaluate(model, sd, cutoffs=CUTOFFS, mode="standard")
    finally:
        model.num_threads = nt


def fmt(p: dict) -> str:
    keys = ["loss", "logq", "elu_param", "bpreg", "layers", "batch_size", "learning_rate",
            "momentum", "dropout_p_embed", "dropout_p_hidden", "n_sample", "sample_alpha",
            "n_epochs"]
    out = []
    for k in keys:
        if k not in p:
            continue
        v = p[k]
        if k in ("logq",) and p["loss"] != "cross-entropy":
            continue
        if k in ("elu_param", "bpreg") and p["loss"] != "bpr-max":
            continue
        out.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(out)


# ---------------------------------------------------------------------- search
def study_for(data: str, storage: str | None, seed: int) -> optuna.Study:
    RESULTS.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{RESULTS / f'tune_{data}.db'}"
    # Lenient: slow starters (low learning rate) won in the first trials, so only
    # the bottom quarter at an epoch is pruned, from epoch 4 on. (Optuna's
    # percentile is the share KEPT: 75 prunes the bottom 25%; 25, used by
    # mistake for trials 7-18 of the yoochoose1_64 study, kept only the top 25%.)
    pruner = optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=3)
    study = optuna.create_study(study_name=f"grurec-{data}", storage=storage,
                                direction="maximize", pruner=pruner, load_if_exists=True)
    # Seeded by the trials so far, so a resumed search does not replay the random
    # start-up draws of the first run.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=5,
                                               multivariate=True, group=True)
    return study


def cmd_search(args) -> int:
    train, test = load(args.data)
    n_valid = args.valid_sessions or test.n_sessions
    sp = validation_split(train, n_valid)
    tr, va = sp.train, sp.test
    log(f"{args.data}: validation = last {n_valid} training sessions; "
        f"fit on {tr.n_events:,} events / {tr.n_sessions:,} sessions / {tr.n_items:,} items, "
        f"validate on {va.n_events:,} events / {va.n_sessions:,} sessions")
    study = study_for(args.data, args.storage, args.seed)
    study.set_user_attr("validation", dict(
        n_valid_sessions=n_valid, cut=sp.cut, train_events=tr.n_events,
        train_sessions=tr.n_sessions, valid_events=va.n_events, valid_sessions=va.n_sessions,
        max_epochs=args.max_epochs))
    if not study.trials:
        for name, cfg in PUBLISHED.items():
            study.enqueue_trial(cfg, user_attrs={"published": name})
        if args.enqueue_from:
            # Warm start: the best settings found on another data set's validation
            # split (never its test file) are tried next.
            other = study_for(args.enqueue_from, None, args.seed)
            done = sorted((t for t in other.trials
                           if t.state == optuna.trial.TrialState.COMPLETE),
                          key=lambda t: -t.value)
            for t in done[:args.enqueue_top]:
                study.enqueue_trial(t.params, user_attrs={
                    "published": f"{args.enqueue_from} trial {t.number}"})
    epochs_to_eval = eval_epochs(args.max_epochs)

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial)
        model = grurec.GRU4Rec(**p, n_epochs=args.max_epochs, random_state=args.seed + trial.number,
                               num_threads=args.threads, show_progress=False)
        curve = []
        t_eval = [0.0]

        def callback(epoch, loss):
            if epoch not in epochs_to_eval:
                return
            t0 = time.perf_counter()
            r = evaluate(model, va)
            t_eval[0] += time.perf_counter() - t0
            curve.append(dict(epoch=epoch, loss=loss, recall20=r["recall@20"],
                              mrr20=r["mrr@20"], recall10=r["recall@10"], mrr10=r["mrr@10"]))
            log(f"  trial {trial.number} epoch {epoch}: loss {loss:.4f} "
                f"R@20 {r['recall@20']:.4f} MRR@20 {r['mrr@20']:.4f}")
            trial.set_user_attr("curve", curve)
            trial.report(r["recall@20"], epoch)
            # Besides the percentile rule (from epoch 4): a trial far behind the best
            # one (below 90% of its Recall@20) from epoch 2 on is not worth finishing.
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            far_behind = (epoch >= 2 and done
                          and r["recall@20"] < 0.9 * max(t.value for t in done))
            if far_behind or trial.should_prune():
                trial.set_user_attr("fit_seconds", sum(h["seconds"] for h in model.history))
                trial.set_user_attr("eval_seconds", t_eval[0])
                raise optuna.TrialPruned()

        log(f"trial {trial.number}: {fmt(p)}")
        try:
            model.fit(tr, callback=callback)
        except ModelFitError as e:
            trial.set_user_attr("diverged", str(e))
            log(f"  trial {trial.number} diverged: {e}")
            if not curve:
                return 0.0
        fit_s = sum(h["seconds"] for h in model.history)
        best = max(curve, key=lambda c: c["recall20"])
        trial.set_user_attr("best_epoch", best["epoch"])
        trial.set_user_attr("mrr20", best["mrr20"])
        trial.set_user_attr("fit_seconds", fit_s)
        trial.set_user_attr("eval_seconds", t_eval[0])
        trial.set_user_attr("events_per_s", sum(h["events"] for h in model.history)
                            / max(fit_s, 1e-9))
        return best["recall20"]

    def after(study, trial):
        state = trial.state.name.lower()
        v = f"{trial.value:.4f}" if trial.value is not None else "-"
        log(f"trial {trial.number} {state}: R@20 {v}; best so far trial "
            f"{study.best_trial.number} R@20 {study.best_value:.4f} "
            f"(epoch {study.best_trial.user_attrs.get('best_epoch')})")

    t0 = time.perf_counter()
    n_done = sum(t.state.is_finished() for t in study.trials)
    n_left = max(args.trials - n_done, 0)
    if n_left:
        study.optimize(objective, n_trials=n_left, timeout=args.timeout, callbacks=[after],
                       gc_after_trial=True)
    log(f"search took {time.perf_counter() - t0:.0f} s this run")
    return cmd_show(args)


def trial_rows(study):
    rows = []
    for t in study.trials:
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        curve = t.user_attrs.get("curve", [])
        best = max(curve, key=lambda c: c["recall20"]) if curve else None
        rows.append(dict(number=t.number, state=t.state.name.lower(),
                         published=t.user_attrs.get("published"),
                         recall20=best["recall20"] if best else None,
                         mrr20=best["mrr20"] if best else None,
                         best_epoch=best["epoch"] if best else None,
                         last_epoch=curve[-1]["epoch"] if curve else 0,
                         seconds=(t.datetime_complete - t.datetime_start).total_seconds()
                         if t.datetime_complete else None,
                         params=params_from_trial(t.params), optuna_params=t.params,
                         curve=curve))
    return rows


def cmd_show(args) -> int:
    study = study_for(args.data, args.storage, args.seed)
    rows = trial_rows(study)
    if not rows:
        print("no finished trials")
        return 1
    rows.sort(key=lambda r: -(r["recall20"] or 0))
    total = sum(r["seconds"] or 0 for r in rows)
    print(f"\n{args.data}: {len(rows)} trials "
          f"({sum(r['state'] == 'pruned' for r in rows)} pruned), {total / 60:.1f} min, "
          f"validation {study.user_attrs.get('validation')}")
    print(f"{'#':>3} {'state':>8} {'R@20':>7} {'MRR@20':>7} {'ep':>3} {'s':>5}  settings")
    for r in rows[:args.top]:
        origin = r["published"]
        tag = (f" [published {origin}]" if origin in PUBLISHED else f" [{origin}]") if origin else ""
        print(f"{r['number']:>3} {r['state']:>8} {r['recall20'] or 0:>7.4f} {r['mrr20'] or 0:>7.4f} "
              f"{r['best_epoch'] or 0:>3} {r['seconds'] or 0:>5.0f}  {fmt(r['params'])}{tag}")
    best = study.best_trial
    bp = dict(params_from_trial(best.params), n_epochs=best.user_attrs.get("best_epoch"))
    print(f"\nbest: trial {best.number}, validation R@20 {best.value:.4f} "
          f"MRR@20 {best.user_attrs.get('mrr20', float('nan')):.4f}\n  {fmt(bp)}")
    out = args.json or RESULTS / f"tune_{args.data}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(data=args.data, validation=study.user_attrs.get("validation"),
                                   best=dict(number=best.number, value=best.value, params=bp),
                                   trials=rows), indent=2, default=str) + "\n")
    return 0


# ----------------------------------------------------------------------- final
def best_params(args) -> dict:
    study = study_for(args.data, args.storage, args.seed)
    best = study.best_trial
    return dict(params_from_trial(best.params), n_epochs=best.user_attrs["best_epoch"]), best.number


def cmd_final(args) -> int:
    train, test = load(args.data)
    params, number = best_params(args)
    if args.n_epochs:
        params["n_epochs"] = args.n_epochs
    log(f"{args.data}: best trial {number}: {fmt(params)}")
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model = grurec.GRU4Rec(**params, random_state=seed, num_threads=args.threads,
                               show_progress=False).fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = evaluate(model, test)
        ev_s = time.perf_counter() - t0
        known = r["n_events"] - r["n_unknown_targets"]
        excl = {f"{k}_excl": v * r["n_events"] / known for k, v in r.items()
                if k.startswith(("recall@", "mrr@"))}
        runs.append(dict(seed=seed, fit_seconds=fit_s, eval_seconds=ev_s, **r, **excl,
                         events_per_s=sum(h["events"] for h in model.history) / fit_s))
        log(f"seed {seed}: R@20 {r['recall@20']:.4f} MRR@20 {r['mrr@20']:.4f} (misses counted); "
            f"{excl['recall@20_excl']:.4f} / {excl['mrr@20_excl']:.4f} (unseen excluded); "
            f"fit {fit_s:.0f} s, eval {ev_s:.0f} s")
    keys = [k for k in runs[0] if k.startswith(("recall@", "mrr@"))]
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    sd = {k: statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0 for k in keys}
    r0 = runs[0]
    print(f"\n{args.data}, best trial {number}: {fmt(params)}")
    print(f"test: {r0['n_events']:,} events predicted, {r0['n_unknown_targets']} targets unseen "
          f"in training; {len(runs)} seed(s) {args.seeds}; mean fit "
          f"{statistics.mean(r['fit_seconds'] for r in runs):.0f} s")
    print(f"{'':>24}{'R@20':>9}{'MRR@20':>9}{'R@10':>9}{'MRR@10':>9}")
    for label, suf in (("misses counted", ""), ("unseen excluded", "_excl")):
        print(f"{label:>24}" + "".join(f"{mean[k + suf]:>9.4f}"
                                      for k in ("recall@20", "mrr@20", "recall@10", "mrr@10")))
    print(f"{'sd (misses counted)':>24}" + "".join(f"{sd[k]:>9.4f}"
                                                   for k in ("recall@20", "mrr@20", "recall@10", "mrr@10")))
    out = args.json or RESULTS / f"final_{args.data}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(data=args.data, trial=number, params=params,
                                   threads=args.threads, simd=grurec.simd_level(), runs=runs,
                                   mean=mean, sd=sd), indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("command", choices=["search", "show", "final"])
    p.add_argument("--data", required=True, choices=DATASETS)
    p.add_argument("--trials", type=int, default=30, help="total trials in the study")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds this run may start new trials for")
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--valid-sessions", type=int, default=0,
                   help="validation sessions (default: as many as the test file has)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed; trial k fits with seed+k")
    p.add_argument("--enqueue-from", choices=DATASETS, default=None,
                   help="search: also start with the best trials of this data set's study")
    p.add_argument("--enqueue-top", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="final: seeds")
    p.add_argument("--n-epochs", type=int, default=0, help="final: override the epochs")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--storage", default=None, help="Optuna storage URL")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("grurec").setLevel(logging.WARNING)
    return {"search": cmd_search, "show": cmd_show, "final": cmd_final}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
