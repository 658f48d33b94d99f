"""Ctrl-C latency of the long calls at 1M items (issue 22 item 12).

Each measurement runs in a child process: a timer sends SIGINT to the child
itself after ``--delay`` seconds of the call, and the child reports how long
after the signal the call raised KeyboardInterrupt (or that it finished
first, with its duration).

  recommend  recommend(30,000 sessions of 5 items, k=20) on a 1M-item model
             (random weights, H=100, 2 threads)
  evaluate   evaluate() of the same 30,000 sessions (full ranking)
  fit        GRU4Rec(layers=[100]).fit on 2M events over 1M items, 2 threads;
             the signal comes --delay s into the first epoch. (Before it,
             fit's set-up is NumPy code: weight initialisation of a 1M-item
             table is single NumPy calls of up to a few seconds, which do not
             check for signals; that is not measured here.)

Usage:
    python benchmarks/bench_interrupt.py                 # all three
    python benchmarks/bench_interrupt.py --only fit --items 200000
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import os, signal, sys, threading, time
import numpy as np, pandas as pd, grurec
what, N, S, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
H = 100
rng = np.random.default_rng(0)
sig = []
def fire():
    sig.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
if what == "fit":
    E = 2 * N
    sd = grurec.to_sessions({"SessionId": np.repeat(np.arange(E // 8), 8),
                             "ItemId": rng.integers(0, N, E), "Time": np.arange(E)})
    m = grurec.GRU4Rec(layers=[H], n_epochs=100, show_progress=False, num_threads=2)
    call = lambda: m.fit(sd)
    real = grurec.model._core.train_epoch
    def first_epoch_starts_the_timer(*a):
        if not sig and not started:
            started.append(threading.Timer(delay, fire))
            started[0].start()
        return real(*a)
    started = []
    grurec.model._core.train_epoch = first_epoch_starts_the_timer
else:
    m = grurec.GRU4Rec(layers=[H], show_progress=False, num_threads=2)
    m.item_ids = np.arange(N)
    m.params = {k: (0.1 * rng.standard_normal(s)).astype(np.float32)
                for k, s in m._param_shapes(N).items()}
    m.popularity = np.ones(N, np.int64)
    items = rng.integers(0, N, (S, 5))
    df = pd.DataFrame({"SessionId": np.repeat(np.arange(S), 5), "ItemId": items.ravel(),
                       "Time": np.arange(5 * S)})
    call = (lambda: m.recommend(items.tolist(), k=20)) if what == "recommend" \
        else (lambda: grurec.evaluate(m, df))
if what != "fit":
    threading.Timer(delay, fire).start()
t0 = time.perf_counter()
try:
    call()
    print(f"{what}: finished in {time.perf_counter() - t0:.2f} s before the signal")
except KeyboardInterrupt:
    print(f"{what}: KeyboardInterrupt {time.perf_counter() - sig[0]:.3f} s after SIGINT")
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--sessions", type=int, default=30_000)
    p.add_argument("--only", nargs="+", default=["recommend", "evaluate", "fit"],
                   choices=["recommend", "evaluate", "fit"])
    args = p.parse_args()
    for what in args.only:
        delay = 2.0
        out = subprocess.run([sys.executable, "-c", CHILD, what, str(args.items),
                              str(args.sessions), str(delay)], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
