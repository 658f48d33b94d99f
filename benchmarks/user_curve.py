"""A validation curve for a user model: HR@10 / NDCG@10 on the leave-one-out
VALIDATION target (each user's second-to-last event; full ranking minus the
user's own items) after every epoch from ``--from-epoch`` on, from one fit.

The model is ``<class>.from_preset(<data>)`` with ``--params`` over it (JSON),
fitted on ``load_prepared(data).train`` (all but each user's last two
events) with one thread and ``random_state=--seed``. A fit with
``n_epochs=e`` is exactly the first e epochs of a longer one (Adagrad has no
schedule and each epoch draws its seed from the same generator), so each row
is what ``bench_users.py --target valid`` gives with ``n_epochs`` = that
epoch. The test target (the last event) is never read.

Usage:
    python benchmarks/user_curve.py --data beauty-s3rec --params '{"n_sample": 16384}' \
        --epochs 14
    python benchmarks/user_curve.py --model UserNARM --data beauty-s3rec \
        --params '{"attention_memory": 8, "attention_adagrad_init": 1.0}' --epochs 12
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import grurec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import cpu_line  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", default="beauty-s3rec")
    p.add_argument("--model", choices=("UserGRU", "UserNARM"), default="UserGRU")
    p.add_argument("--params", default="{}", help="hyperparameters over the preset (JSON)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--from-epoch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    print(cpu_line(), flush=True)
    over = json.loads(args.params)
    ds = grurec.datasets.load_prepared(args.data)
    cls = getattr(grurec, args.model)
    m = cls.from_preset(args.data, **{**over, "n_epochs": args.epochs, "num_threads": 1,
                                      "random_state": args.seed, "show_progress": False})
    # The weights being trained: fit trains a snapshot and publishes it at
    # the end, so the callback scores the snapshot.
    holder = {}
    take = m._snapshot

    def snapshot():
        w = take()
        w.__dict__.pop("_snapshot", None)
        holder["w"] = w
        return w

    m._snapshot = snapshot
    rows, t0 = [], time.perf_counter()

    def callback(epoch, loss):
        if epoch < args.from_epoch:
            return
        r = grurec.evaluate_users(holder["w"], ds, protocol="loo-valid", cutoffs=(10, 20),
                                  num_threads=1, show_progress=False)
        row = {"epoch": epoch, "loss": round(loss, 5), "hr@10": r["hr@10"],
               "ndcg@10": r["ndcg@10"], "hr@20": r["hr@20"], "ndcg@20": r["ndcg@20"],
               "t": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    m.fit(ds.train, callback=callback)
    best = max(rows, key=lambda r: r["ndcg@10"]) if rows else None
    print(f"\n{args.data} {args.model} {json.dumps(over)} seed {args.seed}")
    print(f"{'epoch':>5}{'HR@10':>8}{'NDCG@10':>9}{'loss':>9}")
    for r in rows:
        mark = "  <- best NDCG@10" if r is best else ""
        print(f"{r['epoch']:>5}{r['hr@10']:>8.4f}{r['ndcg@10']:>9.4f}{r['loss']:>9.4f}{mark}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "data": args.data,
                                         "model": args.model, "params": over,
                                         "seed": args.seed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
