"""topk's bf16 prefilter (cpp/topk_bf16.cpp) alone: where it runs, the rank
counts it decides, and its bound on every pair.

With the prefilter, most (query, item) pairs are scored approximately in bf16
and only those whose approximation, widened by a rigorous error bound, can
still matter are scored canonically (test_topk_prefilters.py runs the tests
it shares with the int16 prefilter). ``_core.topk_bf16_probe`` checks the
bound itself on every pair.
"""
import numpy as np
import pytest

import grurec
from grurec import _core
from grurec.topk import _rank_counts, _topk_rank_counts
from topk_cases import at_level, bits, bound_cases, canonical_scores, gaussian, prefilters

PF = prefilters()[0]
pytestmark = pytest.mark.skipif(
    not PF.available,
    reason="the bf16 prefilter needs a CPU with AVX-512 and AVX512_BF16 (and a compiler "
           "with -mavx512bf16)",
)
run, same_topk = PF.run, PF.same_topk


@pytest.fixture
def avx512():
    """avx512 level, prefilter on; both restored after."""
    yield from PF.at_its_level()


N_BIG = 40000


def test_not_used_below_20_queries_or_off_avx512(avx512, rng):
    q, x, b = gaussian(rng, 19, N_BIG, 16)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)
    q, x, b = gaussian(rng, 40, N_BIG, 16)
    for level in ("scalar", "avx2"):
        _, st = run(lambda: at_level(level, lambda: grurec.topk(q, x, 5, num_threads=1)), True)
        assert st["pairs"] == 0


@pytest.mark.parametrize("d", [3, 64, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_rank_counts(avx512, nthreads, rng, d, with_bias):
    Q, k = 50, 20
    q, x, b = gaussian(rng, Q, N_BIG, d)
    bias = b if with_bias else None
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    order = np.argsort(-ref, axis=1)
    # targets at every depth: the best item, the k-th, the middle, the worst, none
    t = order[np.arange(Q), rng.choice([0, k - 1, 500, N_BIG // 2, N_BIG - 1], Q)]
    t[rng.random(Q) < 0.2] = -1

    def fused():
        i, s, g, e = _topk_rank_counts(q, x, bias, k, t, nthreads)
        return (i, s), (g, e)

    (r0, c0), st0 = run(fused, False)
    (r1, c1), st1 = run(fused, True)
    np.testing.assert_array_equal(r1[0], r0[0])
    np.testing.assert_array_equal(bits(r1[1]), bits(r0[1]))
    np.testing.assert_array_equal(c1[0], c0[0])
    np.testing.assert_array_equal(c1[1], c0[1])
    assert st0["pairs"] == 0 and st1["pairs"] > 0
    has = t >= 0
    # up to float32 rounding, the ranks are NumPy's
    rg = (ref[has] > ref[has, t[has]][:, None]).sum(1)
    assert np.abs(c1[0][has] - rg).max() <= 3
    assert (c1[0][~has] == -1).all() and (c1[1][~has] == -1).all()
    # _rank_counts (topk's pass with k = 1) agrees too
    tt = np.where(has, t, 0)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, tt, bias=bias, num_threads=nthreads), False)
    (g1, e1), st = run(lambda: _rank_counts(q, x, tt, bias=bias, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    assert st["pairs"] > 0


def test_bound_holds_for_every_pair(avx512, rng):
    """The probe returns the bounds L <= score <= U the prefilter decides by,
    for every pair; check them against the canonical scores on adversarial
    data, and that they are not vacuous on ordinary data."""
    cases = bound_cases(rng)
    for name, q, x, bias in cases:
        U, L = _core.topk_bf16_probe(q, x, bias)
        score = canonical_scores(q, x, bias)
        ok = np.isfinite(score)
        assert ok.all(), name
        assert (L <= score).all() and (score <= U).all(), name
        if name == "gaussian":
            # the width is the bound's: ~2 x 1.25 x 2^-7 ||q|| ||x||
            width = (U - L) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(x, axis=1))
            assert width.max() < 2 * 1.25 * 2 ** -7 * 1.02
            assert width.min() > 2 * 2 ** -7
