"""Functional wrappers around the native GRU layer.

The math (see ``cpp/gru.hpp``): gate order ``[r | z | n]``. Without ``b_hh``
the reset-before cell (GRU4Rec's original form):

    r_t = sigmoid(x_t W_r + h_{t-1} U_r + b_r)
    z_t = sigmoid(x_t W_z + h_{t-1} U_z + b_z)
    n_t = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n)
    h_t = (1 - z_t) * h_{t-1} + z_t * n_t

with ``W_ih = [W_r | W_z | W_n]`` of shape (I, 3H), ``W_hh = [U_r | U_z | U_n]``
of shape (H, 3H) and ``b`` of shape (3H,). With a recurrent bias ``b_hh`` (3H,)
the reset-after cell (cuDNN / ``torch.nn.GRU``): ``p = h_{t-1} W_hh + b_hh``,
``r, z = sigmoid(x W_{r,z} + b_{r,z} + p_{r,z})``, ``n_t = tanh(x_t W_n + b_n +
r_t * p_n)``, the same ``h_t``.
"""
# No ``from __future__ import annotations`` here: the NamedTuples' generated
# __init__ would carry string annotations ('np.ndarray') that no namespace
# resolves (the API reference build fails on them).
from typing import NamedTuple, Optional

import numpy as np

from . import _core


class GRUCache(NamedTuple):
    """What the forward pass keeps for the backward pass."""

    gates: np.ndarray  # (T, B, 3H): activations [r | z | n]
    rh: np.ndarray  # (T, B, H): r_t * h_{t-1} (reset-before) or p_n (reset-after)
    reset_after: bool = False


class GRUGrads(NamedTuple):
    dx: np.ndarray  # (T, B, I) or (B, I)
    dh0: np.ndarray  # (B, H)
    dW_ih: np.ndarray  # (I, 3H)
    dW_hh: np.ndarray  # (H, 3H)
    db: np.ndarray  # (3H,)
    db_hh: Optional[np.ndarray] = None  # (3H,), reset-after only


def _f32(name: str, a, ndim: int) -> np.ndarray:
    """``a`` as C-contiguous float32: real (float or integer) input only, so
    complex, bool, string or object arrays are refused, not silently cast."""
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a real (float or integer) array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def _shapes(x: np.ndarray, h0, W_ih, W_hh, b):
    T, B, I = x.shape
    h0 = _f32("h0", h0, 2)
    H = h0.shape[1]
    if h0.shape[0] != B:
        raise ValueError(f"h0: expected {B} rows (the batch of x), got {h0.shape[0]}")
    W_ih = _f32("W_ih", W_ih, 2)
    W_hh = _f32("W_hh", W_hh, 2)
    if W_ih.shape != (I, 3 * H):
        raise ValueError(f"W_ih: expected shape {(I, 3 * H)}, got {W_ih.shape}")
    if W_hh.shape != (H, 3 * H):
        raise ValueError(f"W_hh: expected shape {(H, 3 * H)}, got {W_hh.shape}")
    out = [h0, W_ih, W_hh]
    if b is not None:
        b = _f32("b", b, 1)
        if b.shape != (3 * H,):
            raise ValueError(f"b: expected shape {(3 * H,)}, got {b.shape}")
        out.append(b)
    return (T, B, I, H), out


def _as_seq(x) -> tuple[np.ndarray, bool]:
    if x is None or np.ndim(x) not in (2, 3):
        raise ValueError(f"x: expected (B, I) or (T, B, I), got shape {np.shape(x)}")
    x = _f32("x", x, np.ndim(x))
    if x.ndim == 2:
        return x[None], True
    return x, False


def _check_finite(**arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(f"{name}: non-finite value {a[bad]} at index {bad}")


def gru_forward(x, h0, W_ih, W_hh, b, num_threads: int = 0, *, b_hh=None):
    """Run the GRU over ``x``: (B, I) for one step or (T, B, I) for T steps.
    ``b_hh`` (3H,), if given, selects the reset-after cell (module docstring).

    Returns ``(h, cache)``: ``h`` has shape (B, H) or (T, B, H) (the state after
    every step) and ``cache`` is what :func:`gru_backward` needs.
    """
    from .topk import _threads

    num_threads = _threads(num_threads)
    x, single = _as_seq(x)
    if b is None:
        raise TypeError("b: expected an array of shape (3H,), got None")
    (T, B, I, H), (h0, W_ih, W_hh, b) = _shapes(x, h0, W_ih, W_hh, b)
    if b_hh is not None:
        b_hh = _f32("b_hh", b_hh, 1)
        if b_hh.shape != (3 * H,):
            raise ValueError(f"b_hh: expected shape {(3 * H,)}, got {b_hh.shape}")
        _check_finite(b_hh=b_hh)
    _check_finite(x=x, h0=h0, W_ih=W_ih, W_hh=W_hh, b=b)
    h = np.empty((T, B, H), np.float32)
    cache = GRUCache(np.empty((T, B, 3 * H), np.float32), np.empty((T, B, H), np.float32),
                     b_hh is not None)
    _core.gru_forward(h, cache.gates, cache.rh, x, h0, W_ih, W_hh, b, b_hh, num_threads)
    return (h[0] if single else h), cache


def gru_backward(dh, cache: GRUCache, x, h0, h, W_ih, W_hh, num_threads: int = 0) -> GRUGrads:
    """Gradients of a loss whose gradient w.r.t. the GRU outputs is ``dh``.

    ``dh`` and ``h`` have the shape :func:`gru_forward` returned. Returns fresh
    arrays (the native kernel accumulates; here it starts from zero).
    """
    from .topk import _threads

    num_threads = _threads(num_threads)
    x, single = _as_seq(x)
    (T, B, I, H), (h0, W_ih, W_hh) = _shapes(x, h0, W_ih, W_hh, None)
    want = (B, H) if single else (T, B, H)
    dh = _f32("dh", dh, len(want))
    h = _f32("h", h, len(want))
    for name, a in (("dh", dh), ("h", h)):
        if a.shape != want:
            raise ValueError(f"{name}: expected shape {want} (what gru_forward returned), "
                             f"got {a.shape}")
    if not (hasattr(cache, "gates") and hasattr(cache, "rh")):
        raise TypeError(f"cache: expected the GRUCache gru_forward returned, got "
                        f"{type(cache).__name__}")
    cache = GRUCache(_f32("cache.gates", cache.gates, 3), _f32("cache.rh", cache.rh, 3),
                     bool(getattr(cache, "reset_after", False)))
    _check_finite(dh=dh, x=x, h0=h0, h=h, W_ih=W_ih, W_hh=W_hh)
    dh, h = dh.reshape(T, B, H), h.reshape(T, B, H)
    g = GRUGrads(
        np.zeros((T, B, I), np.float32),
        np.zeros((B, H), np.float32),
        np.zeros((I, 3 * H), np.float32),
        np.zeros((H, 3 * H), np.float32),
        np.zeros(3 * H, np.float32),
        np.zeros(3 * H, np.float32) if cache.reset_after else None,
    )
    _core.gru_backward(g.dx, g.dh0, g.dW_ih, g.dW_hh, g.db, None, dh, cache.gates, cache.rh,
                       x, h0, h, W_ih, W_hh, g.db_hh, num_threads)
    return g._replace(dx=g.dx[0]) if single else g
