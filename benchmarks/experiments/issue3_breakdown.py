"""Where the RSC15-configuration gap of issue 3 sits: Recall@20 / MRR@20 on
rsc15-100k's test file split by repeat clicks (target == the item just
clicked), target popularity quartile and position in the session, for the
shipped configuration and one variant (default: dropout_p_hidden=0.2, which
reaches the issue's figures), then both models with the score of the item just
clicked raised by a constant after training (a probe of their repeat scores).
One seed, one thread, ranks computed plainly in NumPy (standard ties). Run from
the repository root:

    python benchmarks/experiments/issue3_breakdown.py [KEY=VALUE ...]
"""
import os
import sys

import numpy as np

import grurec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench_accuracy import load, parse_set  # noqa: E402


def ranks(model, test, repeat_bonus=0.0):
    """Rank of every test target; ``repeat_bonus`` is added to the score of the
    item just clicked (a post-hoc probe of how the model scores repeats)."""
    sd = grurec.data.to_sessions(test, item_ids=model.item_ids, unknown="keep")
    off, items = sd.offsets, sd.items
    h = model._states(off, items, all_prefixes=True, num_threads=1)
    starts = np.zeros(len(items), bool)
    starts[off[:-1]] = True
    rows = np.flatnonzero(~starts)
    target, prev = items[rows], items[rows - 1]
    pos = (np.arange(len(items)) - np.repeat(off[:-1], np.diff(off)))[rows]
    S = h @ model.params["W_y"].T + model.params["b_y"]
    S[np.arange(len(prev)), prev] += repeat_bonus
    r = 1 + (S > S[np.arange(len(target)), target][:, None]).sum(1)
    return r, target, prev, pos


def metrics(r, mask):
    r = r[mask]
    return f"{np.mean(r <= 20):.4f} / {np.mean(np.where(r <= 20, 1.0 / r, 0.0)):.4f}  (n={mask.sum()})"


def main():
    variant = parse_set(sys.argv[1:]) if len(sys.argv) > 1 else {"dropout_p_hidden": 0.2}
    train, test = load("rsc15-100k")
    models = [grurec.GRU4Rec.from_preset("rsc15", **over, num_threads=1, random_state=0,
                                         show_progress=False).fit(train)
              for over in ({}, variant)]
    (r0, target, prev, pos), (r1, _, _, _) = (ranks(m, test) for m in models)
    pop = models[0].popularity[target]
    q = np.quantile(pop, [0, 0.25, 0.5, 0.75, 1])
    rows = [("all", np.ones(len(r0), bool)), ("repeat click", target == prev),
            ("other", target != prev)]
    rows += [(f"popularity q{i + 1} [{q[i]:.0f}, {q[i + 1]:.0f}]",
              (pop >= q[i]) & ((pop <= q[i + 1]) if i == 3 else (pop < q[i + 1]))) for i in range(4)]
    rows += [(f"position {p}", pos == p) for p in (1, 2, 3)] + [("position >= 4", pos >= 4)]
    print(f"{'Recall@20 / MRR@20':32s} {'shipped':30s} {variant}")
    for name, mask in rows:
        print(f"{name:32s} {metrics(r0, mask):30s} {metrics(r1, mask)}")
    # How far each model's repeat scores are off: the same model, the item just
    # clicked scored higher by a constant after training (1e9: always first).
    print("\nscore of the item just clicked raised after training by")
    allrows = np.ones(len(r0), bool)
    for bonus in (1.0, 2.0, 1e9):
        print(f"  {bonus:<30g} " + " ".join(
            f"{metrics(ranks(m, test, bonus)[0], allrows):30s}" for m in models))


if __name__ == "__main__":
    main()
