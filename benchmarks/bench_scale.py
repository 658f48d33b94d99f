"""Scale-out measurements for issue 20 (see docs/scale-out.md).

    python benchmarks/bench_scale.py tune  [--trials 8] [--storage URL]
        trials per hour of `grurec tune` on rsc15-100k (train_tr / train_valid,
        1 epoch per trial, layers [100], batch 32, no pruning), 1 worker vs 2
        workers on one study
        (separate processes, --num-threads 1 each); SQLite file by default.
    python benchmarks/bench_scale.py dask  [--sessions 1000000] [--partitions 16]
        batch top-20 of N synthetic sessions (parquet files, one range of
        sessions per file) with a model trained on rsc15-100k: in-process
        model.recommend vs grurec.distributed.recommend on a LocalCluster of 1
        and 2 worker processes (1 thread each); wall time and peak RSS per
        worker; results checked equal.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pandas as pd

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                 "rsc15-100k", "yoochoose-clicks-100k_")


def tune_bench(args):
    storage = args.storage or "sqlite:///" + os.path.join(tempfile.mkdtemp(), "bench.db")
    for n_workers in (1, 2):
        study = "b" + uuid.uuid4().hex[:8]
        base = [sys.executable, "-m", "grurec", "tune", D + "train_tr.txt", "--valid",
                D + "train_valid.txt", "--storage", storage, "--study", study, "--n-epochs",
                "1", "--pruner", "none", "--num-threads", "1", "--quiet",
                # Equal-cost trials (the searched learning rate, dropout, ... do
                # not change an epoch's cost; layer and batch sizes do).
                "--fixed", "layers=[100]", "batch_size=32"]
        subprocess.run(base + ["--n-trials", "0"], check=True, capture_output=True)
        t0 = time.perf_counter()
        ps = [subprocess.Popen(base + ["--n-trials", str(args.trials), "--seed", str(w)],
                               stdout=subprocess.DEVNULL) for w in range(n_workers)]
        rcs = [p.wait() for p in ps]
        dt = time.perf_counter() - t0
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = optuna.load_study(study_name=study, storage=storage.replace(
            "postgresql://", "postgresql+psycopg://", 1))
        n = sum(t.state.name in ("COMPLETE", "PRUNED") for t in s.trials)
        print(f"{n_workers} worker(s): {n} trials in {dt:.1f} s = {n / dt * 3600:.0f} "
              f"trials/hour (exit codes {rcs})", flush=True)


def _peak_rss_mib():
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dask_bench(args):
    import dask.dataframe as dd
    import distributed

    import grurec
    import grurec.distributed as gd

    model = grurec.GRU4Rec.from_preset("rsc15_xe_shared_100", n_epochs=1, random_state=0, num_threads=2,
                                       show_progress=False).fit(D + "train_full.txt")
    rng = np.random.default_rng(0)
    S = args.sessions
    lengths = rng.integers(1, 6, S)  # 1-5 events, mean 3
    sess = np.repeat(np.arange(S, dtype=np.int64), lengths)
    pop = model.popularity / model.popularity.sum()
    items = model.item_ids[rng.choice(len(pop), len(sess), p=pop)]
    ev = pd.DataFrame({"SessionId": sess, "ItemId": items,
                       "Time": np.arange(len(sess), dtype=np.float64)})
    tmp = tempfile.mkdtemp(prefix="grurec-bench-")
    try:
        bounds = np.linspace(0, S, args.partitions + 1).astype(np.int64)
        starts = np.searchsorted(sess, bounds)
        os.makedirs(f"{tmp}/in")
        for p in range(args.partitions):
            ev.iloc[starts[p]:starts[p + 1]].to_parquet(f"{tmp}/in/part{p:03d}.parquet",
                                                         index=False)
        print(f"{S:,} sessions, {len(ev):,} events, {args.partitions} parquet files; "
              f"model: {len(model.item_ids):,} items, layers {model.layers}", flush=True)
        del ev
        res = {}
        for nt in (1, 2):
            t0 = time.perf_counter()
            df = pd.read_parquet(f"{tmp}/in")
            m = model._snapshot()
            m.num_threads = nt
            ids, scores = m.recommend(df, k=20)
            out = gd.to_frame(m.last_session_ids, ids, scores)
            out.to_parquet(f"{tmp}/single{nt}.parquet", index=False)
            dt = time.perf_counter() - t0
            res[f"in-process {nt} thr"] = dt
            print(f"in-process, num_threads={nt}: {dt:.1f} s "
                  f"(this process's peak RSS so far {_peak_rss_mib():.0f} MiB)", flush=True)
            del df, out, ids, scores
        for n_workers in (1, 2):
            with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                          processes=True, dashboard_address=None,
                                          silence_logs=40) as cl, distributed.Client(cl) as c:
                t0 = time.perf_counter()
                ddf = dd.read_parquet(f"{tmp}/in")
                recs = gd.recommend(model, ddf, k=20, sessions_whole=True, num_threads=1)
                recs.to_parquet(f"{tmp}/dask{n_workers}", write_index=False)
                dt = time.perf_counter() - t0
                rss = c.run(_peak_rss_mib)
                pids = c.run(os.getpid)
                assert os.getpid() not in pids.values()
                print(f"Dask LocalCluster {n_workers} process(es) x 1 thread: {dt:.1f} s; "
                      f"peak RSS per worker {', '.join(f'{v:.0f}' for v in rss.values())} MiB",
                      flush=True)
        a = pd.read_parquet(f"{tmp}/single1.parquet").sort_values(["SessionId", "rank"])
        b = pd.read_parquet(f"{tmp}/dask2").sort_values(["SessionId", "rank"])
        same = (a["item"].to_numpy() == b["item"].to_numpy()).all() and \
            (a["score"].to_numpy() == b["score"].to_numpy()).all()
        print(f"Dask result identical to the in-process one: {bool(same)}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--trials", type=int, default=8)
    t.add_argument("--storage")
    d = sub.add_parser("dask")
    d.add_argument("--sessions", type=int, default=1_000_000)
    d.add_argument("--partitions", type=int, default=16)
    a = p.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    tune_bench(a) if a.what == "tune" else dask_bench(a)


if __name__ == "__main__":
    main()
