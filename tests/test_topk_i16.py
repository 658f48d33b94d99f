"""topk's int16 prefilter (cpp/topk_i16.cpp) changes the work, never the results.

At the avx2 level, top-k tasks of 16 queries or more (without rank-count
targets) bound every (query, item) pair from an exact integer product of
int16 queries and int8-valued items, and score canonically only the pairs
whose bound reaches the query's threshold. Every test runs the same call
with the prefilter off and on at the avx2 level and requires bit-identical
indices and scores (as bit patterns), plus, where it is cheap, agreement
with the avx512 level (the same canonical scores) and exact NumPy. The
adversarial cases aim at the bound: near-ties far below int8 precision,
values over 60 orders of magnitude, subnormals, huge norms, overflow.
``_core.topk_i16_stats`` shows that the prefilter ran, and
``_core.topk_i16_probe`` checks the bound itself on every pair.
"""
import numpy as np
import pytest

import grurec
from grurec import _core
from grurec.topk import _rank_counts, _topk_rank_counts
from topk_cases import assert_same, bits, gaussian, wide_magnitudes

pytestmark = pytest.mark.skipif(
    not _core.topk_i16_available() or "avx2" not in grurec.available_simd_levels(),
    reason="the int16 prefilter needs a CPU with AVX2 and FMA",
)


@pytest.fixture
def avx2():
    """avx2 level, prefilter on; both restored after."""
    level, on = grurec.simd_level(), _core.topk_i16_enabled()
    grurec.set_simd_level("avx2")
    _core.set_topk_i16(True)
    yield
    grurec.set_simd_level(level)
    _core.set_topk_i16(on)


def run(fn, on):
    """fn() with the prefilter on or off; (result, stats of that call)."""
    _core.set_topk_i16(on)
    _core.topk_i16_stats(True)
    try:
        out = fn()
    finally:
        _core.set_topk_i16(True)
    return out, _core.topk_i16_stats(True)


def same_topk(fn, used=True):
    """fn() -> (idx, scores) identical with the prefilter off and on; returns
    the result and the stats (used as in topk_cases.assert_same)."""
    (i0, v0), st0 = run(fn, False)
    (i1, v1), st1 = run(fn, True)
    assert st0["pairs"] == 0
    assert_same((i1, v1), (i0, v0), st1, used, "blocks_i16")
    return (i1, v1), st1


def at_level(level, fn):
    before = grurec.simd_level()
    grurec.set_simd_level(level)
    try:
        return fn()
    finally:
        grurec.set_simd_level(before)


def canonical_scores(q, x, bias=None):
    """Every canonical avx2 score (dot + bias), from topk with k = N."""
    N = x.shape[0]
    idx, val = at_level("avx2", lambda: grurec.topk(q, x, N, bias=bias, num_threads=1))
    out = np.empty((q.shape[0], N), np.float32)
    np.put_along_axis(out, idx, val, 1)
    return out


def assert_bound_holds(q, x, bias=None):
    """U >= the canonical score for every pair (NaN U only where a score is
    not finite); returns U."""
    U = _core.topk_i16_probe(q, x, bias)
    assert U is not None
    S = canonical_scores(q, x, bias)
    fin = np.isfinite(S)
    assert not np.isnan(U[fin]).any()
    bad = fin & ~(U >= S)
    assert not bad.any(), (np.argwhere(bad)[:5], U[bad][:5], S[bad][:5])
    return U


N_BIG = 40000


@pytest.mark.parametrize("d", [1, 2, 3, 31, 100, 256])
@pytest.mark.parametrize("k", [1, 20, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_same_as_float32_path(avx2, nthreads, rng, d, k, with_bias):
    q, x, b = gaussian(rng, 40, N_BIG, d)
    bias = b if with_bias else None
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
    if "avx512" in grurec.available_simd_levels():
        i5, v5 = at_level("avx512", lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
        np.testing.assert_array_equal(idx, i5)
        np.testing.assert_array_equal(bits(val), bits(v5))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    tol = 4e-6 * (np.abs(q).astype(np.float64) @ np.abs(x.T).astype(np.float64)).max() + 1e-5
    np.testing.assert_allclose(val, np.take_along_axis(ref, idx, 1), rtol=0, atol=tol)
    kth = np.sort(ref, axis=1)[:, -k]
    np.testing.assert_array_less(kth - 2 * tol, val[:, -1])
    assert st["exact"] < 0.5 * st["pairs"], st


def test_prefilter_skips_most_pairs(avx2, nthreads, rng):
    """Timing-free evidence of the speed-up: on an ordinary table almost every
    pair is decided by its integer bound."""
    q, x, b = gaussian(rng, 64, 200_000, 64)
    _, st = same_topk(lambda: grurec.topk(q, x, 20, bias=b, num_threads=nthreads))
    assert st["pairs"] > 0.9 * 64 * 200_000
    assert st["exact"] < 0.02 * st["pairs"], st


@pytest.mark.parametrize("Q", [16, 17, 23, 48, 64, 70, 300])
def test_query_counts_and_lane_padding(avx2, nthreads, rng, Q):
    q, x, b = gaussian(rng, Q, N_BIG, 24)
    same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads))


@pytest.mark.parametrize("Q", [257, 529])
def test_last_query_block_with_fewer_lane_groups(avx2, nthreads, rng, Q):
    """Query blocks of different sizes (257: 129 and 128 queries, 17 and 16
    groups of 8 lanes): each block's masks have its own stride."""
    q, x, b = gaussian(rng, Q, 8000, 24)
    same_topk(lambda: grurec.topk(q, x, 10, bias=b, num_threads=nthreads))


def test_where_it_is_not_used(avx2, rng):
    """Below 16 queries, at other levels, with rank-count targets, and past
    4096 dimensions the call runs as before."""
    q, x, b = gaussian(rng, 15, N_BIG, 16)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)
    q, x, b = gaussian(rng, 40, N_BIG, 16)
    for level in [lv for lv in grurec.available_simd_levels() if lv != "avx2"]:
        _, st = run(lambda: at_level(level, lambda: grurec.topk(q, x, 5, num_threads=1)), True)
        assert st["pairs"] == 0
    t = rng.integers(0, N_BIG, 40).astype(np.int64)
    (r0, c0), _ = run(lambda: _topk_rank_counts(q, x, b, 5, t, 1)[:2], False)
    (r1, c1), st = run(lambda: _topk_rank_counts(q, x, b, 5, t, 1)[:2], True)
    assert st["pairs"] == 0
    np.testing.assert_array_equal(r1, r0)
    (g0, e0), _ = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=1), False)
    (g1, e1), st = run(lambda: _rank_counts(q, x, t, bias=b, num_threads=1), True)
    assert st["pairs"] == 0
    np.testing.assert_array_equal(g1, g0)
    q, x, b = gaussian(rng, 16, 3000, 4097)
    same_topk(lambda: grurec.topk(q, x, 5, bias=b, num_threads=1), used=False)


def test_exclusions_and_allowed(avx2, nthreads, rng):
    Q, d, k = 40, 20, 25
    q, x, b = gaussian(rng, Q, N_BIG, d)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    best = np.argsort(-ref, axis=1)[:, :3 * k]
    excl = [np.concatenate([best[i, ::2], rng.integers(0, N_BIG, 50)]) for i in range(Q)]
    excl[3] = None
    for frac in (1.0, 0.5, 0.01):
        allowed = rng.random(N_BIG) < frac
        (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, exclude=excl,
                                                      allowed=allowed, num_threads=nthreads),
                                  used=True if frac > 0.1 else None)
        for i in range(Q):
            got = idx[i][idx[i] >= 0]
            assert allowed[got].all()
            if excl[i] is not None:
                assert not np.isin(got, excl[i]).any()


# ---------------------------------------------------------------- adversarial

@pytest.mark.parametrize("lo,hi", [(-1, 1), (-3, 3)])
def test_integer_data_ties_exact_at_every_level(avx2, nthreads, rng, lo, hi):
    """Small integers: scores are exact, so every level and NumPy agree
    exactly, and exact ties are everywhere."""
    Q, N, d, k = 48, N_BIG, 12, 50
    q = rng.integers(lo, hi + 1, (Q, d)).astype(np.float32)
    x = rng.integers(lo, hi + 1, (N, d)).astype(np.float32)
    b = rng.integers(-2, 3, N).astype(np.float32)
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    ridx = np.stack([np.lexsort((np.arange(N), -r))[:k] for r in ref])
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, np.take_along_axis(ref, ridx, 1).astype(np.float32))
    il, vl = at_level("scalar", lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    np.testing.assert_array_equal(il, idx)
    np.testing.assert_array_equal(bits(vl), bits(val))


def test_backs_off_where_most_pairs_need_the_exact_score(avx2, nthreads, rng):
    """One item row repeated: every score ties, every pair survives; after
    such a block the task pauses the prefilter, and the answer is still the
    lowest indices."""
    Q, N, d, k = 32, 200_000, 16, 7
    q = rng.standard_normal((Q, d)).astype(np.float32)
    x = np.tile(rng.standard_normal(d).astype(np.float32), (N, 1))
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads))
    np.testing.assert_array_equal(idx, np.tile(np.arange(k), (Q, 1)))
    assert st["blocks_plain"] > 2 * st["blocks_i16"], st
    assert st["exact"] == st["pairs"], st


def test_near_ties_below_int8_precision(avx2, nthreads, rng):
    """A cluster of items that differ only far below int8 precision (their
    int8 rows are equal, their float32 scores are not), planted at the top."""
    Q, N, d, k = 32, N_BIG, 64, 20
    q, x, b = gaussian(rng, Q, N, d)
    base = rng.standard_normal(d).astype(np.float32)
    pos = rng.choice(np.arange(N // 4, N), 600, replace=False)
    x[pos] = base + (1e-5 * rng.standard_normal((600, d))).astype(np.float32)
    b[pos] = 100.0
    (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    assert np.isin(idx, pos).all()
    assert st["exact"] >= 0.3 * Q * 600
    assert len(np.unique(val)) > Q
    assert_bound_holds(q[:4], x[pos[:200]], b[pos[:200]])


def test_magnitudes_from_1e_minus_30_to_1e30(avx2, nthreads, rng):
    Q, N, d, k = 24, N_BIG, 16, 10
    q, x, b = wide_magnitudes(rng, Q, N, d)
    for bias in (None, b):
        (idx, val), st = same_topk(lambda: grurec.topk(q, x, k, bias=bias,
                                                       num_threads=nthreads))
        assert np.isfinite(val).all()
        assert st["exact"] < st["pairs"]
    assert_bound_holds(q, x[:3000], b[:3000])


def test_subnormal_inputs(avx2, nthreads, rng):
    """Subnormal items against large queries, and subnormal and normal
    entries mixed in the same rows against tiny queries."""
    Q, N, d, k = 20, N_BIG, 8, 15
    tiny = np.float32(1e-40)
    x = (rng.standard_normal((N, d)) * tiny).astype(np.float32)
    q = (rng.standard_normal((Q, d)) * 1e30).astype(np.float32)
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, num_threads=nthreads), used=None)
    assert (val != 0).all()
    assert_bound_holds(q, x[:2000])
    x2 = rng.standard_normal((N, d)).astype(np.float32)
    x2[:, ::2] = (rng.standard_normal((N, (d + 1) // 2)) * tiny).astype(np.float32)
    q2 = (rng.standard_normal((Q, d)) * 1e-20).astype(np.float32)
    q2[:, 1] = np.float32(1e-39)
    bias = np.full(N, 1e-38, np.float32)
    same_topk(lambda: grurec.topk(q2, x2, k, bias=bias, num_threads=nthreads), used=None)
    assert_bound_holds(q2, x2[:2000], bias[:2000])


def test_huge_norms_orthogonal_to_the_query(avx2, nthreads, rng):
    Q, N, d, k = 20, N_BIG, 10, 10
    q, x, b = gaussian(rng, Q, N, d)
    q[:, 0] = 0.0
    huge = rng.choice(np.arange(N // 8, N), 200, replace=False)
    x[huge, 0] = np.float32(1e15)
    x[huge[:50], 0] = np.float32(3e19)  # norm past 2^63
    (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=b, num_threads=nthreads))
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    np.testing.assert_allclose(val, np.sort(ref, 1)[:, ::-1][:, :k], rtol=1e-5, atol=1e-4)
    assert_bound_holds(q, x[huge], b[huge])


def test_bound_on_gaussian_data_and_its_width(avx2, rng):
    """U >= score everywhere, and U is not so loose that nothing is skipped:
    for Gaussian rows of 100 dimensions it stays within 0.2 standard
    deviations of the scores (int8 rows: about 0.08)."""
    q, x, b = gaussian(rng, 24, 3000, 100)
    U = assert_bound_holds(q, x, b)
    S = canonical_scores(q, x, b).astype(np.float64)
    assert np.median(U - S) < 0.2 * S.std()


def test_negative_scores_everywhere(avx2, nthreads, rng):
    Q, N, d, k = 30, N_BIG, 40, 20
    q = np.abs(rng.standard_normal((Q, d))).astype(np.float32)
    x = -np.abs(rng.standard_normal((N, d))).astype(np.float32)
    b = -np.abs(rng.standard_normal(N)).astype(np.float32) * 100
    for bias in (None, b):
        (idx, val), _ = same_topk(lambda: grurec.topk(q, x, k, bias=bias, num_threads=nthreads))
        assert (val < 0).all()


def test_non_finite_reported_as_before(avx2, rng):
    """NaN / inf items and float32 overflow raise the same errors with the
    prefilter: their bounds never let them be skipped."""
    Q, N, d = 32, N_BIG, 12
    q, x, b = gaussian(rng, Q, N, d)
    late = N - 123
    for val, msg in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        bad = x.copy()
        bad[late, 5] = val
        for on in (False, True):
            _core.set_topk_i16(on)
            with pytest.raises(ValueError, match=rf"items: non-finite value {msg} at index "
                                                 rf"\({late}, 5\)"):
                grurec.topk(q, bad, 5, num_threads=2)
    # overflow of a finite score: a huge item late in the table
    big = x.copy()
    big[late] = np.float32(3e38)
    for on in (False, True):
        _core.set_topk_i16(on)
        with pytest.raises(ValueError):
            grurec.topk(np.abs(q) + 1, big, 5, num_threads=2)
    _core.set_topk_i16(True)
