"""Does weighting by the rating help? UserGRU on ml-100k with and without
``value_col`` (issue 17: interaction values as per-event loss weights).

Protocol of ``bench_users.py --fit-on train+valid``: each user's events in
time order, fit on all but the last, the last one the target, full ranking
minus the user's own items, standard ties (``grurec.evaluate_users``,
protocol "loo"). The training frame is ``load_prepared("ml-100k").valid``
with each event's rating attached from ``ml-100k.inter`` (a user rates an
item once, so (user, item) identifies the event). Models: the ``ml-100k``
UserGRU preset as it is (every rating an event of equal weight), and the
same with ``value_col="rating"`` (loss weight rating / mean rating), and
with ``value_col`` = 1 for ratings >= 4 and 0.25 below ("likes" count more).

    python benchmarks/user_values.py --seeds 0 1 2 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

import grurec
from _machine import cpu_line  # (benchmarks/, the script's folder, is on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(cpu_line(), flush=True)
    ds = grurec.datasets.load_prepared("ml-100k")
    train = ds.valid.to_frame(session_col="UserId")
    raw = pd.read_csv(grurec.datasets.shared_data_dir() / "ml-100k" / "ml-100k.inter", sep="\t")
    raw.columns = [c.split(":")[0] for c in raw.columns]
    ratings = raw.rename(columns={"user_id": "UserId", "item_id": "ItemId"})[
        ["UserId", "ItemId", "rating"]]
    train = train.merge(ratings, on=["UserId", "ItemId"], how="left", validate="one_to_one")
    if train["rating"].isna().any():
        raise SystemExit("some training events have no rating")
    train["like"] = np.where(train["rating"] >= 4, 1.0, 0.25)
    variants = {"equal weights": None, "value_col=rating": "rating",
                "value_col=like (1 / 0.25)": "like"}
    rows = []
    for name, col in variants.items():
        for seed in args.seeds:
            m = grurec.UserGRU.from_preset("ml-100k", random_state=seed,
                                           num_threads=args.threads, show_progress=False)
            t0 = time.perf_counter()
            m.fit(train, user_col="UserId", value_col=col)
            fit_s = time.perf_counter() - t0
            r = grurec.evaluate_users(m, ds, protocol="loo", cutoffs=(10, 20),
                                      exclude_seen=True, num_threads=args.threads,
                                      show_progress=False)
            row = dict(variant=name, seed=seed, fit_s=round(fit_s, 1),
                       **{k: r[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{cpu_line()}; ml-100k leave-one-out, mean over seeds {args.seeds}")
    print(f"{'variant':<28}{'HR@10':>8}{'NDCG@10':>9}{'HR@20':>8}{'NDCG@20':>9}")
    for name in variants:
        sel = [r for r in rows if r["variant"] == name]
        mean = {k: float(np.mean([r[k] for r in sel])) for k in ("hr@10", "ndcg@10", "hr@20",
                                                                  "ndcg@20")}
        print(f"{name:<28}" + "".join(f"{v:>9.4f}" for v in mean.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
