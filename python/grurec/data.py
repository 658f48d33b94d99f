"""Events in, sessions out: validation, item-id mapping, CSR layout.

``SessionData`` is the one internal representation: sessions ordered by the
time of their first event, ``offsets`` (int64, n_sessions + 1) into ``items``
(int32 item indices 0..n_items-1, time-ordered within each session).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SessionData:
    offsets: np.ndarray  # int64 [n_sessions + 1]
    items: np.ndarray  # int32 [n_events], indices into item_ids
    item_ids: np.ndarray  # [n_items] the user's item ids, index -> id
    session_ids: np.ndarray  # [n_sessions]

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _column(df, name: str, role: str) -> np.ndarray:
    if name not in df.columns:
        raise ValueError(
            f"{role} column {name!r} not found; the data has columns {list(df.columns)} "
            f"(pass {role}_col=... to name it)"
        )
    return df[name].to_numpy()


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def sessions_from_frame(df, session_col="SessionId", item_col="ItemId", time_col="Time",
                        item_ids: np.ndarray | None = None, unknown: str = "error") -> SessionData:
    """Validate an event table and lay it out as sessions.

    ``item_ids``: an existing item vocabulary (a fitted model's); events with
    other items are dropped (``unknown="drop"``) or rejected (``"error"``).
    Without it, the vocabulary is built from the data (sorted unique ids).
    """
    if len(df) == 0:
        raise ValueError("no events: the input is empty")
    sess = _column(df, session_col, "session")
    item = _column(df, item_col, "item")
    time = _column(df, time_col, "time")
    for name, col in ((session_col, sess), (item_col, item)):
        if col.dtype.kind == "f" or col.dtype == object:
            isnull = np.asarray(df[name].isna())
            if isnull.any():
                row = _first_bad(isnull)
                raise ValueError(f"column {name!r}: missing value (NaN/None) at row {row}")
    if time.dtype.kind in "mM":
        time = time.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    try:
        time = time.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"column {time_col!r}: times must be numbers or datetimes ({e})") from None
    if np.isnan(time).any():
        raise ValueError(f"column {time_col!r}: NaN time at row {_first_bad(np.isnan(time))}")

    if item_ids is None:
        item_ids, idx = np.unique(item, return_inverse=True)
    else:
        order = np.argsort(item_ids)
        pos = np.searchsorted(item_ids, item, sorter=order)
        pos = np.minimum(pos, len(item_ids) - 1)
        idx = order[pos]
        known = item_ids[idx] == item
        if not known.all():
            if unknown == "keep":  # evaluation: unknown items become -1
                idx = np.where(known, idx, -1)
            elif unknown == "error":
                row = _first_bad(~known)
                raise ValueError(
                    f"column {item_col!r}: item {item[row]!r} at row {row} is not in the "
                    f"model's vocabulary (pass unknown='drop' to skip such events)")
            else:
                sess, idx, time = sess[known], idx[known], time[known]
    # Sessions ordered by their first event's time, events by time within a
    # session (stable: ties keep input order).
    sess_codes, sess_idx = np.unique(sess, return_inverse=True)
    first = np.full(len(sess_codes), np.inf)
    np.minimum.at(first, sess_idx, time)
    order = np.lexsort((time, sess_idx, first[sess_idx]))
    sess_idx, idx = sess_idx[order], idx[order]
    starts = np.flatnonzero(np.r_[True, sess_idx[1:] != sess_idx[:-1]])
    offsets = np.r_[starts, len(sess_idx)].astype(np.int64)
    return SessionData(offsets, idx.astype(np.int32), np.asarray(item_ids),
                       sess_codes[sess_idx[starts]])


def drop_short_sessions(data: SessionData, min_length: int = 2) -> SessionData:
    lengths = data.lengths()
    keep = lengths >= min_length
    if keep.all():
        return data
    ev = np.repeat(keep, lengths)
    offsets = np.r_[0, np.cumsum(lengths[keep])].astype(np.int64)
    return SessionData(offsets, data.items[ev], data.item_ids, data.session_ids[keep])
