"""Issue 21's "Done when" figures for an AVX2 machine, in one run.

Runs the three benchmarks the bars are stated in, each in its own process with
its JSON in a scratch folder, and prints every bar with its figure, the CPU and
the SIMD level it ran at:

* top-k of 64 queries, N = 1M, d = 100, k = 20, 2 threads >= 6x NumPy
  (``bench_topk.py``, the plain call: no TopkIndex);
* GRU4Rec training at 2 threads: >= 60% of the machine's sgemm ceiling at the
  RetailRocket setting, >= 50% at RSC15 (``bench_train.py``, "% best": the
  fastest 1024^3 product of NumPy, grurec and torch measured in the same run);
* a live click + top-20 over 40k items after ``prepare_serving()``, under
  0.3 ms median (``bench_serving.py``, 3,000 calls).

On the AMD Zen 3 the bars are for, run it as it is. ``--cap-avx2`` stands in
for such a machine on a CPU with AVX-512: grurec at ``GRUREC_SIMD=avx2``, NumPy
on OpenBLAS's Haswell kernels (the ones it picks on Zen), MKL and ATen capped
at AVX2, so the competitors and the ceiling run AVX2 code too. The figures are
then the stand-in's, not the bar's (the output says which).

    python benchmarks/avx2_bars.py               # a few minutes; torch optional
    python benchmarks/avx2_bars.py --cap-avx2 --json benchmarks/results/avx2_bars.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import cpu_model  # noqa: E402

CAPS = {"GRUREC_SIMD": "avx2", "OPENBLAS_CORETYPE": "Haswell",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
RUNS = {
    "topk": ["bench_topk.py", "--items", "1000000", "--dims", "100", "--batches", "64",
             "--threads", "2"],
    "train": ["bench_train.py", "--events", "600000", "--threads", "2", "--impls", "grurec"],
    "serving": ["bench_serving.py", "--items", "40000"],
}


def run(name: str, out: Path, env: dict) -> dict:
    path = out / f"{name}.json"
    cmd = [sys.executable, str(HERE / RUNS[name][0]), *RUNS[name][1:], "--json", str(path)]
    print(f"running: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def bars(res: dict) -> list[dict]:
    out = []
    tk = res["topk"]
    row = next(r for r in tk["results"] if r["B"] == 64 and r["impl"] == "grurec")
    out.append(dict(bar="top-k batch 64, N 1M, d 100, 2 threads, vs NumPy", want=">= 6x",
                    got=f"{row['vs_numpy']:.2f}x", met=row["vs_numpy"] >= 6.0))
    tr = res["train"]
    for cfg, need in (("retailrocket_bprmax_shared", 0.60), ("rsc15_xe_shared_100", 0.50)):
        row = next(r for r in tr["results"]
                   if r["config"] == cfg and r["impl"] == "grurec" and r["threads"] == 2)
        out.append(dict(bar=f"training {cfg}, 2 threads, of the sgemm ceiling",
                        want=f">= {need:.0%}", got=f"{row['of_best_sgemm']:.1%}",
                        met=row["of_best_sgemm"] >= need))
    sv = res["serving"]
    row = next(r for r in sv["live"] if r["items"] == 40_000 and r["prepared"])
    out.append(dict(bar="live click + top-20, 40k items, prepare_serving()", want="< 300 us",
                    got=f"{row['median_us']:.0f} us", met=row["median_us"] < 300.0))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cap-avx2", action="store_true",
                   help="stand in for an AVX2-only CPU (module docstring)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.cap_avx2:
        env.update(CAPS)
    with tempfile.TemporaryDirectory() as tmp:
        res = {name: run(name, Path(tmp), env) for name in RUNS}
    rows = bars(res)
    simd = res["serving"]["simd"]
    caps = " (capped: " + " ".join(f"{k}={v}" for k, v in CAPS.items()) + ")" if args.cap_avx2 else ""
    # the level the benchmarks ran at (theirs, not this process's: --cap-avx2)
    print(f"CPU: {cpu_model()}; grurec SIMD level: {simd}{caps}")
    if args.cap_avx2:
        print("A stand-in for an AVX2-only CPU: the bars themselves are for the AMD Zen 3.")
    w = max(len(r["bar"]) for r in rows)
    print(f"\n{'bar':<{w}}  {'want':>9}  {'got':>9}  met")
    for r in rows:
        print(f"{r['bar']:<{w}}  {r['want']:>9}  {r['got']:>9}  {'yes' if r['met'] else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(cpu=cpu_model(), simd=simd, capped=args.cap_avx2,
                                             bars=rows, runs=res), indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
