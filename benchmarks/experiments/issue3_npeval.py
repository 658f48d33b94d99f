"""An evaluation of issue 3's RSC15 configuration that shares nothing with
grurec's evaluator: the test file read and ordered with pandas, the GRU run
step by step in float64 NumPy from the published equations (reset gate before
the recurrent product, h = (1 - z) h_prev + z n), every item ranked by plain
comparison (rank = 1 + items scored strictly higher). Only the trained weights
come from grurec. Prints this Recall@20 / MRR@20 next to grurec.evaluate's;
they must agree (seed 0: 0.6682 / 0.3396 both). Run from the repository root:

    python benchmarks/experiments/issue3_npeval.py [SEED]
"""
import os
import sys

import numpy as np

import grurec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench_accuracy import load  # noqa: E402


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    train, test = load("rsc15-100k")
    m = grurec.GRU4Rec.from_preset("rsc15", num_threads=1, random_state=seed,
                                   show_progress=False).fit(train)
    P = {k: v.astype(np.float64) for k, v in m.params.items()}
    H = m.layers[0]
    row = {item: i for i, item in enumerate(m.item_ids)}
    test = test.sort_values(["SessionId", "Time"], kind="stable")
    ranks = []
    for _, g in test.groupby("SessionId", sort=False):
        seq = [row[i] for i in g.ItemId.values]
        h = np.zeros(H)
        for t in range(len(seq) - 1):
            gx = P["W_y"][seq[t]] @ P["W_ih0"] + P["b0"]
            U = P["W_hh0"]
            r = sigmoid(gx[:H] + h @ U[:, :H])
            z = sigmoid(gx[H:2 * H] + h @ U[:, H:2 * H])
            n = np.tanh(gx[2 * H:] + (r * h) @ U[:, 2 * H:])
            h = (1 - z) * h + z * n
            s = P["W_y"] @ h + P["b_y"]
            ranks.append(1 + int((s > s[seq[t + 1]]).sum()))
    r = np.array(ranks)
    res = grurec.evaluate(m, test, cutoffs=(20,))
    print(f"NumPy: {len(r)} predictions, Recall@20 {np.mean(r <= 20):.4f}, "
          f"MRR@20 {np.mean(np.where(r <= 20, 1.0 / r, 0.0)):.4f}")
    print(f"grurec.evaluate: {res['n_events']} predictions, Recall@20 {res['recall@20']:.4f}, "
          f"MRR@20 {res['mrr@20']:.4f}")


if __name__ == "__main__":
    main()
