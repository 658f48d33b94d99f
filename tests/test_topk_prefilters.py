"""topk's many-query prefilters change the work, never the results.

Two prefilters score most (query, item) pairs approximately and score
canonically only those whose approximation, widened by a rigorous error
bound, can still matter: bf16 (``vdpbf16ps``, cpp/topk_bf16.cpp) at the
avx512 level on CPUs with AVX512_BF16, and int16 (``vpmaddwd``,
cpp/topk_i16.cpp) at the avx2 level. Every test here runs for each one this
CPU has (fixture ``pf``): the same call with the prefilter off and on at its
level, requiring bit-identical indices, scores (compared as bit patterns)
and rank counts, plus agreement with the other FMA level (the same
canonical scores) and, on integer data, with the scalar level and exact
NumPy. The adversarial cases aim at the bounds: near-ties below bf16 and
int8 precision, values over 60 orders of magnitude, subnormals, huge norms,
overflow. The prefilters' counters show that they actually ran (and how many
pairs they passed on), so no test passes by silently taking the float32
path. Tests of one prefilter alone (its bound probe, where it is not used)
are in test_topk_bf16.py and test_topk_i16.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import grurec
from grurec.topk import _rank_counts
from topk_cases import at_level, bits, gaussian, prefilters, wide_magnitudes

PREFILTERS = prefilters()


@pytest.fixture(params=[pytest.param(p, id=p.name,
                                     marks=pytest.mark.skipif(not p.available,
                                                              reason=f"no {p.name} prefilter "
                                                                     "on this CPU/build"))
                        for p in PREFILTERS])
def pf(request):
    """One prefilter at its level, switched on; level and switch restored after."""
    yield from request.param.at_its_level()


# Enough items that every task (the item range a thread takes, ~1/16 of the
# table at 2 threads) has blocks after its first one, which the prefilters
# need (the first sets the thresholds).
N_BIG = 40000


@pytest.mark.parametrize("d", [1, 2, 3, 31, 100, 256])
@pytest.mark.parametrize("k", [1, 20, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_same_as_float32_path(pf, nthreads, rng, d, k, with_bias):
    q, x, b = gaussian(rng, 40, N_BIG, d)
    bias = b if with_bias else None
    (idx, val), st = pf.same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
    # the other FMA level computes the same canonical scores without it
    other = "avx2" if pf.level == "avx512" else "avx512"
    if other in grurec.available_simd_levels():
        i2, v2 = at_level(other, lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
        np.testing.assert_array_equal(idx, i2)
        np.testing.assert_array_equal(bits(val), bits(v2))
    # and it is a top-k of the exact scores (float64), up to float32 rounding
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    tol = 4e-6 * (np.abs(q).astype(np.float64) @ np.abs(x.T).astype(np.float64)).max() + 1e-5
    np.testing.assert_allclose(val, np.take_along_axis(ref, idx, 1), rtol=0, atol=tol)
    kth = np.sort(ref, axis=1)[:, -k]
    np.testing.assert_array_less(kth - 2 * tol, val[:, -1])
    assert st["exact"] < 0.5 * st["pairs"], st  # (test_prefilter_skips_most_pairs: how few)


def test_prefilter_skips_most_pairs(pf, nthreads, rng):
    """Timing-free evidence of the speed-up: on an ordinary table almost every
    pair is decided by its approximation."""
    q, x, b = gaussian(rng, 64, 200_000, 64)
    _, st = pf.same_topk(lambda: grurec.topk(q, x, 20, bias=b, num_threads=nthreads))
    assert st["pairs"] > 0.9 * 64 * 200_000
    assert st["exact"] < 0.02 * st["pairs"], st  # ~0.2% at 1 thread, ~1.5% at 2 here


@pytest.mark.parametrize("Q", [15, 16, 17, 19, 20, 21, 22, 23, 33, 48, 64, 70, 300])
def test_query_counts_and_lane_padding(pf, nthreads, rng, Q):
    q, x, b = gaussian(rng, Q, N_BIG, 24)
    pf.same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads),
                 used=Q >= pf.min_queries)


@pytest.mark.parametrize("Q", [257, 529])
def test_last_query_block_with_fewer_lane_groups(pf, nthreads, rng, Q):
    """Regression: with more than 256 queries the queries go in blocks, and
    the last block may span fewer groups of lanes (Q = 257: blocks of 129
    and 128 queries, 9 and 8 groups of 16 for bf16). The masks the scan
    writes for it have that block's own stride; reading them with the full
    block's stride assigned survivors to the wrong queries and crashed
    evaluate()."""
    q, x, b = gaussian(rng, Q, 8000, 24)
    pf.same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads))
    if not pf.counts:
        return
    t = rng.integers(0, 8000, Q).astype(np.int64)
    (g0, e0), _ = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), st = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    assert (st["pairs"] > 0) == pf.counts


def test_exclusions_and_allowed(pf, nthreads, rng):
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
        (idx, val), _ = pf.same_topk(lambda: grurec.topk(q, x, k, bias=b, exclude=excl,
                                                      allowed=allowed, num_threads=nthreads),
                                  used=True if frac > 0.1 else None)
        for i in range(Q):
            got = idx[i][idx[i] >= 0]
            assert allowed[got].all()
            if excl[i] is not None:
                assert not np.isin(got, excl[i]).any()


# ---------------------------------------------------------------- adversarial

@pytest.mark.parametrize("lo,hi", [(-1, 1), (-3, 3)])
def test_integer_data_ties_exact_at_every_level(pf, nthreads, rng, lo, hi):
    """Small integers: scores are exact in any order, so every level and
    NumPy agree exactly, and exact ties are everywhere."""
    Q, N, d, k = 48, N_BIG, 12, 50
    q = rng.integers(lo, hi + 1, (Q, d)).astype(np.float32)
    x = rng.integers(lo, hi + 1, (N, d)).astype(np.float32)
    b = rng.integers(-2, 3, N).astype(np.float32)
    (idx, val), _ = pf.same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    ridx = np.stack([np.lexsort((np.arange(N), -r))[:k] for r in ref])
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, np.take_along_axis(ref, ridx, 1).astype(np.float32))
    for level in [lv for lv in grurec.available_simd_levels() if lv != pf.level]:
        il, vl = at_level(level, lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
        np.testing.assert_array_equal(il, idx)
        np.testing.assert_array_equal(bits(vl), bits(val))
    t = rng.integers(0, N, Q)
    (g0, e0), _ = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), _ = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    ts = ref[np.arange(Q), t][:, None]
    np.testing.assert_array_equal(g1, (ref > ts).sum(1))
    np.testing.assert_array_equal(e1, (ref == ts).sum(1) - 1)


def test_backs_off_where_most_pairs_need_the_exact_score(pf, nthreads, rng):
    """One item row repeated: every score ties, every pair survives the
    prefilter; after such a block the task pauses it (2, 4, ... blocks), so
    most blocks run without it, and the answer is still the lowest indices."""
    Q, N, d, k = 32, 200_000, 16, 7  # ~13 blocks per task at 2 threads
    q = rng.standard_normal((Q, d)).astype(np.float32)
    x = np.tile(rng.standard_normal(d).astype(np.float32), (N, 1))
    (idx, val), st = pf.same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads))
    np.testing.assert_array_equal(idx, np.tile(np.arange(k), (Q, 1)))
    assert st["blocks_plain"] > 2 * st[pf.blocks], st
    assert st["exact"] == st["pairs"], st  # (every pair it did see went on)


def test_near_ties_below_the_prefilter_precision(pf, nthreads, rng):
    """Clusters of items that differ only far below bf16 or int8 precision
    (their approximations are equal, their float32 scores are not), planted
    at the top of a Gaussian table and around the targets' scores."""
    Q, N, d, k = 32, N_BIG, 64, 20
    q, x, b = gaussian(rng, Q, N, d)
    base = rng.standard_normal(d).astype(np.float32)
    pos = rng.choice(np.arange(N // 4, N), 600, replace=False)
    x[pos] = base + (1e-5 * rng.standard_normal((600, d))).astype(np.float32)
    b[pos] = 100.0  # the cluster is every query's top
    # their bf16 images (round to nearest even on the upper 16 bits) coincide,
    # and so do their int8 rows (steps of max |x| / 127 ~ 0.02 >> 1e-5)
    u = x[pos].view(np.uint32).astype(np.uint64)
    r16 = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16)
    assert (r16 == r16[0]).mean() > 0.9
    r8 = np.round(x[pos] / (np.abs(x[pos]).max(1, keepdims=True) / 127))
    assert (r8 == r8[0]).mean() > 0.9
    (idx, val), st = pf.same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    assert np.isin(idx, pos).all()
    assert st["exact"] >= 0.3 * Q * 600  # most of it was scored exactly
    # the order inside the cluster is float32's (not all tied)
    assert len(np.unique(val)) > Q
    t = np.asarray(pos[rng.integers(0, 600, Q)], np.int64)
    (g0, e0), _ = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), False)
    (g1, e1), st = pf.run(lambda: _rank_counts(q, x, t, bias=b, num_threads=nthreads), True)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(e1, e0)
    assert (st["pairs"] > 0) == pf.counts and 0 < g1.max() < 600


def test_magnitudes_from_1e_minus_30_to_1e30(pf, nthreads, rng):
    Q, N, d, k = 24, N_BIG, 16, 10
    q, x, b = wide_magnitudes(rng, Q, N, d)
    for bias in (None, b):
        (idx, val), st = pf.same_topk(lambda: grurec.topk(q, x, k, bias=bias,
                                                       num_threads=nthreads))
        assert np.isfinite(val).all()
        assert st["exact"] < st["pairs"]


def test_subnormal_inputs(pf, nthreads, rng):
    """Subnormal items against large queries: bf16 conversion and vdpbf16ps
    flush subnormals to zero, int8 rows below 2^-100 keep no scale, yet the
    products are far from negligible."""
    Q, N, d, k = 24, N_BIG, 8, 15
    tiny = np.float32(1e-40)  # subnormal
    x = (rng.standard_normal((N, d)) * tiny).astype(np.float32)
    assert (np.abs(x[x != 0]) < np.finfo(np.float32).tiny).all()
    q = (rng.standard_normal((Q, d)) * 1e30).astype(np.float32)
    (idx, val), _ = pf.same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads))
    assert (val != 0).all()
    # and mixed: subnormal and normal entries in the same rows, small queries
    x2 = rng.standard_normal((N, d)).astype(np.float32)
    x2[:, ::2] = (rng.standard_normal((N, (d + 1) // 2)) * tiny).astype(np.float32)
    q2 = (rng.standard_normal((Q, d)) * 1e-20).astype(np.float32)
    q2[:, 1] = np.float32(1e-39)
    pf.same_topk(lambda: grurec.topk(q2, x2, k, bias=np.full(N, 1e-38, np.float32),
                                  num_threads=nthreads))


def test_huge_norms_orthogonal_to_the_query(pf, nthreads, rng):
    Q, N, d, k = 24, N_BIG, 10, 10
    q, x, b = gaussian(rng, Q, N, d)
    q[:, 0] = 0.0  # every query ignores dimension 0 ...
    huge = rng.choice(np.arange(N // 8, N), 200, replace=False)
    x[huge, 0] = np.float32(1e15)  # ... where these items are enormous
    x[huge[:50], 0] = np.float32(3e19)  # norm past 2^63
    (idx, val), _ = pf.same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    np.testing.assert_allclose(val, np.sort(ref, 1)[:, ::-1][:, :k], rtol=1e-5, atol=1e-4)


def test_negative_scores_everywhere(pf, nthreads, rng):
    Q, N, d, k = 30, N_BIG, 40, 20
    q = np.abs(rng.standard_normal((Q, d))).astype(np.float32)
    x = -np.abs(rng.standard_normal((N, d))).astype(np.float32)
    b = -np.abs(rng.standard_normal(N)).astype(np.float32) * 100
    for bias in (None, b):
        (idx, val), _ = pf.same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
        assert (val < 0).all()


def test_non_finite_reported_as_before(pf, rng):
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
            pf.switch(on)
            with pytest.raises(ValueError, match=rf"items: non-finite value {msg} at index "
                                                 rf"\({late}, 5\)"):
                grurec.topk(q, bad, 5, num_threads=2)
            with pytest.raises(ValueError, match="items: non-finite"):
                _rank_counts(q, bad, np.zeros(Q, np.int64), num_threads=2)
    pf.switch(True)
    qq = np.abs(q) + 1.0
    for sign in (1.0, -1.0):
        big = x.copy()
        big[late] = np.float32(sign * 1e38)  # the score overflows to +-inf
        for on in (False, True):
            pf.switch(on)
            with pytest.raises(ValueError, match="overflow"):
                grurec.topk(qq, big, 5, num_threads=2)
        bb = b.copy()
        bb[late] = np.float32(sign * 3.3e38)  # the bias tips a finite score over
        xx = x.copy()
        xx[late] = np.float32(sign * 1e37 / d)
        for on in (False, True):
            pf.switch(on)
            with pytest.raises(ValueError, match="overflow"):
                grurec.topk(qq, xx, 5, bias=bb, num_threads=2)
    pf.switch(True)
    # Where only the prefilter's guards save the report, because the
    # approximate    # sum goes to -inf like the score: products overflowing; a score and a
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
        pf.switch(on)
        pf.stats(True)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q3, x3, 5, num_threads=2)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q2, x2, 5, bias=b2, num_threads=2)
        with pytest.raises(ValueError, match="overflow"):
            grurec.topk(q1, x1, 5, bias=b1, num_threads=2)
        assert (pf.stats(True)["pairs"] > 0) == on
    pf.switch(True)


def test_switch_and_environment(pf, rng):
    q, x, _ = gaussian(rng, 32, N_BIG, 8)
    _, st = pf.run(lambda: grurec.topk(q, x, 3, num_threads=1), False)
    assert st["pairs"] == 0
    _, st = pf.run(lambda: grurec.topk(q, x, 3, num_threads=1), True)
    assert st["pairs"] > 0
    code = f"from grurec import _core; print(_core.topk_{pf.name}_enabled())"
    for val, want in (("0", "False"), ("1", "True")):
        env = dict(os.environ, **{pf.env: val})
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == want
