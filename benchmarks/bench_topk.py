"""Top-k scoring, queries/s: grurec.topk vs NumPy, torch.topk and faiss IndexFlatIP.

For every item count N, dimension d, batch size B and thread count, in one
process, this times the k best items per query of ``queries[B, d] @ items[N, d].T``:

* ``grurec``: ``grurec.topk(queries, items, k, num_threads=...)`` (the public API,
  argument checks included);
* ``grurec-ex``: the same with topk's many-query prefilters switched off (the
  int16 one at the avx2 level, the bf16 one at avx512 with AVX512_BF16): every
  pair scored in float32, to show what the prefilter gains. Its results must equal
  ``grurec``'s bit for bit;
* ``grurec+ix``: the same against a ``grurec.TopkIndex(items)`` built before timing
  (like faiss's index): calls of up to 8 queries per task read its int8 copy of the
  table and score canonically only what the bound cannot rule out; larger batches
  run as ``grurec``. Its results must equal ``grurec``'s bit for bit;
* ``numpy``: ``q @ items.T``, ``np.argpartition`` for the k largest, then a sort of
  those k (what a careful NumPy user writes);
* ``torch``: ``q @ items.T`` and ``torch.topk`` (sorted), under ``torch.no_grad``;
* ``faiss``: ``faiss.IndexFlatIP.search`` (exact inner-product search; the index
  holds its own copy of the items, made before timing).

torch and faiss run only when importable (the table says when they were skipped).
NumPy and torch go through a batch in chunks of at most ``CHUNK_FLOATS / N`` queries
so that their score block stays at 256 MiB (a 1024 x 1M float32 score matrix would
be 4 GiB); grurec and faiss bound their memory themselves.

Before anything is timed, every implementation's top-k is checked against grurec's
on the benchmark's own inputs (score-tolerant: the k scores agree to a tolerance and
every returned item's exact float64 score reaches grurec's k-th score minus that
tolerance); a mismatch stops the run.

Batch 1 is a matrix-vector product that must read the whole item table once, so it
is bounded by memory bandwidth. The script measures the read bandwidth on the same
table with the same thread count (grurec's native ``stream_max``, a vector max over
the table, and NumPy's ``max`` over halves in threads; the faster counts) and reports
``bound = table bytes / bandwidth`` and grurec's time over it.

Threads: grurec gets ``num_threads``; NumPy's BLAS is limited with threadpoolctl
(without it, one child process per thread count with OPENBLAS/OMP/MKL_NUM_THREADS
set); torch with ``torch.set_num_threads``; faiss with ``faiss.omp_set_num_threads``.
Timing: each implementation in its own block after a pause (BLAS, OpenMP and torch
worker threads spin after a call), one untimed call (checked), then repeats of
enough calls to last ``min_time``; the median repeat is reported.

Usage: python benchmarks/bench_topk.py [--threads 1 2] [--items 100000 1000000]
       [--dims 64 100 256] [--batches 1 64 1024] [--k 20] [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

import numpy as np

import grurec
from grurec import _core

try:
    import torch
except ImportError:
    torch = None
try:
    import faiss
except ImportError:
    faiss = None

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_topk.json"
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHUNK_FLOATS = 1 << 26  # NumPy / torch score block: 64M floats = 256 MiB
# repeats, seconds per repeat, pause before each block (s); calls over LONG_CALL
# seconds get LONG_REPEATS repeats of one call.
FULL = dict(repeats=5, min_time=0.25, pause=0.3, long_call=1.0, long_repeats=2)
QUICK = dict(repeats=3, min_time=0.05, pause=0.1, long_call=0.3, long_repeats=1)
TARGET = dict(N=1_000_000, d=100, threads=2)  # the shape the issue sets targets for


# ---------------------------------------------------------------- implementations


def grurec_impl(items, k, threads):
    return lambda q: grurec.topk(q, items, k, num_threads=threads)


def grurec_exact_impl(items, k, threads):
    """grurec.topk with its many-query prefilters (int16 at avx2, bf16 at
    avx512) switched off: every pair scored in float32. Same results."""
    def run(q):
        i16, bf16 = _core.topk_i16_enabled(), _core.topk_bf16_enabled()
        _core.set_topk_i16(False)
        _core.set_topk_bf16(False)
        try:
            return grurec.topk(q, items, k, num_threads=threads)
        finally:
            _core.set_topk_i16(i16)
            _core.set_topk_bf16(bf16)

    return run


def grurec_index_impl(index, k, threads):
    return lambda q: grurec.topk(q, index, k, num_threads=threads)


def numpy_impl(items, k, threads):
    N = items.shape[0]
    chunk = max(1, CHUNK_FLOATS // N)

    def run(q):
        idx = np.empty((len(q), k), np.int64)
        val = np.empty((len(q), k), np.float32)
        for a in range(0, len(q), chunk):
            s = q[a:a + chunk] @ items.T
            part = np.argpartition(s, N - k, axis=1)[:, N - k:]
            pv = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-pv, axis=1, kind="stable")
            idx[a:a + chunk] = np.take_along_axis(part, order, axis=1)
            val[a:a + chunk] = np.take_along_axis(pv, order, axis=1)
        return idx, val

    return run


def torch_impl(items, k, threads):
    x = torch.from_numpy(items)
    N = items.shape[0]
    chunk = max(1, CHUNK_FLOATS // N)

    def run(q):
        out_i, out_v = [], []
        with torch.no_grad():
            qt = torch.from_numpy(q)
            for a in range(0, len(q), chunk):
                v, i = torch.topk(qt[a:a + chunk] @ x.T, k, dim=1, sorted=True)
                out_i.append(i)
                out_v.append(v)
        return torch.cat(out_i).numpy(), torch.cat(out_v).numpy()

    return run


def faiss_impl(index, k, threads):
    def run(q):
        D, I = index.search(q, k)
        return I, D

    return run


IMPLS = ("grurec", "grurec-ex", "grurec+ix", "numpy", "torch", "faiss")


def available(impl: str) -> bool:
    return {"torch": torch is not None, "faiss": faiss is not None}.get(impl, True)


def set_threads(n: int) -> None:
    if torch is not None:
        torch.set_num_threads(n)
    if faiss is not None:
        faiss.omp_set_num_threads(n)


# ---------------------------------------------------------------- checks


def check_same_topk(name, q, items, ref, got, k) -> float:
    """Raises unless got is a valid top-k by grurec's scores; returns the tolerance."""
    ri, rv = ref
    gi, gv = np.asarray(got[0]), np.asarray(got[1], dtype=np.float32)
    if gi.shape != ri.shape:
        raise AssertionError(f"{name}: shape {gi.shape}, expected {ri.shape}")
    tol = 1e-5 * float(np.abs(rv).max()) * np.sqrt(items.shape[1]) + 1e-6
    # the k scores agree
    if not np.allclose(np.sort(gv, axis=1), np.sort(rv, axis=1), rtol=0, atol=tol):
        raise AssertionError(f"{name}: top-k scores differ from grurec's by more than {tol:.2e}")
    # every returned item really scores at least grurec's k-th best (float64)
    for r in range(len(q)):
        if len(np.unique(gi[r])) != k:
            raise AssertionError(f"{name}: row {r} has repeated items")
        exact = items[gi[r]].astype(np.float64) @ q[r].astype(np.float64)
        if exact.min() < rv[r].min() - tol:
            raise AssertionError(f"{name}: row {r} returns an item scoring {exact.min():.6g} "
                                 f"< grurec's k-th best {rv[r].min():.6g} - {tol:.1e}")
    return tol


# ---------------------------------------------------------------- timing


def time_block(fn, cfg) -> list[float]:
    """Seconds per call for each repeat (first call untimed), after a pause."""
    time.sleep(cfg["pause"])
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    if one >= cfg["long_call"]:
        out = [one]
        for _ in range(cfg["long_repeats"] - 1):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out
    calls = max(1, int(cfg["min_time"] / max(one, 1e-7)))
    out = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls)
    return out


def read_bandwidth(items: np.ndarray, threads: int, cfg) -> dict:
    """Bytes/s reading the table once: grurec's native max and NumPy's max."""
    flat = items.reshape(-1)
    native = time_block(lambda: _core.stream_max(flat, threads), cfg)

    def numpy_max():
        parts = np.array_split(flat, threads)
        if threads == 1:
            parts[0].max()
            return
        ts = [threading.Thread(target=p.max) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    npy = time_block(numpy_max, cfg)
    b = items.nbytes
    out = dict(native_GBs=b / min(native) / 1e9, numpy_GBs=b / min(npy) / 1e9)
    out["GBs"] = max(out["native_GBs"], out["numpy_GBs"])
    out["bound_s"] = b / (out["GBs"] * 1e9)
    return out


# ---------------------------------------------------------------- the run


def run_here(args, cfg, progress) -> dict:
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rng = np.random.default_rng(0)
    rows, bandwidth, skipped, checks = [], [], [], []
    for impl in IMPLS:
        if not available(impl):
            skipped.append(f"{impl}: not importable, skipped")
    for N in args.items:
        for d in args.dims:
            items = rng.standard_normal((N, d), dtype=np.float32)
            queries = {B: rng.standard_normal((B, d), dtype=np.float32) for B in args.batches}
            gindex = grurec.TopkIndex(items)
            index = None
            if faiss is not None:
                index = faiss.IndexFlatIP(d)
                index.add(items)
            refs = {}
            for n in args.threads:
                ctx = threadpool_limits(limits=n) if threadpool_limits is not None else None
                if ctx is not None:
                    ctx.__enter__()
                try:
                    set_threads(n)
                    progress(f"N={N} d={d} threads={n}: read bandwidth")
                    bw = dict(N=N, d=d, threads=n, table_bytes=items.nbytes,
                              **read_bandwidth(items, n, cfg))
                    bandwidth.append(bw)
                    for B in args.batches:
                        q = queries[B]
                        fns = {"grurec": grurec_impl(items, args.k, n),
                               "grurec-ex": grurec_exact_impl(items, args.k, n),
                               "grurec+ix": grurec_index_impl(gindex, args.k, n),
                               "numpy": numpy_impl(items, args.k, n)}
                        if torch is not None:
                            fns["torch"] = torch_impl(items, args.k, n)
                        if index is not None:
                            fns["faiss"] = faiss_impl(index, args.k, n)
                        # check before timing (once per shape, at the first thread count;
                        # grurec's own result must not depend on the thread count)
                        got = fns["grurec"](q)
                        for other in ("grurec+ix", "grurec-ex"):
                            g2 = fns[other](q)
                            if not (np.array_equal(got[0], g2[0])
                                    and np.array_equal(got[1].view(np.uint32),
                                                       g2[1].view(np.uint32))):
                                raise AssertionError(f"{other}: N={N} d={d} B={B} differs from "
                                                     f"grurec")
                        if B not in refs:
                            refs[B] = got
                            for name, fn in fns.items():
                                if name not in ("grurec", "grurec+ix", "grurec-ex"):
                                    progress(f"N={N} d={d} B={B}: checking {name}")
                                    tol = check_same_topk(name, q, items, refs[B], fn(q), args.k)
                                    checks.append(dict(N=N, d=d, B=B, impl=name, tol=tol))
                        elif not (np.array_equal(got[0], refs[B][0])
                                  and np.array_equal(got[1], refs[B][1])):
                            raise AssertionError(f"grurec: N={N} d={d} B={B} differs between "
                                                 f"thread counts")
                        # rounds of all implementations, the order reversed every
                        # other round; each keeps its best round's median
                        rounds = {name: [] for name in fns}
                        for rnd in range(args.rounds):
                            flip = (len(rows) // len(fns) + rnd) % 2 == 1
                            for name in (list(fns)[::-1] if flip else list(fns)):
                                progress(f"N={N} d={d} B={B} threads={n} round {rnd + 1}: {name}")
                                rounds[name].append(time_block(lambda f=fns[name]: f(q), cfg))
                            if B == 1:  # the bound from the best bandwidth seen
                                progress(f"N={N} d={d} threads={n} round {rnd + 1}: read bandwidth")
                                again = read_bandwidth(items, n, cfg)
                                if again["GBs"] > bw["GBs"]:
                                    bw.update(again)
                        best = {name: min(rounds[name], key=statistics.median) for name in fns}
                        base = statistics.median(best["numpy"])
                        for name in fns:
                            med = statistics.median(best[name])
                            meds = [statistics.median(r) for r in rounds[name]]
                            row = dict(N=N, d=d, B=B, threads=n, impl=name, median_s=med,
                                       min_s=min(min(r) for r in rounds[name]), qps=B / med,
                                       vs_numpy=base / med, spread=max(meds) / med - 1.0,
                                       round_medians_s=meds, repeats_s=rounds[name])
                            if B == 1 and name in ("grurec", "grurec+ix"):
                                row["bound_s"] = bw["bound_s"]
                                row["x_bound"] = med / bw["bound_s"]
                            rows.append(row)
                finally:
                    if ctx is not None:
                        ctx.__exit__(None, None, None)
            del index, gindex, items
    return dict(benchmark="top-k scoring", k=args.k, settings=cfg, machine=machine_info(),
                load_average_at_start=load_at_start,
                bandwidth=bandwidth, checks=checks, skipped=skipped, results=rows)


def run_children(args, cfg) -> dict:
    """Without threadpoolctl: one child per thread count, BLAS pinned by environment."""
    merged = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.threads:
            path = Path(tmp) / f"{n}.json"
            env = dict(os.environ, **{k: str(n) for k in BLAS_ENV})
            cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(n), "--json",
                   str(path), "--k", str(args.k), "--items", *map(str, args.items), "--dims",
                   *map(str, args.dims), "--batches", *map(str, args.batches)]
            cmd += ["--rounds", str(args.rounds)] + (["--quick"] if args.quick else [])
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            part = json.loads(path.read_text())
            if merged is None:
                merged = part
            else:
                for key in ("bandwidth", "checks", "results"):
                    merged[key] += part[key]
    merged["machine"]["blas_env"] = {k: "per child process" for k in BLAS_ENV}
    return merged


# ---------------------------------------------------------------- reporting


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return dict(
        cpu_model=cpu,
        logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        platform=platform.platform(),
        python=platform.python_version(),
        grurec=grurec.__version__,
        simd_level=grurec.simd_level(),
        numpy=np.__version__,
        threadpool_info=threadpool_info() if threadpool_info is not None else None,
        blas_env={k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
        torch=torch.__version__ if torch is not None else None,
        faiss=getattr(faiss, "__version__", "?") if faiss is not None else None,
    )


def fmt_load(load) -> str:
    return "n/a" if not load else "/".join(f"{x:.1f}" for x in load)


def fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def format_table(result: dict) -> str:
    bw = {(b["N"], b["d"], b["threads"]): b for b in result["bandwidth"]}
    head = (f"{'N':>5}{'d':>5}{'batch':>7}{'thr':>4}  {'impl':<10}{'ms/batch':>11}{'min ms':>10}"
            f"{'queries/s':>12}{'vs NumPy':>10}  note")
    lines = [head, "-" * (len(head) + 30)]
    prev = None
    for r in result["results"]:
        key = (r["N"], r["d"], r["threads"])
        if prev is not None and key != prev:
            lines.append("")
        prev = key
        note = ""
        if "x_bound" in r:
            b = bw[key]
            note = (f"{r['x_bound']:.2f}x the bandwidth bound ({r['bound_s'] * 1e3:.2f} ms at "
                    f"{b['GBs']:.1f} GB/s)")
        lines.append(f"{fmt_n(r['N']):>5}{r['d']:>5}{r['B']:>7}{r['threads']:>4}  {r['impl']:<10}"
                     f"{r['median_s'] * 1e3:>11.2f}{r['min_s'] * 1e3:>10.2f}{r['qps']:>12.0f}"
                     f"{r['vs_numpy']:>9.2f}x  {note}")
    return "\n".join(lines)


def targets(result: dict) -> list[str]:
    """The issue's targets, where this run measured the shape they name."""
    rows = result["results"]
    out = []

    def get(impl, B, N=TARGET["N"], d=TARGET["d"], n=TARGET["threads"]):
        return next((r for r in rows if (r["impl"], r["B"], r["N"], r["d"], r["threads"])
                     == (impl, B, N, d, n)), None)

    g1, g64 = get("grurec", 1), get("grurec", 64)
    i1 = get("grurec+ix", 1)
    if i1:
        out.append(f"batch 1 with a TopkIndex: {i1['vs_numpy']:.2f}x NumPy (target >= 2.5x): "
                   f"{'met' if i1['vs_numpy'] >= 2.5 else 'NOT met'}; {i1['x_bound']:.2f}x the "
                   f"float32 table's bandwidth bound (it reads the int8 copy)")
    if g1:
        out.append(f"batch 1, stateless: {g1['vs_numpy']:.2f}x NumPy (target >= 2.5x): "
                   f"{'met' if g1['vs_numpy'] >= 2.5 else 'NOT met'}")
        out.append(f"batch 1: {g1['x_bound']:.2f}x the bandwidth bound (target <= 1.5x): "
                   f"{'met' if g1['x_bound'] <= 1.5 else 'NOT met'}")
    if g64:
        out.append(f"batch 64: {g64['vs_numpy']:.2f}x NumPy (target >= 6x): "
                   f"{'met' if g64['vs_numpy'] >= 6 else 'NOT met'}")
    behind = []
    for r in rows:
        if r["impl"] in ("torch", "faiss"):
            g = get("grurec", r["B"], r["N"], r["d"], r["threads"])
            gi = get("grurec+ix", r["B"], r["N"], r["d"], r["threads"])
            if gi and g and gi["median_s"] < g["median_s"]:
                g = gi  # faiss is an index too: compare like with like
            if g and g["median_s"] >= r["median_s"]:
                behind.append(f"{r['impl']} N={fmt_n(r['N'])} d={r['d']} B={r['B']} "
                              f"threads={r['threads']}")
    measured = [r for r in rows if r["impl"] in ("torch", "faiss")]
    if measured:
        out.append("ahead of torch and faiss at every measured shape (grurec with or without "
                   "its index): "
                   + ("met" if not behind else "NOT met (" + "; ".join(behind) + ")"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N")
    p.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000], metavar="N")
    p.add_argument("--dims", type=int, nargs="+", default=[64, 100, 256], metavar="D")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024], metavar="B")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of all implementations per shape (order reversed every other "
                        "round); each keeps its best round's median (default 1)")
    p.add_argument("--quick", action="store_true", help="short repeats: a smoke run")
    args = p.parse_args(argv)
    if min(args.threads) < 1 or args.k < 1 or min(args.items) < args.k or args.rounds < 1:
        p.error("need threads >= 1, k >= 1, items >= k and rounds >= 1")
    cfg = dict(QUICK if args.quick else FULL, quick=args.quick)

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    pinned = all(os.environ.get(k) == str(args.threads[0]) for k in BLAS_ENV)
    if threadpool_limits is None and not (len(args.threads) == 1 and pinned):
        result = run_children(args, cfg)
    else:
        result = run_here(args, cfg, progress)
    m = result["machine"]
    print(f"grurec {m['grurec']} ({m['simd_level']}), NumPy {m['numpy']}, torch {m['torch']}, "
          f"faiss {m['faiss']}, CPU: {m['cpu_model']} ({m['usable_cpus']} usable)")
    print(f"top-{result['k']} of queries[batch, d] @ items[N, d].T, float32, median of repeats "
          f"(best of {args.rounds} round(s)); "
          f"load average (1, 5, 15 min) at start {fmt_load(result.get('load_average_at_start'))}, "
          f"at end {fmt_load(m.get('load_average'))}\n")
    print(format_table(result))
    for s in result["skipped"]:
        print("* " + s)
    print(f"* checked before timing: {len(result['checks'])} (shape, implementation) pairs "
          "return grurec's top-k (score-tolerant)")
    print("* NumPy and torch go through large batches in chunks of <= 256 MiB of scores.")
    result["targets"] = targets(result)
    if result["targets"]:
        print(f"\nTargets (N={fmt_n(TARGET['N'])}, d={TARGET['d']}, k=20, "
              f"{TARGET['threads']} threads; {m['cpu_model']}, level {m['simd_level']}):")
        for t in result["targets"]:
            print("  " + t)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
