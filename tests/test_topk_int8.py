"""grurec.TopkIndex: the int8 prefilter changes the work, never the results.

A TopkIndex holds a float32 copy of the items (and bias) and an int8 copy
with a per-item scale and a rigorous bound of what the rounding can change
in a score (cpp/topk_kernels.hpp, "the int8 prefilter"). topk against the
index must return exactly what topk against the plain table returns:
indices and scores (compared as bit patterns), at every SIMD level and at 1
and 2 threads, including the adversarial cases for the bound (near-ties far
below int8 precision, one huge element per row, magnitudes over 60 orders,
subnormals, huge biases). ``_core.topk_int8_stats`` shows the prefilter ran
(so no test passes by silently taking the float32 path);
``_core.topk_int8_probe`` checks the bound on every pair.
"""
import numpy as np
import pytest

import grurec
from grurec import TopkIndex, _core
import topk_cases
from topk_cases import assert_same, bits, wide_magnitudes

N_BIG = 6000  # several item blocks at every d used here, so the prefilter runs


def same(q, x, k, bias=None, nthreads=1, used=True, **kw):
    """topk against TopkIndex(x, bias) equals topk against x; returns the
    result and the int8 stats of the index call."""
    ix = TopkIndex(x, bias)
    i0, v0 = grurec.topk(q, x, k, bias=bias, num_threads=nthreads, **kw)
    _core.topk_int8_stats(True)
    i1, v1 = grurec.topk(q, ix, k, num_threads=nthreads, **kw)
    st = _core.topk_int8_stats(True)
    assert_same((i1, v1), (i0, v0), st, used, "blocks")
    return (i1, v1), st


def gaussian(rng, Q, N, d):
    return topk_cases.gaussian(rng, Q, N, d, bias_scale=0.1)


def canonical_scores(q, x, b=None):
    """Every canonical score, from topk itself (k = n_items)."""
    idx, val = grurec.topk(q, x, x.shape[0], bias=b)
    s = np.empty((q.shape[0], x.shape[0]), np.float32)
    np.put_along_axis(s, idx, val, axis=1)
    return s


@pytest.mark.parametrize("d", [1, 3, 16, 100])
@pytest.mark.parametrize("Q", [1, 3, 8])
@pytest.mark.parametrize("with_bias", [False, True])
def test_same_as_float32_path(simd, nthreads, rng, d, Q, with_bias):
    q, x, b = gaussian(rng, Q, N_BIG + 7, d)
    for k in (1, 20):
        same(q, x, k, b if with_bias else None, nthreads)


@pytest.mark.parametrize("N", [1, 15, 16, 17, 33, 1000])
def test_small_tables_and_partial_groups(simd, nthreads, rng, N):
    """Tables of a few items, groups of 16 cut by the table's end and by
    the item ranges of 2 threads; k up to n_items."""
    q, x, b = gaussian(rng, 2, N, 5)
    for k in sorted({1, min(7, N), N}):
        same(q, x, k, b, nthreads, used=None)


def test_skips_most_pairs(simd, nthreads, rng):
    q, x, b = gaussian(rng, 4, 50_000, 64)
    _, st = same(q, x, 20, b, nthreads)
    assert st["exact"] < 0.02 * st["pairs"], st


@pytest.mark.parametrize("Q", [9, 64, 300])
def test_batches_use_it_too(simd, nthreads, rng, Q):
    """Every top-k task reads the int8 copy, up to the 256 queries a task
    holds (300 queries: two tasks), with the results unchanged."""
    q, x, b = gaussian(rng, Q, N_BIG, 16)
    same(q, x, 5, b, nthreads)


def test_exclusions_and_allowed(simd, nthreads, rng):
    Q, N, d, k = 5, N_BIG, 24, 30
    q, x, b = gaussian(rng, Q, N, d)
    plain = grurec.topk(q, x, k, bias=b)[0]
    exclude = [plain[r, ::2] for r in range(Q)]  # the best half of every list
    allowed = rng.random(N) < 0.5
    same(q, x, k, b, nthreads, exclude=exclude)
    same(q, x, k, b, nthreads, allowed=allowed)
    (idx, _), _ = same(q, x, k, b, nthreads, exclude=exclude, allowed=allowed)
    assert allowed[idx].all()
    for r in range(Q):
        assert not np.isin(idx[r], exclude[r]).any()


def test_duplicate_rows_tie_by_lower_index(simd, nthreads, rng):
    Q, N, d, k = 3, N_BIG, 12, 10
    q, x, _ = gaussian(rng, Q, N, d)
    top = rng.standard_normal(d).astype(np.float32) * 10
    pos = np.sort(rng.choice(N, 40, replace=False))
    x[pos] = top  # 40 identical rows, far above the rest for most queries
    q[:] = top / np.linalg.norm(top)
    (idx, val), _ = same(q, x, k, None, nthreads)
    np.testing.assert_array_equal(idx, np.tile(pos[:k], (Q, 1)))
    assert (val == val[:, :1]).all()


def test_near_ties_far_below_int8_precision(simd, nthreads, rng):
    """A cluster of items that differ by 1e-6 relative (their int8 images
    are equal, their float32 scores are not) at the top of every list."""
    Q, N, d, k = 4, N_BIG, 32, 20
    q, x, b = gaussian(rng, Q, N, d)
    base = rng.standard_normal(d).astype(np.float32)
    pos = rng.choice(np.arange(N // 4, N), 300, replace=False)
    x[pos] = base + (1e-6 * rng.standard_normal((300, d))).astype(np.float32)
    b[pos] = 100.0
    (idx, val), st = same(q, x, k, b, nthreads)
    assert np.isin(idx, pos).all()
    assert len(np.unique(val)) > Q  # float32's order, not int8's
    assert st["exact"] >= 300


def test_one_huge_element_per_row(simd, nthreads, rng):
    """A row whose scale is set by one large value quantizes the rest to
    zero: the bound must carry all of their weight."""
    Q, N, d, k = 3, N_BIG, 40, 15
    q, x, b = gaussian(rng, Q, N, d)
    x[np.arange(N), rng.integers(0, d, N)] = 1e4
    same(q, x, k, b, nthreads)


def test_magnitudes_from_1e_minus_30_to_1e30(simd, nthreads, rng):
    Q, N, d, k = 4, N_BIG, 16, 10
    q, x, b = wide_magnitudes(rng, Q, N, d)
    for bias in (None, b):
        (_, val), st = same(q, x, k, bias, nthreads)
        assert np.isfinite(val).all()


def test_subnormal_and_tiny_rows(simd, nthreads, rng):
    Q, N, d, k = 3, N_BIG, 8, 15
    tiny = np.float32(1e-40)  # subnormal
    x = (rng.standard_normal((N, d)) * tiny).astype(np.float32)
    x[::3] = (rng.standard_normal((len(x[::3]), d)) * 1e-32).astype(np.float32)  # s = 0 rows
    q = (rng.standard_normal((Q, d)) * 1e30).astype(np.float32)
    (_, val), _ = same(q, x, k, None, nthreads)
    assert (val != 0).all()
    x2 = rng.standard_normal((N, d)).astype(np.float32)
    x2[:, ::2] = (rng.standard_normal((N, (d + 1) // 2)) * tiny).astype(np.float32)
    q2 = (rng.standard_normal((Q, d)) * 1e-20).astype(np.float32)
    q2[:, 1] = np.float32(1e-39)
    same(q2, x2, k, np.full(N, 1e-38, np.float32), nthreads)


def test_zero_rows_zero_query_negative_scores(simd, nthreads, rng):
    Q, N, d, k = 3, N_BIG, 20, 12
    q = np.abs(rng.standard_normal((Q, d))).astype(np.float32)
    x = -np.abs(rng.standard_normal((N, d))).astype(np.float32)
    x[::5] = 0.0
    b = -np.abs(rng.standard_normal(N)).astype(np.float32)
    same(q, x, k, b, nthreads)
    q[1] = 0.0  # a zero query: every score is the bias
    same(q, x, k, b, nthreads, used=None)


def test_huge_norms_and_bias(simd, nthreads, rng):
    Q, N, d, k = 3, N_BIG, 10, 10
    q, x, b = gaussian(rng, Q, N, d)
    q[:, 0] = 0.0
    huge = rng.choice(np.arange(N // 8, N), 200, replace=False)
    x[huge, 0] = np.float32(1e15)
    x[huge[:50], 0] = np.float32(3e19)  # norm past 2^63: never skipped
    b[huge[50:60]] = np.float32(1e37)
    same(q, x, k, b, nthreads)


def test_overflow_raises_as_before(rng):
    q, x, _ = gaussian(rng, 2, N_BIG, 4)
    x[N_BIG - 100] = 3e38
    q[:] = 1e3
    with pytest.raises(ValueError, match="overflow"):
        grurec.topk(q, x, 5)
    with pytest.raises(ValueError, match="overflow"):
        grurec.topk(q, TopkIndex(x), 5)


@pytest.mark.parametrize("case", ["gaussian", "huge_element", "wide_range", "subnormal"])
def test_bound_holds_for_every_pair(simd, rng, case):
    """The scan's bit is set for every pair at a threshold equal to the
    pair's own canonical score (t2 >= score), at this SIMD level."""
    Q, N, d = 3, 700, 37
    q, x, b = gaussian(rng, Q, N, d)
    if case == "huge_element":
        x[np.arange(N), rng.integers(0, d, N)] = 1e5
    elif case == "wide_range":
        x = (x * 10.0 ** rng.uniform(-25, 25, (N, 1))).astype(np.float32)
        b = (b * 10.0 ** rng.uniform(-25, 25, N)).astype(np.float32)
    elif case == "subnormal":
        x = (x * np.float32(1e-39)).astype(np.float32)
        q = (q * 1e30).astype(np.float32)
    ix = TopkIndex(x, b)
    s = canonical_scores(q, x, b)
    assert _core.topk_int8_probe(q, s, ix._native) == 0
    # and the bound is not vacuous: a threshold a little above the score
    # clears most bits for ordinary data
    if case == "gaussian":
        bump = s + 0.5 * np.abs(s) + 1.0
        assert _core.topk_int8_probe(q, bump.astype(np.float32), ix._native) > 0.9 * Q * N


def test_index_owns_its_copy(rng):
    q, x, b = gaussian(rng, 2, N_BIG, 8)
    ix = TopkIndex(x, b)
    want = grurec.topk(q, x, 10, bias=b)
    x[:] = 0.0  # later changes to the source do not reach the index
    b[:] = 0.0
    got = grurec.topk(q, ix, 10)
    np.testing.assert_array_equal(got[0], want[0])
    assert not ix.items.flags.writeable and not ix.bias.flags.writeable
    with pytest.raises(ValueError):
        ix.items[0, 0] = 1.0
    assert ix.n_items == N_BIG and ix.dim == 8
    assert ix.nbytes >= N_BIG * (5 * 8 + 16)
    assert "TopkIndex(n_items=6000" in repr(ix)
    assert TopkIndex(x).bias is None


def test_one_dimensional_query(rng):
    q, x, b = gaussian(rng, 1, N_BIG, 8)
    i0, v0 = grurec.topk(q[0], x, 7, bias=b)
    i1, v1 = grurec.topk(q[0], TopkIndex(x, b), 7)
    assert i1.shape == (7,)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(bits(v1), bits(v0))


def test_errors(rng):
    q, x, b = gaussian(rng, 2, 50, 8)
    ix = TopkIndex(x, b)
    with pytest.raises(ValueError, match="bias"):
        grurec.topk(q, ix, 5, bias=b)
    with pytest.raises(ValueError, match="dimensions differ"):
        grurec.topk(q[:, :4], ix, 5)
    with pytest.raises(ValueError, match=r"queries: non-finite value nan at index \(1, 2\)"):
        bad = q.copy()
        bad[1, 2] = np.nan
        grurec.topk(bad, ix, 5)
    x2 = x.copy()
    x2[7, 3] = np.inf
    with pytest.raises(ValueError, match=r"items: non-finite value inf at index \(7, 3\)"):
        TopkIndex(x2)
    b2 = b.copy()
    b2[4] = np.nan
    with pytest.raises(ValueError, match=r"bias: non-finite value nan at index 4"):
        TopkIndex(x, b2)
    with pytest.raises(ValueError, match="bias: expected shape"):
        TopkIndex(x, b[:-1])
    with pytest.raises(ValueError, match="at least one item"):
        TopkIndex(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        TopkIndex(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        TopkIndex(np.array([["a"]]))
    # the native entry point refuses a table next to an index
    with pytest.raises(ValueError, match="items and bias must be None"):
        _core.topk(q, x, None, 5, None, None, None, np.empty((2, 5), np.int64),
                   np.empty((2, 5), np.float32), 1, index=ix._native)


def test_model_prepare_serving(rng):
    """GRU4Rec.prepare_serving: recommend and live sessions score against a
    TopkIndex of the output table, with the same answers; fit drops it."""
    from grurec.synthetic import generate_sessions

    train = generate_sessions(n_events=30000, n_items=8000, mean_length=5, signal=0.8, seed=1)
    m = grurec.GRU4Rec(layers=[32], batch_size=32, n_sample=64, n_epochs=1, random_state=0,
                       show_progress=False, num_threads=1).fit(train)
    assert m.n_items > 3072  # more than one item block at H = 32, so the prefilter runs
    ids = m.item_ids
    sessions = [list(ids[rng.integers(0, len(ids), rng.integers(1, 6))]) for _ in range(5)]
    want = m.recommend(sessions, k=20, exclude_seen=True)
    live = m.new_session()
    for it in sessions[0]:
        live.click(it)
    want_live = live.recommend(10, exclude_seen=True)
    assert m.prepare_serving() is m and m._topk_index is not None
    _core.topk_int8_stats(True)
    got = m.recommend(sessions, k=20, exclude_seen=True)
    got_live = live.recommend(10, exclude_seen=True)
    st = _core.topk_int8_stats(True)
    assert st["pairs"] > 0 and st["exact"] < st["pairs"], st
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(bits(got[1]), bits(want[1]))
    np.testing.assert_array_equal(got_live[0], want_live[0])
    np.testing.assert_array_equal(bits(got_live[1]), bits(want_live[1]))
    m.fit(train)  # new weights: the snapshot is dropped
    assert m._topk_index is None
    m.prepare_serving()
    assert grurec.GRU4Rec.from_bytes(m.to_bytes())._topk_index is None  # not saved
