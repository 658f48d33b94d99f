"""Top-k scoring of queries against an item table, and target rank counts.

``topk(queries, items, k)`` returns, for every query row, the ``k`` items with
the highest score ``queries @ items.T (+ bias)``, best first, ties broken by
the lower item index. It runs in C++ (``cpp/topk.cpp``): SIMD chosen at run
time, OpenMP over item ranges when the queries are few and over query blocks
when they are many, the GIL released, and memory bounded: scores are made a
small tile at a time and only those above a query's running k-th best are
kept, so no n_queries x n_items matrix is ever allocated.

Scores are float32 and computed in one fixed order (8 partial sums, one FMA
chain each, then a fixed tree; see ``cpp/topk_kernels.hpp``), the same for
every batch size and thread count: at a given SIMD level a query gets the
same scores whether it is scored alone or in a batch, ``_rank_counts`` agrees
with ``topk`` exactly, and identical item rows tie exactly. The avx2 and
avx512 levels agree with each other; the scalar level rounds the product
before the addition and may differ in the last bits.

At the avx512 level, on CPUs with AVX512_BF16, batches of 20 and more queries
first go through an exact bf16 prefilter: every (query, item) pair is scored
approximately with ``vdpbf16ps`` (twice float32's multiply-adds per
instruction), and only pairs whose approximation, widened by a rigorous error
bound, could still make the top k (or land on either side of a rank-count
target) get the canonical float32 score. The results are identical, bit for
bit; only the work shrinks (about 2x at batch 64 and up). ``GRUREC_TOPK_BF16=0``
in the environment (read at the first call) turns it off;
``_core.set_topk_bf16`` switches it, ``_core.topk_bf16_stats`` counts the pairs
it decided and those it passed on (for tests).

A prepared table, ``TopkIndex(items, bias)``, can stand in for ``items``
(and ``bias``) when the same table is queried again and again (serving):
it keeps its own float32 copy and an int8 copy (scale per item, a quarter
of the bytes), and top-k calls read the int8 copy (an exact integer dot
with the query rounded to int16, ``pmaddwd``), bounding every score
rigorously and scoring canonically only the items the bound cannot rule
out. The results are again identical bit for bit; single queries against a
large table read a quarter of the bytes, and batches run on integer
products (1M items: 5.9x NumPy at batch 1, 5.5x at 64 at the avx2 level,
docs/performance.md). ``_core.topk_int8_stats`` counts its work (for tests).

The private helpers ``_rank_counts`` and ``_rank_counts_dense`` give the
evaluation the number of items scoring strictly higher than, and equal to,
each query's target item; ``_ranks`` turns them into ranks (standard,
conservative or median tie handling).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _core

__all__ = ["topk", "TopkIndex"]

_MODES = ("standard", "conservative", "median")


def _int_arg(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _threads(num_threads) -> int:
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be an integer, got {type(num_threads).__name__}")
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
    # The native code caps the team at a few times the cores anyway; this
    # keeps huge values inside its int range.
    return min(int(num_threads), 2**31 - 1)


def _numeric(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name}: expected a real (float or integer) array, got dtype {arr.dtype}")
    return arr


def _f32(name: str, a, ndims: tuple[int, ...]) -> np.ndarray:
    arr = _numeric(name, a)
    if arr.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name}: expected a {want} array, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_finite(name: str, a: np.ndarray) -> None:
    if a.size and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        where = bad[0] if len(bad) == 1 else bad
        raise ValueError(f"{name}: non-finite value {a[bad]} at index {where}")


def _as_queries(queries):
    """float32 (n_queries, d) queries and whether they came as one 1-D query."""
    q = _f32("queries", queries, (1, 2))
    single = q.ndim == 1
    return (q[None, :] if single else q), single


def _check_queries(q: np.ndarray, d: int) -> None:
    if q.shape[1] != d:
        raise ValueError(
            f"queries and items: dimensions differ ({q.shape[1]} vs {d}); "
            f"queries must be (n_queries, d) or (d,) and items (n_items, d)"
        )
    _check_finite("queries", q)


def _as_bias(bias, n_items: int):
    if bias is None:
        return None
    b = _f32("bias", bias, (1,))
    if b.shape[0] != n_items:
        raise ValueError(f"bias: expected shape ({n_items},) (one per item), got {b.shape}")
    _check_finite("bias", b)
    return b


def _queries_items(queries, items, bias):
    q, single = _as_queries(queries)
    x = _f32("items", items, (2,))
    _check_queries(q, x.shape[1])
    return q, x, _as_bias(bias, x.shape[0]), single


def _raise_nonfinite(items: np.ndarray) -> None:
    # The native code only says that some score was NaN or infinite; the
    # queries and the bias were checked already, so name the item row.
    finite_rows = np.isfinite(items).all(axis=1)
    if not finite_rows.all():
        row = int(np.argmin(finite_rows))
        col = int(np.argmin(np.isfinite(items[row])))
        raise ValueError(f"items: non-finite value {items[row, col]} at index ({row}, {col})")
    raise ValueError(
        "scores overflow float32 (a dot product exceeds ~3.4e38): scale queries/items down"
    )


def _exclusions(exclude, Q: int, N: int, single: bool):
    """CSR (offsets int64[Q+1], indices int64, ascending per row) or (None, None)."""
    if exclude is None:
        return None, None
    if hasattr(exclude, "indptr") and hasattr(exclude, "indices"):  # scipy.sparse CSR
        shape = getattr(exclude, "shape", None)
        if shape is not None and tuple(shape) != (Q, N):
            raise ValueError(f"exclude: sparse matrix of shape {tuple(shape)}, expected {(Q, N)}")
        offsets = np.asarray(exclude.indptr, dtype=np.int64)
        idx = np.asarray(exclude.indices)
        rows = [idx[offsets[q]:offsets[q + 1]] for q in range(Q)]
    else:
        if single:
            exclude = [exclude]
        if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
            rows = list(exclude)
        else:
            try:
                rows = list(exclude)
            except TypeError:
                raise TypeError("exclude must be a sequence with one sequence of item "
                                "indices per query") from None
        if len(rows) != Q:
            raise ValueError(f"exclude: expected one entry per query ({Q}), got {len(rows)}")
    lens = np.zeros(Q, dtype=np.int64)
    parts = []
    for q, r in enumerate(rows):
        if r is None:
            continue
        if np.isscalar(r):
            raise TypeError(f"exclude[{q}]: expected a sequence of item indices, got a scalar "
                            f"{r!r} (give one sequence per query)")
        a = np.asarray(r)
        if a.size == 0:
            continue
        if a.ndim != 1 or a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"exclude[{q}]: expected a 1-D sequence of integer item indices, "
                            f"got dtype {a.dtype} and shape {a.shape}")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= N:
            bad = lo if lo < 0 else hi
            raise ValueError(f"exclude[{q}]: item index {bad} out of range [0, {N})")
        parts.append(np.sort(a.astype(np.int64)))
        lens[q] = a.size
    offsets = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return offsets, np.ascontiguousarray(indices)


class TopkIndex:
    """An item table prepared for repeated ``topk`` calls.

    ``TopkIndex(items, bias=None)`` copies ``items`` (n_items, d) and ``bias``
    (n_items,) as float32 and builds an int8 copy of the rows (one scale per
    item, plus a rigorous bound of what the rounding can change in a score).
    Pass it to ``topk`` in place of ``items`` (without ``bias``): calls with
    few queries then read the int8 copy, a quarter of the bytes, and score
    canonically only the items whose bound does not rule them out. Results
    are identical, bit for bit, to ``topk(queries, items, k, bias)``.

    The index owns its copies: later changes to the arrays it was built from
    do not reach it (build a new one). Memory: about n_items * (5 d + 20)
    bytes. Building reads the table once and checks it (a non-finite value
    raises ValueError naming its row and column).
    """

    def __init__(self, items, bias=None, num_threads=0):
        x = _f32("items", items, (2,))
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"items: need at least one item and one dimension, got shape "
                             f"{x.shape}")
        _check_finite("items", x)
        b = _as_bias(bias, x.shape[0])
        self._native = _core.TopkInt8Index(x, b, _threads(num_threads))

    @property
    def n_items(self) -> int:
        return int(self._native.n_items)

    @property
    def dim(self) -> int:
        return int(self._native.dim)

    @property
    def nbytes(self) -> int:
        """Bytes held: the float32 copies and the int8 table."""
        return int(self._native.nbytes)

    @property
    def items(self) -> np.ndarray:
        """The index's float32 items (a read-only view)."""
        return self._native.items()

    @property
    def bias(self):
        """The index's float32 bias (a read-only view), or None."""
        return self._native.bias()

    def __repr__(self) -> str:
        return (f"TopkIndex(n_items={self.n_items}, dim={self.dim}, "
                f"bias={self._native.has_bias}, nbytes={self.nbytes})")


def _native_topk(q, x, b, kk, offsets, indices, mask, nt, counts=(), index=None):
    """(indices, scores) of _core.topk against the table x, b or a TopkIndex;
    a non-finite score raises ValueError naming the item row."""
    Q = q.shape[0]
    out_idx = np.empty((Q, kk), dtype=np.int64)
    out_scores = np.empty((Q, kk), dtype=np.float32)
    if Q > 0 and kk > 0:
        ok = _core.topk(q, x, b, kk, offsets, indices, mask, out_idx, out_scores, nt, *counts,
                        index=None if index is None else index._native)
        if not ok:
            _raise_nonfinite(x if index is None else index.items)
    return out_idx, out_scores


def topk(queries, items, k, bias=None, exclude=None, num_threads=0, *, allowed=None):
    """The ``k`` best-scoring items for each query.

    Parameters
    ----------
    queries : array (n_queries, d) or (d,)
        Query vectors (e.g. GRU hidden states). Converted to float32.
    items : array (n_items, d) or TopkIndex
        The item table (e.g. output embeddings). Converted to float32 (no
        copy if it already is C-contiguous float32). A ``TopkIndex`` built
        from the table (and its bias) gives the same results, faster for
        calls with few queries.
    k : int >= 1
        Results per query. ``k > n_items`` gives ``n_items`` results.
    bias : array (n_items,), optional
        Added to every score of the item. Not with a ``TopkIndex`` (it holds
        its own).
    exclude : optional
        Items that must not be returned, per query: a sequence with one
        sequence of item indices per query (``None`` or empty for none; for a
        1-D query, one sequence), or a scipy.sparse CSR matrix of shape
        (n_queries, n_items) whose stored positions are excluded.
    num_threads : int, default 0
        OpenMP threads; 0 means all cores.
    allowed : bool array (n_items,), optional
        Only items where it is True may be returned (a global allow list;
        pass ``~deny`` for a deny list).

    Returns
    -------
    indices : int64 array (n_queries, min(k, n_items))
    scores : float32 array, same shape
        Best first (score descending, then item index ascending). When
        exclusions or ``allowed`` leave a query fewer than ``k`` items, the
        remaining slots hold index -1 and score -inf. A 1-D query gives 1-D
        results.

    Raises
    ------
    TypeError, ValueError
        For bad shapes, dtypes, non-finite inputs, k < 1, num_threads < 0,
        out-of-range exclusions. Scores that overflow float32 raise
        ValueError. ``items`` is not scanned for NaN up front (that would cost
        a pass over the table); a non-finite item shows up as a non-finite
        score, which raises ValueError naming the row.
    """
    if isinstance(items, TopkIndex):
        if bias is not None:
            raise ValueError("bias: a TopkIndex holds its own bias; pass the bias to "
                             "TopkIndex(items, bias) instead")
        index, x, b = items, None, None
        q, single = _as_queries(queries)
        _check_queries(q, index.dim)
        N = index.n_items
    else:
        index = None
        q, x, b, single = _queries_items(queries, items, bias)
        N = x.shape[0]
    k = _int_arg("k", k, 1)
    nt = _threads(num_threads)
    Q = q.shape[0]
    offsets, indices = _exclusions(exclude, Q, N, single)
    mask = None
    if allowed is not None:
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_:
            raise TypeError(f"allowed: expected a bool array, got dtype {mask.dtype}")
        if mask.shape != (N,):
            raise ValueError(f"allowed: expected shape ({N},) (one per item), got {mask.shape}")
        mask = np.ascontiguousarray(mask)
    out_idx, out_scores = _native_topk(q, x, b, min(k, N), offsets, indices, mask, nt,
                                       index=index)
    if single:
        return out_idx[0], out_scores[0]
    return out_idx, out_scores


def _topk_csr(queries, items, bias, k, ex_offsets, ex_indices, allowed, num_threads,
              counts=None, index=None):
    """``topk`` for grurec's own callers (recommend, live sessions, evaluate):
    arrays already float32/int64 and checked, exclusions as CSR arrays
    (offsets int64[Q+1], indices int64 ascending within each row) or None,
    so no per-query Python work for millions of queries. Returns 2-D
    (indices, scores) with min(k, n_items) columns. ``counts``: None or
    (targets, greater, equal) int64 arrays (n_queries,), filled in the same
    pass as ``_rank_counts`` would (see ``_topk_rank_counts``). ``index``: a
    ``TopkIndex`` of exactly these items and bias, used in their place."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if ex_offsets is not None:
        ex_offsets = np.ascontiguousarray(ex_offsets, dtype=np.int64)
        ex_indices = np.ascontiguousarray(ex_indices, dtype=np.int64)
    mask = None if allowed is None else np.ascontiguousarray(allowed, dtype=np.bool_)
    nt = _threads(num_threads)
    if index is not None:
        return _native_topk(q, None, None, min(int(k), index.n_items), ex_offsets, ex_indices,
                            mask, nt, counts or (), index)
    x = np.ascontiguousarray(items, dtype=np.float32)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    return _native_topk(q, x, b, min(int(k), x.shape[0]), ex_offsets, ex_indices, mask, nt,
                        counts or ())


def _topk_rank_counts(queries, items, bias, k, targets, num_threads):
    """``_topk_csr`` without exclusions plus, in the same pass over the items,
    ``_rank_counts`` for every query whose target (int64, -1 = none) is an
    item index: (indices, scores, greater, equal), greater = equal = -1 where
    the target is -1. For evaluation: one read of the item table instead of
    two."""
    t = np.ascontiguousarray(targets, dtype=np.int64)
    greater = np.full(len(t), -1, dtype=np.int64)
    equal = np.full(len(t), -1, dtype=np.int64)
    idx, scores = _topk_csr(queries, items, bias, k, None, None, None, num_threads,
                            counts=(t, greater, equal))
    return idx, scores, greater, equal


def _targets(targets, n: int, N: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"targets: expected integer item indices, got dtype {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"targets: expected shape ({n},) (one per query), got {t.shape}")
    if n and (t.min() < 0 or t.max() >= N):
        i = int(np.argmax((t < 0) | (t >= N)))
        raise ValueError(f"targets[{i}] = {int(t[i])} is out of range [0, {N})")
    return np.ascontiguousarray(t, dtype=np.int64)


def _rank_counts(queries, items, targets, bias=None, num_threads=0):
    """(greater, equal), int64 arrays (n_queries,): for query i, how many items
    score strictly higher than item ``targets[i]`` and how many score equal to
    it (the target itself not counted), with exactly the scores of ``topk``.
    """
    q, x, b, _ = _queries_items(queries, items, bias)
    nt = _threads(num_threads)
    Q, N = q.shape[0], x.shape[0]
    if N == 0:
        raise ValueError("items: need at least one item")
    t = _targets(targets, Q, N)
    greater = np.zeros(Q, dtype=np.int64)
    equal = np.zeros(Q, dtype=np.int64)
    if Q > 0 and not _core.rank_counts(q, x, b, t, greater, equal, nt):
        _raise_nonfinite(x)
    return greater, equal


def _rank_counts_dense(scores, targets, num_threads=0):
    """(greater, equal) for a dense score block (n, n_items): row i's count of
    scores strictly above and equal to ``scores[i, targets[i]]`` (the target
    itself not counted). For models that produce full score vectors.
    """
    s = _f32("scores", scores, (2,))
    nt = _threads(num_threads)
    R, N = s.shape
    if N == 0:
        raise ValueError("scores: need at least one column (item)")
    t = _targets(targets, R, N)
    greater = np.zeros(R, dtype=np.int64)
    equal = np.zeros(R, dtype=np.int64)
    if R > 0 and not _core.rank_counts_dense(s, t, greater, equal, nt):
        _check_finite("scores", s)
        raise ValueError("scores: non-finite values")
    return greater, equal


def _ranks(greater, equal, mode: str = "standard") -> np.ndarray:
    """Ranks (1 = best) from rank counts, with GRU4Rec's tie handling.

    standard: 1 + greater (ties resolved in the target's favour);
    conservative: 1 + greater + equal (ties resolved against it);
    median: 1 + greater + equal / 2 (the middle of the tied block, float).
    """
    g = np.asarray(greater, dtype=np.int64)
    e = np.asarray(equal, dtype=np.int64)
    if mode == "standard":
        return 1 + g
    if mode == "conservative":
        return 1 + g + e
    if mode == "median":
        return 1.0 + g + e / 2.0
    raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


# ``from grurec import topk`` gives the function (grurec/__init__.py exports
# it, shadowing this module's name), so the helpers are reachable from it too:
# grurec.topk._rank_counts(...) as well as from grurec.topk import _rank_counts.
topk._rank_counts = _rank_counts
topk._rank_counts_dense = _rank_counts_dense
topk._ranks = _ranks
