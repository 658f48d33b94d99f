"""NARM settings on a validation split: train on the validation-training part
of yoochoose1_64 or diginetica (benchmarks/repeat_mixture.py's split: the
training file without its last sessions, as many as the test file has) and
report MRR@20 / Recall@20 on those last sessions, full ranking. For choosing
NARM's own settings without the test split.

    OMP_NUM_THREADS=1 python benchmarks/narm_validation.py --data yoochoose1_64 --memory 4
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import grurec
from grurec import presets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line  # noqa: E402
from repeat_mixture import PRESET, splits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", default="yoochoose1_64", choices=("yoochoose1_64", "diginetica"))
    ap.add_argument("--memory", type=int, default=19, help="attention_memory")
    ap.add_argument("--bptt", type=int, default=1)
    ap.add_argument("--adagrad-init", type=float, default=0.0, help="attention_adagrad_init")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(cpu_line(), flush=True)
    tr, va, _, _ = splits(a.data)
    kw = dict(presets.get(PRESET[a.data]), random_state=a.seed, num_threads=1,
              show_progress=False, bptt=a.bptt, attention_memory=a.memory,
              attention_adagrad_init=a.adagrad_init)
    t0 = time.perf_counter()
    m = grurec.NARM(**kw).fit(tr)
    fit_s = time.perf_counter() - t0
    r = grurec.evaluate(m, va, cutoffs=(20,), show_progress=False, num_threads=1)
    print(json.dumps(dict(data=a.data, memory=a.memory, bptt=a.bptt,
                          adagrad_init=a.adagrad_init, seed=a.seed,
                          mrr20=round(100 * r["mrr@20"], 2),
                          recall20=round(100 * r["recall@20"], 2), fit_s=round(fit_s))))


if __name__ == "__main__":
    main()
