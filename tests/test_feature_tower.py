"""The native item feature tower (cpp/core/item_tower.hpp FeatureTower)
against a float64 NumPy reference and finite differences, at every SIMD
level and with 1 and 2 threads.

    row(i) = keep_i * id[i] + sum_f mean_{c in cats_f(i), c != 0} T_f[c] + z[i] W_z
(the mean divides by the number of categories, the reserved 0 included)."""
import numpy as np
import pytest

import grurec
from grurec import _core

LEVELS = grurec.available_simd_levels()


@pytest.fixture(params=LEVELS)
def simd(request):
    old = grurec.simd_level()
    grurec.set_simd_level(request.param)
    yield request.param
    grurec.set_simd_level(old)


def problem(seed=0, N=9, I=7, Z=5, vocab=(4, 6)):  # noqa: E741 (I: row width)
    rng = np.random.default_rng(seed)
    id_table = rng.standard_normal((N, I)).astype(np.float32)
    fields = []
    for V in vocab:
        lens = rng.integers(0, 4, N)
        off = np.zeros(N + 1, np.int64)
        np.cumsum(lens, out=off[1:])
        ids = rng.integers(0, V + 1, int(off[-1])).astype(np.int32)  # 0 = unknown
        T = rng.standard_normal((V + 1, I)).astype(np.float32)
        T[0] = 0
        fields.append((off, ids, T))
    z = rng.standard_normal((N, Z)).astype(np.float32)
    W_z = rng.standard_normal((Z, I)).astype(np.float32)
    return id_table, fields, z, W_z


def call(items, id_table, fields, z, W_z, dx=None, **kw):
    tri = [(o, i, (T, np.zeros_like(T), None)) for o, i, T in fields]
    wz = None if W_z is None else (W_z, np.zeros_like(W_z), None)
    return _core.feature_tower(np.asarray(items, np.int32), id_table, tri, z, wz, dx, **kw)


def pool(fields, N):
    """P_f [N, V+1] float64: row i is the mean-pooling weights of item i."""
    out = []
    for off, ids, T in fields:
        P = np.zeros((N, T.shape[0]))
        for i in range(N):
            c = ids[off[i]:off[i + 1]]
            for v in c:
                if v:
                    P[i, v] += 1.0 / len(c)
        out.append(P)
    return out


def reference(items, id_table, fields, z, W_z, keep, dx):
    N = id_table.shape[0]
    P = pool(fields, N)
    d = lambda a: np.asarray(a, np.float64)  # noqa: E731
    x = keep[:, None] * d(id_table)[items] + d(z)[items] @ d(W_z)
    for Pf, (_, _, T) in zip(P, fields):
        x += Pf[items] @ d(T)
    d_id = np.zeros_like(d(id_table))
    np.add.at(d_id, items, keep[:, None] * d(dx))
    d_T = [Pf[items].T @ d(dx) for Pf in P]
    dW = d(z)[items].T @ d(dx)
    return x, d_id, d_T, dW


@pytest.mark.parametrize("nt", [1, 2])
def test_forward_backward_match_float64_reference(simd, nt):
    id_table, fields, z, W_z = problem()
    items = np.array([0, 3, 3, 8, 5, 1, 0], np.int32)  # repeats sum their gradients
    dx = np.random.default_rng(1).standard_normal((len(items), id_table.shape[1])).astype(np.float32)
    r = call(items, id_table, fields, z, W_z, dx, num_threads=nt)
    x, d_id, d_T, dW = reference(items, id_table, fields, z, W_z, np.ones(len(items)), dx)
    np.testing.assert_allclose(r["x"], x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["d_id"], d_id, rtol=1e-5, atol=1e-5)
    for a, b in zip(r["d_tables"], d_T):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert not a[0].any()  # the reserved row gets no gradient
    np.testing.assert_allclose(r["dW_z"], dW, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nt", [1, 2])
def test_id_dropout_drops_whole_id_rows(simd, nt):
    id_table, fields, z, W_z = problem(seed=2, N=40)
    items = np.arange(40, dtype=np.int32)
    dx = np.ones((40, id_table.shape[1]), np.float32)
    r = call(items, id_table, fields, z, W_z, dx, id_dropout=0.5, seed=7, num_threads=nt)
    keep = r["keep"].astype(np.float64)
    assert set(np.unique(keep)) == {0.0, 1.0} and 5 < keep.sum() < 35
    x, d_id, d_T, dW = reference(items, id_table, fields, z, W_z, keep, dx)
    np.testing.assert_allclose(r["x"], x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["d_id"], d_id, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["dW_z"], dW, rtol=1e-5, atol=1e-5)
    # the same seed draws the same rows
    again = call(items, id_table, fields, z, W_z, None, id_dropout=0.5, seed=7)
    np.testing.assert_array_equal(again["keep"], r["keep"])
    everything = call(items, id_table, fields, z, W_z, None, id_dropout=1.0)
    np.testing.assert_allclose(everything["x"], reference(items, id_table, fields, z, W_z,
                                                          np.zeros(40), dx)[0], rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences(simd):
    """d/dθ of L = sum(x * dx) by central differences in float64 of the
    float32 tower (the tower is linear in every parameter: exact up to rounding)."""
    id_table, fields, z, W_z = problem(seed=3, N=6, I=4, Z=3, vocab=(3,))
    items = np.array([1, 4, 4, 2], np.int32)
    dx = np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32)
    r = call(items, id_table, fields, z, W_z, dx)
    eps = 1e-2

    def loss():
        return float((call(items, id_table, fields, z, W_z)["x"].astype(np.float64) * dx).sum())

    for arr, grad in ((W_z, r["dW_z"]), (fields[0][2], r["d_tables"][0]), (id_table, r["d_id"])):
        for idx in np.ndindex(*arr.shape):
            if arr is fields[0][2] and idx[0] == 0:
                continue  # the reserved row is not a parameter
            old = arr[idx]
            arr[idx] = old + eps
            up = loss()
            arr[idx] = old - eps
            down = loss()
            arr[idx] = old
            assert abs((up - down) / (2 * eps) - grad[idx]) < 2e-3, (idx, grad[idx])


def test_no_fields_and_no_z_is_the_id_table():
    id_table, _, _, _ = problem()
    items = np.array([2, 0, 2], np.int32)
    r = call(items, id_table, [], None, None, np.ones((3, 7), np.float32))
    np.testing.assert_array_equal(r["x"], id_table[items])


@pytest.mark.parametrize("bad, match", [
    (lambda f: [(f[0][0][:-1], f[0][1], f[0][2])], r"feature field 0 offsets: expected shape"),
    (lambda f: [(f[0][0], f[0][1] + 100, f[0][2])], r"feature field 0: category id \d+ at position 0 is outside"),
    (lambda f: [(f[0][0], f[0][1], f[0][2][:, :3].copy())], r"feature field 0: table must be"),
])
def test_bad_arrays_are_rejected(bad, match):
    id_table, fields, z, W_z = problem()
    fields[0] = (fields[0][0].copy(), fields[0][1].copy(), fields[0][2])
    if len(fields[0][1]) == 0:
        pytest.skip("empty field")
    with pytest.raises(ValueError, match=match):
        call([0], id_table, bad(fields), z, W_z)
    with pytest.raises(ValueError, match="items: index 9 at position 0"):
        call([9], id_table, fields, z, W_z)
