"""topk's int16 prefilter (cpp/topk_i16.cpp) alone: where it runs, and its
bound on every pair.

At the avx2 level, top-k tasks of 22 queries or more without rank-count
targets bound every (query, item) pair from an exact integer product of int16
queries and int8-valued items, and score canonically only the pairs whose
bound reaches the query's threshold (test_topk_prefilters.py runs the tests
it shares with the bf16 prefilter: bit-identical results on ordinary and
adversarial inputs). ``_core.topk_i16_probe`` returns the bound U itself.
"""
import numpy as np
import pytest

import grurec
from grurec import _core
from grurec.topk import _rank_counts, _topk_rank_counts
from topk_cases import at_level, bound_cases, canonical_scores, gaussian, prefilters

PF = prefilters()[1]
pytestmark = pytest.mark.skipif(not PF.available,
                                reason="the int16 prefilter needs a CPU with AVX2 and FMA")
run, same_topk = PF.run, PF.same_topk

N_BIG = 40000


@pytest.fixture
def avx2():
    """avx2 level, prefilter on; both restored after."""
    yield from PF.at_its_level()


def test_where_it_is_not_used(avx2, rng):
    """Below 22 queries, at other levels, with rank-count targets, and past
    4096 dimensions the call runs as before."""
    q, x, b = gaussian(rng, 21, N_BIG, 16)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)
    q, x, b = gaussian(rng, 40, N_BIG, 16)
    for level in [lv for lv in grurec.available_simd_levels() if lv != "avx2"]:
        _, st = run(lambda: at_level(level, lambda: grurec.topk(q, x, 5, num_threads=1)), True)
        assert st["pairs"] == 0
    t = rng.integers(0, N_BIG, 40).astype(np.int64)
    r0, _ = run(lambda: _topk_rank_counts(q, x, b, 5, t, 1), False)
    r1, st = run(lambda: _topk_rank_counts(q, x, b, 5, t, 1), True)
    assert st["pairs"] == 0
    for a, c in zip(r1, r0):
        np.testing.assert_array_equal(a, c)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=1), False)
    (g1, e1), st = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=1), True)
    assert st["pairs"] == 0
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    q, x, b = gaussian(rng, 24, 3000, 4097)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)


def test_bound_holds_for_every_pair(avx2, rng):
    """U >= the canonical avx2 score for every pair of adversarial inputs
    (NaN U never, every score being finite), and on Gaussian rows of 100
    dimensions U stays within 0.2 standard deviations of the scores (int8
    rows: about 0.08), so the prefilter has something to skip."""
    for name, q, x, bias in bound_cases(rng):
        U = _core.topk_i16_probe(q, x, bias)
        S = canonical_scores(q, x, bias)
        assert np.isfinite(S).all(), name
        bad = ~(U >= S)
        assert not bad.any(), (name, np.argwhere(bad)[:5], U[bad][:5], S[bad][:5])
        if name == "gaussian":
            assert np.median(U - S.astype(np.float64)) < 0.2 * S.std()
    # items with non-finite values or norms past 2^63, and such queries:
    # U is inf or NaN, never a finite value that could skip them
    q, x, b = gaussian(rng, 8, 64, 12)
    x[3, 2], x[7, 0], x[9, 1] = np.nan, np.inf, np.float32(3e19)
    q[5, 4] = np.float32(3e19)
    U = _core.topk_i16_probe(q, x, b)
    assert not np.isfinite(U[:, [3, 7, 9]]).any()
    assert not np.isfinite(U[5]).any()
    assert _core.topk_i16_probe(q[:, :1].repeat(4097, 1), x[:, :1].repeat(4097, 1)) is None
