"""The blocked sgemm kernel against float64 NumPy, every SIMD level, 1 and 2 threads."""
import numpy as np
import pytest

from grurec import _core

SHAPES = [
    (1, 1, 1),
    (1, 300, 100),  # a single live session
    (7, 13, 5),
    (17, 33, 257),  # K crosses a packing block
    (80, 672, 224),  # the GRU4Rec RetailRocket input product
    (224, 672, 80),  # its weight gradient
    (130, 1100, 3),  # N crosses the column block
    (3, 5, 600),
    (512, 100, 300),  # a query gradient dR W: few columns, run with the roles swapped
    (200, 20, 45),  # the same, K within one packing block
]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt", "strided"])
def test_sgemm_matches_numpy(simd, nthreads, rng, M, N, K, layout):
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    if layout in ("tn", "tt"):
        a = np.ascontiguousarray(a.T).T  # column-major view of the same values
    if layout in ("nt", "tt"):
        b = np.ascontiguousarray(b.T).T
    if layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
        b = np.repeat(b, 3, axis=0)[::3]
    c = np.empty((M, N), np.float32)
    _core.sgemm(a, b, c, 1.0, 0.0, nthreads)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=2e-6 * np.sqrt(K) * 4)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, -2.0), (2.0, 0.0)])
@pytest.mark.parametrize("M,N,K", [(37, 70, 45), (200, 20, 45)])
def test_sgemm_alpha_beta(simd, nthreads, rng, alpha, beta, M, N, K):
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    c0 = rng.standard_normal((M, N), dtype=np.float32)
    c = c0.copy()
    _core.sgemm(a, b, c, alpha, beta, nthreads)
    ref = alpha * (a.astype(np.float64) @ b) + beta * c0
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("M,N,K", [(512, 100, 300), (200, 20, 45)])
def test_sgemm_row_alone_equals_row_in_batch(simd, nthreads, rng, beta, M, N, K):
    """Every row of a product equals, bit for bit, the same row computed alone (M = 1
    runs unpacked): also for few columns and many rows, which run with the roles
    swapped (C^T = B^T A^T) and are transposed back."""
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    c0 = rng.standard_normal((M, N), dtype=np.float32)
    c = c0.copy()
    _core.sgemm(a, b, c, 1.0, beta, nthreads)
    for i in (0, 1, M // 2, M - 1):
        row = c0[i:i + 1].copy()
        _core.sgemm(a[i:i + 1], b, row, 1.0, beta, 1)
        np.testing.assert_array_equal(c[i], row[0], err_msg=f"row {i}")


def test_sgemm_beta_zero_ignores_nan_in_c(simd):
    a = np.ones((9, 4), np.float32)
    b = np.ones((4, 20), np.float32)
    c = np.full((9, 20), np.nan, np.float32)
    _core.sgemm(a, b, c, 1.0, 0.0, 2)
    np.testing.assert_array_equal(c, 4.0)


def test_sgemm_k_zero(simd):
    a = np.ones((3, 0), np.float32)
    b = np.ones((0, 4), np.float32)
    c = np.full((3, 4), 5.0, np.float32)
    _core.sgemm(a, b, c, 1.0, 0.5, 1)
    np.testing.assert_array_equal(c, 2.5)


def test_sgemm_rejects_bad_arrays():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.sgemm(a, np.ones((5, 2), np.float32), np.empty((3, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.sgemm(a.astype(np.float64), np.ones((4, 2), np.float32), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"c: expected shape \(3, 2\)"):
        _core.sgemm(a, np.ones((4, 2), np.float32), np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.sgemm(a, np.ones((4, 2), np.float32), np.empty((2, 3), np.float32).T)
    with pytest.raises(ValueError, match="num_threads"):
        _core.sgemm(a, np.ones((4, 2), np.float32), np.empty((3, 2), np.float32), num_threads=-1)
