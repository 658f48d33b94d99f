"""The native GRU layer against the float64 NumPy reference and finite
differences, at every SIMD level and at 1 and 2 threads."""
import numpy as np
import pytest

import grurec
from grurec import _core

import reference as ref

# (T, B, I, H): odd sizes, batch 1, hidden 1, and the GRU4Rec shapes.
SHAPES = [
    (1, 1, 1, 1),
    (1, 1, 7, 1),
    (1, 3, 5, 17),
    (2, 1, 33, 9),
    (3, 5, 11, 23),
    (1, 32, 100, 100),
    (4, 7, 19, 129),
    (1, 80, 224, 224),
]


CELLS = ("reset-before", "reset-after")


def make(rng, T, B, I, H, scale=0.5):
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.uniform(-0.9, 0.9, (B, H)).astype(np.float32)
    W_ih = (rng.standard_normal((I, 3 * H)) * scale / np.sqrt(I)).astype(np.float32)
    W_hh = (rng.standard_normal((H, 3 * H)) * scale / np.sqrt(H)).astype(np.float32)
    b = (rng.standard_normal(3 * H) * 0.1).astype(np.float32)
    return x, h0, W_ih, W_hh, b


def recurrent_bias(rng, cell, H):
    """b_hh for the reset-after cell, None for reset-before."""
    return (rng.standard_normal(3 * H) * 0.1).astype(np.float32) if cell == "reset-after" else None


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_forward_matches_reference(simd, nthreads, rng, T, B, I, H, cell):
    x, h0, W_ih, W_hh, b = make(rng, T, B, I, H)
    bh = recurrent_bias(rng, cell, H)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=nthreads, b_hh=bh)
    h_ref, (gates_ref, rh_ref) = ref.gru_forward(x, h0, W_ih, W_hh, b, bh)
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=2e-6)
    np.testing.assert_allclose(cache.gates, gates_ref, rtol=0, atol=2e-6)
    np.testing.assert_allclose(cache.rh, rh_ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_backward_matches_reference(simd, nthreads, rng, T, B, I, H, cell):
    x, h0, W_ih, W_hh, b = make(rng, T, B, I, H)
    bh = recurrent_bias(rng, cell, H)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=nthreads, b_hh=bh)
    g = grurec.gru_backward(dh, cache, x, h0, h, W_ih, W_hh, num_threads=nthreads)
    dx, dh0, dW_ih, dW_hh, db, *dbh = ref.gru_backward(dh, x, h0, W_ih, W_hh, b, bh)
    # Gradients sum over B*T rows of O(1) terms: scale atol with that count.
    tol = 3e-6 * np.sqrt(T * B * max(I, H))
    np.testing.assert_allclose(g.dx, dx, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(g.dh0, dh0, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(g.dW_ih, dW_ih, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(g.dW_hh, dW_hh, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(g.db, db, rtol=1e-5, atol=tol)
    if cell == "reset-after":
        np.testing.assert_allclose(g.db_hh, dbh[0], rtol=1e-5, atol=tol)
    else:
        assert g.db_hh is None


def test_single_step_shapes(rng):
    x, h0, W_ih, W_hh, b = make(rng, 1, 4, 6, 5)
    h, cache = grurec.gru_forward(x[0], h0, W_ih, W_hh, b)
    assert h.shape == (4, 5)
    g = grurec.gru_backward(np.ones_like(h), cache, x[0], h0, h, W_ih, W_hh)
    assert g.dx.shape == (4, 6) and g.dh0.shape == (4, 5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", [(1, 2, 3, 4), (3, 2, 5, 3), (2, 1, 1, 1)])
def test_backward_matches_finite_differences(simd, nthreads, rng, T, B, I, H, cell):
    """Central differences in float64 through the reference forward, compared
    with the native float32 gradient of L = sum(h * c)."""
    x, h0, W_ih, W_hh, b = make(rng, T, B, I, H, scale=1.0)
    bh = recurrent_bias(rng, cell, H)
    c = rng.standard_normal((T, B, H))
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=nthreads, b_hh=bh)
    g = grurec.gru_backward(c.astype(np.float32), cache, x, h0, h, W_ih, W_hh,
                            num_threads=nthreads)
    params = {"x": x, "h0": h0, "W_ih": W_ih, "W_hh": W_hh, "b": b}
    grads = {"x": g.dx, "h0": g.dh0, "W_ih": g.dW_ih, "W_hh": g.dW_hh, "b": g.db}
    if bh is not None:
        params["b_hh"], grads["b_hh"] = bh, g.db_hh

    def loss(p):
        hs, _ = ref.gru_forward(p["x"], p["h0"], p["W_ih"], p["W_hh"], p["b"], p.get("b_hh"))
        return float((hs * c).sum())

    eps = 1e-6
    for name, value in params.items():
        base = {k: v.astype(np.float64) for k, v in params.items()}
        fd = np.zeros(value.shape)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in base.items()}
            minus = {k: v.copy() for k, v in base.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], fd, rtol=1e-4, atol=1e-5, err_msg=name)


def test_results_do_not_depend_on_threads_or_simd(rng):
    """Same inputs, every level x threads: equal up to float rounding."""
    x, h0, W_ih, W_hh, b = make(rng, 3, 37, 50, 61)
    dh = rng.standard_normal((3, 37, 61)).astype(np.float32)
    before = grurec.simd_level()
    outs = []
    try:
        for level in grurec.available_simd_levels():
            grurec.set_simd_level(level)
            for nt in (1, 2):
                h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=nt)
                g = grurec.gru_backward(dh, cache, x, h0, h, W_ih, W_hh, num_threads=nt)
                outs.append((h, *g))
    finally:
        grurec.set_simd_level(before)
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            if a is not None:
                np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


def test_threads_give_bitwise_equal_results_within_a_level(rng):
    """Threads split disjoint output tiles, so the sums are formed identically."""
    x, h0, W_ih, W_hh, b = make(rng, 2, 80, 64, 96)
    h1, _ = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=1)
    h2, _ = grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=2)
    np.testing.assert_array_equal(h1, h2)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_accumulates(rng, cell):
    """The native kernel adds into gradient buffers: calling it twice doubles them."""
    T, B, I, H = 2, 3, 4, 5
    x, h0, W_ih, W_hh, b = make(rng, T, B, I, H)
    bh = recurrent_bias(rng, cell, H)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b, b_hh=bh)
    once = grurec.gru_backward(dh, cache, x, h0, h, W_ih, W_hh)
    bufs = [np.zeros_like(a) for a in once[:5]]
    dbh = None if bh is None else np.zeros_like(bh)
    dA = np.zeros((T, B, 3 * H), np.float32)
    for _ in range(2):
        _core.gru_backward(*bufs, dA, dh, cache.gates, cache.rh, x, h0, h, W_ih, W_hh, dbh, 1)
    for twice, one in zip(bufs + [dbh], once):
        if one is not None:
            np.testing.assert_allclose(twice, 2 * one, rtol=1e-6, atol=1e-6)
    # dA is the pre-activation gradient: dW_ih = sum_t x_t^T dA_t.
    np.testing.assert_allclose(np.einsum("tbi,tbj->ij", x, dA), once.dW_ih, rtol=1e-5, atol=1e-5)


def test_optional_gradients_may_be_skipped(rng):
    T, B, I, H = 2, 3, 4, 5
    x, h0, W_ih, W_hh, b = make(rng, T, B, I, H)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b)
    full = grurec.gru_backward(dh, cache, x, h0, h, W_ih, W_hh)
    dh0 = np.zeros((B, H), np.float32)
    dW_hh = np.zeros((H, 3 * H), np.float32)
    db = np.zeros(3 * H, np.float32)
    _core.gru_backward(None, dh0, None, dW_hh, db, None, dh, cache.gates, cache.rh, x, h0, h,
                       W_ih, W_hh, None, 1)
    np.testing.assert_array_equal(dh0, full.dh0)
    np.testing.assert_array_equal(dW_hh, full.dW_hh)


def test_saturated_gates_stay_finite():
    """Huge pre-activations saturate sigmoid/tanh without inf or NaN."""
    T, B, I, H = 1, 2, 3, 4
    x = np.full((T, B, I), 1e4, np.float32)
    x[:, 1] = -1e4
    h0 = np.zeros((B, H), np.float32)
    W_ih = np.ones((I, 3 * H), np.float32)
    W_hh = np.ones((H, 3 * H), np.float32)
    b = np.zeros(3 * H, np.float32)
    h, cache = grurec.gru_forward(x, h0, W_ih, W_hh, b)
    assert np.isfinite(h).all() and np.isfinite(cache.gates).all()
    np.testing.assert_allclose(h[0, 0], 1.0, atol=1e-6)  # z = 1, n = 1
    np.testing.assert_allclose(h[0, 1], 0.0, atol=1e-6)  # z = 0 keeps h0 = 0


def test_bad_inputs_raise_clear_errors(rng):
    x, h0, W_ih, W_hh, b = make(rng, 1, 3, 4, 5)
    with pytest.raises(ValueError, match=r"W_ih: expected shape \(4, 15\)"):
        grurec.gru_forward(x, h0, W_ih[:, :-1], W_hh, b)
    with pytest.raises(ValueError, match="h0: expected 3 rows"):
        grurec.gru_forward(x, h0[:2], W_ih, W_hh, b)
    with pytest.raises(ValueError, match=r"x: expected \(B, I\) or \(T, B, I\)"):
        grurec.gru_forward(x[0, 0], h0, W_ih, W_hh, b)
    bad = x.copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"x: non-finite value nan at index \(0, 1, 2\)"):
        grurec.gru_forward(bad, h0, W_ih, W_hh, b)
    with pytest.raises(ValueError, match="num_threads"):
        grurec.gru_forward(x, h0, W_ih, W_hh, b, num_threads=-2)
    # The raw binding is strict about dtype and writability.
    h = np.empty((1, 3, 5), np.float32)
    gates = np.empty((1, 3, 15), np.float32)
    rh = np.empty((1, 3, 5), np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        _core.gru_forward(h, gates, rh, x.astype(np.float64), h0, W_ih, W_hh, b, None, 1)
    h.flags.writeable = False
    with pytest.raises(ValueError, match="h_out: must be writable"):
        _core.gru_forward(h, gates, rh, x, h0, W_ih, W_hh, b, None, 1)
