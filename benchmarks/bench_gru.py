"""One GRU step, forward + backward, in GFLOP/s: grurec vs NumPy vs torch.

For each GRU4Rec shape and thread count this times, in one process:

* grurec's native kernels, through the low-level ``grurec._core`` binding (no
  Python-side validation in the timed loop);
* the same math in NumPy float32 (BLAS matrix products, NumPy elementwise ops),
  checked against grurec before it is timed;
* ``torch.nn.GRUCell`` forward + autograd backward, when torch is importable;
* NumPy's float32 1024x1024x1024 matrix product, the machine's practical ceiling.

Every implementation is credited with the same FLOP count, the matrix products
only: 2B(3IH + 3H^2) forward, twice that backward, 18 B (IH + H^2) in all.

Timing: OpenBLAS's, libgomp's and torch's worker threads busy-wait for a while
after each call and would steal cores from the next implementation, so each one
is timed in its own block after a pause, with warm-up, then repeats of enough
calls to last a minimum time each (``FULL`` / ``QUICK`` below); the median (and
min) per call is kept. The whole round of implementations runs twice (full run)
(order reversed every other round) and the best median of the rounds is reported;
"spread" is how far the worst round's median is above the best one's.

BLAS threads are limited with threadpoolctl. Without it they can only be set
through OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS before NumPy is
imported, i.e. once per process, so each thread count then runs in a child
process of its own.

Usage: python benchmarks/bench_gru.py [--threads 1 2] [--json PATH] [--quick]
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

SHAPES = [(32, 100), (80, 224), (128, 512)]  # (B, I = H): the GRU4Rec sizes
SGEMM_N = 1024
# NumPy's BLAS is the ceiling the issue names; grurec's own sgemm is timed too,
# because on some CPUs (OpenBLAS without AVX-512 kernels for them) it is faster.
SGEMM_IMPLS = ("numpy", "grurec")
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_gru.json"
# repeats per block, seconds per repeat, rounds, pause before each block (s)
FULL = dict(repeats=7, min_time=0.1, rounds=2, pause=0.5)
QUICK = dict(repeats=3, min_time=0.02, rounds=1, pause=0.2)
TORCH_NOTE = (
    "torch.nn.GRUCell applies the reset gate after the recurrent product "
    "(n = tanh(x W_n + b_in + r * (h U_n + b_hn))), a slightly different formulation "
    "with the same matrix-product FLOPs; it is compared on FLOPs / time only."
)


def gru_flops(B: int, I: int, H: int) -> int:
    return 18 * B * (I * H + H * H)


# ---------------------------------------------------------------- NumPy GRU


def sigmoid_(a: np.ndarray) -> None:
    """In-place sigmoid via tanh (no overflow warnings for large |a|)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def numpy_gru_forward(x, h, W_ih, W_hh, b):
    """One step; returns (h_new, G, rh) with G = gate activations [r | z | n]."""
    H = h.shape[1]
    G = x @ W_ih  # input part of all three gates in one product
    G += b
    rz = G[:, : 2 * H]
    rz += h @ W_hh[:, : 2 * H]  # r and z recurrent parts in one product
    sigmoid_(rz)
    r, z, n = G[:, :H], G[:, H : 2 * H], G[:, 2 * H :]
    rh = r * h
    n += rh @ W_hh[:, 2 * H :]
    np.tanh(n, out=n)
    h_new = n - h  # (1 - z) h + z n = h + z (n - h)
    h_new *= z
    h_new += h
    return h_new, G, rh


def numpy_gru_backward(dh, G, rh, x, h, W_ih, W_hh):
    """Gradients of sum(h_new * dh): (dx, dh_prev, dW_ih, dW_hh, db)."""
    H = h.shape[1]
    r, z, n = G[:, :H], G[:, H : 2 * H], G[:, 2 * H :]
    dA = np.empty_like(G)  # gradient w.r.t. the gate pre-activations
    dA_r, dA_z, dA_n = dA[:, :H], dA[:, H : 2 * H], dA[:, 2 * H :]
    np.multiply(n, n, out=dA_n)  # dA_n = dh z (1 - n^2)
    np.subtract(1.0, dA_n, out=dA_n)
    dA_n *= z
    dA_n *= dh
    one_minus = 1.0 - z
    np.subtract(n, h, out=dA_z)  # dA_z = dh (n - h) z (1 - z)
    dA_z *= dh
    dA_z *= z
    dA_z *= one_minus
    dh_prev = one_minus  # dh (1 - z); one_minus is not needed after this
    dh_prev *= dh
    drh = dA_n @ W_hh[:, 2 * H :].T  # gradient w.r.t. r * h
    np.subtract(1.0, r, out=dA_r)  # dA_r = drh h r (1 - r)
    dA_r *= r
    dA_r *= h
    dA_r *= drh
    drh *= r
    dh_prev += drh
    dh_prev += dA[:, : 2 * H] @ W_hh[:, : 2 * H].T
    dx = dA @ W_ih.T
    dW_ih = x.T @ dA
    dW_hh = np.empty_like(W_hh)
    np.matmul(h.T, dA[:, : 2 * H], out=dW_hh[:, : 2 * H])
    np.matmul(rh.T, dA_n, out=dW_hh[:, 2 * H :])
    db = dA.sum(axis=0)
    return dx, dh_prev, dW_ih, dW_hh, db


# ---------------------------------------------------------------- the steps


def make_inputs(B: int, H: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Benchmark inputs (I = H); small weights keep accumulated gradients finite."""
    rng = np.random.default_rng(seed)
    I = H

    def rand(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    return dict(
        x=rand(1, B, I),
        h0=rand(B, H, scale=0.5),
        W_ih=rand(I, 3 * H, scale=0.1),
        W_hh=rand(H, 3 * H, scale=0.1),
        b=rand(3 * H, scale=0.1),
        dh=np.ones((1, B, H), np.float32),
    )


def grurec_step(inp: dict[str, np.ndarray], threads: int):
    """A closure running one grurec forward + backward; returns its buffers.

    The backward adds into the gradient buffers, so they accumulate over the
    timed calls; the small inputs keep them finite.
    """
    x, h0, W_ih, W_hh, b, dh = (inp[k] for k in ("x", "h0", "W_ih", "W_hh", "b", "dh"))
    T, B, I = x.shape
    H = h0.shape[1]
    o = dict(
        h=np.empty((T, B, H), np.float32),
        gates=np.empty((T, B, 3 * H), np.float32),
        rh=np.empty((T, B, H), np.float32),
        dx=np.zeros((T, B, I), np.float32),
        dh0=np.zeros((B, H), np.float32),
        dW_ih=np.zeros((I, 3 * H), np.float32),
        dW_hh=np.zeros((H, 3 * H), np.float32),
        db=np.zeros(3 * H, np.float32),
        dA=np.empty((T, B, 3 * H), np.float32),  # scratch, reused between calls
    )

    def step():
        _core.gru_forward(o["h"], o["gates"], o["rh"], x, h0, W_ih, W_hh, b, threads)
        _core.gru_backward(o["dx"], o["dh0"], o["dW_ih"], o["dW_hh"], o["db"], o["dA"], dh,
                           o["gates"], o["rh"], x, h0, o["h"], W_ih, W_hh, threads)

    return step, o


def numpy_step(inp: dict[str, np.ndarray]):
    x, h0, W_ih, W_hh, b, dh = (inp[k] for k in ("x", "h0", "W_ih", "W_hh", "b", "dh"))
    x, dh = x[0], dh[0]

    def step():
        h, G, rh = numpy_gru_forward(x, h0, W_ih, W_hh, b)
        return (h, G) + numpy_gru_backward(dh, G, rh, x, h0, W_ih, W_hh)

    return step


def torch_step(inp: dict[str, np.ndarray]):
    """GRUCell with the same weights (torch stores them transposed, gates r|z|n)."""
    _, B, I = inp["x"].shape
    H = inp["h0"].shape[1]
    cell = torch.nn.GRUCell(I, H)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(inp["W_ih"].T.copy()))
        cell.weight_hh.copy_(torch.from_numpy(inp["W_hh"].T.copy()))
        cell.bias_ih.copy_(torch.from_numpy(inp["b"]))
        cell.bias_hh.zero_()
    x = torch.from_numpy(inp["x"][0].copy()).requires_grad_()  # so dx is computed
    h0 = torch.from_numpy(inp["h0"].copy()).requires_grad_()
    dh = torch.from_numpy(inp["dh"][0].copy())

    def step():
        cell(x, h0).backward(dh)  # gradients accumulate in .grad

    return step


def make_step(impl: str, inp: dict[str, np.ndarray], threads: int):
    if impl == "grurec":
        return grurec_step(inp, threads)[0]
    return numpy_step(inp) if impl == "numpy" else torch_step(inp)


def sgemm_step(impl: str = "numpy", threads: int = 1):
    """The 1024^3 float32 product by NumPy's BLAS or by grurec's own sgemm."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    if impl == "grurec":
        return lambda: _core.sgemm(a, b, c, 1.0, 0.0, threads)
    return lambda: np.matmul(a, b, out=c)


def check_numpy_matches_grurec(inp: dict[str, np.ndarray], threads: int) -> dict[str, float]:
    """Fails loudly unless both compute the same outputs and gradients."""
    step, g = grurec_step(inp, threads)
    step()
    h, G, dx, dh0, dW_ih, dW_hh, db = numpy_step(inp)()
    pairs = dict(h=(g["h"][0], h), gates=(g["gates"][0], G), dx=(g["dx"][0], dx),
                 dh0=(g["dh0"], dh0), dW_ih=(g["dW_ih"], dW_ih), dW_hh=(g["dW_hh"], dW_hh),
                 db=(g["db"], db))
    for name, (ours, ref) in pairs.items():
        assert np.isfinite(ours).all(), f"grurec {name} is not finite"
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3, err_msg=f"NumPy vs grurec: {name}")
    return {name: float(np.abs(ours - ref).max()) for name, (ours, ref) in pairs.items()}


# ---------------------------------------------------------------- timing


def time_block(step, repeats: int, min_time: float, pause: float) -> list[float]:
    """Seconds per call for each repeat, after a pause and a warm-up."""
    time.sleep(pause)  # let other libraries' spinning worker threads go idle
    step()  # untimed: a first call may pay one-time costs (torch's lazy set-up)
    calls = 1
    while True:  # warm-up that also finds how many calls last min_time
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        if time.perf_counter() - t0 >= min_time:
            break
        calls *= 2
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        per_call.append((time.perf_counter() - t0) / calls)
    return per_call


def measure(threads: int, cfg: dict, progress) -> tuple[dict, list[dict]]:
    """All implementations at one thread count; returns (ceiling, rows)."""
    impls = ["grurec", "numpy"] + (["torch"] if torch is not None else [])
    blocks: dict[tuple, list[list[float]]] = {}  # (shape, impl) -> per-round repeat times
    inputs = {shape: make_inputs(*shape) for shape in SHAPES}
    if torch is not None:
        torch.set_num_threads(threads)
    for rnd in range(cfg["rounds"]):
        for simpl in SGEMM_IMPLS:
            progress(f"threads={threads} round {rnd + 1}/{cfg['rounds']}: {simpl} sgemm {SGEMM_N}^3")
            blocks.setdefault(("sgemm", simpl), []).append(
                time_block(sgemm_step(simpl, threads), cfg["repeats"], cfg["min_time"],
                           cfg["pause"]))
        for shape in SHAPES:
            for impl in (impls if rnd % 2 == 0 else impls[::-1]):
                progress(f"threads={threads} round {rnd + 1}/{cfg['rounds']}: B={shape[0]} "
                         f"I=H={shape[1]} {impl}")
                step = make_step(impl, inputs[shape], threads)
                blocks.setdefault((shape, impl), []).append(
                    time_block(step, cfg["repeats"], cfg["min_time"], cfg["pause"]))

    def summary(rounds: list[list[float]], flops: int) -> dict:
        medians = [statistics.median(r) for r in rounds]
        best = min(medians)
        return dict(median_s=best, min_s=min(min(r) for r in rounds), gflops=flops / best / 1e9,
                    spread=max(medians) / best - 1.0, round_medians_s=medians)

    ceiling = dict(threads=threads, **summary(blocks[("sgemm", "numpy")], 2 * SGEMM_N**3))
    ceiling["grurec_sgemm"] = summary(blocks[("sgemm", "grurec")], 2 * SGEMM_N**3)
    best_sgemm = max(ceiling["gflops"], ceiling["grurec_sgemm"]["gflops"])
    rows = []
    for (B, H) in SHAPES:
        flops = gru_flops(B, H, H)
        ref = summary(blocks[((B, H), "numpy")], flops)["gflops"]
        for impl in impls:
            s = summary(blocks[((B, H), impl)], flops)
            rows.append(dict(B=B, I=H, H=H, threads=threads, impl=impl, flops=flops, **s,
                             vs_numpy=s["gflops"] / ref,
                             of_sgemm=s["gflops"] / ceiling["gflops"],
                             of_best_sgemm=s["gflops"] / best_sgemm))
    return ceiling, rows


# ---------------------------------------------------------------- reporting


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):  # NumPy < 1.26 has no mode="dicts"
        blas = None
    return dict(
        cpu_model=cpu,
        logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        platform=platform.platform(),
        python=platform.python_version(),
        grurec=grurec.__version__,
        simd_level=grurec.simd_level(),
        numpy=np.__version__,
        numpy_blas=blas,
        threadpool_info=threadpool_info() if threadpool_info is not None else None,
        blas_env={k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        torch=torch.__version__ if torch is not None else None,
    )


def format_table(ceilings: list[dict], rows: list[dict]) -> str:
    head = (f"{'shape':<18}{'thr':>4}  {'impl':<16}{'median us':>11}{'min us':>11}"
            f"{'GFLOP/s':>9}{'vs NumPy':>10}{'% sgemm':>9}{'% best':>8}{'spread':>8}")
    lines = [head, "-" * len(head)]
    for c in ceilings:
        n = c["threads"]
        g = c["grurec_sgemm"]
        best = max(c["gflops"], g["gflops"])
        for name, s in (("numpy sgemm", c), ("grurec sgemm", g)):
            lines.append(f"{'1024^3 matmul':<18}{n:>4}  {name:<16}{s['median_s'] * 1e6:>11.0f}"
                         f"{s['min_s'] * 1e6:>11.0f}{s['gflops']:>9.1f}{'':>10}"
                         f"{s['gflops'] / c['gflops'] * 100:>8.0f}%{s['gflops'] / best * 100:>7.0f}%"
                         f"{s['spread'] * 100:>7.1f}%")
        for r in (r for r in rows if r["threads"] == n):
            shape = f"B={r['B']} I=H={r['H']}"
            lines.append(f"{shape:<18}{n:>4}  {r['impl']:<16}{r['median_s'] * 1e6:>11.1f}"
                         f"{r['min_s'] * 1e6:>11.1f}{r['gflops']:>9.1f}{r['vs_numpy']:>9.2f}x"
                         f"{r['of_sgemm'] * 100:>8.0f}%{r['of_best_sgemm'] * 100:>7.0f}%"
                         f"{r['spread'] * 100:>7.1f}%")
        lines.append("")
    return "\n".join(lines)


def notes(cfg: dict) -> list[str]:
    out = [
        "FLOPs per step (matrix products only, same count for every implementation): "
        "18 B (I H + H^2).",
        f"median/min: seconds per fwd+bwd step; best median of {cfg['rounds']} round(s) of "
        f"{cfg['repeats']} repeats x >= {cfg['min_time']} s; spread: worst round's median "
        "over the best one's.",
        "vs NumPy: GFLOP/s over the NumPy GRU's at the same shape and threads; "
        "% sgemm: over NumPy's 1024^3 float32 matmul at the same threads; % best: over "
        "the faster of NumPy's and grurec's own 1024^3 sgemm (the practical ceiling).",
    ]
    out.append(TORCH_NOTE if torch is not None else "torch is not importable: GRUCell skipped.")
    if threadpool_limits is None:
        out.append("threadpoolctl is not installed: BLAS threads were set through the "
                   "environment, one child process per thread count.")
    return out


# ---------------------------------------------------------------- main


def run_children(args, cfg: dict) -> dict:
    """Without threadpoolctl: one child per thread count, BLAS pinned by environment."""
    merged = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.threads:
            path = Path(tmp) / f"{n}.json"
            env = dict(os.environ, **{k: str(n) for k in BLAS_ENV})
            cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(n),
                   "--json", str(path)] + (["--quick"] if args.quick else [])
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            part = json.loads(path.read_text())
            if merged is None:
                merged = part
            else:
                merged["ceilings"] += part["ceilings"]
                merged["results"] += part["results"]
                merged["max_abs_diff_numpy_vs_grurec"].update(part["max_abs_diff_numpy_vs_grurec"])
    merged["machine"]["blas_env"] = {k: "per child process" for k in BLAS_ENV}
    return merged


def run_here(args, cfg: dict) -> dict:
    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    correctness = {f"B={B} I=H={H} threads={n}": check_numpy_matches_grurec(make_inputs(B, H), n)
                   for n in args.threads for B, H in SHAPES}
    progress("NumPy GRU matches grurec (outputs and all gradients, rtol=atol=1e-3)")
    ceilings, rows = [], []
    for n in args.threads:
        if threadpool_limits is not None:
            with threadpool_limits(limits=n, user_api="blas"):
                c, r = measure(n, cfg, progress)
        else:
            c, r = measure(n, cfg, progress)
        ceilings.append(c)
        rows += r
    return dict(benchmark="GRU step forward+backward", shapes=SHAPES, settings=cfg,
                machine=machine_info(), max_abs_diff_numpy_vs_grurec=correctness,
                ceilings=ceilings, results=rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="thread counts to measure (default: 1 2)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"where to write the results (default: {DEFAULT_JSON})")
    p.add_argument("--quick", action="store_true", help="few, short repeats: a smoke run")
    args = p.parse_args(argv)
    if min(args.threads) < 1:
        p.error("--threads must be >= 1")
    cfg = dict(QUICK if args.quick else FULL, quick=args.quick)

    # Without threadpoolctl BLAS threads are fixed at NumPy's import: measure here
    # only if this process was started pinned to the one count asked for.
    pinned = all(os.environ.get(k) == str(args.threads[0]) for k in BLAS_ENV)
    if threadpool_limits is None and not (len(args.threads) == 1 and pinned):
        result = run_children(args, cfg)
    else:
        result = run_here(args, cfg)
    result["notes"] = notes(cfg)

    print(f"grurec {result['machine']['grurec']} ({result['machine']['simd_level']}), "
          f"NumPy {result['machine']['numpy']}, torch {result['machine']['torch']}, "
          f"CPU: {result['machine']['cpu_model']} ({result['machine']['usable_cpus']} usable)")
    print("One GRU step, forward + backward, float32\n")
    print(format_table(result["ceilings"], result["results"]))
    print("\n".join("* " + n for n in result["notes"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
