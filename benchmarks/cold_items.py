"""Cold-item evaluation on beauty-s3rec or ml-100k treated as sessions (issue 18).

Each user's history (Beauty.txt; ml-100k.inter by time) is one session; a
random 15% of items are held out of training (cold), a random 20% of users are
the test sessions. Every test target is ranked among all items; recall/MRR are
reported for all, warm and cold targets (grurec.coldstart). Models:
Popularity, ContentKNN (features), GRU4Rec id-only, GRU4Rec with the features
on the input / output / both sides (the cold items join the feature models
with add_items after training). Features: beauty-s3rec attributes, ml-100k
genres and release year.

    python benchmarks/cold_items.py [--dataset beauty|ml100k] [--epochs 3]
        [--models "GRU4Rec (ids),output 0.3"] [--data DIR]
    python benchmarks/cold_items.py --time-add-items   # 1,000 items into 12k
    python benchmarks/cold_items.py --dataset ml100k --models "ContentKNN,output 0.3" \
        --cold-offsets 0.5 1 1.5 2 3                 # cold vs warm recall trade-off
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import grurec
from grurec.baselines import ContentKNN, Popularity
from grurec.coldstart import cold_item_split, evaluate_cold
from grurec.features import beauty_attributes, ml100k_features

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_ml100k(d: Path) -> pd.DataFrame:
    df = pd.read_csv(d / "ml-100k.inter", sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    return pd.DataFrame({"SessionId": df.user_id, "ItemId": df.item_id, "Time": df.timestamp})


def time_add_items(repeats: int = 7):
    """Median wall time of add_items(1,000 items) into a 12,000-item model
    (layers [64], features like beauty's: a categorical list column of 1,200
    values and a numeric one), and of the first recommend after it (which
    computes the new scoring table)."""
    rng = np.random.default_rng(0)
    N, n_new = 12000, 1000
    ids = np.arange(N + n_new)
    vocab = [f"a{i}" for i in range(1200)]
    table = pd.DataFrame({"ItemId": ids,
                          "attrs": [list(rng.choice(vocab, rng.integers(1, 6))) for _ in ids],
                          "price": rng.standard_normal(len(ids))})
    feats = grurec.ItemFeatures(table[:N], categorical=["attrs"], numeric=["price"])
    ev = pd.DataFrame({"SessionId": np.repeat(np.arange(N // 2), 2), "ItemId": np.arange(N),
                       "Time": np.arange(N)})
    base = grurec.GRU4Rec(layers=[64], n_epochs=0, feature_mode="output", num_threads=1,
                          random_state=0, show_progress=False).fit(ev, item_features=feats)
    new = table[N:].reset_index(drop=True)
    t_add, t_first = [], []
    for _ in range(repeats):
        m = base._snapshot()
        t0 = time.perf_counter()
        m.add_items(new)
        t1 = time.perf_counter()
        m.recommend([[1, 2]], k=20)
        t2 = time.perf_counter()
        assert m.n_items == N + n_new
        t_add.append(t1 - t0)
        t_first.append(t2 - t1)
    print(f"add_items: {n_new} items into a {N}-item model (layers [64]): median "
          f"{1e3 * np.median(t_add):.1f} ms (min {1e3 * min(t_add):.1f}); first recommend "
          f"after it (scoring table recomputed): median {1e3 * np.median(t_first):.1f} ms "
          f"({repeats} runs, 1 thread)")


def load(d: Path) -> pd.DataFrame:
    rows = []
    for line in (d / "Beauty.txt").read_text().splitlines():
        u, *items = line.split()
        rows += [(int(u), int(i), t) for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=("beauty", "ml100k"), default="beauty")
    ap.add_argument("--data", default=None, help="the data set's folder")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-offsets", type=float, nargs="*", default=[],
                    help="also evaluate each feature model with its cold items' output bias "
                         "set to each of these values (the warm/cold trade-off)")
    ap.add_argument("--models", default=None,
                    help="comma-separated subset of the model names below (default: all)")
    ap.add_argument("--time-add-items", action="store_true")
    ap.add_argument("--ties", default="median", choices=("standard", "conservative", "median"),
                    help="evaluate_cold's mode: how tied scores rank (median: ties count half)")
    a = ap.parse_args()
    if a.time_add_items:
        time_add_items()
        return
    if a.dataset == "beauty":
        d = Path(a.data or DATA / "beauty-s3rec")
        ev = load(d)
        feats = beauty_attributes(d / "Beauty_item2attributes.json")
    else:
        d = Path(a.data or DATA / "ml-100k")
        ev = load_ml100k(d)
        feats = ml100k_features(d / "ml-100k.item")
    split = cold_item_split(ev, fraction=0.15, test_sessions=0.2, seed=a.seed)
    print(f"ties ranked: {a.ties}; events {len(ev)}, items {len(split.items)}, cold items {len(split.cold_items)}, "
          f"train events {len(split.train)}, test events {len(split.test)}")
    gru = dict(layers=[64], n_epochs=a.epochs, batch_size=64, n_sample=512, num_threads=1,
               random_state=a.seed, show_progress=False, loss="cross-entropy", logq=1.0,
               dropout_p_embed=0.0, dropout_p_hidden=0.2, learning_rate=0.05, momentum=0.0,
               elu_param=0.0, bpreg=0.0, sample_alpha=0.5)
    def featured(mode, p):
        def make():
            m = grurec.GRU4Rec(**gru, feature_mode=mode, id_dropout=p).fit(
                split.train, item_features=feats)
            if mode != "input":  # the cold items join through their features
                m.add_items(feats, items=split.cold_items)
            return m
        return make

    models = {
        "Popularity": lambda: Popularity().fit(split.train),
        "ContentKNN": lambda: ContentKNN().fit(split.train, item_features=feats),
        "GRU4Rec (ids)": lambda: grurec.GRU4Rec(**gru).fit(split.train),
    }
    for mode in ("input", "output", "both"):
        for p in (0.3, 0.5):
            models[f"{mode} {p}"] = featured(mode, p)
    if a.models:
        want = [m.strip() for m in a.models.split(",")]
        unknown = [m for m in want if m not in models]
        if unknown:
            raise SystemExit(f"unknown models {unknown}; known: {list(models)}")
        models = {k: models[k] for k in want}
    results = {}
    for name, make in models.items():
        t0 = time.perf_counter()
        m = make()
        t1 = time.perf_counter()
        r = evaluate_cold(m, split, cutoffs=(10, 20), mode=a.ties)
        t2 = time.perf_counter()
        results[name] = r
        print(f"{name:36s} fit {t1 - t0:6.1f}s eval {t2 - t1:5.1f}s  " + "  ".join(
            f"{g}: R@20 {r[g]['recall@20']:.4f} MRR@20 {r[g]['mrr@20']:.4f} (n={r[g]['n_events']})"
            for g in ("all", "warm", "cold")), flush=True)
        if a.cold_offsets and getattr(m, "params", None) is not None and "b_y" in m.params:
            # The warm/cold trade-off: every cold item's output bias set to
            # delta (add_items gives them 0), the rest of the model unchanged.
            b = m.params["b_y"]
            saved = b.copy()
            cold = np.isin(m.item_ids, split.cold_items)
            for delta in a.cold_offsets:
                b[cold] = delta
                r = evaluate_cold(m, split, cutoffs=(20,), mode=a.ties)
                results[f"{name}, cold bias {delta:g}"] = r
                print(f"  cold items' bias {delta:4.1f}: " + "  ".join(
                    f"{g}: R@20 {r[g]['recall@20']:.4f}" for g in ("all", "warm", "cold")),
                    flush=True)
            b[:] = saved
    print(json.dumps(results))


if __name__ == "__main__":
    main()
