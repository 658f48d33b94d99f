"""Inputs and comparisons shared by the top-k prefilter tests
(test_topk_bf16.py, test_topk_int8.py)."""
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
