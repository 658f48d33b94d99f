"""Cold-item evaluation on beauty-s3rec treated as sessions (issue 18).

Each user's history (Beauty.txt) is one session; a random 15% of items are
held out of training (cold), a random 20% of users are the test sessions.
Every test target is ranked among all items; recall/MRR are reported for all,
warm and cold targets (grurec.coldstart). Models: Popularity, ContentKNN
(attributes), GRU4Rec id-only, GRU4Rec with the attributes on the input side.

    python benchmarks/cold_items.py [--epochs 3] [--data ../shared/data/beauty-s3rec]
"""
import argparse
import json
import time
from pathlib import Path

import pandas as pd

import grurec
from grurec.baselines import ContentKNN, Popularity
from grurec.coldstart import cold_item_split, evaluate_cold
from grurec.features import beauty_attributes


def load(d: Path) -> pd.DataFrame:
    rows = []
    for line in (d / "Beauty.txt").read_text().splitlines():
        u, *items = line.split()
        rows += [(int(u), int(i), t) for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                          / "beauty-s3rec"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--id-dropout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    d = Path(a.data)
    ev = load(d)
    feats = beauty_attributes(d / "Beauty_item2attributes.json")
    split = cold_item_split(ev, fraction=0.15, test_sessions=0.2, seed=a.seed)
    print(f"events {len(ev)}, items {len(split.items)}, cold items {len(split.cold_items)}, "
          f"train events {len(split.train)}, test events {len(split.test)}")
    gru = dict(layers=[64], n_epochs=a.epochs, batch_size=64, n_sample=512, num_threads=1,
               random_state=a.seed, show_progress=False, loss="cross-entropy", logq=1.0,
               dropout_p_embed=0.0, dropout_p_hidden=0.2, learning_rate=0.05, momentum=0.0,
               elu_param=0.0, bpreg=0.0, sample_alpha=0.5)
    models = {
        "Popularity": lambda: Popularity().fit(split.train),
        "ContentKNN": lambda: ContentKNN().fit(split.train, item_features=feats),
        "GRU4Rec (ids)": lambda: grurec.GRU4Rec(**gru).fit(split.train),
        "GRU4Rec (ids + attributes, input)": lambda: grurec.GRU4Rec(
            **gru, id_dropout=a.id_dropout).fit(split.train, item_features=feats),
    }
    results = {}
    for name, make in models.items():
        t0 = time.perf_counter()
        m = make()
        t1 = time.perf_counter()
        r = evaluate_cold(m, split, cutoffs=(10, 20))
        t2 = time.perf_counter()
        results[name] = r
        print(f"{name:36s} fit {t1 - t0:6.1f}s eval {t2 - t1:5.1f}s  " + "  ".join(
            f"{g}: R@20 {r[g]['recall@20']:.4f} MRR@20 {r[g]['mrr@20']:.4f} (n={r[g]['n_events']})"
            for g in ("all", "warm", "cold")), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
