"""The ``grurec`` command line.

``grurec quickstart`` is the README's first command. Until the trainer lands
it demonstrates the native core: it checks the GRU layer against a NumPy
computation of the same math and times a forward+backward step.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _numpy_gru_step(x, h, W_ih, W_hh, b):
    H = h.shape[1]
    g = x @ W_ih + b
    g[:, : 2 * H] += h @ W_hh[:, : 2 * H]
    rz = 1.0 / (1.0 + np.exp(-g[:, : 2 * H]))
    r, z = rz[:, :H], rz[:, H:]
    n = np.tanh(g[:, 2 * H :] + (r * h) @ W_hh[:, 2 * H :])
    return (1.0 - z) * h + z * n


def quickstart(args: argparse.Namespace) -> int:
    import grurec
    from grurec import _core

    print(f"grurec {grurec.__version__}: SIMD level {grurec.simd_level()} "
          f"(available: {', '.join(grurec.available_simd_levels())}), "
          f"{_core.default_num_threads()} threads, OpenMP {'on' if _core.openmp_enabled() else 'off'}")
    rng = np.random.default_rng(0)
    B, I, H = 80, 224, 224
    x = rng.standard_normal((B, I), dtype=np.float32)
    h0 = rng.uniform(-1, 1, (B, H)).astype(np.float32)
    W_ih = (rng.standard_normal((I, 3 * H)) * 0.1).astype(np.float32)
    W_hh = (rng.standard_normal((H, 3 * H)) * 0.1).astype(np.float32)
    b = np.zeros(3 * H, np.float32)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b)
    err = float(np.abs(h - _numpy_gru_step(x.astype(np.float64), h0, W_ih, W_hh, b)).max())
    print(f"GRU step B={B} I=H={H}: max |grurec - numpy| = {err:.2e}")

    flops = 18 * B * (I * H + H * H)
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b)
        grurec.gru_backward(np.ones_like(h), cache, x, h0, h, W_ih, W_hh)
        best = min(best, time.perf_counter() - t)
    print(f"forward+backward: {best * 1e6:.0f} us, {flops / best / 1e9:.1f} GFLOP/s "
          f"(best of {args.repeats}; see benchmarks/bench_gru.py for the comparison)")
    return 0 if err < 1e-4 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="grurec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="a short demo of what grurec does")
    q.add_argument("--repeats", type=int, default=50)
    q.set_defaults(func=quickstart)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
