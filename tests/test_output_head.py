"""The sampled head with item features on the output side (cpp/core/head.hpp,
set_output) against a float64 NumPy reference and central differences of it,
at every SIMD level and with 1 and 2 threads.

    S[i] = keep_i W_y[i] + sum_f mean_{c in cats_f(i)} T_f[c] + z[i] W_z
    R[b, j] = q[b] . S[cand_j] + keep_j b_y[cand_j]   (- logQ, cross-entropy)
    L = sum_b loss_rows(R)[b] / batch_size
"""
import numpy as np
import pytest
from reference import loss_rows
from test_feature_tower import pool

import grurec
from grurec import _core

LEVELS = grurec.available_simd_levels()


@pytest.fixture(params=LEVELS)
def simd(request):
    old = grurec.simd_level()
    grurec.set_simd_level(request.param)
    yield request.param
    grurec.set_simd_level(old)


def problem(seed=0, N=12, D=5, B=4, Z=3, vocab=(3, 4)):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, D)).astype(np.float32)
    target = rng.choice(N, B, replace=False).astype(np.int32)
    W_y = (0.5 * rng.standard_normal((N, D))).astype(np.float32)
    b_y = (0.1 * rng.standard_normal(N)).astype(np.float32)
    pop = rng.integers(1, 20, N).astype(np.float32)
    fields = []
    for V in vocab:
        lens = rng.integers(0, 3, N)
        off = np.zeros(N + 1, np.int64)
        np.cumsum(lens, out=off[1:])
        ids = rng.integers(0, V + 1, int(off[-1])).astype(np.int32)
        T = (0.5 * rng.standard_normal((V + 1, D))).astype(np.float32)
        T[0] = 0
        fields.append((off, ids, T))
    z = rng.standard_normal((N, Z)).astype(np.float32)
    W_z = (0.3 * rng.standard_normal((Z, D))).astype(np.float32)
    return dict(q=q, target=target, W_y=W_y, b_y=b_y, pop=pop, fields=fields, z=z, W_z=W_z)


CFG = dict(loss="cross-entropy", n_sample=6, sample_alpha=0.5, logq=1.0, elu=0.0, bpreg=0.0,
           batch_size=5)


def call(p, cfg=CFG, features=True, **kw):
    tri = [(o, i, (T, np.zeros_like(T), None)) for o, i, T in p["fields"]] if features else []
    z = p["z"] if features else None
    wz = (p["W_z"], np.zeros_like(p["W_z"]), None) if features else None
    return _core.sampled_head(p["q"], p["target"], p["W_y"], p["b_y"], p["pop"], cfg["loss"],
                              cfg["n_sample"], cfg["sample_alpha"], cfg["logq"], cfg["elu"],
                              cfg["bpreg"], cfg["batch_size"], tri, z, wz, **kw)


def ref_loss(p, cand, keep_item, cfg=CFG):
    """float64 loss of the candidates ``cand`` with per-item keep (a dict)."""
    d = lambda a: np.asarray(a, np.float64)  # noqa: E731
    N = p["W_y"].shape[0]
    k = np.array([keep_item.get(i, 1.0) for i in range(N)])
    S = k[:, None] * d(p["W_y"]) + d(p["z"]) @ d(p["W_z"])
    for Pf, (_, _, T) in zip(pool(p["fields"], N), p["fields"]):
        S += Pf @ d(T)
    R = d(p["q"]) @ S[cand].T + (k * d(p["b_y"]))[cand]
    B = len(p["target"])
    qc = None
    if cfg["logq"] > 0:
        pop = d(p["pop"])
        qc = np.where(np.arange(len(cand)) < B, cfg["logq"] * np.log(pop[cand]),
                      cfg["logq"] * cfg["sample_alpha"] * np.log(pop[cand]))
    return loss_rows(cfg["loss"], R, qc, cfg["elu"], cfg["bpreg"]).sum() / cfg["batch_size"]


def central(f, arr, h=1e-5):
    g = np.zeros(arr.shape)
    for idx in np.ndindex(*arr.shape):
        old = arr[idx]
        arr[idx] = old + h
        up = f()
        arr[idx] = old - h
        down = f()
        arr[idx] = old
        g[idx] = (up - down) / (2 * h)
    return g


def as64(p):
    """A float64 copy of the problem (the reference differentiates it)."""
    out = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32
               else v) for k, v in p.items()}
    out["fields"] = [(o, i, np.asarray(T, np.float64)) for o, i, T in p["fields"]]
    return out


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("id_dropout", [0.0, 0.5])
def test_output_features_match_float64_reference(simd, nt, loss, id_dropout):
    cfg = dict(CFG, loss=loss, logq=1.0 if loss == "cross-entropy" else 0.0,
               elu=0.5 if loss == "bpr-max" else 0.0, bpreg=0.3 if loss == "bpr-max" else 0.0)
    p = problem(seed=1)
    r = call(p, cfg, id_dropout=id_dropout, seed=3, num_threads=nt)
    cand = r["cand"].astype(np.int64)
    assert len(cand) == 4 + cfg["n_sample"] and len(set(cand)) < len(cand)  # duplicates
    keep = dict(zip(r["uniq"].tolist(), r["keep"].astype(float).tolist()))
    if id_dropout:
        assert 0 < sum(keep.values()) < len(keep)  # some rows dropped, some kept
    else:
        assert all(v == 1.0 for v in keep.values())
    P = as64(p)
    f = lambda: ref_loss(P, cand, keep, cfg)  # noqa: E731
    assert r["loss"] / cfg["batch_size"] == pytest.approx(f(), rel=1e-5, abs=1e-6)
    tol = dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(r["dq"], central(f, P["q"]), **tol)
    np.testing.assert_allclose(r["dW_y"], central(f, P["W_y"]), **tol)
    np.testing.assert_allclose(r["db_y"], central(f, P["b_y"]), **tol)
    np.testing.assert_allclose(r["dW_z"], central(f, P["W_z"]), **tol)
    for a, (_, _, T) in zip(r["d_tables"], P["fields"]):
        g = central(f, T)
        g[0] = 0  # the reserved row is not a parameter
        np.testing.assert_allclose(a, g, **tol)
        assert not a[0].any()
    # a dropped candidate's id row and bias get no gradient at all
    for i, k in keep.items():
        if k == 0.0:
            assert not r["dW_y"][i].any() and r["db_y"][i] == 0.0


def test_thread_counts_agree(simd):
    p = problem(seed=2)
    a = call(p, id_dropout=0.3, seed=5, num_threads=1)
    b = call(p, id_dropout=0.3, seed=5, num_threads=2)
    np.testing.assert_array_equal(a["cand"], b["cand"])
    np.testing.assert_array_equal(a["keep"], b["keep"])
    for k in ("dq", "dW_y", "db_y", "dW_z"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nt", [1, 2])
def test_zero_features_are_the_id_only_head_bit_for_bit(simd, nt):
    p = problem(seed=4)
    zero = dict(p, z=np.zeros_like(p["z"]), W_z=np.zeros_like(p["W_z"]),
                fields=[(o, i, np.zeros_like(T)) for o, i, T in p["fields"]])
    a = call(zero, features=True, seed=9, num_threads=nt)
    b = call(p, features=False, seed=9, num_threads=nt)
    np.testing.assert_array_equal(a["cand"], b["cand"])
    assert a["loss"] == b["loss"]
    for k in ("dq", "dW_y", "db_y"):
        np.testing.assert_array_equal(a[k], b[k])
