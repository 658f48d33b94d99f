"""Hyperparameter search for grurec.UserGRU on a leave-one-out VALIDATION target.

Every trial fits ``UserGRU`` on ``load_prepared(data).train`` (each user's
sequence minus its last two events) with one seed and scores
``evaluate_users(protocol="loo-valid")`` (the second-to-last event, full
ranking minus the user's own items). The test target (the last event) is never
read. Optuna TPE, storage in a SQLite file (git-ignored).

n_epochs is not sampled: each trial trains up to ``--max-epochs`` epochs and is
evaluated after the epochs in ``--checkpoints``; the trial's value is its best
checkpoint (NDCG@10) and ``n_epochs`` is that checkpoint (a fit with
n_epochs = e is bit for bit the first e epochs of a longer fit: Adagrad has no
schedule and each epoch draws its seed from the same generator). A trial stops
after two checkpoints without improvement, and Optuna's median pruner stops a
trial below the median of earlier trials at the same checkpoint. Silent
divergence (HR@10 < 0.005 at a checkpoint with finite weights) and NaN/inf
weights fail the trial (value 0, marked "diverged").

Usage:
    python benchmarks/search_user_gru.py --data beauty-s3rec --minutes 55
    python benchmarks/search_user_gru.py --data beauty-s3rec --table   # trial table
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import optuna

import grurec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIVERGED_HR = 0.005
DEADLINE = [math.inf]


class _Stop(Exception):
    pass


def space(trial, data: str) -> dict:
    """The sampled hyperparameters (UserGRU keyword arguments).

    Ranges are kept where one trial costs minutes on one core: the cost of an
    event is about (batch_size * bptt + n_sample) * hidden, so 512 units with
    8192 samples (a first, wider version of this space) took ~50 s an epoch.
    """
    p = {}
    p["loss"] = trial.suggest_categorical("loss", ["bpr-max", "cross-entropy"])
    if p["loss"] == "bpr-max":
        p["elu_param"] = trial.suggest_float("elu_param", 0.0, 1.0)
        p["bpreg"] = trial.suggest_float("bpreg", 0.0, 3.0)
        p["logq"] = 0.0
    else:
        p["logq"] = trial.suggest_categorical("logq", [0.0, 1.0])
    p["layers"] = [trial.suggest_categorical("hidden", [128, 224, 320])]
    emb = trial.suggest_categorical("emb", ["constrained", "128", "224"])
    if emb == "constrained":
        p["constrained_embedding"], p["embedding"] = True, 0
    else:
        p["constrained_embedding"], p["embedding"] = False, int(emb)
    p["n_sample"] = trial.suggest_categorical("n_sample", [1024, 2048, 4096])
    p["sample_alpha"] = trial.suggest_float("sample_alpha", 0.0, 1.0)
    p["batch_size"] = trial.suggest_categorical("batch_size", [16, 32, 64])
    p["bptt"] = trial.suggest_categorical("bptt", [2, 4, 8, 16])
    p["learning_rate"] = trial.suggest_float("learning_rate", 0.02, 0.1, log=True)
    p["momentum"] = trial.suggest_float("momentum", 0.0, 0.8)
    p["dropout_p_embed"] = trial.suggest_float("dropout_p_embed", 0.0, 0.6)
    p["dropout_p_hidden"] = trial.suggest_float("dropout_p_hidden", 0.0, 0.5)
    p["max_len"] = None
    return p


def preset_params(name: str) -> dict:
    """A UserGRU preset as this search's Optuna parameters (to enqueue it)."""
    g = grurec.presets.get_user(name)
    q = dict(loss=g["loss"], hidden=g["layers"][0],
             emb="constrained" if g["constrained_embedding"] else str(g["embedding"]),
             n_sample=g["n_sample"], sample_alpha=g["sample_alpha"],
             batch_size=g["batch_size"], bptt=g["bptt"], learning_rate=g["learning_rate"],
             momentum=g["momentum"], dropout_p_embed=g["dropout_p_embed"],
             dropout_p_hidden=g["dropout_p_hidden"])
    if g["loss"] == "bpr-max":
        q.update(elu_param=g["elu_param"], bpreg=g["bpreg"])
    else:
        q["logq"] = g["logq"]
    return q


def run_trial(trial, ds, data, args, seed=0) -> float:
    params = space(trial, data)
    base = grurec.presets.get_user(data) if data in grurec.presets.user_names() else {}
    m = grurec.UserGRU(**{**base, **params, "n_epochs": args.max_epochs,
                          "num_threads": 1, "random_state": seed, "show_progress": False})
    holder = {}
    orig = m._snapshot

    def snap():
        w = orig()
        w.__dict__.pop("_snapshot", None)  # the copy must not call back into this hook
        holder["w"] = w
        return w

    m._snapshot = snap
    curve, best = [], {"ndcg@10": -1.0}
    t_start = time.perf_counter()
    fails = [0]

    def callback(epoch, loss):
        if epoch not in args.checkpoints:
            return
        t0 = time.perf_counter()
        r = grurec.evaluate_users(holder["w"], ds, protocol="loo-valid", cutoffs=(10, 20),
                                  num_threads=1, show_progress=False)
        row = {"epoch": epoch, "loss": round(loss, 5), "hr@10": r["hr@10"],
               "ndcg@10": r["ndcg@10"], "hr@20": r["hr@20"], "ndcg@20": r["ndcg@20"],
               "t": round(time.perf_counter() - t_start, 1),
               "eval_s": round(time.perf_counter() - t0, 1)}
        curve.append(row)
        print(f"  trial {trial.number} epoch {epoch}: HR@10 {r['hr@10']:.4f} NDCG@10 "
              f"{r['ndcg@10']:.4f} loss {loss:.4f} ({row['t']}s)", flush=True)
        late = time.perf_counter() - t_start > args.trial_minutes * 60 or time.time() > DEADLINE[0]
        if r["hr@10"] < DIVERGED_HR:
            trial.set_user_attr("diverged", True)
            raise _Stop()
        if r["ndcg@10"] > best["ndcg@10"]:
            best.update(row)
            fails[0] = 0
        else:
            fails[0] += 1
            if fails[0] >= 2:
                raise _Stop()
        if late:
            trial.set_user_attr("cut_by_time", epoch)
            raise _Stop()
        trial.report(r["ndcg@10"], epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", epoch)
            raise _Stop()

    status = "ok"
    try:
        m.fit(ds.train, callback=callback)
    except _Stop:
        status = "stopped"
    except grurec.ModelFitError as e:
        status = f"nonfinite: {e}"[:200]
        trial.set_user_attr("diverged", True)
    seconds = time.perf_counter() - t_start
    trial.set_user_attr("curve", curve)
    trial.set_user_attr("seconds", round(seconds, 1))
    trial.set_user_attr("status", status)
    trial.set_user_attr("params", params)
    if trial.user_attrs.get("diverged"):
        print(f"trial {trial.number}: diverged ({status}) {seconds:.0f}s", flush=True)
        return 0.0
    if best["ndcg@10"] < 0:
        return 0.0
    trial.set_user_attr("n_epochs", best["epoch"])
    trial.set_user_attr("hr@10", best["hr@10"])
    print(f"trial {trial.number}: best epoch {best['epoch']} HR@10 {best['hr@10']:.4f} "
          f"NDCG@10 {best['ndcg@10']:.4f}, {seconds:.0f}s, {json.dumps(params)}", flush=True)
    return best["ndcg@10"]


def table(study) -> list[dict]:
    rows = []
    for t in study.trials:
        a = t.user_attrs
        rows.append({"trial": t.number, "state": t.state.name,
                     "value_ndcg@10": t.value, "hr@10": a.get("hr@10"),
                     "n_epochs": a.get("n_epochs"), "seconds": a.get("seconds"),
                     "status": a.get("status"), "diverged": bool(a.get("diverged")),
                     "params": a.get("params") or t.params, "curve": a.get("curve")})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", default="beauty-s3rec")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--checkpoints", type=int, nargs="+", default=[4, 6, 8, 10, 13, 16, 20])
    p.add_argument("--trial-minutes", type=float, default=5.0,
                   help="a trial stops at its first checkpoint after this long")
    p.add_argument("--storage", default=None, help="default: <repo>/optuna_usergru.db")
    p.add_argument("--study", default=None, help="default: usergru-<data>")
    p.add_argument("--enqueue", nargs="*", default=None,
                   help="JSON files / preset names whose parameters run first")
    p.add_argument("--startup", type=int, default=8, help="TPE's random start-up trials")
    p.add_argument("--table", type=Path, nargs="?", const=True, default=None,
                   help="only write the trial table (JSON) and print the best trials")
    args = p.parse_args(argv)
    args.checkpoints = set(args.checkpoints)
    storage = args.storage or f"sqlite:///{ROOT / 'optuna_usergru.db'}"
    name = args.study or f"usergru-{args.data}"
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=args.startup,
                                           multivariate=True, group=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=4))
    if args.table is not None:
        out = (HERE / "results" / f"search_user_gru_{args.data}.json"
               if args.table is True else args.table)
        rows = table(study)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"data": args.data, "study": name,
                                   "target": "loo-valid (second-to-last event), 1 seed",
                                   "trials": rows}, indent=1))
        done = sorted((r for r in rows if r["value_ndcg@10"]), key=lambda r: -r["value_ndcg@10"])
        for r in done[:8]:
            print(r["trial"], r["value_ndcg@10"], r["hr@10"], r["n_epochs"], r["seconds"],
                  json.dumps(r["params"]))
        print(f"{len(rows)} trials -> {out}")
        return 0
    for e in args.enqueue or []:
        if e.endswith(".json"):
            qs = json.loads(Path(e).read_text())
            qs = qs if isinstance(qs, list) else [qs]
        else:
            qs = [preset_params(e)]
        for q in qs:  # a list entry may be {"preset": name, ...changes}
            if "preset" in q:
                q = {**preset_params(q.pop("preset")), **q}
            study.enqueue_trial(q, skip_if_exists=True)
    ds = grurec.datasets.load_prepared(args.data)
    DEADLINE[0] = time.time() + args.minutes * 60
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: run_trial(t, ds, args.data, args), n_trials=args.trials,
                   timeout=args.minutes * 60)
    b = study.best_trial
    print("best:", b.number, b.value, b.user_attrs.get("hr@10"), b.user_attrs.get("n_epochs"),
          json.dumps(b.user_attrs.get("params")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
