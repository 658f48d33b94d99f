"""UserGRU training throughput: grurec against the PyTorch implementation of
the same algorithm (benchmarks/torch_usergru.py), in one run, and against the
machine's measured matrix-product ceiling.

Data: the training part (all but each user's last two events) of a user
sequence set (``--data``, default amazon-beauty: 40,226 users, 54,542 items),
cut to the first users holding ``--events`` (input, target) pairs. For every
hidden size (``--hidden``, default 64 and 100) and window (``--bptt``,
default 1, 8, 32) both implementations train one epoch over the same pairs
with the same hyperparameters (cross-entropy with logQ, batch 64, 2048
shared negatives, shared embedding, hidden dropout 0.2), at ``--threads``:
grurec in its default mode (``parallel="hogwild"``: one stream of windows
per thread) and in ``"sync"`` (one stream, the products split across
threads: the twin's algorithm step for step); torch with
``torch.set_num_threads``. Events/s count (input, target) pairs over the
epoch loop only.

FLOPs per event (matrix products only, credited alike to both): the GRU
layer forward 6 I H + 6 H^2, backward 12 I H + 6 H^2 plus 6 H^2 (T-1)/T for
the gradient into the previous step's state (truncated BPTT: every step but
a window's first), and the sampled scores 6 H (T B + S) (a window's T B
in-batch targets plus S shared negatives, forward and both gradients).

NARM (``--model NARM``, issue 19): grurec.NARM against the PyTorch twin with
the same readout (benchmarks/torch_narm.py), and grurec's GRU4Rec step
(UserGRU with bptt 1, bit for bit GRU4Rec's training) at the same H; the
FLOPs above leave out the attention's.

Usage:
    python benchmarks/bench_train_users.py                      # 2 threads
    python benchmarks/bench_train_users.py --model NARM --data yoochoose1_64 --bptt 5 20 \
        --hidden 100 --json benchmarks/results/bench_train_narm.json
    python benchmarks/bench_train_users.py --model NARM --data yoochoose1_64 --bptt 1 \
        --memory 19 --hidden 100 --threads 1 2     # the NARM presets' schedule
    python benchmarks/bench_train_users.py --threads 1 2 --events 100000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import grurec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import cpu_line  # noqa: E402
from bench_train import measure_ceiling  # noqa: E402

try:
    import torch

    import torch_narm as tn
    import torch_usergru as tu
except ImportError:
    torch = tu = tn = None

CFG = dict(loss="cross-entropy", batch_size=64, n_sample=2048, sample_alpha=0.5, logq=1.0,
           bpreg=0.0, elu_param=0.0, embedding=0, constrained_embedding=True,
           dropout_p_embed=0.0, dropout_p_hidden=0.2, learning_rate=0.05, momentum=0.3)


def flops_per_event(H: int, T: int, B: int, S: int) -> float:
    I = H  # noqa: E741  (shared embedding: the input is an output row)
    gru = 6 * I * H + 6 * H * H + 12 * I * H + 6 * H * H + 6 * H * H * (T - 1) / T
    return gru + 6 * H * (T * B + S)


def first_pairs(sd, n_pairs: int):
    pairs = np.cumsum(np.diff(sd.offsets) - 1)
    n = min(int(np.searchsorted(pairs, n_pairs)) + 1, sd.n_sessions)
    return sd.select_sessions(np.arange(sd.n_sessions) < n)


def run_grurec(sd, H, T, threads, parallel, model="UserGRU", memory=0):
    extra = {"attention_memory": memory} if model == "NARM" else {}
    m = getattr(grurec, model)(layers=[H], bptt=T, n_epochs=1, num_threads=threads,
                               random_state=0, show_progress=False, parallel=parallel,
                               **CFG, **extra).fit(sd)
    h = m.history[-1]
    return h["events"] / h["seconds"]


def run_torch(sd, H, T, threads, model="UserGRU", memory=0):
    torch.set_num_threads(threads)
    cls = tn.TorchNARM if model == "NARM" else tu.TorchUserGRU
    extra = {"attention_memory": memory} if model == "NARM" else {}
    m = cls(layers=[H], bptt=T, n_epochs=1, num_threads=threads, random_state=0, **CFG,
            **extra)
    m.fit(sd)
    h = m.history[-1]
    return h["events"] / h["seconds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", default="amazon-beauty")
    p.add_argument("--events", type=int, default=150_000)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 100])
    p.add_argument("--bptt", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--model", choices=("UserGRU", "NARM"), default="UserGRU",
                   help="NARM: grurec.NARM against torch_narm.py's twin, plus grurec's "
                   "GRU4Rec step (UserGRU, bptt 1) at the same H; %% sgemm counts only the "
                   "GRU and head products")
    p.add_argument("--memory", type=int, nargs="+", default=[0],
                   help="NARM: attention_memory values (both implementations)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "bench_train_users.json")
    args = p.parse_args(argv)
    print(cpu_line(), flush=True)
    ds = grurec.datasets.load_prepared(args.data)
    sd = first_pairs(ds.train, args.events)
    sd = sd.select_sessions(sd.lengths() >= 2).compact_items()
    print(f"{args.data}: {sd.n_sessions:,} users, {sd.n_events - sd.n_sessions:,} pairs, "
          f"{sd.n_items:,} items", flush=True)
    use_torch = torch is not None and not args.no_torch
    rows, ceilings = [], {}
    for threads in args.threads:
        ceilings[threads] = measure_ceiling(threads, quick=False)
        for H in args.hidden:
            for T, M in [(T, M) for T in args.bptt
                         for M in (args.memory if args.model == "NARM" else [0])]:
                r = dict(data=args.data, model=args.model, threads=threads, H=H, bptt=T)
                if args.model == "NARM":
                    r["memory"] = M
                r["grurec"] = run_grurec(sd, H, T, threads, "hogwild", args.model, M)
                if threads > 1:
                    r["grurec_sync"] = run_grurec(sd, H, T, threads, "sync", args.model, M)
                if args.model == "NARM":
                    r["grurec_gru4rec"] = run_grurec(sd, H, 1, threads, "hogwild")
                if use_torch:
                    r["torch"] = run_torch(sd, H, T, threads, args.model, M)
                    r["vs_torch"] = r["grurec"] / r["torch"]
                f = flops_per_event(H, T, CFG["batch_size"], CFG["n_sample"])
                r["gflops"] = r["grurec"] * f / 1e9
                r["pct_of_sgemm"] = 100 * r["gflops"] / ceilings[threads]["best"]
                rows.append(r)
                print(json.dumps(r), flush=True)
    print(f"\n{cpu_line()}; sgemm ceilings (GFLOP/s): "
          + ", ".join(f"{t} thr {c['best']:.0f}" for t, c in ceilings.items()))
    extra = "GRU4Rec" if args.model == "NARM" else ""
    print(f"{args.model}: {'thr':>3}{'H':>5}{'bptt':>6}{'mem':>5}{'grurec ev/s':>13}{'sync':>10}"
          f"{'torch':>10}{'vs torch':>10}{'% sgemm':>9}{extra:>10}")
    for r in rows:
        print(f"{args.model}: {r['threads']:>3}{r['H']:>5}{r['bptt']:>6}{r.get('memory', 0):>5}"
              f"{r['grurec']:>13,.0f}"
              f"{r.get('grurec_sync', float('nan')):>10,.0f}{r.get('torch', float('nan')):>10,.0f}"
              f"{r.get('vs_torch', float('nan')):>9.1f}x{r['pct_of_sgemm']:>8.0f}%"
              + (f"{r['grurec_gru4rec']:>10,.0f}" if extra else ""))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu": cpu_line(), "ceilings": ceilings, "rows": rows,
                                     "config": CFG, "events": args.events}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
