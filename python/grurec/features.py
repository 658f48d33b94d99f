"""Item features for hybrid models and cold-start items (issue 18).

``ItemFeatures(table, item_col="ItemId")`` reads one row per item from a pandas
or polars DataFrame, a pyarrow Table, a dict of columns, or a dict keyed by item
id (``{item: {"genre": [...], "year": 1995}}``; ``{item: [attr, ...]}`` is one
multi-valued categorical field named ``"attributes"``). Three kinds of column:

- categorical: single values (strings, integers, booleans) or a column of
  lists (multi-valued: genres, categories). Each field gets a vocabulary of the
  categories it holds, numbered 1..V in sorted order; 0 is reserved for a
  category not in the vocabulary (``encode`` of new items maps it there: the
  model's row 0 of every field table stays zero). A missing value (None/NaN)
  or an empty list is an item without a category in that field;
- numeric: numbers, standardised with the table's mean and standard deviation
  (a constant column becomes 0); a missing value becomes the mean (0);
- dense: a column of equal-length float vectors (embeddings computed by the
  user); a missing value becomes the zero vector.

Kinds are given with ``categorical=``, ``numeric=``, ``dense=`` (lists of
column names); columns not named are inferred: strings, booleans and pandas
categoricals are categorical, numbers numeric, lists of integers or strings
categorical, lists of floats dense.

``encode(item_ids)`` aligns the features with a model's item order (index i is
``item_ids[i]``) and returns ``EncodedFeatures``, the flat arrays the native
item tower reads: per categorical field a CSR layout (``offsets`` int64 [N+1],
``ids`` int32 [nnz] in 0..V) and one float32 matrix ``z`` [N, Z] of the
standardised numeric columns followed by the dense vectors. Items without a row
get no categories and zeros; ``n_missing`` counts them (and a log line says so).
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

log = logging.getLogger("grurec")

__all__ = ["ItemFeatures", "EncodedFeatures", "beauty_attributes", "ml100k_features"]

_KINDS = ("categorical", "numeric", "dense")


@dataclass(eq=False)
class EncodedFeatures:
    """Features aligned to an item order, as flat arrays.

    cat_offsets[f] int64 [N+1] and cat_ids[f] int32 [nnz_f]: the categories of
    item i in field f are ``cat_ids[f][cat_offsets[f][i]:cat_offsets[f][i+1]]``
    (1..V_f; 0 = not in the vocabulary). z float32 [N, Z]: standardised
    numeric columns, then the dense vectors. n_missing: items without a row."""

    cat_offsets: list
    cat_ids: list
    z: np.ndarray
    vocab_sizes: list  # V_f per field (tables have V_f + 1 rows)
    n_missing: int = 0
    n_unknown: dict = field(default_factory=dict)  # field -> values not in the vocabulary

    @property
    def n_items(self) -> int:
        return self.z.shape[0]

    def is_empty(self) -> bool:
        """No item has any category or nonzero z value."""
        return all(len(ids) == 0 for ids in self.cat_ids) and not self.z.any()


class ItemFeatures:
    """Per-item features; see the module docstring."""

    def __init__(self, table, item_col: str = "ItemId", *,
                 categorical: Optional[Sequence[str]] = None,
                 numeric: Optional[Sequence[str]] = None,
                 dense: Optional[Sequence[str]] = None):
        import pandas as pd

        from .data import _factorize_ids, _Where

        df = _as_frame(table, item_col)
        if item_col not in df.columns:
            raise ValueError(f"item column {item_col!r} not found; the features have columns "
                             f"{list(df.columns)} (pass item_col=... to name it)")
        self.item_col = item_col
        codes, uniques = _factorize_ids(df[item_col].reset_index(drop=True), item_col, _Where())
        counts = np.bincount(codes, minlength=len(uniques))
        if len(counts) and counts.max() > 1:
            dup = int(np.argmax(counts > 1))
            rows = np.flatnonzero(codes == dup)[:2].tolist()
            raise ValueError(f"column {item_col!r}: item {_py(uniques[dup])!r} has more than one row "
                             f"(rows {rows[0]} and {rows[1]}); give one row per item")
        self.item_ids = uniques  # sorted; row r of the arrays below is item_ids[r]
        order = np.empty(len(codes), np.int64)
        order[codes] = np.arange(len(codes))
        df = df.iloc[order].reset_index(drop=True)
        names = {"categorical": list(categorical or []), "numeric": list(numeric or []),
                 "dense": list(dense or [])}
        seen = {}
        for kind, cols in names.items():
            for c in cols:
                if not isinstance(c, str):
                    raise TypeError(f"{kind}: column names must be strings, got {c!r}")
                if c == item_col:
                    raise ValueError(f"{kind}: {c!r} is the item column")
                if c not in df.columns:
                    raise ValueError(f"{kind} column {c!r} not found; the features have columns "
                                     f"{list(df.columns)}")
                if c in seen:
                    raise ValueError(f"column {c!r} is named as both {seen[c]} and {kind}")
                seen[c] = kind
        for c in df.columns:
            if c != item_col and c not in seen:
                names[_infer_kind(df[c], c)].append(c)
        if not any(names.values()):
            raise ValueError("the features have no column besides the item column "
                             f"{item_col!r}")
        ids = self.item_ids
        self.categorical: list[str] = names["categorical"]
        self.numeric: list[str] = names["numeric"]
        self.dense: list[str] = names["dense"]
        # categorical: per field the sorted vocabulary and, per item, its values
        self.vocab: dict[str, np.ndarray] = {}
        self._cat_offsets: list[np.ndarray] = []
        self._cat_ids: list[np.ndarray] = []
        for c in self.categorical:
            vals = _category_lists(df[c], c, ids)
            vocab = _sorted_vocab(v for lst in vals for v in lst)
            self.vocab[c] = vocab
            off, cid, _ = _encode_lists(vals, _lookup(vocab))
            self._cat_offsets.append(off)
            self._cat_ids.append(cid)
        # numeric: standardised; stats kept for encoding new items
        self.mean: dict[str, float] = {}
        self.std: dict[str, float] = {}
        num = np.zeros((len(ids), len(self.numeric)), np.float32)
        for j, c in enumerate(self.numeric):
            x = _numbers(df[c], c, ids)
            ok = ~np.isnan(x)
            mu = float(x[ok].mean()) if ok.any() else 0.0
            sd = float(x[ok].std()) if ok.any() else 0.0
            self.mean[c], self.std[c] = mu, sd
            num[:, j] = _standardise(x, mu, sd)
        # dense: equal-length vectors
        self.dense_dims: dict[str, int] = {}
        blocks = [num]
        for c in self.dense:
            m, d = _vectors(df[c], c, ids, None)
            self.dense_dims[c] = d
            blocks.append(m)
        self._z = np.ascontiguousarray(np.concatenate(blocks, axis=1), np.float32)
        self._index = pd.Index(self.item_ids)
        self._frame_cols = [item_col] + self.categorical + self.numeric + self.dense

    # ------------------------------------------------------------ properties
    @property
    def n_items(self) -> int:
        """Items with a row."""
        return len(self.item_ids)

    @property
    def z_dim(self) -> int:
        """Width Z of the numeric + dense block."""
        return self._z.shape[1]

    def vocab_sizes(self) -> list[int]:
        return [len(self.vocab[c]) for c in self.categorical]

    def __repr__(self) -> str:
        return (f"ItemFeatures(n_items={self.n_items}, categorical="
                f"{ {c: len(v) for c, v in self.vocab.items()} }, numeric={self.numeric}, "
                f"dense={self.dense_dims})")

    # -------------------------------------------------------------- encoding
    def encode(self, item_ids, *, log_missing: bool = True) -> EncodedFeatures:
        """The features in the order of ``item_ids`` (a model's ``item_ids``);
        items without a row get no categories and zeros (counted in
        ``n_missing``)."""
        pos = self._positions(item_ids)
        have = pos >= 0
        n_missing = int((~have).sum())
        if n_missing and log_missing:
            log.info("item features: %d of %d items have no row (their features are zero)",
                     n_missing, len(pos))
        offs, idss = [], []
        for off0, ids0 in zip(self._cat_offsets, self._cat_ids):
            lens = np.where(have, np.diff(off0)[np.maximum(pos, 0)], 0)
            off = np.zeros(len(pos) + 1, np.int64)
            np.cumsum(lens, out=off[1:])
            starts = off0[np.maximum(pos, 0)][have]
            idx = _ranges(starts, lens[have])
            offs.append(off)
            idss.append(np.ascontiguousarray(ids0[idx], np.int32))
        z = np.zeros((len(pos), self.z_dim), np.float32)
        z[have] = self._z[pos[have]]
        return EncodedFeatures(offs, idss, z, self.vocab_sizes(), n_missing)

    def encode_new(self, table, item_col: Optional[str] = None) -> tuple[np.ndarray, EncodedFeatures]:
        """Features of other items (cold items for ``add_items``) with this
        table's vocabularies and standardisation: (item ids, encoded rows in
        that order). A category not in a vocabulary maps to 0 (counted per
        field in ``n_unknown``); the columns must be those of this table."""
        other = ItemFeatures(table, item_col or self.item_col,
                             categorical=self.categorical, numeric=self.numeric,
                             dense=self.dense)
        extra = sorted(set(other._frame_cols) - set(self._frame_cols))
        if extra:
            raise ValueError(f"the new items have columns {extra} that the features the model "
                             f"was trained with do not have")
        df = _as_frame(table, other.item_col)
        df = df.set_index(other.item_col).loc[list(other.item_ids)].reset_index()
        ids = other.item_ids
        offs, idss, unknown = [], [], {}
        for c in self.categorical:
            vals = _category_lists(df[c], c, ids)
            off, cid, n_unk = _encode_lists(vals, _lookup(self.vocab[c]))
            offs.append(off)
            idss.append(cid)
            unknown[c] = n_unk
        blocks = [np.zeros((len(ids), len(self.numeric)), np.float32)]
        for j, c in enumerate(self.numeric):
            blocks[0][:, j] = _standardise(_numbers(df[c], c, ids), self.mean[c], self.std[c])
        for c in self.dense:
            m, _ = _vectors(df[c], c, ids, self.dense_dims[c])
            blocks.append(m)
        z = np.ascontiguousarray(np.concatenate(blocks, axis=1), np.float32)
        return ids, EncodedFeatures(offs, idss, z, self.vocab_sizes(), 0, unknown)

    def table(self, items=None) -> dict:
        """The rows of ``items`` (all items when None) as a dict of columns
        that ``ItemFeatures`` reads back (categories as lists of values,
        numbers un-standardised, vectors as lists): how ``add_items`` takes
        items from an ``ItemFeatures``. An item without a row raises."""
        pos = np.arange(len(self.item_ids)) if items is None else self._positions(items)
        if (pos < 0).any():
            j = int(np.flatnonzero(pos < 0)[0])
            raise ValueError(f"item {_py(list(items)[j])!r} has no row in the item features")
        out = {self.item_col: self.item_ids[pos]}
        for f, c in enumerate(self.categorical):
            off, cid, voc = self._cat_offsets[f], self._cat_ids[f], self.vocab[c]
            out[c] = [[_py(voc[v - 1]) for v in cid[off[p]:off[p + 1]] if v > 0] for p in pos]
        for j, c in enumerate(self.numeric):
            out[c] = self._z[pos, j].astype(np.float64) * self.std[c] + self.mean[c]
        k = len(self.numeric)
        for c in self.dense:
            d = self.dense_dims[c]
            out[c] = [list(r) for r in self._z[pos, k:k + d].astype(np.float64)]
            k += d
        return out

    def _positions(self, item_ids) -> np.ndarray:
        """Row of each of ``item_ids`` in this table, -1 for none. Integer ids
        and strings spelling them the same way are matched with each other."""
        from .data import as_id_array

        ids = as_id_array(item_ids)
        mine = self.item_ids
        if len(ids) and len(mine) and (ids.dtype.kind in "iu") != (mine.dtype.kind in "iu"):
            # one side integers, the other strings: compare as decimal strings
            import pandas as pd

            idx = pd.Index(np.array([str(v) for v in mine], dtype=object))
            return idx.get_indexer(np.array([str(v) for v in ids], dtype=object)).astype(np.int64)
        return self._index.get_indexer(ids).astype(np.int64)

    # ------------------------------------------------------- model files
    def spec(self) -> dict:
        """What a model file keeps to encode new items like these: column
        kinds, vocabularies (JSON lists), numeric stats, dense widths."""
        return {"item_col": self.item_col, "categorical": self.categorical,
                "numeric": self.numeric, "dense": self.dense,
                "vocab": {c: [_py(v) for v in self.vocab[c]] for c in self.categorical},
                "mean": self.mean, "std": self.std, "dense_dims": self.dense_dims}


class FeatureSpec(ItemFeatures):
    """The encoding rules of an ``ItemFeatures`` without its rows (what a
    model file stores): ``encode_new`` works, ``encode`` gives every item zeros."""

    def __init__(self, spec: Mapping):  # noqa: D107 (no super().__init__: no table)
        import pandas as pd

        self.item_col = spec["item_col"]
        self.categorical = list(spec["categorical"])
        self.numeric = list(spec["numeric"])
        self.dense = list(spec["dense"])
        self.vocab = {c: _sorted_vocab(spec["vocab"][c]) for c in self.categorical}
        self.mean = {c: float(spec["mean"][c]) for c in self.numeric}
        self.std = {c: float(spec["std"][c]) for c in self.numeric}
        self.dense_dims = {c: int(spec["dense_dims"][c]) for c in self.dense}
        self.item_ids = np.zeros(0, np.int64)
        z_dim = len(self.numeric) + sum(self.dense_dims.values())
        self._z = np.zeros((0, z_dim), np.float32)
        self._cat_offsets = [np.zeros(1, np.int64) for _ in self.categorical]
        self._cat_ids = [np.zeros(0, np.int32) for _ in self.categorical]
        self._index = pd.Index(self.item_ids)
        self._frame_cols = [self.item_col] + self.categorical + self.numeric + self.dense


# ------------------------------------------------------------------ helpers
def _as_frame(table, item_col: str):
    """A pandas DataFrame of ``table`` (copied where it has to be converted)."""
    import pandas as pd

    if isinstance(table, ItemFeatures):
        raise TypeError("already an ItemFeatures")
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True)
    mod = type(table).__module__.split(".")[0]
    if mod == "polars":
        if hasattr(table, "collect"):
            table = table.collect()
        return table.to_pandas()
    if mod == "pyarrow":
        return table.to_pandas()
    if isinstance(table, Mapping):
        if item_col in table:
            return pd.DataFrame({k: list(v) if not isinstance(v, np.ndarray) or v.ndim != 1
                                 else v for k, v in table.items()})
        keys = list(table)
        vals = list(table.values())
        if not keys:
            raise ValueError("the features are empty")
        if all(isinstance(v, Mapping) for v in vals):
            rows = [dict(v) for v in vals]
            for k, r in zip(keys, rows):
                if item_col in r:
                    raise ValueError(f"item {k!r}: its row has a column {item_col!r}, the "
                                     "name of the item column")
            df = pd.DataFrame(rows)
            df.insert(0, item_col, pd.Series(keys, dtype=object))
            return df
        if all(isinstance(v, (list, tuple, np.ndarray)) for v in vals):
            return pd.DataFrame({item_col: pd.Series(keys, dtype=object),
                                 "attributes": pd.Series([list(v) for v in vals], dtype=object)})
        k = next(k for k, v in zip(keys, vals)
                 if not isinstance(v, (Mapping, list, tuple, np.ndarray)))
        raise TypeError(f"a dict of features must hold the column {item_col!r}, or map every "
                        f"item id to a dict of values or to a list of categories; item {k!r} "
                        f"maps to {type(table[k]).__name__}")
    raise TypeError(f"features: expected a pandas/polars DataFrame, a pyarrow Table or a dict, "
                    f"got {type(table).__name__}")


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return isinstance(v, float) and math.isnan(v) or (
            isinstance(v, np.floating) and bool(np.isnan(v)))
    except TypeError:
        return False


def _is_listlike(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray)) or type(v).__name__ in (
        "ListScalar", "Series")


def _infer_kind(s, name: str) -> str:
    import pandas as pd

    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind in "bSU":
        return "categorical"
    if s.dtype.kind in "iuf":
        return "numeric"
    if s.dtype.kind in "mM":
        raise TypeError(f"column {name!r}: datetimes are not item features (convert them to a "
                        "number, e.g. a year)")
    vals = [v for v in s.tolist() if not _is_missing(v)]
    if not vals:
        raise ValueError(f"column {name!r}: every value is missing; name its kind with "
                         "categorical=, numeric= or dense=")
    if all(_is_listlike(v) for v in vals):
        flat = [x for v in vals for x in list(v)]
        if flat and all(isinstance(x, (float, np.floating)) for x in flat):
            return "dense"
        return "categorical"
    if all(isinstance(v, (str, bool, np.bool_)) for v in vals):
        return "categorical"
    if all(isinstance(v, numbers.Real) for v in vals):
        return "numeric"
    v = next(v for v in vals if not isinstance(v, (str, bool, numbers.Real)))
    raise TypeError(f"column {name!r}: cannot tell its kind from a value like {v!r} "
                    f"({type(v).__name__}); name it with categorical=, numeric= or dense=")


def _check_category(v, name, item):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str, numbers.Integral)):
        return v if isinstance(v, str) else int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    raise ValueError(f"column {name!r}, item {item!r}: category {v!r} ({type(v).__name__}) "
                     "must be a string, an integer or a boolean")


def _category_lists(s, name: str, ids) -> list[list]:
    """Per row the list of categories (a single value is a list of one)."""
    ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    out = []
    for item, v in zip(ids, s.tolist()):
        if _is_listlike(v):
            lst = []
            for x in list(v):
                if _is_missing(x):
                    raise ValueError(f"column {name!r}, item {item!r}: a missing value "
                                     "(None/NaN) inside a list of categories")
                lst.append(_check_category(x, name, item))
            out.append(lst)
        elif _is_missing(v):
            out.append([])
        else:
            out.append([_check_category(v, name, item)])
    return out


def _sort_key(v):
    return (0, v, "") if isinstance(v, (bool, int)) else (1, 0, v)


def _sorted_vocab(values) -> np.ndarray:
    u = sorted(set(values), key=_sort_key)
    a = np.empty(len(u), dtype=object)
    a[:] = u
    return a


def _lookup(vocab: np.ndarray) -> dict:
    return {v: i + 1 for i, v in enumerate(vocab.tolist())}


def _encode_lists(vals, lookup) -> tuple[np.ndarray, np.ndarray, int]:
    """CSR (offsets int64, ids int32) of the category lists, and how many
    values were not in the vocabulary (mapped to 0)."""
    off = np.zeros(len(vals) + 1, np.int64)
    np.cumsum([len(v) for v in vals], out=off[1:])
    ids = np.fromiter((lookup.get(x, 0) for v in vals for x in v), np.int32, int(off[-1]))
    return off, ids, int((ids == 0).sum())


def _numbers(s, name: str, ids) -> np.ndarray:
    """float64 values, NaN where missing; other values must be finite numbers."""
    ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    if s.dtype.kind in "iuf":
        x = s.to_numpy(dtype=np.float64)
    else:
        x = np.empty(len(s), np.float64)
        for r, (item, v) in enumerate(zip(ids, s.tolist())):
            if _is_missing(v):
                x[r] = np.nan
            elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
                x[r] = float(v)
            else:
                raise ValueError(f"numeric column {name!r}, item {item!r}: value {v!r} "
                                 f"({type(v).__name__}) is not a number")
    bad = np.isinf(x)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"numeric column {name!r}, item {ids[r]!r}: value {float(x[r])!r} is not "
                         "finite")
    return x


def _standardise(x: np.ndarray, mu: float, sd: float) -> np.ndarray:
    out = np.zeros(len(x), np.float32)
    ok = ~np.isnan(x)
    if sd > 0:
        out[ok] = ((x[ok] - mu) / sd).astype(np.float32)
    return out


def _vectors(s, name: str, ids, d: Optional[int]) -> tuple[np.ndarray, int]:
    """float32 [n, d] of a column of vectors (missing: zeros)."""
    ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    vals = s.tolist()
    if d is None:
        d = next((len(list(v)) for v in vals if not _is_missing(v) and _is_listlike(v)), None)
        if d is None:
            raise ValueError(f"dense column {name!r}: no item has a vector")
    m = np.zeros((len(vals), d), np.float32)
    for r, (item, v) in enumerate(zip(ids, vals)):
        if _is_missing(v):
            continue
        if not _is_listlike(v):
            raise ValueError(f"dense column {name!r}, item {item!r}: value {v!r} is not a "
                             "vector")
        try:
            a = np.asarray(list(v), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"dense column {name!r}, item {item!r}: the vector holds a value "
                             "that is not a number") from None
        if a.shape != (d,):
            raise ValueError(f"dense column {name!r}, item {item!r}: vector of length "
                             f"{a.size}, expected {d} (the length of the first vector)")
        if not np.isfinite(a).all():
            raise ValueError(f"dense column {name!r}, item {item!r}: the vector holds NaN or "
                             f"infinite values (at position {int(np.flatnonzero(~np.isfinite(a))[0])})")
        m[r] = a
    return m, d


def _ranges(start: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Concatenated aranges [start_i, start_i + cnt_i)."""
    cnt = np.asarray(cnt, np.int64)
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    rep = np.repeat(np.asarray(start, np.int64) - np.concatenate(([0], np.cumsum(cnt)[:-1])),
                    cnt)
    return rep + np.arange(total)


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


# ------------------------------------------------------------------ loaders
def beauty_attributes(path) -> "ItemFeatures":
    """The attributes of beauty-s3rec (``Beauty_item2attributes.json``: item ->
    list of attribute ids) as one multi-valued categorical field
    ``"attributes"``, item ids as integers (as ``Beauty.txt`` has them)."""
    import json

    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping item ids to attribute lists")
    ids = []
    for k in raw:
        try:
            ids.append(int(k))
        except ValueError:
            raise ValueError(f"{path}: item id {k!r} is not an integer") from None
    return ItemFeatures({"ItemId": np.asarray(ids, np.int64),
                         "attributes": [list(v) for v in raw.values()]},
                        categorical=["attributes"])


def ml100k_features(path) -> "ItemFeatures":
    """ml-100k's item file in RecBole's atomic format (``ml-100k.item``:
    ``item_id:token``, ``movie_title:token_seq``, ``release_year:token``,
    ``class:token_seq``): genres (``class``, multi-valued categorical) and the
    release year (numeric; missing years become the mean)."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    cols = {c.split(":")[0]: c for c in df.columns}
    for need in ("item_id", "release_year", "class"):
        if need not in cols:
            raise ValueError(f"{path}: no column {need!r}; it has {list(df.columns)}")
    year = pd.to_numeric(df[cols["release_year"]].replace("", np.nan), errors="coerce")
    ids = pd.to_numeric(df[cols["item_id"]], errors="raise").astype(np.int64)
    genres = [s.split() for s in df[cols["class"]]]
    return ItemFeatures({"ItemId": ids.to_numpy(), "genres": genres,
                         "year": year.to_numpy(np.float64)},
                        categorical=["genres"], numeric=["year"])
