"""Each loss and its gradient against the NumPy reference of the published
formulas and central finite differences; every SIMD level, 1 and 2 threads."""
import numpy as np
import pytest

from grurec import _core

import reference as ref

LOSSES = ["cross-entropy", "bpr-max", "top1-max"]


def native(kind, R, q=None, elu=0.0, bpreg=0.0, scale=1.0, nt=1):
    R = np.ascontiguousarray(R, np.float32)
    dR = np.empty_like(R)
    q32 = None if q is None else np.ascontiguousarray(q, np.float32)
    total = _core.loss(kind, R, q32, elu, bpreg, scale, dR, nt)
    return total, dR


def numeric_grad(kind, R, q, elu, bpreg, eps=1e-6):
    R = R.astype(np.float64)
    g = np.zeros_like(R)
    for idx in np.ndindex(R.shape):
        p, m = R.copy(), R.copy()
        p[idx] += eps
        m[idx] -= eps
        g[idx] = (ref.loss_rows(kind, p, q, elu, bpreg).sum()
                  - ref.loss_rows(kind, m, q, elu, bpreg).sum()) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("B,C", [(1, 1), (1, 2), (3, 7), (5, 40), (17, 53)])
@pytest.mark.parametrize("elu", [0.0, 0.5])
def test_loss_value_and_gradient(simd, nthreads, rng, kind, B, C, elu):
    if kind != "cross-entropy" and C == 1:
        pytest.skip("ranking losses need at least one negative")
    R = rng.standard_normal((B, C)) * 2
    q = rng.standard_normal(C) if kind == "cross-entropy" else None
    bpreg = 1.95 if kind == "bpr-max" else 0.0
    total, dR = native(kind, R, q, elu, bpreg, scale=1.0, nt=nthreads)
    want = ref.loss_rows(kind, R.astype(np.float32), q, elu, bpreg).sum()
    assert total == pytest.approx(want, rel=1e-5, abs=1e-5)
    if B * C <= 300:
        g = numeric_grad(kind, R.astype(np.float32).astype(np.float64), q, elu, bpreg)
        np.testing.assert_allclose(dR, g, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_wide_rows_match_reference_gradient_by_linearity(simd, rng, kind):
    """For a realistic width (B=32, C=2080) check the gradient through a
    random directional derivative against the float64 reference."""
    B, C = 32, 2080
    R = rng.standard_normal((B, C)).astype(np.float32)
    q = rng.standard_normal(C).astype(np.float32) if kind == "cross-entropy" else None
    total, dR = native(kind, R, q, 0.5, 1.0 if kind == "bpr-max" else 0.0, nt=2)
    f = lambda X: ref.loss_rows(kind, X, q, 0.5, 1.0 if kind == "bpr-max" else 0.0).sum()
    assert total == pytest.approx(f(R), rel=1e-5)
    v = rng.standard_normal((B, C))
    eps = 1e-4
    fd = (f(R + eps * v) - f(R - eps * v)) / (2 * eps)
    assert (dR * v).sum() == pytest.approx(fd, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_stays_finite_for_extreme_scores(simd, kind):
    R = np.array([[80.0, -80.0, 0.0, 85.0], [-85.0, 80.0, 60.0, -60.0]], np.float32)
    total, dR = native(kind, R, None, 0.0, 1.0 if kind == "bpr-max" else 0.0)
    assert np.isfinite(total) and np.isfinite(dR).all()


def test_scale_multiplies_gradient(rng):
    R = rng.standard_normal((4, 9))
    _, d1 = native("bpr-max", R, None, 0.5, 1.0, scale=1.0)
    _, d2 = native("bpr-max", R, None, 0.5, 1.0, scale=0.25)
    np.testing.assert_allclose(d2, 0.25 * d1, rtol=1e-6, atol=1e-9)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss must be"):
        native("hinge", np.zeros((2, 3)))


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
@pytest.mark.parametrize("mu", [0.0, 0.4])
def test_adagrad_momentum_matches_formula(simd, rng, mu, nesterov):
    n = 37
    w = rng.standard_normal(n).astype(np.float32)
    acc = rng.uniform(0, 1, n).astype(np.float32)
    vel = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    lr, eps = 0.05, 1e-6
    w64, acc64, vel64 = w.astype(np.float64), acc.astype(np.float64), vel.astype(np.float64)
    acc64 = acc64 + g.astype(np.float64) ** 2
    step = lr * g / np.sqrt(acc64 + eps)
    if mu > 0:
        vel64 = mu * vel64 - step
        w64 = w64 + (mu * vel64 - step if nesterov else vel64)
    else:
        w64 = w64 - step
    _core.adagrad(w, acc, vel if mu > 0 else None, g, lr, mu, eps, nesterov)
    np.testing.assert_allclose(acc, acc64, rtol=1e-6)
    np.testing.assert_allclose(w, w64, rtol=1e-5, atol=1e-6)
    if mu > 0:
        np.testing.assert_allclose(vel, vel64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [1, 7, 10_000])
def test_adam_matches_formula(simd, rng, t):
    """The kernel with SparseOptimizer's bias corrections against the paper's
    form: m_hat / (sqrt(v_hat) + eps), float64."""
    n = 37
    w = rng.standard_normal(n).astype(np.float32)
    m = (0.1 * rng.standard_normal(n)).astype(np.float32)
    v = rng.uniform(0, 0.01, n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    # The betas as the kernel holds them (float32): 1 - beta is then exact.
    lr, b1, b2, eps = 0.01, float(np.float32(0.9)), float(np.float32(0.999)), 1e-8
    m0 = m.copy()
    m64 = b1 * m.astype(np.float64) + (1 - b1) * g
    v64 = b2 * v.astype(np.float64) + (1 - b2) * g.astype(np.float64) ** 2
    w64 = w - lr * (m64 / (1 - b1 ** t)) / (np.sqrt(v64 / (1 - b2 ** t)) + eps)
    _core.adam(w, m, v, g, lr, b1, b2, eps, t)
    # m's two terms can cancel: its error is relative to their sizes
    np.testing.assert_allclose(m, m64, rtol=0, atol=1e-6 * (np.abs(m0).max() + np.abs(g).max()))
    np.testing.assert_allclose(v, v64, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(w, w64, rtol=1e-6, atol=1e-7)


def test_adam_rejects_step_zero():
    z = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="t must be >= 1"):
        _core.adam(z, z.copy(), z.copy(), z.copy(), 0.1, 0.9, 0.999, 1e-8, 0)
