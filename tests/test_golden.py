"""Golden weight hashes: GRU4Rec's training arithmetic, bit for bit.

Every input mode x loss x momentum form x GRU cell trains a small model for one epoch at
one thread with a fixed seed, and the SHA-256 of all its weights must equal the
recorded one, at every SIMD level this CPU runs. A refactor of the trainer that
moves code must leave every hash unchanged; a deliberate change of the
arithmetic records new ones in its own commit:

    python tests/test_golden.py --write      # regenerate tests/data/golden_weights.json

Hashes are per SIMD level (the levels round differently) and assume x86-64 with
this repository's compiler flags (no -ffast-math, no FP contraction outside the
FMA kernels); elsewhere the test skips.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

import grurec
from grurec.synthetic import generate_sessions

GOLDEN = Path(__file__).parent / "data" / "golden_weights.json"

MODES = {"onehot": dict(embedding=0, constrained_embedding=False),
         "embedding": dict(embedding=12, constrained_embedding=False),
         "shared": dict(embedding=0, constrained_embedding=True)}
LOSSES = {"xe": dict(loss="cross-entropy", logq=1.0),
          "bprmax": dict(loss="bpr-max", bpreg=0.5, elu_param=0.5),
          "top1max": dict(loss="top1-max")}
MOMENTA = {"mu0": dict(momentum=0.0),
           "heavyball": dict(momentum=0.3, momentum_type="heavy-ball"),
           "nesterov": dict(momentum=0.3, momentum_type="nesterov")}
CELLS = {"after": dict(gru_cell="reset-after"), "before": dict(gru_cell="reset-before")}


def cases() -> list[str]:
    return [f"{m}-{l}-{u}-{c}" for m in MODES for l in LOSSES for u in MOMENTA for c in CELLS]


def _data():
    return generate_sessions(n_events=1500, n_items=120, seed=3)


def weights_hash(case: str, data=None) -> str:
    m, l, u, c = case.split("-")
    params = dict(layers=[10, 8], batch_size=6, n_sample=16, sample_alpha=0.5,
                  elu_param=0.0, bpreg=0.0, logq=0.0,  # the losses below set their own
                  dropout_p_embed=0.2, dropout_p_hidden=0.3, learning_rate=0.05,
                  n_epochs=1, num_threads=1, random_state=7, show_progress=False)
    params.update(MODES[m], **LOSSES[l], **MOMENTA[u], **CELLS[c])
    model = grurec.GRU4Rec(**params).fit(_data() if data is None else data)
    h = hashlib.sha256()
    for name in sorted(model.params):
        a = np.ascontiguousarray(model.params[name], np.float32)
        h.update(name.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _record() -> dict:
    data = _data()
    out = {}
    prev = grurec.simd_level()
    try:
        for level in grurec.available_simd_levels():
            grurec.set_simd_level(level)
            out[level] = {c: weights_hash(c, data) for c in cases()}
    finally:
        grurec.set_simd_level(prev)
    return out


def _table() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="golden hashes are recorded on x86-64")
@pytest.mark.parametrize("case", cases())
def test_training_arithmetic_is_unchanged(case, simd):
    table = _table()
    if simd not in table:
        pytest.skip(f"no golden hashes recorded for SIMD level {simd}")
    assert weights_hash(case) == table[simd][case], (
        f"{case} at {simd}: the trained weights changed; if the change of arithmetic is "
        "deliberate, record new hashes with `python tests/test_golden.py --write`")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    GOLDEN.write_text(json.dumps(_record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
