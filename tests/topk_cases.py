"""Inputs and comparisons shared by the top-k prefilter tests
(test_topk_prefilters.py, test_topk_bf16.py, test_topk_i16.py, test_topk_int8.py)."""
import numpy as np


def bits(a):
    """float32 values as their bit patterns (exact comparison, -0.0 != 0.0)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same(got, want, st, used, blocks):
    """got == want, (indices, scores) with the scores compared as bit patterns;
    st: the prefilter's stats of the call that gave got. used: it must have
    bounded pairs in item blocks (counter ``blocks``) (True), must have bounded
    none (False), or either (None)."""
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(bits(got[1]), bits(want[1]))
    if used:
        assert st["pairs"] > 0 and st[blocks] > 0, st
    elif used is not None:
        assert st["pairs"] == 0, st


def gaussian(rng, Q, N, d, bias_scale=1.0):
    """Standard normal queries (Q, d) and items (N, d), and a bias (N,) with
    standard deviation bias_scale, all float32 (drawn in that order)."""
    q = rng.standard_normal((Q, d)).astype(np.float32)
    x = rng.standard_normal((N, d)).astype(np.float32)
    b = (bias_scale * rng.standard_normal(N)).astype(np.float32)
    return q, x, b


def wide_magnitudes(rng, Q, N, d):
    """Queries, items and biases with random signs over 60 orders of magnitude
    (items and biases 1e-30..1e30, queries 1e-30..1e5), a third of the items
    at ordinary magnitudes so that a prefilter has something to skip."""
    def sign(shape):
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0)

    x = (sign((N, d)) * 10.0 ** rng.uniform(-30, 30, (N, d))).astype(np.float32)
    q = (sign((Q, d)) * 10.0 ** rng.uniform(-30, 5, (Q, d))).astype(np.float32)
    small = rng.random(N) < 0.33
    x[small] = rng.standard_normal((small.sum(), d)).astype(np.float32)
    b = (sign(N) * 10.0 ** rng.uniform(-30, 30, N)).astype(np.float32)
    return q, x, b


class Prefilter:
    """One of topk's many-query prefilters: the SIMD level it runs at, its
    switch and counters, and the smallest task it takes. ``counts``: whether
    it also decides rank counts (bf16) or leaves them to the float32 path
    (int16)."""

    def __init__(self, name, level, switch, enabled, stats, available, blocks, min_queries,
                 counts):
        self.name, self.level, self.blocks = name, level, blocks
        self.switch, self.enabled, self.stats = switch, enabled, stats
        self.available, self.min_queries, self.counts = available, min_queries, counts
        self.env = f"GRUREC_TOPK_{name.upper()}"  # "0" turns it off at load

    def at_its_level(self):
        """Generator for a fixture: this prefilter's level, switched on; the
        previous level and switch restored after."""
        import grurec

        level, on = grurec.simd_level(), self.enabled()
        grurec.set_simd_level(self.level)
        self.switch(True)
        try:
            yield self
        finally:
            grurec.set_simd_level(level)
            self.switch(on)

    def run(self, fn, on):
        """fn() with the prefilter on or off; (result, stats of that call)."""
        self.switch(on)
        self.stats(True)
        try:
            out = fn()
        finally:
            self.switch(True)
        return out, self.stats(True)

    def same_topk(self, fn, used=True):
        """fn() -> (idx, scores) identical with the prefilter off and on;
        returns the result and the prefilter's stats (used as in assert_same)."""
        (i0, v0), st0 = self.run(fn, False)
        (i1, v1), st1 = self.run(fn, True)
        assert st0["pairs"] == 0
        assert_same((i1, v1), (i0, v0), st1, used, self.blocks)
        return (i1, v1), st1


def prefilters():
    """The two prefilters (bf16 at avx512 with AVX512_BF16, int16 at avx2)."""
    import grurec
    from grurec import _core

    levels = grurec.available_simd_levels()
    return [
        Prefilter("bf16", "avx512", _core.set_topk_bf16, _core.topk_bf16_enabled,
                  _core.topk_bf16_stats, _core.topk_bf16_available() and "avx512" in levels,
                  "blocks_bf16", 20, True),
        Prefilter("i16", "avx2", _core.set_topk_i16, _core.topk_i16_enabled,
                  _core.topk_i16_stats, _core.topk_i16_available() and "avx2" in levels,
                  "blocks_i16", 22, False),
    ]


def at_level(level, fn):
    """fn() at SIMD level ``level``, the previous level restored after."""
    import grurec

    before = grurec.simd_level()
    grurec.set_simd_level(level)
    try:
        return fn()
    finally:
        grurec.set_simd_level(before)


def canonical_scores(q, x, bias=None):
    """Every pair's canonical score (dot + bias) at the current level, from
    topk with k = N and its prefilters off."""
    import grurec
    from grurec import _core

    N = x.shape[0]
    on = _core.topk_bf16_enabled(), _core.topk_i16_enabled()
    _core.set_topk_bf16(False)
    _core.set_topk_i16(False)
    try:
        idx, val = grurec.topk(q, x, N, bias=bias, num_threads=1)
    finally:
        _core.set_topk_bf16(on[0])
        _core.set_topk_i16(on[1])
    out = np.empty_like(val)
    np.put_along_axis(out, idx, val, axis=1)
    return out


def bound_cases(rng, Q=20, N=3000):
    """(name, queries, items, bias) on which a prefilter's bound must hold for
    every pair: Gaussian, near-ties, 60 orders of magnitude, subnormal items
    against huge queries, tiny and huge biases, d = 1."""
    def s(shape):
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0)

    cases = []
    q, x, b = gaussian(rng, Q, N, 100)
    cases.append(("gaussian", q, x, b))
    base = rng.standard_normal(33).astype(np.float32)
    x = base + (1e-6 * rng.standard_normal((N, 33))).astype(np.float32)
    cases.append(("near-ties", rng.standard_normal((Q, 33)).astype(np.float32), x, None))
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
    return cases
