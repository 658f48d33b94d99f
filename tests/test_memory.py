"""Memory (issue 6): resident memory stays flat over a thousand
fit/recommend/save/load cycles, and serving a 1M-item catalogue never
allocates an n_sessions x n_items matrix.

RSS is read from /proc/self/statm (psutil where available). Both tests are
skipped under AddressSanitizer, whose quarantine and shadow memory make RSS
meaningless (.ci/run's sanitizer step runs the rest of the suite).
benchmarks/bench_memory.py measures the full-size figures in the README.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import grurec
from grurec.synthetic import generate_sessions


def _under_asan() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return "libasan" in os.environ.get("LD_PRELOAD", "")


pytestmark = pytest.mark.skipif(_under_asan(), reason="RSS is meaningless under ASan")


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pytest.skip("no way to read the resident set size here")


CYCLES = 1000
WARMUP = 150


def test_rss_is_flat_over_a_thousand_fit_recommend_save_load_cycles(tmp_path):
    """Every cycle fits a model (native training), recommends, runs a live
    session, saves, loads and evaluates. A leak of one model per cycle would
    be ~0.25 MB x 1000; of one recommend result ~20 KB x 1000."""
    train = generate_sessions(n_events=600, n_items=300, mean_length=5, signal=0.8, seed=1)
    test = generate_sessions(n_events=150, n_items=300, mean_length=5, signal=0.8, seed=2)
    sd = grurec.to_sessions(train)
    path = tmp_path / "m.grurec"
    rng = np.random.default_rng(0)

    def cycle(i):
        m = grurec.GRU4Rec(layers=[32], batch_size=8, n_sample=32, n_epochs=1, num_threads=1,
                           random_state=i, show_progress=False).fit(sd)
        ids = m.item_ids
        sessions = [list(ids[rng.integers(0, len(ids), 4)]) for _ in range(64)]
        m.recommend(sessions, k=20, exclude_seen=True)
        live = m.new_session()
        for it in sessions[0]:
            live.click(it)
        live.recommend(10)
        m.save(path)
        back = grurec.load(path)
        back.recommend(sessions[:8], k=5)
        grurec.GRU4Rec.from_bytes(back.to_bytes())
        if i % 10 == 0:
            grurec.evaluate(back, test, cutoffs=(20,))

    for i in range(WARMUP):
        cycle(i)
    samples = [rss_bytes()]
    for i in range(CYCLES):
        cycle(WARMUP + i)
        if (i + 1) % 100 == 0:
            samples.append(rss_bytes())
    r0, r1 = samples[0], samples[-1]
    drift = (r1 - r0) / r0
    mb = [round(s / 2**20, 1) for s in samples]
    print(f"\nRSS over {CYCLES} cycles after {WARMUP} warm-up: {mb} MB; drift {100 * drift:+.2f}%")
    assert drift < 0.05, f"RSS grew {100 * drift:.1f}% over {CYCLES} cycles: {mb} MB"
    # and no steady climb: the last 500 cycles add less than 4 MB (8 KB a cycle)
    assert samples[-1] - samples[len(samples) // 2] < 4 * 2**20, mb


_PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import grurec
    from grurec.synthetic import generate_sessions

    N, H, S = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    def rss():
        with open("/proc/self/status") as f:
            return {l.split(":")[0]: int(l.split()[1]) * 1024 for l in f
                    if l.startswith(("VmRSS", "VmHWM"))}

    def reset_peak():  # Linux >= 4.0: peak RSS (VmHWM) := current RSS
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def peak():  # the peak since the last reset (else since start)
        return rss()["VmHWM"]
    rng = np.random.default_rng(0)
    m = grurec.GRU4Rec(layers=[H], num_threads=0, show_progress=False)
    m.item_ids = np.arange(N, dtype=np.int64) * 7 + 3
    m._init_params(N, rng)
    m.popularity = rng.integers(1, 100, N)
    m._opt, m._vel = {}, {}
    sessions = [list(m.item_ids[rng.integers(0, N, 3)]) for _ in range(S)]
    test = {"SessionId": np.repeat(np.arange(S // 5), 5),
            "ItemId": m.item_ids[rng.integers(0, N, (S // 5) * 5)],
            "Time": np.arange((S // 5) * 5, dtype=float)}
    m.recommend(sessions[:2], k=20, exclude_seen=True)  # lazy imports (pandas) first
    grurec.evaluate(m, {k: v[:10] for k, v in test.items()}, cutoffs=(20,))
    reset_peak()
    base = rss()["VmRSS"]
    ids, scores = m.recommend(sessions, k=20, exclude_seen=True)
    assert ids.shape == (S, 20)
    rec = peak() - base
    reset_peak()
    base2 = rss()["VmRSS"]
    r = grurec.evaluate(m, test, cutoffs=(20,))
    ev = peak() - base2
    # A baseline scores densely, a bounded chunk of sessions at a time.
    pop = grurec.baselines.Popularity()
    pop.fit({"SessionId": np.repeat(np.arange(N // 2), 2), "ItemId": m.item_ids,
             "Time": np.arange(N, dtype=float)})
    pop.recommend(sessions[:2], k=20)
    reset_peak()
    base3 = rss()["VmRSS"]
    ids, scores = pop.recommend(sessions[:200], k=20, exclude_seen=True)
    assert ids.shape == (200, 20)
    bl = peak() - base3
    print(json.dumps({"base": base, "recommend": rec, "evaluate": ev, "baseline": bl,
                      "n_events": r["n_events"], "peak_reset": reset_peak()}))
""")


def test_serving_a_million_items_never_allocates_sessions_x_items():
    """recommend(1,000 sessions) and evaluate(800 predictions) on a
    1,000,000-item model: a dense score matrix would be 4 GB (3.2 GB); even
    one 512-row dense chunk would be 2 GB. The peak grows by far less, and
    so it does for a baseline (Popularity) that scores densely in chunks."""
    N, H, S = 1_000_000, 8, 1_000
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(N), str(H), str(S)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mb = {k: round(v / 2**20, 1) for k, v in r.items() if k != "n_events"}
    print(f"\npeak RSS growth, N={N:,} items, H={H}: {mb} MB")
    dense = S * N * 4
    assert r["n_events"] == (S // 5) * 4
    assert r["recommend"] < 256 * 2**20, (mb, dense)
    assert r["evaluate"] < 256 * 2**20, (mb, dense)
    # Popularity.recommend(200 sessions): 800 MB dense; chunks of 32 MiB.
    assert r["baseline"] < 256 * 2**20, mb
