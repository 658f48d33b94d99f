"""grurec.topk and the rank counts against NumPy, at every SIMD level and 1 and 2 threads.

Two kinds of reference:

* exact: small-integer queries, items and bias, so every product and partial
  sum is an integer below 2^24 and float32 arithmetic is exact in any order.
  Scores tie massively; indices must equal NumPy's (score descending, then
  index ascending) exactly.
* float: Gaussian data against float64 NumPy. Scores are compared with a
  tolerance, and the returned set must be a valid top-k up to that tolerance
  (no left-out item scores clearly higher than a returned one); exact ties are
  planted by duplicating item rows (identical rows score identically, by
  design), and their order must follow the index.
"""
import threading
import types

import numpy as np
import pytest

import grurec
from grurec import _core
from grurec.topk import _rank_counts, _rank_counts_dense, _ranks, _topk_rank_counts

# (Q, N, d, k): odd sizes around the block widths (8-lane chunks, 16-row
# one-query blocks, 4-item x 8/2-query panels, 64..4096-item blocks).
SHAPES = [
    (1, 1, 1, 1),
    (1, 37, 3, 5),
    (2, 101, 17, 101),     # k = N
    (3, 50, 100, 80),      # k > N
    (5, 1000, 100, 20),
    (9, 333, 8, 7),
    (17, 1025, 16, 1),
    (70, 517, 64, 13),
    (1, 5003, 24, 50),
    (130, 2100, 9, 3),
]


def ref_topk(scores, k, eligible=None):
    """Top-k rows of a float64 score matrix: score descending, index ascending."""
    Q, N = scores.shape
    k = min(k, N)
    idx = np.full((Q, k), -1, np.int64)
    val = np.full((Q, k), -np.inf)
    for q in range(Q):
        cand = np.arange(N) if eligible is None else np.flatnonzero(eligible[q])
        order = cand[np.lexsort((cand, -scores[q, cand]))][:k]
        idx[q, :len(order)] = order
        val[q, :len(order)] = scores[q, order]
    return idx, val


def int_data(rng, Q, N, d, lo=-3, hi=3):
    q = rng.integers(lo, hi + 1, (Q, d)).astype(np.float32)
    x = rng.integers(lo, hi + 1, (N, d)).astype(np.float32)
    b = rng.integers(-5, 6, N).astype(np.float32)
    return q, x, b


@pytest.mark.parametrize("Q,N,d,k", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_topk_exact_on_integer_data(simd, nthreads, rng, Q, N, d, k, with_bias):
    q, x, b = int_data(rng, Q, N, d)
    bias = b if with_bias else None
    idx, val = grurec.topk(q, x, k, bias=bias, num_threads=nthreads)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    ridx, rval = ref_topk(ref, k)
    assert idx.shape == (Q, min(k, N)) and idx.dtype == np.int64
    assert val.shape == idx.shape and val.dtype == np.float32
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, rval.astype(np.float32))


def check_valid_topk(idx, val, ref, k, tol, eligible=None):
    """idx/val (float32) against float64 scores ref, up to tol."""
    Q, N = ref.shape
    for q in range(Q):
        ok = np.ones(N, bool) if eligible is None else eligible[q]
        n_ok = int(ok.sum())
        got = idx[q][idx[q] >= 0]
        assert len(got) == min(k, n_ok), (q, len(got), n_ok)
        assert (idx[q][len(got):] == -1).all() and np.isneginf(val[q][len(got):]).all()
        assert len(np.unique(got)) == len(got)
        assert ok[got].all(), "returned an excluded / disallowed item"
        v = val[q][:len(got)]
        np.testing.assert_allclose(v, ref[q, got], rtol=0, atol=tol)
        # best first; exact float32 ties by index
        assert (np.diff(v) <= 0).all()
        same = np.diff(v) == 0
        assert (np.diff(got)[same] > 0).all()
        # a valid top-k up to the tolerance
        left = np.setdiff1d(np.flatnonzero(ok), got)
        if len(left) and len(got):
            assert ref[q, left].max() <= ref[q, got].min() + 2 * tol


@pytest.mark.parametrize("Q,N,d,k", SHAPES)
def test_topk_matches_numpy_float(simd, nthreads, rng, Q, N, d, k):
    q = rng.standard_normal((Q, d), dtype=np.float32)
    x = rng.standard_normal((N, d), dtype=np.float32)
    b = rng.standard_normal(N, dtype=np.float32)
    # planted exact ties: copies of earlier rows further down the table
    if N > 4:
        src = rng.choice(N // 2, size=N // 4, replace=False)
        dst = rng.choice(np.arange(N // 2, N), size=N // 4, replace=False)
        x[dst] = x[src]
        b[dst] = b[src]
    else:
        src = dst = np.zeros(0, int)
    idx, val = grurec.topk(q, x, k, bias=b, num_threads=nthreads)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    tol = 2e-6 * (np.abs(q).astype(np.float64) @ np.abs(x.T).astype(np.float64)).max() + 1e-6
    check_valid_topk(idx, val, ref, k, tol)
    # a duplicate never comes before (or without) its lower-index original
    for qq in range(Q):
        pos = {int(i): p for p, i in enumerate(idx[qq]) if i >= 0}
        for s_, d_ in zip(src, dst):
            if d_ in pos:
                assert s_ in pos and pos[s_] < pos[d_]
                assert val[qq, pos[s_]] == val[qq, pos[d_]]


@pytest.mark.parametrize("d", [1, 3, 8, 17, 100, 256])
def test_scores_do_not_depend_on_batch_or_threads(simd, rng, d):
    Q, N, k = 37, 3001, 25
    q = rng.standard_normal((Q, d), dtype=np.float32)
    x = rng.standard_normal((N, d), dtype=np.float32)
    b = rng.standard_normal(N, dtype=np.float32)
    i1, v1 = grurec.topk(q, x, k, bias=b, num_threads=1)
    i2, v2 = grurec.topk(q, x, k, bias=b, num_threads=2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(v1, v2)
    for j in (0, 5, 36):
        ij, vj = grurec.topk(q[j], x, k, bias=b, num_threads=2)
        np.testing.assert_array_equal(ij, i1[j])
        np.testing.assert_array_equal(vj, v1[j])
    for lo, hi in ((0, 3), (3, 11), (11, 37)):  # remainders of a panel, panels
        ib, vb = grurec.topk(q[lo:hi], x, k, bias=b, num_threads=1)
        np.testing.assert_array_equal(vb, v1[lo:hi])


def test_avx2_and_avx512_agree(rng):
    levels = grurec.available_simd_levels()
    if not {"avx2", "avx512"} <= set(levels):
        pytest.skip("needs both avx2 and avx512")
    before = grurec.simd_level()
    q = rng.standard_normal((21, 45), dtype=np.float32)
    x = rng.standard_normal((777, 45), dtype=np.float32)
    out = {}
    try:
        for lv in ("avx2", "avx512"):
            grurec.set_simd_level(lv)
            out[lv] = grurec.topk(q, x, 777, num_threads=2)
    finally:
        grurec.set_simd_level(before)
    np.testing.assert_array_equal(out["avx2"][0], out["avx512"][0])
    np.testing.assert_array_equal(out["avx2"][1], out["avx512"][1])


def canonical_scores(q, x):
    """The documented score arithmetic emulated in float32, exact when every
    product q[j] * x[j] is exact (q powers of two): 8 lanes, one running sum
    each over the chunks in order, then the halving tree."""
    Q, d = q.shape
    N = x.shape[0]
    out = np.empty((Q, N), np.float32)
    for i in range(Q):
        prod = (q[i] * x).astype(np.float32)  # exact
        p = np.zeros((N, 8), np.float32)
        for c in range(0, d, 8):
            blk = prod[:, c:c + 8]
            p[:, :blk.shape[1]] = p[:, :blk.shape[1]] + blk
        s4 = p[:, :4] + p[:, 4:]
        s2 = s4[:, :2] + s4[:, 2:]
        out[i] = s2[:, 0] + s2[:, 1]
    return out


@pytest.mark.parametrize("d", [1, 7, 8, 9, 100, 130])
def test_canonical_arithmetic(simd, rng, d):
    Q, N = 6, 203
    q = (rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], (Q, d))).astype(np.float32)
    x = rng.standard_normal((N, d), dtype=np.float32)
    idx, val = grurec.topk(q, x, N, num_threads=1)
    want = canonical_scores(q, x)
    got = np.empty_like(want)
    np.put_along_axis(got, idx, val, axis=1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("Q,N,d,k", [(1, 40, 5, 10), (7, 300, 17, 20), (40, 1200, 33, 5),
                                     (3, 12, 4, 12)])
def test_exclusions(simd, nthreads, rng, Q, N, d, k):
    q, x, b = int_data(rng, Q, N, d)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    excl = []
    for i in range(Q):
        if i % 3 == 2:
            excl.append(None)
            continue
        n = rng.integers(0, N if i % 4 == 0 else max(2, N // 3))  # some leave < k items
        e = rng.choice(N, size=n, replace=True)  # duplicates and any order
        # always exclude what would be the best item, so exclusion matters
        e = np.concatenate([e, ref_topk(ref[i:i + 1], 1)[0][0]])
        excl.append(list(e) if i % 2 else e)
    eligible = np.ones((Q, N), bool)
    for i, e in enumerate(excl):
        if e is not None:
            eligible[i, np.asarray(e, int)] = False
    idx, val = grurec.topk(q, x, k, bias=b, exclude=excl, num_threads=nthreads)
    ridx, rval = ref_topk(ref, k, eligible)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, rval.astype(np.float32))
    # the same as a CSR matrix (scipy.sparse layout: indptr, indices, shape)
    rows = [np.unique(np.asarray(e, int)) if e is not None else np.zeros(0, int) for e in excl]
    csr = types.SimpleNamespace(indptr=np.concatenate([[0], np.cumsum([len(r) for r in rows])]),
                                indices=np.concatenate(rows), shape=(Q, N))
    idx2, val2 = grurec.topk(q, x, k, bias=b, exclude=csr, num_threads=nthreads)
    np.testing.assert_array_equal(idx2, ridx)


def test_exclusions_one_query_and_everything_excluded(simd, rng):
    q, x, b = int_data(rng, 1, 30, 4)
    idx, val = grurec.topk(q[0], x, 5, exclude=range(30))
    assert idx.shape == (5,)
    assert (idx == -1).all() and np.isneginf(val).all()
    idx, val = grurec.topk(q[0], x, 5, exclude=[3, 3, 0])
    ref = x.astype(np.float64) @ q[0]
    ok = np.ones(30, bool)
    ok[[0, 3]] = False
    np.testing.assert_array_equal(idx, ref_topk(ref[None], 5, ok[None])[0][0])


@pytest.mark.parametrize("frac", [0.0, 0.01, 0.5, 1.0])
def test_allowed_mask(simd, nthreads, rng, frac):
    Q, N, d, k = 9, 700, 12, 15
    q, x, b = int_data(rng, Q, N, d)
    allowed = rng.random(N) < frac
    excl = [[int(rng.integers(N))] for _ in range(Q)]
    idx, val = grurec.topk(q, x, k, bias=b, exclude=excl, allowed=allowed, num_threads=nthreads)
    eligible = np.tile(allowed, (Q, 1))
    for i, e in enumerate(excl):
        eligible[i, e] = False
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + b
    ridx, rval = ref_topk(ref, k, eligible)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(val, rval.astype(np.float32))


def test_shapes_and_edge_cases(rng):
    x = rng.standard_normal((10, 4), dtype=np.float32)
    q = rng.standard_normal(4, dtype=np.float32)
    i, v = grurec.topk(q, x, 3)
    assert i.shape == (3,) and v.shape == (3,)
    i, v = grurec.topk(q, x, 50)  # k > N: N results
    assert i.shape == (10,) and sorted(i) == list(range(10))
    i, v = grurec.topk(np.zeros((0, 4), np.float32), x, 3)
    assert i.shape == (0, 3) and v.shape == (0, 3)
    i, v = grurec.topk(q[None], np.zeros((0, 4), np.float32), 3)
    assert i.shape == (1, 0)
    i, v = grurec.topk(np.zeros((2, 0), np.float32), np.zeros((5, 0), np.float32), 2)
    np.testing.assert_array_equal(i, [[0, 1], [0, 1]])  # all scores 0: lowest indices
    # float64 / integer / non-contiguous inputs are converted
    i64, v64 = grurec.topk(q.astype(np.float64), np.asfortranarray(x.astype(np.float64)), 4)
    i32, v32 = grurec.topk(q, x, 4)
    np.testing.assert_array_equal(i64, i32)
    np.testing.assert_array_equal(v64, v32)


def test_topk_releases_the_gil_and_is_thread_safe(rng):
    q = rng.standard_normal((50, 32), dtype=np.float32)
    x = rng.standard_normal((20000, 32), dtype=np.float32)
    want = grurec.topk(q, x, 10, num_threads=1)
    results = [None] * 4

    def work(t):
        results[t] = grurec.topk(q, x, 10, num_threads=1)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r[0], want[0])
        np.testing.assert_array_equal(r[1], want[1])


# ----------------------------------------------------------------- rank counts

def ref_counts(scores, targets):
    ts = scores[np.arange(len(targets)), targets][:, None]
    return (scores > ts).sum(1), (scores == ts).sum(1) - 1


@pytest.mark.parametrize("Q,N,d", [(1, 1, 3), (4, 37, 1), (33, 1000, 17), (5, 4099, 100),
                                   (200, 300, 8)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_rank_counts_exact_with_ties(simd, nthreads, rng, Q, N, d, with_bias):
    q, x, b = int_data(rng, Q, N, d, -1, 1)  # few distinct scores: many ties
    bias = b if with_bias else None
    t = rng.integers(0, N, Q)
    g, e = _rank_counts(q, x, t, bias=bias, num_threads=nthreads)
    ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
    rg, re = ref_counts(ref, t)
    np.testing.assert_array_equal(g, rg)
    np.testing.assert_array_equal(e, re)
    np.testing.assert_array_equal(_ranks(g, e, "standard"), 1 + rg)
    np.testing.assert_array_equal(_ranks(g, e, "conservative"), 1 + rg + re)
    np.testing.assert_array_equal(_ranks(g, e, "median"), 1 + rg + re / 2)


def test_rank_counts_agree_with_topk(simd, nthreads, rng):
    Q, N, d, k = 23, 2500, 40, 30
    q = rng.standard_normal((Q, d), dtype=np.float32)
    x = rng.standard_normal((N, d), dtype=np.float32)
    b = rng.standard_normal(N, dtype=np.float32)
    x[N // 2:N // 2 + 50] = x[:50]  # planted exact ties
    b[N // 2:N // 2 + 50] = b[:50]
    idx, val = grurec.topk(q, x, k, bias=b, num_threads=nthreads)
    for p in (0, 1, 7, k - 1):
        g, e = _rank_counts(q, x, idx[:, p], bias=b, num_threads=nthreads)
        # exact: the same float32 scores, so the counts match the returned list
        np.testing.assert_array_equal(g, (val > val[:, p:p + 1]).sum(1))
        in_list = (val == val[:, p:p + 1]).sum(1) - 1
        assert (e >= in_list).all()
        # a target at position p has standard rank <= p + 1 <= conservative rank
        assert (_ranks(g, e, "standard") <= p + 1).all()
        assert (_ranks(g, e, "conservative") >= p + 1).all()


@pytest.mark.parametrize("Q,N,d,k", [(1, 1, 3, 1), (4, 37, 1, 5), (33, 1000, 17, 20),
                                     (5, 4099, 100, 20), (300, 700, 8, 7)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_topk_with_rank_counts_in_one_pass(simd, nthreads, rng, Q, N, d, k, with_bias):
    """evaluate's fused pass equals topk and rank_counts called apart, exactly
    (tie-heavy integer data), with some queries having no target (-1)."""
    q, x, b = int_data(rng, Q, N, d, -1, 1)
    bias = b if with_bias else None
    t = rng.integers(0, N, Q)
    t[rng.random(Q) < 0.3] = -1
    idx, sc, g, e = _topk_rank_counts(q, x, bias, k, t, nthreads)
    idx2, sc2 = grurec.topk(q, x, k, bias=bias, num_threads=nthreads)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(sc, sc2)
    has = t >= 0
    assert (g[~has] == -1).all() and (e[~has] == -1).all()
    if has.any():
        g2, e2 = _rank_counts(q[has], x, t[has], bias=bias, num_threads=nthreads)
        np.testing.assert_array_equal(g[has], g2)
        np.testing.assert_array_equal(e[has], e2)
        ref = q.astype(np.float64) @ x.T.astype(np.float64) + (b if with_bias else 0.0)
        rg, re = ref_counts(ref[has], t[has])
        np.testing.assert_array_equal(g[has], rg)
        np.testing.assert_array_equal(e[has], re)


def test_topk_rank_counts_checks_targets(rng):
    q = rng.standard_normal((3, 4), dtype=np.float32)
    x = rng.standard_normal((10, 4), dtype=np.float32)
    out_i, out_s = np.empty((3, 2), np.int64), np.empty((3, 2), np.float32)
    g, e = np.empty(3, np.int64), np.empty(3, np.int64)
    for bad in ([0, 10, 1], [0, -2, 1]):
        with pytest.raises(ValueError, match="targets"):
            _core.topk(q, x, None, 2, None, None, None, out_i, out_s, 1,
                       np.array(bad, np.int64), g, e)
    with pytest.raises(ValueError, match="all three"):
        _core.topk(q, x, None, 2, None, None, None, out_i, out_s, 1,
                   np.zeros(3, np.int64), None, e)


def test_rank_counts_dense(nthreads, rng):
    R, N = 57, 1501
    s = rng.integers(-4, 5, (R, N)).astype(np.float32)  # planted ties everywhere
    t = rng.integers(0, N, R)
    g, e = _rank_counts_dense(s, t, num_threads=nthreads)
    rg, re = ref_counts(s.astype(np.float64), t)
    np.testing.assert_array_equal(g, rg)
    np.testing.assert_array_equal(e, re)


def test_rank_counts_dense_equals_rank_counts(simd, rng):
    q = rng.standard_normal((11, 19), dtype=np.float32)
    x = rng.standard_normal((640, 19), dtype=np.float32)
    t = rng.integers(0, 640, 11)
    idx, val = grurec.topk(q, x, 640)
    dense = np.empty((11, 640), np.float32)
    np.put_along_axis(dense, idx, val, axis=1)  # topk's own scores, in item order
    g1, e1 = _rank_counts(q, x, t)
    g2, e2 = _rank_counts_dense(dense, t)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(e1, e2)


# ------------------------------------------------------------------ bad input

def test_bad_inputs(rng):
    x = rng.standard_normal((20, 4), dtype=np.float32)
    q = rng.standard_normal((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="dimensions differ"):
        grurec.topk(q, x[:, :3], 2)
    with pytest.raises(ValueError, match="queries: expected a 1-D or 2-D"):
        grurec.topk(q[None], x, 2)
    with pytest.raises(ValueError, match="items: expected a 2-D"):
        grurec.topk(q, x[0], 2)
    with pytest.raises(TypeError, match="queries"):
        grurec.topk(q.astype(complex), x, 2)
    with pytest.raises(TypeError, match="items"):
        grurec.topk(q, x > 0, 2)
    with pytest.raises(TypeError, match="queries"):
        grurec.topk(np.array([["a"] * 4]), x, 2)
    for k, err in ((0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError),
                   ("2", TypeError), (None, TypeError)):
        with pytest.raises(err, match="k must"):
            grurec.topk(q, x, k)
    with pytest.raises(ValueError, match="num_threads"):
        grurec.topk(q, x, 2, num_threads=-1)
    with pytest.raises(TypeError, match="num_threads"):
        grurec.topk(q, x, 2, num_threads=1.0)
    bad = q.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"queries: non-finite value nan at index \(1, 2\)"):
        grurec.topk(bad, x, 2)
    with pytest.raises(ValueError, match="bias: expected shape"):
        grurec.topk(q, x, 2, bias=np.zeros(19))
    with pytest.raises(ValueError, match="bias: non-finite value inf at index 5"):
        b = np.zeros(20)
        b[5] = np.inf
        grurec.topk(q, x, 2, bias=b)
    bx = x.copy()
    bx[13, 1] = np.nan
    with pytest.raises(ValueError, match=r"items: non-finite value nan at index \(13, 1\)"):
        grurec.topk(q, bx, 2)
    with pytest.raises(ValueError, match="overflow"):
        grurec.topk(np.full((1, 4), 3e38, np.float32), np.full((2, 4), 3e38, np.float32), 1)
    with pytest.raises(ValueError, match="one entry per query"):
        grurec.topk(q, x, 2, exclude=[[1], [2]])
    with pytest.raises(TypeError, match="one sequence per query"):
        grurec.topk(q, x, 2, exclude=[1, 2, 3])
    with pytest.raises(ValueError, match=r"exclude\[1\]: item index 20 out of range"):
        grurec.topk(q, x, 2, exclude=[[0], [20], []])
    with pytest.raises(ValueError, match=r"exclude\[0\]: item index -1 out of range"):
        grurec.topk(q, x, 2, exclude=[[-1], [], []])
    with pytest.raises(TypeError, match=r"exclude\[2\]"):
        grurec.topk(q, x, 2, exclude=[[0], [1], [0.5]])
    with pytest.raises(TypeError, match="allowed: expected a bool"):
        grurec.topk(q, x, 2, allowed=np.ones(20, np.int32))
    with pytest.raises(ValueError, match="allowed: expected shape"):
        grurec.topk(q, x, 2, allowed=np.ones(21, bool))
    with pytest.raises(ValueError, match=r"targets\[1\] = 20 is out of range"):
        _rank_counts(q, x, [0, 20, 1])
    with pytest.raises(ValueError, match="targets: expected shape"):
        _rank_counts(q, x, [0, 1])
    with pytest.raises(TypeError, match="targets"):
        _rank_counts(q, x, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"items: non-finite value nan at index \(13, 1\)"):
        _rank_counts(q, bx, [0, 1, 2])
    with pytest.raises(ValueError, match="scores: non-finite value"):
        s = np.zeros((2, 5), np.float32)
        s[1, 3] = np.nan
        _rank_counts_dense(s, [0, 1])
    with pytest.raises(ValueError, match="mode must be"):
        _ranks([0], [0], "optimistic")


def test_native_checks_arguments(rng):
    """The binding itself rejects what could crash the kernel."""
    x = rng.standard_normal((20, 4), dtype=np.float32)
    q = rng.standard_normal((3, 4), dtype=np.float32)
    oi = np.empty((3, 2), np.int64)
    os_ = np.empty((3, 2), np.float32)

    def call(**kw):
        a = dict(queries=q, items=x, bias=None, k=2, excl_offsets=None, excl_indices=None,
                 allowed=None, out_idx=oi, out_scores=os_, num_threads=1)
        a.update(kw)
        return _core.topk(**a)

    assert call()
    with pytest.raises(ValueError, match="k must be in"):
        call(k=21, out_idx=np.empty((3, 21), np.int64), out_scores=np.empty((3, 21), np.float32))
    with pytest.raises(TypeError, match="float32"):
        call(items=x.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        call(items=np.asfortranarray(x))
    with pytest.raises(ValueError, match="out_idx: expected shape"):
        call(out_idx=np.empty((3, 3), np.int64))
    with pytest.raises(TypeError, match="out_idx: expected dtype int64"):
        call(out_idx=np.empty((3, 2), np.int32))
    with pytest.raises(ValueError, match="give both or neither"):
        call(excl_offsets=np.array([0, 0, 0, 0], np.int64))
    with pytest.raises(ValueError, match="ascending"):
        call(excl_offsets=np.array([0, 2, 2, 2], np.int64), excl_indices=np.array([5, 1], np.int64))
    with pytest.raises(ValueError, match="out of range"):
        call(excl_offsets=np.array([0, 1, 1, 1], np.int64), excl_indices=np.array([99], np.int64))
    with pytest.raises(ValueError, match="end at len"):
        call(excl_offsets=np.array([0, 1, 1, 3], np.int64), excl_indices=np.array([1], np.int64))
    with pytest.raises(ValueError, match="non-decreasing"):
        call(excl_offsets=np.array([0, 1, 0, 1], np.int64), excl_indices=np.array([1], np.int64))
    with pytest.raises(ValueError, match="allowed: expected shape"):
        call(allowed=np.ones(5, bool))
    with pytest.raises(ValueError, match="num_threads"):
        call(num_threads=-2)
    with pytest.raises(ValueError, match="out of range"):
        _core.rank_counts(q, x, None, np.array([0, 1, 20], np.int64), np.empty(3, np.int64),
                          np.empty(3, np.int64), 1)
    with pytest.raises(ValueError, match="out of range"):
        _core.rank_counts_dense(np.zeros((2, 3), np.float32), np.array([0, -1], np.int64),
                                np.empty(2, np.int64), np.empty(2, np.int64), 1)


def test_stream_max(rng):
    a = rng.standard_normal(100003, dtype=np.float32)
    assert _core.stream_max(a, 2) == a.max()
    assert _core.stream_max(a[:5].copy(), 1) == a[:5].max()
