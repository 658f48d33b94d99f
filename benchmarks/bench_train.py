"""GRU4Rec training throughput: grurec vs a PyTorch implementation of the same algorithm.

For each configuration (the official GRU4Rec parameter files
rsc15_xe_shared_100 and retailrocket_bprmax_shared, grurec.presets; issue 3
item 7) and thread count this trains, in one process, on the same synthetic
data (``grurec.synthetic.generate_sessions``, 2M events over 40k items by
default, cached in ``benchmarks/results/``):

* grurec: ``GRU4Rec(...).fit`` with ``num_threads``; events/s from
  ``model.history`` (the time of the native epoch only, not data preparation).
  With more than one thread in both of grurec's parallel modes: ``grurec``,
  the default (``parallel="hogwild"``: each thread its own stream of
  mini-batches, lock-free updates) and ``grurec sync`` (``parallel="sync"``:
  one stream, the products split across threads: the published algorithm
  step for step, like the torch implementation);
* torch: ``benchmarks/torch_gru4rec.py`` (the same algorithm with autograd,
  checked against grurec in tests/test_torch_gru4rec.py) with
  ``torch.set_num_threads``; events/s over its epoch loop only;

and measures the machine's ceiling in the same run: the 1024^3 float32 matrix
product by NumPy's BLAS (the ceiling issue 3 names), by grurec's own sgemm and
by torch (each at the same thread count).

FLOPs per trained event (an event = one (input, target) pair), matrix products
only, the same count credited to both implementations; H_l hidden size of
layer l, I_l its input size (I_0 = H_L with the shared embedding), B
batch_size, S n_sample:

* GRU layer forward: x W_ih 6 I H, the recurrent product h W_hh 6 H^2
  (reset-before: h [U_r|U_z] 4 H^2 and (r*h) U_n 2 H^2);
* GRU layer backward, one-step (the gradient does not flow into the previous
  hidden state, which is detached): dW_ih 6 I H, dx 6 I H (the embedding or the
  layer below needs it), dW_hh 6 H^2; the reset-before cell also needs
  d(r*h) = dA_n U_n^T 2 H^2 for its reset gate (the reset-after cell gets it
  element-wise from the cached h U_n + bh_n). In all 18 I H + 12 H^2 per
  reset-after layer, 18 I H + 14 H^2 per reset-before one (one-hot input: the
  input product is a row lookup and no dx is needed, 14 H^2, and that layer
  is always reset-before);
* scores R = y W_c^T over C = B + S candidates, 2 H_L C forward, dy = dR W_c
  and dW_c = dR^T y backward: 6 H_L (B + S).

rsc15_xe_shared_100 (reset-after, H = I = 100, B = 32, S = 2048): 300,000 +
1,248,000 = 1.548 MFLOP/event. retailrocket_bprmax_shared (reset-after,
H = I = 224, B = 80, S = 2048): 1,505,280 + 2,860,032 = 4.365 MFLOP/event.
(Issue 3's 1.6 MFLOP for RSC15 counts the GRU as 18 (I H + H^2), with the
4 H^2 of a gradient into the previous state: 1.608.) Element-wise work
(gates, softmax over the C candidates, optimizer) and the last, shrinking
mini-batches of an epoch are not counted (a few per cent).

Usage:
    python benchmarks/bench_train.py                      # full: 2M events, 1 and 2 threads
    python benchmarks/bench_train.py --quick              # smoke run: 60k events
    python benchmarks/bench_train.py --events 300000 --threads 2 --configs rsc15_xe_shared_100
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import grurec
from grurec.data import sessions_from_frame
from grurec.synthetic import generate_sessions

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_gru import SGEMM_N, machine_info, sgemm_step, time_block  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None
try:
    import torch

    import torch_gru4rec as tg
except ImportError:
    torch = tg = None

RESULTS = HERE / "results"
DEFAULT_JSON = RESULTS / "bench_train.json"
# The official parameter files (grurec.presets); n_epochs is this benchmark's --epochs.
CONFIGS = {name: {k: v for k, v in grurec.presets.get(name).items() if k != "n_epochs"}
           for name in ("rsc15_xe_shared_100", "retailrocket_bprmax_shared")}
# Issue 3: the official GRU4Rec (PyTorch) with these parameter files on this
# machine kind, 2 threads (quoted, not measured here).
OFFICIAL_EVENTS_PER_S = {"rsc15_xe_shared_100": 3700, "retailrocket_bprmax_shared": 5200}
NAME_W = max(len(n) for n in CONFIGS) + 2  # the config column of the table
IMPLS = ["grurec", "grurec-sync", "torch"]
OMP_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OMP_PROC_BIND")
PAUSE = 1.0  # s before each timed block: other runtimes' spinning threads go idle


def flops_per_event(cfg: dict) -> dict:
    """Matrix-product FLOPs per trained event (see the module docstring)."""
    layers = cfg["layers"]
    HL = layers[-1]
    if cfg["constrained_embedding"]:
        I = HL
    else:
        I = cfg["embedding"] or 0  # 0: one-hot input
    gru = 0
    for l, H in enumerate(layers):
        onehot = I == 0
        reset_after = cfg.get("gru_cell", "reset-after") == "reset-after" and not onehot
        fwd = 6 * I * H + 6 * H * H
        # dW_ih, dx; dW_hh, and d(r*h) for the reset-before cell's reset gate
        bwd = 12 * I * H + (6 if reset_after else 8) * H * H
        gru += fwd + bwd
        I = H
    scores = 6 * HL * (cfg["batch_size"] + cfg["n_sample"])
    return dict(gru=gru, scores=scores, total=gru + scores)


# ---------------------------------------------------------------- data


def load_data(n_events: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    """The synthetic set, generated once and cached as .npz (generation runs a
    Python loop over the events: tens of seconds for 2M)."""
    path = RESULTS / f"synthetic_{n_events}ev_{n_items}it_seed{seed}.npz"
    if path.exists():
        z = np.load(path)
        return pd.DataFrame({"SessionId": z["session"], "ItemId": z["item"],
                             "Time": np.arange(len(z["item"]), dtype=np.float64)})
    log(f"generating {n_events:,} events over {n_items:,} items (cached to {path})")
    df = generate_sessions(n_events=n_events, n_items=n_items, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, session=df.SessionId.to_numpy(np.int64), item=df.ItemId.to_numpy(np.int32))
    tmp.replace(path)
    return df


# ---------------------------------------------------------------- timing


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sgemm_gflops(impl: str, threads: int, repeats: int, min_time: float) -> float:
    """Median GFLOP/s of the 1024^3 float32 product (bench_gru's timing)."""
    if impl == "torch":
        torch.set_num_threads(threads)
        rng = np.random.default_rng(1)
        ta, tb = (torch.from_numpy(rng.standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32))
                  for _ in range(2))
        tc = torch.empty_like(ta)
        step = lambda: torch.mm(ta, tb, out=tc)  # noqa: E731
    else:
        step = sgemm_step(impl, threads)
    times = time_block(step, repeats, min_time, PAUSE)
    return 2 * SGEMM_N**3 / statistics.median(times) / 1e9


def measure_ceiling(threads: int, quick: bool) -> dict:
    repeats, min_time = (3, 0.05) if quick else (7, 0.2)
    out = {"threads": threads}
    if threadpool_limits is not None:
        with threadpool_limits(limits=threads, user_api="blas"):
            out["numpy"] = sgemm_gflops("numpy", threads, repeats, min_time)
    else:
        out["numpy"] = None  # BLAS threads cannot be set after import without threadpoolctl
    out["grurec"] = sgemm_gflops("grurec", threads, repeats, min_time)
    if torch is not None:
        out["torch"] = sgemm_gflops("torch", threads, repeats, min_time)
    out["best"] = max(v for k, v in out.items() if k != "threads" and v)
    return out


def grurec_has_parallel() -> bool:
    return "parallel" in inspect.signature(grurec.GRU4Rec).parameters


def run_grurec(sd, cfg: dict, threads: int, epochs: int, seed: int, sync: bool = False) -> dict:
    time.sleep(PAUSE)
    kw = dict(parallel="sync") if sync else {}  # default: grurec's own default mode
    m = grurec.GRU4Rec(**cfg, n_epochs=epochs, num_threads=threads, random_state=seed,
                       show_progress=False, **kw).fit(sd)
    return summarize(m.history)


def run_torch(sd, cfg: dict, threads: int, epochs: int, seed: int) -> dict:
    time.sleep(PAUSE)
    m = tg.TorchGRU4Rec(**tg.twin_kwargs(cfg), n_epochs=epochs, num_threads=threads,
                        random_state=seed)
    m.fit(sd)
    return summarize(m.history)


def summarize(history: list[dict]) -> dict:
    events = sum(h["events"] for h in history)
    seconds = sum(h["seconds"] for h in history)
    return dict(events=events, seconds=seconds, events_per_s=events / seconds,
                loss=history[-1]["loss"], epochs=history)


# ---------------------------------------------------------------- report


def fill_ratios(rows: list[dict], ceilings: dict[int, dict]) -> None:
    by = {(r["config"], r["threads"], r["impl"]): r for r in rows}
    for r in rows:
        c = ceilings[r["threads"]]
        r["gflops"] = r["events_per_s"] * r["flops_per_event"] / 1e9
        r["of_numpy_sgemm"] = r["gflops"] / c["numpy"] if c.get("numpy") else None
        r["of_best_sgemm"] = r["gflops"] / c["best"]
        t = by.get((r["config"], r["threads"], "torch"))
        r["vs_torch"] = r["events_per_s"] / t["events_per_s"] if t else None
        # grurec's modes coincide at one thread: both scale from the same row
        one = by.get((r["config"], 1, r["impl"])) or by.get((r["config"], 1, "grurec"))
        r["scaling_vs_1_thread"] = (r["events_per_s"] / one["events_per_s"]
                                    if one and r["threads"] != 1 else None)


def format_table(rows: list[dict], ceilings: dict[int, dict], configs: list[str]) -> str:
    def pct(x):
        return f"{x * 100:>7.0f}%" if x is not None else f"{'-':>8}"

    def ratio(x):
        return f"{x:>8.2f}x" if x is not None else f"{'-':>9}"

    w = NAME_W
    head = (f"{'config':<{w}}{'thr':>4}  {'impl':<14}{'events/s':>10}{'MFLOP/ev':>10}"
            f"{'GFLOP/s':>9}{'% numpy':>8}{'% best':>8}{'vs torch':>9}{'2t/1t':>9}{'loss':>8}")
    lines = [head, "-" * len(head)]
    for n in sorted(ceilings):
        c = ceilings[n]
        for impl in ("numpy", "grurec", "torch"):
            g = c.get(impl)
            if g:
                of_np = g / c["numpy"] if c.get("numpy") else None
                lines.append(f"{'sgemm 1024^3':<{w}}{n:>4}  {impl:<14}{'':>10}{'':>10}"
                             f"{g:>9.1f}{pct(of_np)}{pct(g / c['best'])}")
        lines.append("")
    for name in configs:
        for r in (r for r in rows if r["config"] == name):
            c = ceilings[r["threads"]]
            lines.append(f"{name:<{w}}{r['threads']:>4}  {r['impl']:<14}{r['events_per_s']:>10,.0f}"
                         f"{r['flops_per_event'] / 1e6:>10.3f}{r['gflops']:>9.1f}"
                         f"{pct(r['of_numpy_sgemm'])}{pct(r['of_best_sgemm'])}"
                         f"{ratio(r['vs_torch'])}{ratio(r['scaling_vs_1_thread'])}"
                         f"{r['loss']:>8.3f}")
        fpe = flops_per_event(CONFIGS[name])["total"]
        for n in sorted(ceilings):
            c = ceilings[n]
            lines.append(f"{name:<{w}}{n:>4}  {'limit (best)':<14}{c['best'] * 1e9 / fpe:>10,.0f}"
                         f"{fpe / 1e6:>10.3f}{c['best']:>9.1f}")
        lines.append(f"{name:<{w}}{2:>4}  {'official (issue)':<14}{OFFICIAL_EVENTS_PER_S[name]:>10,}")
        lines.append("")
    return "\n".join(lines)


NOTES = [
    "events/s: trained (input, target) pairs per second of training only (data preparation "
    "and the synthetic data generation are not timed); over all epochs of one run.",
    "MFLOP/ev: matrix-product FLOPs per event of the algorithm (module docstring), the same "
    "for both implementations; GFLOP/s = events/s x MFLOP/ev.",
    "% numpy: of NumPy's 1024^3 float32 matmul at the same threads (issue 3's ceiling); "
    "% best: of the fastest 1024^3 product measured (NumPy, grurec's or torch's sgemm).",
    "vs torch: events/s over the torch implementation's, same config and threads; "
    "2t/1t: 2-thread events/s over the same implementation's 1-thread events/s.",
    "grurec: its default parallel mode (hogwild: one stream of mini-batches per thread, "
    "lock-free updates); grurec sync: one stream, products split across threads (the "
    "published algorithm step for step, as torch runs it); the two are the same at 1 thread.",
    "limit (best): the best sgemm GFLOP/s over MFLOP/ev, the events/s if every product "
    "ran at that rate and nothing else took time. official (issue): issue 3's figure for the "
    "official GRU4Rec PyTorch code, 2 threads, not measured here.",
    "loss: mean training loss of the last epoch (both implementations should be close).",
]


def fmt_load(la) -> str:
    return "/".join(f"{x:.1f}" for x in la)


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--events", type=int, default=None,
                   help="synthetic events (default 2M; 60k with --quick)")
    p.add_argument("--items", type=int, default=40_000, help="synthetic items (default 40k)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per measurement (default 1)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS,
                   help="grurec sync is spelt grurec-sync (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 60k events (unless --events is given), short sgemm timing")
    p.add_argument("--seed", type=int, default=0, help="data and model seed")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 60_000 if args.quick else 2_000_000
    if min(args.threads) < 1 or args.epochs < 1:
        p.error("--threads and --epochs must be >= 1")
    impls = list(args.impls)
    notes = list(NOTES)
    if "torch" in impls and tg is None:
        impls.remove("torch")
        notes.append("torch is not importable: the torch implementation was skipped.")
    if "grurec-sync" in impls and not grurec_has_parallel():
        impls.remove("grurec-sync")
        notes.append("this grurec has no parallel= option: one grurec mode only.")
    if threadpool_limits is None:
        notes.append("threadpoolctl is not installed: NumPy's sgemm ceiling was not measured.")

    df = load_data(args.events, args.items, args.seed)
    t0 = time.perf_counter()
    sd_g = sessions_from_frame(df)  # grurec's preparation (fit drops short sessions itself)
    sd_t = tg.prepare(df) if "torch" in impls else None
    n_train = int(len(df) - df.SessionId.nunique())
    log(f"data: {len(df):,} events, {df.SessionId.nunique():,} sessions, "
        f"{len(sd_g.item_ids):,} items seen, {n_train:,} trained events per epoch "
        f"(prepared in {time.perf_counter() - t0:.1f} s, not timed)")

    ceilings: dict[int, dict] = {}
    rows: list[dict] = []
    load = {"start": os.getloadavg()}
    for k, n in enumerate(args.threads):
        log(f"threads={n}: sgemm ceilings")
        ceilings[n] = measure_ceiling(n, args.quick)
        for name in args.configs:
            cfg = CONFIGS[name]
            order = impls if k % 2 == 0 else impls[::-1]  # alternate who runs first
            for impl in order:
                if impl == "grurec-sync" and n == 1:
                    continue  # the same as grurec at one thread
                log(f"threads={n}: {name} {impl} ({args.epochs} epoch(s))")
                if impl == "torch":
                    res = run_torch(sd_t, cfg, n, args.epochs, args.seed)
                else:
                    res = run_grurec(sd_g, cfg, n, args.epochs, args.seed,
                                     sync=impl == "grurec-sync")
                log(f"  {res['events_per_s']:,.0f} events/s, loss {res['loss']:.4f}")
                rows.append(dict(config=name, threads=n, impl=impl.replace("-", " "),
                                 flops_per_event=flops_per_event(cfg)["total"], **res))
        # The same sgemm again after the training runs: on a shared machine a
        # drop shows that other work took the cores during this block.
        log(f"threads={n}: sgemm ceilings again")
        after = measure_ceiling(n, args.quick)
        ceilings[n]["after"] = after
        ceilings[n]["drift"] = after["best"] / ceilings[n]["best"] - 1.0
    load["end"] = os.getloadavg()
    fill_ratios(rows, ceilings)

    m = machine_info()
    m["omp_env"] = {k: os.environ[k] for k in OMP_ENV if k in os.environ}
    print(f"grurec {m['grurec']} ({m['simd_level']}), NumPy {m['numpy']}, torch {m['torch']}, "
          f"CPU: {m['cpu_model']} ({m['usable_cpus']} usable)")
    print(f"GRU4Rec training, {len(df):,} synthetic events / {len(sd_g.item_ids):,} items, "
          f"{args.epochs} epoch(s) per row\n")
    print(format_table(rows, ceilings, args.configs))
    drift = ", ".join(f"{n} thread(s) {c['drift'] * 100:+.0f}%" for n, c in ceilings.items())
    notes.append(f"best sgemm after the training runs vs before: {drift}; load average "
                 f"(1/5/15 min) at start {fmt_load(load['start'])}, at end "
                 f"{fmt_load(load['end'])} on {os.cpu_count()} CPUs. A drop or a load above "
                 f"the thread count means the machine was shared and the rows are noisy.")
    if m["omp_env"]:
        notes.append(f"OpenMP environment: {m['omp_env']}")
    print("\n".join("* " + s for s in notes))
    result = dict(benchmark="GRU4Rec training throughput", command=" ".join(sys.argv),
                  data=dict(events=len(df), items=args.items, items_seen=len(sd_g.item_ids),
                            sessions=int(df.SessionId.nunique()), trained_events=n_train,
                            seed=args.seed),
                  epochs=args.epochs, configs={k: CONFIGS[k] for k in args.configs},
                  flops_per_event={k: flops_per_event(CONFIGS[k]) for k in args.configs},
                  official_events_per_s=OFFICIAL_EVENTS_PER_S, machine=m,
                  ceilings=list(ceilings.values()), load_average=load, results=rows,
                  notes=notes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
