"""topk's bf16 prefilter (cpp/topk_bf16.cpp) changes the work, never the results.

With the prefilter, most (query, item) pairs are scored approximately in bf16
and only those whose approximation, widened by a rigorous error bound, can
still matter are scored canonically. Every test here runs the same call with
the prefilter off and on at the avx512 level and requires bit-identical
indices, scores (compared as bit patterns) and rank counts, plus agreement
with the avx2 level (the same canonical scores) and, on integer data, with
the scalar level and exact NumPy. The adversarial cases aim at the bound:
near-ties below bf16 precision, values over 60 orders of magnitude,
subnormals, huge norms, overflow. ``_core.topk_bf16_stats`` shows that the
prefilter actually ran (and how many pairs it passed on), so no test passes
by silently taking the float32 path; ``_core.topk_bf16_probe`` checks the
bound itself on every pair.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import grurec
from grurec import _core
from grurec.topk import _rank_counts, _topk_rank_counts
from topk_cases import assert_same, bits, gaussian, wide_magnitudes

pytestmark = pytest.mark.skipif(
    not _core.topk_bf16_available() or "avx512" not in grurec.available_simd_levels(),
    reason="the bf16 prefilter needs a CPU with AVX-512 and AVX512_BF16 (and a compiler "
           "with -mavx512bf16)",
)


@pytest.fixture
def avx512():
    """avx512 level, prefilter on; both restored after."""
    level, on = grurec.simd_level(), _core.topk_bf16_enabled()
    grurec.set_simd_level("avx512")
    _core.set_topk_bf16(True)
    yield
    grurec.set_simd_level(level)
    _core.set_topk_bf16(on)


def run(fn, on):
    """fn() with the prefilter on or off; (result, stats of that call)."""
    _core.set_topk_bf16(on)
    _core.topk_bf16_stats(True)
    try:
        out = fn()
    finally:
        _core.set_topk_bf16(True)
    return out, _core.topk_bf16_stats(True)


def same_topk(fn, used=True):
    """fn() -> (idx, scores) identical with the prefilter off and on; returns
    the result and the prefilter's stats. used: the prefilter must have scored
    pairs (True), or the call must be one it does not take (False), or None
    (either)."""
    (i0, v0), st0 = run(fn, False)
    (i1, v1), st1 = run(fn, True)
    assert st0["pairs"] == 0
    assert_same((i1, v1), (i0, v0), st1, used, "blocks_bf16")
    return (i1, v1), st1


def at_level(level, fn):
    before = grurec.simd_level()
    grurec.set_simd_level(level)
    try:
        return fn()
    finally:
        grurec.set_simd_level(before)


# Enough items that every task (the item range a thread takes, ~1/16 of the
# table at 2 threads) has blocks after its first one, which the prefilter
# needs (the first sets the thresholds).
N_BIG = 40000


@pytest.mark.parametrize("d", [1, 2, 3, 31, 100, 256])
@pytest.mark.parametrize("k", [1, 20, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_same_as_float32_path(avx512, nthreads, rng, d, k, with_bias):
    q, x, b = gaussian(rng, 40, N_BIG, d)
    bias = b if with_bias else None
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
    # the avx2 level computes the same canonical scores without the prefilter
    i2, v2 = at_level("avx2", lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
    np.testing.assert_array_equal(idx, i2)
    np.testing.assert_array_equal(bits(val), bits(v2))
    # and it is a top-k of the exact scores (float64), up to float32 rounding
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    tol = 4e-6 * (np.abs(q).astype(np.float64) @ np.abs(x.T).astype(np.float64)).max() + 1e-5
    np.testing.assert_allclose(val, np.take_along_axis(ref, idx, 1), rtol=0, atol=tol)
    kth = np.sort(ref, axis=1)[:, -k]
    np.testing.assert_array_less(kth - 2 * tol, val[:, -1])
    assert st["exact"] < 0.5 * st["pairs"], st  # (test_prefilter_skips_most_pairs: how few)


def test_prefilter_skips_most_pairs(avx512, nthreads, rng):
    """Timing-free evidence of the speed-up: on an ordinary table almost every
    pair is decided by its bf16 approximation."""
    q, x, b = gaussian(rng, 64, 200_000, 64)
    _, st = same_topk(lambda: grurec.topk(q, x, 20, bias=b, num_threads=nthreads))
    assert st["pairs"] > 0.9 * 64 * 200_000
    assert st["exact"] < 0.02 * st["pairs"], st  # ~0.2% at 1 thread, ~1.5% at 2 here


@pytest.mark.parametrize("Q", [20, 21, 33, 48, 64, 70, 300])
def test_query_counts_and_lane_padding(avx512, nthreads, rng, Q):
    q, x, b = gaussian(rng, Q, N_BIG, 24)
    same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads))


@pytest.mark.parametrize("Q", [257, 529])
def test_last_query_block_with_fewer_lane_groups(avx512, nthreads, rng, Q):
    """Regression: with more than 256 queries the queries go in blocks, and
    the last block may span fewer groups of 16 lanes (Q = 257: blocks of 129
    and 128 queries, 9 and 8 groups). The masks the scan writes for it have
    that block's own stride; reading them with the full block's stride
    assigned survivors to the wrong queries and crashed evaluate()."""
    q, x, b = gaussian(rng, Q, 8000, 24)
    same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads))
    t = rng.integers(0, 8000, Q).astype(np.int64)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), st = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    assert st["pairs"] > 0


def test_not_used_below_20_queries_or_off_avx512(avx512, rng):
    q, x, b = gaussian(rng, 19, N_BIG, 16)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)
    q, x, b = gaussian(rng, 40, N_BIG, 16)
    for level in ("scalar", "avx2"):
        _, st = run(lambda: at_level(level, lambda: grurec.topk(q, x, 5, num_threads=1)), True)
        assert st["pairs"] == 0


def test_exclusions_and_allowed(avx512, nthreads, rng):
    Q, d, k = 40, 20, 25
    q, x, b = gaussian(rng, Q, N_BIG, d)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    best = np.argsort(-ref, axis=1)[:, :3 * k]  # exclude many of the true best
    excl = [np.concatenate([best[i, ::2], rng.integers(0, N_BIG, 50)]) for i in range(Q)]
    excl[3] = None
    for frac in (1.0, 0.5, 0.01):
        allowed = rng.random(N_BIG) < frac
        # (at 1% a task's items may hold fewer than k allowed ones: its
        # thresholds stay -inf and it never gets to the prefilter)
        (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, exclude=excl,
                                                      allowed=allowed, num_threads=nthreads),
                                  used=True if frac > 0.1 else None)
        for i in range(Q):
            got = idx[i][idx[i] >= 0]
            assert allowed[got].all()
            if excl[i] is not None:
                assert not np.isin(got, excl[i]).any()


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


# ---------------------------------------------------------------- adversarial

@pytest.mark.parametrize("lo,hi", [(-1, 1), (-3, 3)])
def test_integer_data_ties_exact_at_every_level(avx512, nthreads, rng, lo, hi):
    """Small integers: scores are exact in any order, so every level and
    NumPy agree exactly, and exact ties are everywhere."""
    Q, N, d, k = 48, N_BIG, 12, 50
    q = rng.integers(lo, hi + 1, (Q, d)).astype(np.float32)
    x = rng.integers(lo, hi + 1, (N, d)).astype(np.float32)
    b = rng.integers(-2, 3, N).astype(np.float32)
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    ridx = np.stack([np.lexsort((np.arange(N), -r))[:k] for r in ref])
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, np.take_along_axis(ref, ridx, 1).astype(np.float32))
    for level in ("scalar", "avx2"):
        il, vl = at_level(level, lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
        np.testing.assert_array_equal(il, idx)
        np.testing.assert_array_equal(bits(vl), bits(val))
    t = rng.integers(0, N, Q)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    ts = ref[np.arange(Q), t][:, None]
    np.testing.assert_array_equal(g1, (ref > ts).sum(1))
    np.testing.assert_array_equal(e1, (ref == ts).sum(1) - 1)


def test_backs_off_where_most_pairs_need_the_exact_score(avx512, nthreads, rng):
    """One item row repeated: every score ties, every pair survives the
    prefilter; after such a block the task pauses it (2, 4, ... blocks), so
    most blocks run without it, and the answer is still the lowest indices."""
    Q, N, d, k = 32, 200_000, 16, 7  # ~13 blocks per task at 2 threads
    q = rng.standard_normal((Q, d)).astype(np.float32)
    x = np.tile(rng.standard_normal(d).astype(np.float32), (N, 1))
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads))
    np.testing.assert_array_equal(idx, np.tile(np.arange(k), (Q, 1)))
    assert st["blocks_plain"] > 2 * st["blocks_bf16"], st
    assert st["exact"] == st["pairs"], st  # (every pair it did see went on)


def test_near_ties_below_bf16_precision(avx512, nthreads, rng):
    """Clusters of items that differ only far below bf16 precision (their bf16
    approximations are equal, their float32 scores are not), planted at the
    top of a Gaussian table and around the targets' scores."""
    Q, N, d, k = 32, N_BIG, 64, 20
    q, x, b = gaussian(rng, Q, N, d)
    base = rng.standard_normal(d).astype(np.float32)
    pos = rng.choice(np.arange(N // 4, N), 600, replace=False)
    x[pos] = base + (1e-5 * rng.standard_normal((600, d))).astype(np.float32)
    b[pos] = 100.0  # the cluster is every query's top
    bf = x[pos].astype(np.float32)
    # their bf16 images (round to nearest even on the upper 16 bits) coincide
    u = bf.view(np.uint32).astype(np.uint64)
    r16 = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16)
    assert (r16 == r16[0]).mean() > 0.9
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    assert np.isin(idx, pos).all()
    assert st["exact"] >= 0.3 * Q * 600  # most of it was scored exactly
    # the order inside the cluster is float32's, not bf16's (not all tied)
    assert len(np.unique(val)) > Q
    t = np.asarray(pos[rng.integers(0, 600, Q)], np.int64)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), st = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    assert st["pairs"] > 0 and 0 < g1.max() < 600


def test_magnitudes_from_1e_minus_30_to_1e30(avx512, nthreads, rng):
    Q, N, d, k = 24, N_BIG, 16, 10
    q, x, b = wide_magnitudes(rng, Q, N, d)
    for bias in (None, b):
        (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=bias,
                                                       num_threads=nthreads))
        assert np.isfinite(val).all()
        assert st["exact"] < st["pairs"]


def test_subnormal_inputs(avx512, nthreads, rng):
    """Subnormal items against large queries: bf16 conversion and vdpbf16ps
    flush subnormals to zero, yet the products are far from negligible."""
    Q, N, d, k = 20, N_BIG, 8, 15
    tiny = np.float32(1e-40)  # subnormal
    x = (rng.standard_normal((N, d)) * tiny).astype(np.float32)
    assert (np.abs(x[x != 0]) < np.finfo(np.float32).tiny).all()
    q = (rng.standard_normal((Q, d)) * 1e30).astype(np.float32)
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads))
    assert (val != 0).all()
    # and mixed: subnormal and normal entries in the same rows, small queries
    x2 = rng.standard_normal((N, d)).astype(np.float32)
    x2[:, ::2] = (rng.standard_normal((N, (d + 1) // 2)) * tiny).astype(np.float32)
    q2 = (rng.standard_normal((Q, d)) * 1e-20).astype(np.float32)
    q2[:, 1] = np.float32(1e-39)
    same_topk(lambda: grurec.topk(q2, x2, k, bias=np.full(N, 1e-38, np.float32),
                                  num_threads=nthreads))


def test_huge_norms_orthogonal_to_the_query(avx512, nthreads, rng):
    Q, N, d, k = 20, N_BIG, 10, 10
    q, x, b = gaussian(rng, Q, N, d)
    q[:, 0] = 0.0  # every query ignores dimension 0 ...
    huge = rng.choice(np.arange(N // 8, N), 200, replace=False)
    x[huge, 0] = np.float32(1e15)  # ... where these items are enormous
    x[huge[:50], 0] = np.float32(3e19)  # norm past 2^63
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    np.testing.assert_allclose(val, np.sort(ref, 1)[:, ::-1][:, :k], rtol=1e-5, atol=1e-4)


def test_negative_scores_everywhere(avx512, nthreads, rng):
    Q, N, d, k = 30, N_BIG, 40, 20
    q = np.abs(rng.standard_normal((Q, d))).astype(np.float32)
    x = -np.abs(rng.standard_normal((N, d))).astype(np.float32)
    b = -np.abs(rng.standard_normal(N)).astype(np.float32) * 100
    for bias in (None, b):
        (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
        assert (val < 0).all()


def test_non_finite_reported_as_before(avx512, rng):
    """NaN / inf items and float32 overflow (both signs, from products or
    from the bias) raise the same errors with the prefilter: their
    approximations never let them be skipped."""
    Q, N, d = 32, N_BIG, 12
    q, x, b = gaussian(rng, Q, N, d)
    late = N - 123  # far past the first block of every task
    for val, msg in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        bad = x.copy()
        bad[late, 5] = val
        for on in (False, True):
            _core.set_topk_bf16(on)
            with pytest.raises(ValueError, match=rf"items: non-finite value {msg} at index "
                                                 rf"\({late}, 5\)"):
                grurec.topk(q, bad, 5, num_threads=2)
            with pytest.raises(ValueError, match="items: non-finite"):
                _rank_counts(q, bad, np.zeros(Q, np.int64), num_threads=2)
    _core.set_topk_bf16(True)
    qq = np.abs(q) + 1.0
    for sign in (1.0, -1.0):
        big = x.copy()
        big[late] = np.float32(sign * 1e38)  # the score overflows to +-inf
        for on in (False, True):
            _core.set_topk_bf16(on)
            with pytest.raises(ValueError, match="overflow"):
                grurec.topk(qq, big, 5, num_threads=2)
        bb = b.copy()
        bb[late] = np.float32(sign * 3.3e38)  # the bias tips a finite score over
        xx = x.copy()
        xx[late] = np.float32(sign * 1e37 / d)
        for on in (False, True):
            _core.set_topk_bf16(on)
            with pytest.raises(ValueError, match="overflow"):
                grurec.topk(qq, xx, 5, bias=bb, num_threads=2)
    _core.set_topk_bf16(True)
    # Where only the prefilter's guards save the report, because the bf16
    # sum goes to -inf like the score: products overflowing; a score and a
    # bias under 2^126 each, with norms (finite squares) of 2^63 and more;
    # a bias of 2^126 and more with norms under 2^63.
    q3 = np.full((Q, 3), 1.5e19, np.float32)
    x3 = rng.standard_normal((N, 3)).astype(np.float32)
    x3[late] = np.float32(-1.5e19)  # score -6.75e38
    q2 = np.full((Q, 1), 1.8e19, np.float32)
    x2 = rng.standard_normal((N, 1)).astype(np.float32)
    x2[late] = np.float32(-1.8e19)
    b2 = np.zeros(N, np.float32)
    b2[late] = np.float32(-5e37)  # -3.24e38 - 5e37 overflows
    q1 = np.full((Q, 1), 9e18, np.float32)  # norms just under 2^63
    x1 = rng.standard_normal((N, 1)).astype(np.float32)
    x1[late] = np.float32(-9e18)
    b1 = np.zeros(N, np.float32)
    b1[late] = np.float32(-3.3e38)  # -8.1e37 - 3.3e38 overflows
    for on in (False, True):
        _core.set_topk_bf16(on)
        _core.topk_bf16_stats(True)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q3, x3, 5, num_threads=2)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q2, x2, 5, bias=b2, num_threads=2)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q1, x1, 5, bias=b1, num_threads=2)
        assert (_core.topk_bf16_stats(True)["pairs"] > 0) == on
    _core.set_topk_bf16(True)


def test_bound_holds_for_every_pair(avx512, rng):
    """The probe returns the bounds L <= score <= U the prefilter decides by,
    for every pair; check them against the canonical scores on adversarial
    data, and that they are not vacuous on ordinary data."""
    Q, N = 20, 3000
    cases = []
    q, x, b = gaussian(rng, Q, N, 100)
    cases.append(("gaussian", q, x, b))
    base = rng.standard_normal(33).astype(np.float32)
    x = base + (1e-6 * rng.standard_normal((N, 33))).astype(np.float32)
    cases.append(("near-ties", rng.standard_normal((Q, 33)).astype(np.float32), x, None))
    s = lambda shape: np.where(rng.random(shape) < 0.5, -1.0, 1.0)  # noqa: E731
    cases.append(("magnitudes", (s((Q, 16)) * 10.0 ** rng.uniform(-30, 5, (Q, 16))).astype(
        np.float32), (s((N, 16)) * 10.0 ** rng.uniform(-30, 30, (N, 16))).astype(np.float32),
        (s(N) * 10.0 ** rng.uniform(-30, 30, N)).astype(np.float32)))
    cases.append(("subnormal", (rng.standard_normal((Q, 7)) * 1e30).astype(np.float32),
                  (rng.standard_normal((N, 7)) * 1e-40).astype(np.float32), None))
    cases.append(("tiny-and-huge-bias", rng.standard_normal((Q, 5)).astype(np.float32),
                  rng.standard_normal((N, 5)).astype(np.float32),
                  (s(N) * 10.0 ** rng.uniform(-40, 37, N)).astype(np.float32)))
    cases.append(("d=1", rng.standard_normal((Q, 1)).astype(np.float32),
                  rng.standard_normal((N, 1)).astype(np.float32), None))
    for name, q, x, bias in cases:
        U, L = _core.topk_bf16_probe(q, x, bias)
        _core.set_topk_bf16(False)
        idx, val = grurec.topk(q, x, N, bias=bias, num_threads=1)
        _core.set_topk_bf16(True)
        score = np.empty_like(val)
        np.put_along_axis(score, idx, val, axis=1)
        ok = np.isfinite(score)
        assert ok.all(), name
        assert (L <= score).all() and (score <= U).all(), name
        if name == "gaussian":
            # the width is the bound's: ~2 x 1.25 x 2^-7 ||q|| ||x||
            width = (U - L) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(x, axis=1))
            assert width.max() < 2 * 1.25 * 2 ** -7 * 1.02
            assert width.min() > 2 * 2 ** -7


def test_switch_and_environment(avx512, rng):
    q, x, _ = gaussian(rng, 32, N_BIG, 8)
    _, st = run(lambda: grurec.topk(q, x, 3, num_threads=1), False)
    assert st["pairs"] == 0
    _, st = run(lambda: grurec.topk(q, x, 3, num_threads=1), True)
    assert st["pairs"] > 0
    code = "from grurec import _core; print(_core.topk_bf16_enabled())"
    for val, want in (("0", "False"), ("1", "True")):
        env = dict(os.environ, GRUREC_TOPK_BF16=val)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == want
