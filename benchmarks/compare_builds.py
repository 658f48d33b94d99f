"""Training throughput of two grurec builds, side by side in one run.

Each build is a Python interpreter with its own grurec installed (e.g. a venv of
an older commit). Rounds alternate between the builds (A B A B ...), each round a
fresh child process that trains GRU4Rec for one epoch on the same synthetic data
(generated once, cached) and reports events/s of the native epoch
(``model.history``). Alternating spreads drift of a shared machine over both
builds; the table gives the median per build and the ratio B / A.

The settings are issue 3's RSC15 and RetailRocket ones (the shapes of the official
parameter files: H 100 / batch 32 and H 224 / batch 80, 2,048 negatives), written
out here so that any build, old or new, trains the same hyperparameters (each with
its own defaults for what it does not know).

    python benchmarks/compare_builds.py A=/path/old/.venv/bin/python B=.venv/bin/python \\
        --threads 2 --rounds 3 --events 300000
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _machine import cpu_model  # (benchmarks/, the script's folder, is on sys.path)

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "rsc15": dict(loss="cross-entropy", layers=[100], batch_size=32, n_sample=2048,
                  sample_alpha=0.75, logq=1.0, dropout_p_embed=0.1, dropout_p_hidden=0.0,
                  learning_rate=0.1, momentum=0.0, constrained_embedding=True),
    "retailrocket": dict(loss="bpr-max", layers=[224], batch_size=80, n_sample=2048,
                         sample_alpha=0.4, logq=0.0, elu_param=0.5, bpreg=1.95,
                         dropout_p_embed=0.5, dropout_p_hidden=0.05, learning_rate=0.05,
                         momentum=0.4, constrained_embedding=True),
}

CHILD = r"""
import json, sys
import numpy as np, pandas as pd
import grurec
params, threads, path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
z = np.load(path)
df = pd.DataFrame({"SessionId": z["s"], "ItemId": z["i"], "Time": z["t"]})
m = grurec.GRU4Rec(**params, n_epochs=1, num_threads=threads, random_state=0,
                   show_progress=False).fit(df)
h = m.history[0]
print(json.dumps(dict(events_per_s=h["events"] / h["seconds"], simd=grurec.simd_level(),
                      version=grurec.__version__)))
"""


def data_file(n_events: int, n_items: int) -> Path:
    path = HERE / "results" / f"compare_{n_events}ev_{n_items}it.npz"
    if not path.exists():
        import numpy as np

        from grurec.synthetic import generate_sessions

        df = generate_sessions(n_events=n_events, n_items=n_items, seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, s=df.SessionId.to_numpy(), i=df.ItemId.to_numpy(),
                 t=df.Time.to_numpy())
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("builds", nargs=2, metavar="NAME=PYTHON")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--items", type=int, default=40_000)
    p.add_argument("--json", type=Path, default=HERE / "results" / "compare_builds.json")
    args = p.parse_args(argv)
    builds = [b.split("=", 1) for b in args.builds]
    path = data_file(args.events, args.items)
    runs: dict = {}
    for cfg in args.configs:
        for r in range(args.rounds):
            for name, py in builds:
                out = subprocess.run([py, "-c", CHILD, json.dumps(CONFIGS[cfg]),
                                      str(args.threads), str(path)],
                                     capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                runs.setdefault((cfg, name), []).append(res)
                print(f"{cfg} round {r + 1} {name}: {res['events_per_s']:,.0f} events/s",
                      file=sys.stderr, flush=True)
    (a, _), (b, _) = builds
    print(f"\nCPU: {cpu_model()}; SIMD {runs[(args.configs[0], a)][0]['simd']}; "
          f"{args.threads} threads; {args.events:,} events, {args.items:,} items; "
          f"median of {args.rounds} alternating rounds")
    print(f"{'config':<14}{a:>14}{b:>14}{'B / A':>8}")
    table = []
    for cfg in args.configs:
        ma = statistics.median(x["events_per_s"] for x in runs[(cfg, a)])
        mb = statistics.median(x["events_per_s"] for x in runs[(cfg, b)])
        table.append(dict(config=cfg, a=ma, b=mb, ratio=mb / ma))
        print(f"{cfg:<14}{ma:>14,.0f}{mb:>14,.0f}{mb / ma:>8.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(cpu=cpu_model(), threads=args.threads, builds=builds,
                                         table=table,
                                         runs={f"{c}/{n}": v for (c, n), v in runs.items()}),
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
