"""User-sequence accuracy: leave-one-out with full ranking (grurec.evaluate_users).

For each data set (``grurec.datasets.load_prepared``: beauty-s3rec = S3-Rec's
Beauty.txt, amazon-beauty = the BERT4Rec file, ml-100k = MovieLens 100K as
implicit feedback: every rating an event, in time order), every model is fit
on ``grurec.splits.leave_last_out``'s ``train`` (each user's sequence minus
its last two events; ``--fit-on train+valid``: minus the last event only) and
evaluated with ``grurec.evaluate_users(protocol="loo")``: each user's last
event is the target, everything before it the history, ranked among ALL the
model's items minus the user's own history items (``exclude_seen=True``);
targets the model does not know are misses. The rank is 1 + the number of
items scored strictly higher ("standard" ties; ``--mode``).

Models: Popularity, ItemKNN and VSKNN (``grurec.baselines`` defaults), GRU4Rec
fed each user's history as one session (``GRU4Rec()`` defaults: bpr-max;
``GRU4Rec-xe``: the same with ``loss="cross-entropy"``), and ``grurec.UserGRU``
and ``grurec.UserNARM`` when this grurec has them (``from_preset(<data set>)`` if that preset
exists, else ``UserGRU()``). GRU models run once per ``--seeds`` value
(``random_state``); the baselines are deterministic and run once.

Usage:
    python benchmarks/bench_users.py --threads 1
    python benchmarks/bench_users.py --data beauty-s3rec --models ItemKNN GRU4Rec-xe --seeds 0 1 2
    python benchmarks/bench_users.py --data beauty-s3rec --models UserGRU --fit-on train+valid \
        --user-params '{"bptt": 16, "batch_size": 32}'     # a candidate over the preset
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import grurec
from grurec import baselines as bl
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_users.json"
DATASETS = ("beauty-s3rec", "amazon-beauty", "ml-100k")
MODELS = ("Popularity", "ItemKNN", "VSKNN", "GRU4Rec", "GRU4Rec-xe", "UserGRU",
          "UserGRU+attributes", "UserNARM")
SEEDED = ("GRU4Rec", "GRU4Rec-xe", "UserGRU", "UserGRU+attributes", "UserNARM")
# Item features for "UserGRU+attributes" (preset "<data>-attributes").
FEATURES = {"beauty-s3rec": ("beauty-s3rec/Beauty_item2attributes.json", "beauty_attributes")}
CUTOFFS = (10, 20)


def make(name: str, data: str, seed: int, threads: int, user_params=None):
    if name == "Popularity":
        return bl.Popularity()
    if name == "ItemKNN":
        return bl.ItemKNN()
    if name == "VSKNN":
        return bl.VSKNN()
    if name in ("GRU4Rec", "GRU4Rec-xe"):
        extra = {"loss": "cross-entropy"} if name == "GRU4Rec-xe" else {}
        return grurec.GRU4Rec(num_threads=threads, random_state=seed, show_progress=False,
                              **extra)
    cls = grurec.UserNARM if name == "UserNARM" else grurec.UserGRU
    m = None
    if hasattr(cls, "from_preset"):
        try:
            m = cls.from_preset(data + ("-attributes" if name == "UserGRU+attributes" else ""))
        except (KeyError, ValueError):
            m = None
    if m is None:
        m = cls()
    if user_params:  # --user-params: a candidate setting over the preset
        m.set_params(**user_params)
    params = m.get_params() if hasattr(m, "get_params") else {}
    fixed = {k: v for k, v in (("num_threads", threads), ("random_state", seed),
                               ("show_progress", False)) if k in params}
    if fixed:
        m.set_params(**fixed)
    return m


def run_one(name, data, ds, train, seed, threads, mode="standard", user_params=None,
            protocol="loo") -> dict:
    m = make(name, data, seed, threads, user_params)
    t0 = time.perf_counter()
    if name == "UserGRU+attributes":
        from grurec import features

        rel, loader = FEATURES[data]
        m.fit(train, item_features=getattr(features, loader)(
            grurec.datasets.shared_data_dir() / rel))
    else:
        m.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = grurec.evaluate_users(m, ds, protocol=protocol, cutoffs=CUTOFFS, exclude_seen=True,
                              mode=mode, num_threads=threads, show_progress=False)
    eval_s = time.perf_counter() - t0
    return {"data": data, "model": name, "seed": seed if name in SEEDED else None,
            **{k: r[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@20",
                                 "n_users", "n_unknown_targets", "n_targets_in_history",
                                 "n_items")},
            "fit_s": round(fit_s, 2), "eval_s": round(eval_s, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1, help="num_threads of fit and evaluation")
    p.add_argument("--fit-on", choices=("train", "train+valid"), default="train",
                   help="train: all but each user's last two events (the leave-one-out "
                        "standard); train+valid: all but the last")
    p.add_argument("--target", choices=("test", "valid"), default="test",
                   help="test: each user's last event; valid: the second-to-last (fit on "
                        "all before it; for choosing settings without the test target)")
    p.add_argument("--mode", choices=("standard", "conservative", "median"), default="standard",
                   help="tie handling of the ranks (grurec.evaluate_users mode=)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--user-params", default=None,
                   help="UserGRU hyperparameters over the preset's, as JSON or a .json file "
                        "(e.g. a setting from benchmarks/search_user_gru.py)")
    args = p.parse_args(argv)

    user_params = None
    if args.user_params:
        text = args.user_params
        user_params = json.loads(Path(text).read_text() if text.endswith(".json") else text)
    models = list(args.models)
    if "UserGRU+attributes" in models and set(args.data) - set(FEATURES):
        p.error(f"UserGRU+attributes: item features only for {sorted(FEATURES)}")
    for name in ("UserGRU", "UserNARM"):
        if name in models and not hasattr(grurec, name):
            print(f"note: grurec.{name} not in this build; skipped", file=sys.stderr)
            models.remove(name)
    print(cpu_line())
    meta = {"cpu": cpu_line(), "python": platform.python_version(),
            "grurec": grurec.__version__, "threads": args.threads, "fit_on": args.fit_on,
            "protocol": ("loo-valid" if args.target == "valid" else "loo")
            + f", full ranking, exclude_seen, {args.mode} ties",
            "user_params": user_params}
    results = []
    for data in args.data:
        ds = grurec.datasets.load_prepared(data)
        train = ds.train if args.fit_on == "train" else ds.valid
        if args.target == "valid" and args.fit_on != "train":
            p.error("--target valid needs --fit-on train (the model must not see the target)")
        for name in models:
            for seed in (args.seeds if name in SEEDED else [None]):
                row = run_one(name, data, ds, train, seed, args.threads, args.mode,
                              user_params if name.startswith("User") else None,
                              "loo-valid" if args.target == "valid" else "loo")
                results.append(row)
                print(json.dumps(row), flush=True)

    print(f"\n{'data':<14}{'model':<12}{'seed':>5}{'HR@10':>8}{'NDCG@10':>9}{'HR@20':>8}"
          f"{'NDCG@20':>9}{'fit s':>8}{'eval s':>8}")
    for r in results:
        seed = "-" if r["seed"] is None else str(r["seed"])
        print(f"{r['data']:<14}{r['model']:<12}{seed:>5}{r['hr@10']:>8.4f}{r['ndcg@10']:>9.4f}"
              f"{r['hr@20']:>8.4f}{r['ndcg@20']:>9.4f}{r['fit_s']:>8.1f}{r['eval_s']:>8.1f}")
    if len(args.seeds) > 1:
        print("\nmeans over seeds:")
        for data in args.data:
            for name in models:
                rows = [r for r in results if r["data"] == data and r["model"] == name]
                if len(rows) > 1:
                    mean = {k: float(np.mean([r[k] for r in rows])) for k in
                            ("hr@10", "ndcg@10", "hr@20", "ndcg@20")}
                    print(f"{data:<14}{name:<12}" + "".join(f"{v:>9.4f}" for v in mean.values()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
