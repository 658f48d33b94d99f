"""Events in, sessions out: one entry point, validation, item-id mapping, CSR layout.

``SessionData`` is the one internal representation: sessions ordered by the
time of their first event, ``offsets`` (int64, n_sessions + 1) into ``items``
(int32 item indices 0..n_items-1, time-ordered within each session).

``to_sessions`` is the one way in. It takes pandas and polars DataFrames
(polars LazyFrames too), pyarrow Tables and RecordBatches, a dict of NumPy
arrays (or lists), a path to a CSV/TSV file (optionally compressed: .gz, .bz2,
.xz, .zst) or a parquet file, or a ``SessionData`` (returned as is, or re-mapped
onto a given vocabulary). Numeric columns are taken as zero-copy NumPy views
where the source allows (pandas, polars and single-chunk Arrow columns without
nulls); the only new arrays are the output's.

Ids (sessions and items) must be all integers or all strings. Floats that are
whole numbers are taken as integers (a pandas column with a missing value
elsewhere reads as float). Times may be numbers (unix seconds for the time
splits), datetimes (converted to unix seconds) or ISO 8601 strings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

UNKNOWN_MODES = ("error", "drop", "keep")


@dataclass(eq=False)
class SessionData:
    offsets: np.ndarray  # int64 [n_sessions + 1]
    items: np.ndarray  # int32 [n_events], indices into item_ids (-1: unknown, evaluation only)
    item_ids: np.ndarray  # [n_items] the user's item ids, index -> id
    session_ids: np.ndarray  # [n_sessions]
    times: Optional[np.ndarray] = None  # float64 [n_events], unix seconds for datetimes

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def n_items(self) -> int:
        """Size of the vocabulary (``item_ids``), used or not."""
        return len(self.item_ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def n_used_items(self) -> int:
        """Number of distinct items that occur in the events."""
        it = self.items[self.items >= 0]
        return int(np.count_nonzero(np.bincount(it, minlength=self.n_items))) if len(it) else 0

    def __repr__(self) -> str:
        return (f"SessionData(n_sessions={self.n_sessions}, n_events={self.n_events}, "
                f"n_items={self.n_items}, times={'yes' if self.times is not None else 'no'})")

    def equals(self, other: "SessionData") -> bool:
        """Same sessions, events, vocabulary and times (exact)."""
        def same(a, b):
            if a is None or b is None:
                return a is None and b is None
            return len(a) == len(b) and bool(np.all(np.asarray(a) == np.asarray(b)))

        return (isinstance(other, SessionData) and same(self.offsets, other.offsets)
                and same(self.items, other.items) and same(self.item_ids, other.item_ids)
                and same(self.session_ids, other.session_ids) and same(self.times, other.times))

    # ----------------------------------------------------------- subsetting
    def select_sessions(self, keep: np.ndarray) -> "SessionData":
        """The sessions where ``keep`` (bool, n_sessions) is true, order kept."""
        keep = np.asarray(keep, bool)
        lengths = self.lengths()
        ev = np.repeat(keep, lengths)
        offsets = np.r_[0, np.cumsum(lengths[keep])].astype(np.int64)
        return SessionData(offsets, self.items[ev], self.item_ids, self.session_ids[keep],
                           None if self.times is None else self.times[ev])

    def select_events(self, keep: np.ndarray) -> "SessionData":
        """The events where ``keep`` (bool, n_events) is true; sessions left
        empty disappear, the others keep their order."""
        keep = np.asarray(keep, bool)
        sess = np.repeat(np.arange(self.n_sessions), self.lengths())[keep]
        counts = np.bincount(sess, minlength=self.n_sessions)
        nonempty = counts > 0
        offsets = np.r_[0, np.cumsum(counts[nonempty])].astype(np.int64)
        out = SessionData(offsets, self.items[keep], self.item_ids, self.session_ids[nonempty],
                          None if self.times is None else self.times[keep])
        return out._resorted()

    def _resorted(self) -> "SessionData":
        """Sessions back in order of their first event (ties: session id), as
        ``to_sessions`` lays them out; needed after events were removed."""
        if self.times is None or self.n_sessions < 2:
            return self
        first = self.times[self.offsets[:-1]]
        if (np.diff(first) > 0).all():
            return self
        order = np.lexsort((self.session_ids, first))
        if (order == np.arange(len(order))).all():
            return self
        lengths = self.lengths()[order]
        starts = self.offsets[:-1][order]
        ev = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        return SessionData(offsets, self.items[ev], self.item_ids, self.session_ids[order],
                           self.times[ev])

    def compact_items(self) -> "SessionData":
        """The same events with the vocabulary cut to the items that occur
        (in their existing order)."""
        used = np.bincount(self.items[self.items >= 0], minlength=self.n_items) > 0
        if used.all():
            return self
        new = np.cumsum(used) - 1
        items = np.where(self.items >= 0, new[np.maximum(self.items, 0)], -1).astype(np.int32)
        return SessionData(self.offsets, items, self.item_ids[used], self.session_ids, self.times)

    def to_frame(self, session_col: str = "SessionId", item_col: str = "ItemId",
                 time_col: str = "Time"):
        """The events as a pandas DataFrame (session, item id, time), in
        session order. Unknown items (-1) come out as missing values."""
        import pandas as pd

        sess = np.repeat(self.session_ids, self.lengths())
        if (self.items < 0).any():
            ids = pd.array(np.asarray(self.item_ids, dtype=object)[np.maximum(self.items, 0)])
            ids[self.items < 0] = None
        else:
            ids = self.item_ids[self.items]
        cols = {session_col: sess, item_col: ids}
        if self.times is not None:
            cols[time_col] = self.times
        return pd.DataFrame(cols)


# --------------------------------------------------------------- the entry point
def to_sessions(source, session_col: str = "SessionId", item_col: str = "ItemId",
                time_col: str = "Time", *, item_ids: Optional[np.ndarray] = None,
                unknown: str = "error", sep: Optional[str] = None,
                text_ids: str = "str") -> SessionData:
    """Validate events from any supported source and lay them out as sessions.

    ``item_ids``: an existing item vocabulary (a fitted model's); events with
    other items are rejected (``unknown="error"``), dropped (``"drop"``) or kept
    with index -1 (``"keep"``, for evaluation: unknown targets count as misses).
    Without it, the vocabulary is built from the data (sorted unique ids).

    ``sep``: the field separator of a text file; by default ``,`` for .csv,
    tab for .tsv, otherwise sniffed from the header line.

    ``text_ids``: how a CSV/TSV file's session and item ids are read.
    ``"str"`` (default): verbatim, as strings, so ``007`` and ``7`` stay two
    ids and ``NA`` or ``null`` are ids like any other (only an empty field is
    missing); matched against a model's integer ids, a field that spells an
    integer the canonical way (``7``, not ``007``) is that integer.
    ``"infer"``: pandas guesses the column types (``007`` and ``7`` then
    both become 7, and ``NA`` is a missing value).

    Errors (``ValueError``/``TypeError``) name the column, the row (0-based
    position in the input; for files also the line) and the bad value.
    """
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown must be one of {UNKNOWN_MODES}, got {unknown!r}")
    if text_ids not in ("str", "infer"):
        raise ValueError(f"text_ids must be 'str' or 'infer', got {text_ids!r}")
    if isinstance(source, SessionData):
        source = _checked(source, allow_unknown=unknown == "keep")
        return source if item_ids is None else _remap(source, item_ids, unknown)
    where = _Where()
    where.text_ids = text_ids
    cols = _extract(source, (session_col, item_col, time_col), ("session", "item", "time"),
                    sep, where)
    sess, item, time = cols
    n = len(sess)
    for name, col in ((item_col, item), (time_col, time)):
        if len(col) != n:  # before the empty check: an empty column is a length error too
            raise ValueError(f"columns differ in length: {session_col!r} has {n} values, "
                             f"{name!r} has {len(col)}")
    if n == 0:
        raise ValueError(f"no events: the input{where.suffix()} is empty")
    s_codes, s_uniques = _factorize_ids(sess, session_col, where)
    i_codes, i_uniques = _factorize_ids(item, item_col, where)
    t = _times(time, time_col, where)
    key = _time_key(time)
    return _build(s_codes, s_uniques, i_codes, i_uniques, t, item_ids, unknown, item_col, where,
                  key)


def sessions_from_frame(df, session_col="SessionId", item_col="ItemId", time_col="Time",
                        item_ids: np.ndarray | None = None, unknown: str = "error") -> SessionData:
    """Kept for compatibility: ``to_sessions`` with the same arguments."""
    return to_sessions(df, session_col, item_col, time_col, item_ids=item_ids, unknown=unknown)


def _checked(sd: SessionData, allow_unknown: bool) -> SessionData:
    """A SessionData built by hand is checked like any other input: the
    native trainer trusts offsets and item indices. The arrays are copied
    first and the copies checked: the caller may change its own arrays at
    any time (in a fit callback, from another thread), and native code must
    only ever see arrays nobody else can write."""
    offsets = np.array(sd.offsets, dtype=np.int64, order="C", copy=True)
    items = np.array(sd.items, dtype=np.int32, order="C", copy=True)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items):
        raise ValueError("SessionData: offsets must start at 0 and end at the number of events "
                         f"({len(items)}); got {offsets[:1]}..{offsets[-1:]}")
    if (np.diff(offsets) < 0).any():
        raise ValueError("SessionData: offsets must not decrease")
    if len(sd.session_ids) != len(offsets) - 1:
        raise ValueError(f"SessionData: {len(sd.session_ids)} session ids for "
                         f"{len(offsets) - 1} sessions")
    lo = -1 if allow_unknown else 0
    if len(items) and (items.min() < lo or items.max() >= len(sd.item_ids)):
        e = int(np.flatnonzero((items < lo) | (items >= len(sd.item_ids)))[0])
        raise ValueError(f"SessionData: item index {items[e]} of event {e} is outside the "
                         f"vocabulary of {len(sd.item_ids)} items")
    if sd.times is not None and len(sd.times) != len(items):
        raise ValueError(f"SessionData: {len(sd.times)} times for {len(items)} events")
    return SessionData(offsets, items, sd.item_ids, sd.session_ids, sd.times)


def drop_short_sessions(data: SessionData, min_length: int = 2) -> SessionData:
    keep = data.lengths() >= min_length
    return data if keep.all() else data.select_sessions(keep)


# ------------------------------------------------------------------ extraction
class _Where:
    """Where rows come from, for error messages (a file adds its line numbers)."""

    def __init__(self):
        self.path: Optional[str] = None
        self.header = True
        self.text_ids = "str"
        self.text = False  # ids read verbatim as strings from a text file

    def suffix(self) -> str:
        return f" {self.path!r}" if self.path else ""

    def row(self, r: int) -> str:
        if self.path:
            return f"row {r} (line {r + 1 + int(self.header)} of {self.path!r})"
        return f"row {r}"


def _missing(role: str, name: str, columns) -> ValueError:
    return ValueError(f"{role} column {name!r} not found; the data has columns {list(columns)} "
                      f"(pass {role}_col=... to name it)")


def _extract(source, names, roles, sep, where) -> list:
    """Three columns as NumPy arrays or pandas Series (never copied here
    unless the source has to be converted)."""
    if isinstance(source, (str, os.PathLike)):
        where.path = os.fspath(source)
        source = _read_file(where.path, names, roles, sep, where)
    mod = type(source).__module__.split(".")[0]
    if mod == "pandas" or _is_pandas_frame(source):
        import pandas as pd

        if isinstance(source, pd.DataFrame):
            return [_pandas_col(source, n, r) for n, r in zip(names, roles)]
    if mod == "polars":
        import polars as pl

        if isinstance(source, pl.LazyFrame):
            have = source.collect_schema().names() if hasattr(source, "collect_schema") \
                else source.columns
            for n, r in zip(names, roles):
                if n not in have:
                    raise _missing(r, n, have)
            source = source.select(list(dict.fromkeys(names))).collect()
        if isinstance(source, pl.DataFrame):
            out = []
            for n, r in zip(names, roles):
                if n not in source.columns:
                    raise _missing(r, n, source.columns)
                out.append(_polars_col(source.get_column(n), n))
            return out
    if mod == "pyarrow":
        if hasattr(source, "schema") and hasattr(source, "column"):
            have = source.schema.names
            out = []
            for n, r in zip(names, roles):
                if n not in have:
                    raise _missing(r, n, have)
                out.append(_arrow_col(source.column(n)))
            return out
    if isinstance(source, Mapping):
        for n, r in zip(names, roles):
            if n not in source:
                raise _missing(r, n, source.keys())
        out = []
        for n in names:
            v = source[n]
            if isinstance(v, np.ndarray):
                if v.ndim != 1:
                    raise ValueError(f"column {n!r}: expected a 1-d array, got shape {v.shape}")
                out.append(v)
            else:
                import pandas as pd  # lists etc.: pandas keeps mixed types as objects

                try:
                    frame = pd.DataFrame({n: v})
                except UnicodeEncodeError:  # pandas 3's Arrow strings refuse surrogates
                    frame = pd.DataFrame({n: pd.Series(list(v), dtype=object)})
                out.append(_pandas_col(frame, n, r))
        return out
    raise TypeError(
        "events must be a pandas or polars DataFrame, a pyarrow Table, a dict of arrays, "
        f"a path to a CSV/TSV/parquet file or a SessionData; got {type(source).__name__}")


def _is_pandas_frame(x) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    return isinstance(x, pd.DataFrame)


def _pandas_col(df, name, role):
    import pandas as pd

    if isinstance(df.columns, pd.MultiIndex):
        raise ValueError(f"the DataFrame has multi-level (MultiIndex) columns; flatten them "
                         f"first (e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns]) "
                         f"and name the {role} column with {role}_col=")
    if name not in df.columns:
        raise _missing(role, name, df.columns)
    col = df[name]
    if getattr(col, "ndim", 1) != 1:  # duplicate column names
        raise ValueError(f"column {name!r} appears more than once")
    return col


def _polars_col(s, name):
    import polars as pl

    if s.dtype.is_nested():
        raise TypeError(f"column {name!r}: a polars {s.dtype} column; ids must be integers or "
                        "strings and times numbers or datetimes")
    if s.dtype in tuple(getattr(pl, t) for t in ("Int128", "UInt128") if hasattr(pl, t)):
        try:
            s = s.cast(pl.Int64, strict=True)
        except Exception:
            raise ValueError(f"column {name!r}: polars {s.dtype} values that do not fit in "
                             "64 bits") from None
    if s.dtype == pl.Object:
        return np.asarray(s.to_list(), dtype=object)
    return s.to_numpy()


def _arrow_col(col):
    if hasattr(col, "num_chunks"):  # ChunkedArray
        return col.to_numpy()
    return col.to_numpy(zero_copy_only=False)


_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")


# A time field that reads as missing (and is then reported as such); ids
# have no such spellings: only an empty id field is missing.
_TIME_NA = ["", "NA", "N/A", "NaN", "nan", "NaT", "null", "NULL", "None"]


def _read_file(path: str, names, roles, sep, where):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    lower = path.lower()
    base = lower
    for ext in _COMPRESSION:
        if base.endswith(ext):
            base = base[: -len(ext)]
    if base.endswith((".parquet", ".pq")):
        return _read_parquet(path, names, roles)
    import pandas as pd

    if sep is None:
        sep = "," if base.endswith(".csv") else "\t" if base.endswith((".tsv", ".tab")) \
            else _sniff(path)
    try:
        head = pd.read_csv(path, sep=sep, nrows=0)
    except pd.errors.EmptyDataError:
        raise ValueError(f"no events: the file {path!r} is empty (not even a header line)") \
            from None
    for n, r in zip(names, roles):
        if n not in head.columns:
            err = _missing(r, n, head.columns)
            # One column whose name holds another separator: the wrong sep,
            # not a wrong column name.
            other = [c for c in ("\t", ";", ",", "|", " ")
                     if c != sep and len(head.columns) == 1 and c in str(head.columns[0])]
            if other:
                raise ValueError(
                    f"{r} column {n!r} not found: {path!r} read with sep={sep!r} has one "
                    f"column {str(head.columns[0])!r}; its separator looks like "
                    f"{other[0]!r}: pass sep={other[0]!r} (grurec.to_sessions(path, "
                    f"sep={other[0]!r}); command line: --sep '{other[0]}')")
            raise err
    usecols = list(dict.fromkeys(names))
    if where.text_ids == "infer":
        return pd.read_csv(path, sep=sep, usecols=usecols)
    ids = [n for n, r in zip(names, roles) if r in ("session", "item")]
    time = [n for n, r in zip(names, roles) if r == "time" and n not in ids]
    where.text = True
    return pd.read_csv(path, sep=sep, usecols=usecols, dtype={n: str for n in ids},
                       keep_default_na=False,
                       na_values={**{n: [""] for n in ids}, **{n: _TIME_NA for n in time}})


def _sniff(path: str) -> str:
    """The separator of a text file's header line: tab, comma, semicolon or space."""
    import pandas as pd

    line = pd.read_csv(path, sep="\x01", nrows=0, header=0, engine="python").columns[0]
    for cand in ("\t", ",", ";", " "):
        if cand in line:
            return cand
    return ","


def _read_parquet(path, names, roles):
    cols = list(dict.fromkeys(names))
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import polars as pl
        except ImportError:
            raise ImportError(
                f"reading the parquet file {path!r} needs pyarrow (pip install pyarrow) "
                "or polars (pip install polars)") from None
        have = pl.read_parquet_schema(path)
        for n, r in zip(names, roles):
            if n not in have:
                raise _missing(r, n, list(have))
        return pl.read_parquet(path, columns=cols)
    have = pq.read_schema(path).names
    for n, r in zip(names, roles):
        if n not in have:
            raise _missing(r, n, have)
    return pq.read_table(path, columns=cols)


# ------------------------------------------------------------------ ids
def _factorize_ids(values, name: str, where: _Where):
    """(codes int64 [n], uniques sorted [k]): uniques are integers or strings.

    Rejects missing values, mixed integer/string ids, fractional floats and
    other types, naming the first offending row."""
    import pandas as pd

    categorical = isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype)
    if categorical:
        codes = values.cat.codes.to_numpy().astype(np.int64)
        uniques = np.asarray(values.cat.categories)
    else:
        kind = getattr(getattr(values, "dtype", None), "kind", "O")
        if kind in "mM" or kind == "b":
            what = {"m": "timedeltas", "M": "datetimes", "b": "booleans"}[kind]
            raise TypeError(f"column {name!r}: ids must be integers or strings, not {what}")
        try:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
        except TypeError:  # an unhashable value (a list, a dict, an array)
            vals = values.tolist() if hasattr(values, "tolist") else list(values)
            r = next(r for r, v in enumerate(vals) if not _hashable(v))
            raise TypeError(f"column {name!r}: id {vals[r]!r} ({type(vals[r]).__name__}) at "
                            f"{where.row(r)}: ids must be integers or strings") from None
        uniques = np.asarray(uniques)
        if kind == "O":
            _refuse_hidden_bools(values, uniques, name, where)
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) and codes.min() < 0:
        r = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(f"column {name!r}: missing value (NaN/None) at {where.row(r)}")

    def first_row(bad_unique: np.ndarray) -> int:
        return int(np.flatnonzero(bad_unique[codes])[0])

    k = uniques.dtype.kind
    if k in "iu":
        pass
    elif k == "f":
        # float(2**63 - 1) == 2.0**63: compare against 2.0**63 itself, so a
        # float id of 2**63 is refused instead of wrapping to -2**63.
        bad = (~np.isfinite(uniques) | (uniques != np.floor(uniques))
               | (uniques >= 2.0**63) | (uniques < -(2.0**63)))
        if bad.any():
            r = first_row(bad)
            raise ValueError(f"column {name!r}: id {values_at(values, r)!r} at {where.row(r)} is "
                             "not a whole number in the int64 range (ids must be integers or "
                             "strings)")
        uniques = uniques.astype(np.int64)
    elif k == "U":
        uniques = uniques.astype(object)
    elif k == "O":
        uniques = _object_ids(uniques, codes, values, name, where)
    else:
        raise TypeError(f"column {name!r}: ids must be integers or strings, got dtype "
                        f"{uniques.dtype}")
    if uniques.dtype == object and len(uniques):
        _check_unicode(uniques, codes, values, name, where)
    # Drop unused categories and sort, renumbering the codes.
    if categorical:
        used = np.bincount(codes, minlength=len(uniques)) > 0
        if not used.all():
            keep = np.flatnonzero(used)
            remap = np.full(len(uniques), -1, np.int64)
            remap[keep] = np.arange(len(keep))
            codes, uniques = remap[codes], uniques[keep]
    order = np.argsort(uniques, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        codes, uniques = rank[codes], uniques[order]
    return codes, uniques


def _check_unicode(uniques, codes, values, name, where) -> None:
    """String ids must be valid Unicode (UTF-8 encodable: model files store
    them so); a lone surrogate such as '\\ud800' is refused here, naming the
    row, rather than failing every later recommend or save."""
    try:
        "".join(uniques).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    except TypeError:  # not all strings: _object_ids has reported that
        return
    bad = np.fromiter((not _encodable(u) for u in uniques), bool, len(uniques))
    r = int(np.flatnonzero(bad[codes])[0])
    raise ValueError(f"column {name!r}: id {values_at(values, r)!r} at {where.row(r)} is not "
                     "valid Unicode (a lone surrogate); ids must be encodable as UTF-8")


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_hidden_bools(values, uniques, name, where) -> None:
    """True == 1 and False == 0 hash alike, so pd.factorize files a bool in an
    object column under an equal number (and may even give int64 uniques):
    look for bools among the values when a 0 or 1 is among the uniques."""
    if not any(isinstance(u, (int, float, np.number)) and not isinstance(u, (bool, np.bool_))
               and u in (0, 1) for u in uniques):
        return
    is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in values), bool, len(values))
    if is_bool.any():
        r = int(np.argmax(is_bool))
        v = values_at(values, r)
        raise TypeError(f"column {name!r}: id {v!r} ({type(v).__name__}) at {where.row(r)}: "
                        "ids must be integers or strings")


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def values_at(values, r: int):
    """The value at row ``r`` as a plain Python object (for messages)."""
    try:
        v = values.iloc[r]
    except AttributeError:
        v = values[r]
    return v.item() if isinstance(v, np.generic) else v


def _object_ids(uniques, codes, values, name, where):
    is_str = np.fromiter((isinstance(u, str) for u in uniques), bool, len(uniques))
    is_int = np.fromiter(
        (isinstance(u, (int, np.integer)) and not isinstance(u, (bool, np.bool_))
         or (isinstance(u, (float, np.floating)) and np.isfinite(u) and float(u).is_integer())
         for u in uniques), bool, len(uniques))
    bad = ~(is_str | is_int)
    rows = lambda m: int(np.flatnonzero(m[codes])[0])  # noqa: E731
    if bad.any():
        r = rows(bad)
        v = values_at(values, r)
        raise TypeError(f"column {name!r}: id {v!r} ({type(v).__name__}) at {where.row(r)}: "
                        "ids must be integers or strings")
    if is_str.any() and is_int.any():
        rs, ri = rows(is_str), rows(is_int)
        raise TypeError(
            f"column {name!r}: mixed id types: {values_at(values, ri)!r} (a number) at "
            f"{where.row(ri)} and {values_at(values, rs)!r} (a string) at {where.row(rs)}; "
            "ids must be all integers or all strings")
    if is_str.all():
        return np.asarray([str(u) for u in uniques], dtype=object)
    ints = [int(u) for u in uniques]
    lo, hi = min(ints), max(ints)
    if lo >= -(2**63) and hi < 2**63:
        return np.asarray(ints, dtype=np.int64)
    if lo >= 0 and hi < 2**64:
        return np.asarray(ints, dtype=np.uint64)
    outside = np.asarray([not (-(2**63) <= i < 2**64) for i in ints])
    if outside.any():
        r = rows(outside)
        raise ValueError(f"column {name!r}: id {values_at(values, r)!r} at {where.row(r)} does "
                         "not fit in 64 bits")
    # Each fits, but no one type holds them all: negative ids and ids >= 2**63.
    rn, rb = rows(np.asarray([i < 0 for i in ints])), rows(np.asarray([i >= 2**63 for i in ints]))
    raise ValueError(f"column {name!r}: ids {values_at(values, rn)!r} at {where.row(rn)} and "
                     f"{values_at(values, rb)!r} at {where.row(rb)} fit no one 64-bit integer "
                     "type (int64 ends below 2**63, uint64 has no negatives)")


# ------------------------------------------------------------------ times
def _times(values, name: str, where: _Where) -> np.ndarray:
    """float64 times; datetimes become unix seconds."""
    import pandas as pd

    if isinstance(values, pd.Series):
        dt = values.dtype
        if isinstance(dt, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            dt = values.dtype
        if getattr(dt, "kind", "O") in "iufmM" and not isinstance(dt, np.dtype):
            # nullable / Arrow-backed numbers and datetimes
            if dt.kind in "mM":
                values = values.to_numpy(dtype=f"{'datetime64' if dt.kind == 'M' else 'timedelta64'}[ns]",
                                         na_value=np.datetime64("NaT") if dt.kind == "M"
                                         else np.timedelta64("NaT"))
            else:
                values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = values.to_numpy()
    arr = np.asarray(values)
    k = arr.dtype.kind
    if k == "M":
        unit = np.datetime_data(arr.dtype)[0]
        if unit in ("Y", "M"):  # calendar units: no fixed length in seconds
            arr, unit = arr.astype("datetime64[D]"), "D"
        t = (arr - np.datetime64(0, unit)) / np.timedelta64(1, "s")
    elif k == "m":
        t = arr / np.timedelta64(1, "s")
    elif k in "iuf":
        t = arr.astype(np.float64, copy=False)
    elif k in "OUS":
        t = _object_times(arr, name, where)
    else:
        raise TypeError(f"column {name!r}: times must be numbers or datetimes, got dtype {arr.dtype}")
    nan = np.isnan(t)
    if nan.any():
        r = int(np.flatnonzero(nan)[0])
        raise ValueError(f"column {name!r}: NaN time at {where.row(r)}")
    inf = np.isinf(t)
    if inf.any():
        r = int(np.flatnonzero(inf)[0])
        raise ValueError(f"column {name!r}: infinite time at {where.row(r)}")
    return t


def _time_key(values) -> Optional[np.ndarray]:
    """The times as exact integers for ordering, where the input has them:
    int64/uint64 numbers, datetimes (int64 in their own unit); else None
    (``_times``' float64 values order the events)."""
    import pandas as pd

    try:
        if isinstance(values, pd.Series):
            dt = values.dtype
            if isinstance(dt, pd.DatetimeTZDtype):
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            elif not isinstance(dt, np.dtype):
                return None  # nullable / Arrow-backed: float64 order
            values = values.to_numpy()
        arr = np.asarray(values)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind in "iu":
        return arr
    if arr.dtype.kind in "mM":
        return arr.view(np.int64)
    return None


def _object_times(arr, name, where) -> np.ndarray:
    """Times given as Python objects or strings: numbers (also as text, as a
    CSV column with one bad value reads) or ISO 8601 date-times."""
    import pandas as pd

    obj = pd.Series(arr, dtype=object)
    null = obj.isna().to_numpy()
    num = pd.to_numeric(obj, errors="coerce")
    # bools and complex numbers are not times (to_numeric would take True as
    # 1 and drop an imaginary part)
    is_bool = np.fromiter((isinstance(v, (bool, np.bool_, complex, np.complexfloating))
                           for v in arr), bool, len(arr))
    num_ok = num.notna().to_numpy() & ~is_bool
    if (num_ok | null).all():
        t = num.to_numpy(dtype=np.float64, na_value=np.nan)
        return t  # NaN rows are reported by the caller
    parsed = pd.to_datetime(obj.where(~num_ok), errors="coerce", utc=True, format="ISO8601")
    dt_ok = parsed.notna().to_numpy() & ~is_bool
    bad = ~(num_ok | dt_ok | null)
    if bad.any() or (num_ok.any() and dt_ok.any()):
        r = int(np.flatnonzero(bad)[0]) if bad.any() else int(np.flatnonzero(num_ok)[0])
        v = arr[r].item() if isinstance(arr[r], np.generic) else arr[r]
        raise ValueError(f"column {name!r}: non-numeric time {v!r} at {where.row(r)} "
                         "(times must be numbers, datetimes or ISO 8601 strings, not a mix)"
                         if not bad.any() else
                         f"column {name!r}: non-numeric time {v!r} at {where.row(r)} "
                         "(times must be numbers, datetimes or ISO 8601 strings)")
    if null.any():
        r = int(np.flatnonzero(null)[0])
        raise ValueError(f"column {name!r}: NaN time at {where.row(r)}")
    ns = parsed.dt.tz_localize(None).to_numpy()
    unit = np.datetime_data(ns.dtype)[0]
    return (ns - np.datetime64(0, unit)) / np.timedelta64(1, "s")


# ------------------------------------------------------------------ layout
def _vocab_lookup(item_ids: np.ndarray, uniques: np.ndarray, item_col: str) -> np.ndarray:
    """Index of each unique id in ``item_ids`` (-1: not there)."""
    import pandas as pd

    vocab = np.asarray(item_ids)
    index = pd.Index(vocab.astype(object) if vocab.dtype.kind in "US" else vocab)
    if not index.is_unique:
        raise ValueError("item_ids: the vocabulary has duplicate ids")
    if len(uniques) == 0:
        return np.zeros(0, np.int64)
    v_str = vocab.dtype.kind in "OUS" and len(vocab) and isinstance(vocab[0], str)
    u_str = uniques.dtype.kind == "O"
    if len(vocab) and v_str != u_str:
        return np.full(len(uniques), -1, np.int64)
    return np.asarray(index.get_indexer(uniques), dtype=np.int64)


def _as_vocab_kind(vocab: np.ndarray, uniques: np.ndarray, codes, item_col: str,
                   where: _Where):
    """(``uniques`` as ids of the vocabulary's kind, bool mask of those that
    match nothing). Strings read verbatim from a text file, matched against
    integer ids: a canonical integer spelling ('7', not '007') is that
    integer, anything else matches nothing. Otherwise ids of the other kind
    (strings for integer ids, integers for string ids) are a TypeError
    naming the first one."""
    none = np.zeros(len(uniques), bool)
    if len(vocab) == 0 or len(uniques) == 0:
        return uniques, none
    v_int = vocab.dtype.kind in "iu"
    u_int = uniques.dtype.kind in "iu"
    if v_int == u_int:
        return uniques, none
    if v_int and where.text:
        lo, hi = (0, 2**64) if vocab.dtype.kind == "u" else (-(2**63), 2**63)
        out = np.zeros(len(uniques), vocab.dtype)
        for j, u in enumerate(uniques):
            try:
                v = int(u)
            except ValueError:
                v = None
            if v is not None and str(v) == u and lo <= v < hi:
                out[j] = v
            else:
                none[j] = True
        return out, none
    r = int(codes[0]) if len(codes) else 0
    u = uniques[r]
    u = u.item() if isinstance(u, np.generic) else u
    have, want = ("a string", "integers") if v_int else ("a number", "strings")
    raise TypeError(f"column {item_col!r}: item {u!r} at {where.row(0)} is {have}, but the "
                    f"model's item ids are {want}")


def _unknown_error(item_col, value, where_row, vocab):
    kind = "strings" if (len(vocab) and isinstance(vocab[0], str)) else "integers"
    if isinstance(value, np.generic):
        value = value.item()
    return ValueError(
        f"{f'column {item_col!r}: ' if item_col else ''}item {value!r} at {where_row} is "
        "not in the model's "
        f"vocabulary (its {len(vocab)} item ids are {kind}; pass unknown='drop' to skip "
        "such events)")


def _build(s_codes, s_uniques, i_codes, i_uniques, t, item_ids, unknown, item_col, where,
           key=None):
    if item_ids is None:
        vocab, idx = i_uniques, i_codes
    else:
        vocab = np.asarray(item_ids)
        typed, nomatch = _as_vocab_kind(vocab, i_uniques, i_codes, item_col, where)
        pos = _vocab_lookup(vocab, typed, item_col)
        pos[nomatch] = -1
        idx = pos[i_codes]
        known = idx >= 0
        if not known.all():
            if unknown == "error":
                r = int(np.flatnonzero(~known)[0])
                raise _unknown_error(item_col, i_uniques[i_codes[r]], where.row(r), vocab)
            if unknown == "drop":
                s_codes, idx, t = s_codes[known], idx[known], t[known]
                key = None if key is None else key[known]
    return _layout(s_codes, s_uniques, idx, t, vocab, key)


def _layout(s_codes, s_uniques, idx, t, vocab, key=None) -> SessionData:
    """Sessions ordered by their first event's time (ties: session id order),
    events by time within a session (stable: ties keep input order). ``key``:
    the times as exact integers (int64 times, datetimes in their unit) when
    the input had them: float64 ``t`` loses the order of int64 times near
    2**62 or of datetimes nanoseconds apart."""
    if len(idx) == 0:
        return SessionData(np.zeros(1, np.int64), np.zeros(0, np.int32), vocab,
                           s_uniques[:0], np.zeros(0))
    if key is None:
        key = t
    first = np.full(len(s_uniques), np.iinfo(key.dtype).max if key.dtype.kind in "iu"
                    else np.inf, dtype=key.dtype)
    np.minimum.at(first, s_codes, key)
    order = np.lexsort((key, s_codes, first[s_codes]))
    s_sorted = s_codes[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    offsets = np.r_[starts, len(s_sorted)].astype(np.int64)
    return SessionData(offsets, idx[order].astype(np.int32), vocab, s_uniques[s_sorted[starts]],
                       t[order])


def _remap(sd: SessionData, item_ids, unknown: str) -> SessionData:
    """The same sessions with item indices into another vocabulary."""
    vocab = np.asarray(item_ids)
    if sd.item_ids is vocab or (len(sd.item_ids) == len(vocab)
                                and np.array_equal(sd.item_ids, vocab)):
        return sd
    pos = _vocab_lookup(vocab, _ids_as_uniques(sd.item_ids), "item")
    pos = np.r_[pos, -1]  # index -1 (already unknown) stays unknown
    idx = pos[np.where(sd.items >= 0, sd.items, len(pos) - 1)]
    known = idx >= 0
    if not known.all():
        if unknown == "error":
            e = int(np.flatnonzero(~known)[0])
            v = sd.item_ids[sd.items[e]] if sd.items[e] >= 0 else None
            raise _unknown_error(None, v, f"event {e}", vocab)
        if unknown == "drop":
            out = SessionData(sd.offsets, idx.astype(np.int32), vocab, sd.session_ids, sd.times)
            return out.select_events(known)
    return SessionData(sd.offsets, idx.astype(np.int32), vocab, sd.session_ids, sd.times)


def _ids_as_uniques(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    return ids.astype(object) if ids.dtype.kind in "US" else ids


def as_id_array(ids: Any) -> np.ndarray:
    """``ids`` as int64/uint64/intN or an object array of str; raises TypeError
    for anything else (floats, bytes, mixed types)."""
    arr = np.asarray(ids)
    k = arr.dtype.kind
    if k in "iu":
        return arr
    if k == "U":
        return arr.astype(object)
    if k == "O":
        if all(isinstance(v, str) for v in arr):
            return arr
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in arr):
            try:
                return arr.astype(np.int64)
            except OverflowError:
                return arr.astype(np.uint64)
    raise TypeError(f"item ids must be all integers or all strings, got dtype {arr.dtype}"
                    + (f" with values like {arr[0]!r}" if len(arr) else ""))
