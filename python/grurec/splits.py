"""Train/test splits that keep the future out of training.

``time_split``: everything before a cut time trains, everything after tests.
The cut is given (``cut=``) or ``days`` before the last event. Sessions that
straddle the cut are handled by ``straddling``:

=============  ===============================================================
``"truncate"`` (default; Hidasi & Czapp, RecSys 2023) the events before the
               cut stay in train, the rest of the session is dropped; test
               holds the sessions that start at or after the cut.
``"drop"``     straddling sessions are dropped whole.
``"split"``    the part before the cut trains, the part after tests.
``"test"``     (GRU4Rec, ICLR 2016) whole sessions go by their *last* event:
               a straddling session is a test session. Its early events can
               precede the last training events, so the guarantee below is
               weaker: every training session ends before the cut, every test
               session as assigned ends at or after it (removing unseen items
               afterwards can remove a test session's last events).
=============  ===============================================================

Guarantee (all modes but ``"test"``): every training event is earlier than the
cut and every test event is at or after it, so no test event precedes a
training event. The function checks this on its output.

Then, in this order: train sessions shorter than ``min_length`` are dropped;
with ``drop_unseen_items=True`` (only when asked) test events whose item
never occurs in train are removed; test sessions shorter than ``min_length``
are dropped. Each split's vocabulary is cut to the items it contains, and the
``Report`` says what every step removed.

The same split applied again to ``split.train`` gives a train/validation pair
for tuning (GRU4Rec's ``train_tr`` / ``train_valid``)::

    full = time_split(events, days=1)
    tune = time_split(full.train, days=1)

``leave_last_out``: for user sequences (one sequence per user), the last
event tests and the second-to-last validates.

``user_time_split``: for user sequences, a global time cut: train = every
event before the cut; test = the whole sequences of the users with an event
at or after it (``grurec.evaluate_users(protocol="time")`` predicts each of
those events from everything the user did before it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .data import SessionData, to_sessions
from .report import Report, counts

STRADDLING = ("truncate", "drop", "split", "test")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass
class Split:
    """``train`` to fit on, ``test`` to evaluate on, and for leave-last-out a
    ``valid`` set; ``cut`` is the split time (in the data's time unit)."""

    train: SessionData
    test: SessionData
    report: Report
    cut: Optional[float] = None
    valid: Optional[SessionData] = None


def _min_length(v, low: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"min_length must be an integer, got {v!r}")
    if v < low:
        raise ValueError(f"min_length must be >= {low}, got {v}")
    return int(v)


def _cut_value(cut, unit: str) -> float:
    if isinstance(cut, (int, float, np.integer, np.floating)) and not isinstance(cut, (bool, np.bool_)):
        if cut != cut:  # NaN
            raise ValueError("cut must be a number or a date/time, got nan")
        return float(cut)
    import pandas as pd

    try:
        ts = pd.Timestamp(cut)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cut must be a number or a date/time, got {cut!r} ({e})") from None
    if ts is pd.NaT:  # pd.Timestamp("") and "NaT" parse to NaT, which has no time
        raise ValueError(f"cut must be a number or a date/time, got {cut!r} (no time)")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp() / _SECONDS[unit]


def _check_cut_args(days, cut, unit) -> None:
    """The argument checks time_split and user_time_split share."""
    if (days is None) == (cut is None):
        raise ValueError("give exactly one of days= and cut=")
    if not isinstance(unit, str) or unit not in _SECONDS:
        raise ValueError(f"unit must be one of {tuple(_SECONDS)}, got {unit!r}")
    if days is not None and not (isinstance(days, (int, float, np.integer, np.floating))
                                 and not isinstance(days, (bool, np.bool_))
                                 and np.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0 (a number of days), got {days!r}")


def _cut_time(sd, days, cut, unit, what: str) -> float:
    """The cut in ``sd``'s time unit: ``days`` before its last event, or ``cut``."""
    if sd.times is None:
        raise ValueError(f"{what} needs event times; this SessionData has none")
    if sd.n_events == 0:
        raise ValueError("no events to split")
    if days is not None:
        return float(sd.times.max()) - days * 86400.0 / _SECONDS[unit]
    return _cut_value(cut, unit)


def time_split(events, *, days: Optional[float] = None, cut=None, unit: str = "s",
               straddling: str = "truncate", drop_unseen_items: bool = False,
               min_length: int = 2, session_col: str = "SessionId", item_col: str = "ItemId",
               time_col: str = "Time") -> Split:
    """Split ``events`` (anything ``to_sessions`` takes) at a time.

    ``days``: the test period is the last ``days`` days before the last event
    (numeric times are read in ``unit``: ``"s"`` unix seconds, ``"ms"``,
    ``"us"`` or ``"ns"``). ``cut``: an explicit split time instead (a number
    in the data's unit, or a date/time: naive ones are UTC).
    """
    _check_cut_args(days, cut, unit)
    if not isinstance(straddling, str) or straddling not in STRADDLING:
        raise ValueError(f"straddling must be one of {STRADDLING}, got {straddling!r}")
    min_length = _min_length(min_length, 1)
    sd = to_sessions(events, session_col, item_col, time_col)
    cut_v = _cut_time(sd, days, cut, unit, "time_split")
    t = sd.times
    lengths = sd.lengths()
    first, last = t[sd.offsets[:-1]], t[sd.offsets[1:] - 1]
    before, after = last < cut_v, first >= cut_v  # wholly before / wholly after the cut
    ev_sess = np.repeat(np.arange(sd.n_sessions), lengths)
    ev_before = t < cut_v
    if straddling == "test":
        tr_ev, te_ev = before[ev_sess], ~before[ev_sess]
    elif straddling == "drop":
        tr_ev, te_ev = before[ev_sess], after[ev_sess]
    elif straddling == "truncate":
        tr_ev, te_ev = ev_before & ~after[ev_sess], after[ev_sess]
    else:  # split
        tr_ev, te_ev = ev_before & ~after[ev_sess], ~ev_before & ~before[ev_sess]

    rep = Report("time_split")
    c0 = counts(sd)
    rep.add("input", "all", c0, c0)
    n_straddle = int((~before & ~after).sum())
    train, test = sd.select_events(tr_ev), sd.select_events(te_ev)
    rep.add(f"cut at {cut_v:.6g}: sessions ending before it ({n_straddle} straddling the cut: "
            f"{straddling})", "train", c0, counts(train))
    rep.add(f"cut at {cut_v:.6g}: sessions after it", "test", c0, counts(test))
    if straddling == "test":
        n_early = int((test.times < cut_v).sum()) if test.n_events else 0
        if n_early:
            rep.add(f"note: {n_early} test events precede the cut (straddling='test')", "test",
                    counts(test), counts(test))

    c = counts(train)
    train = train.select_sessions(train.lengths() >= min_length)
    rep.add(f"remove sessions shorter than {min_length}", "train", c, counts(train))
    if drop_unseen_items:
        seen = np.zeros(sd.n_items, bool)
        seen[train.items] = True
        c = counts(test)
        test = test.select_events(seen[test.items])
        rep.add("remove items not in train", "test", c, counts(test))
    c = counts(test)
    test = test.select_sessions(test.lengths() >= min_length)
    rep.add(f"remove sessions shorter than {min_length}", "test", c, counts(test))
    train, test = train.compact_items(), test.compact_items()

    if straddling != "test":  # the promise, checked
        assert train.n_events == 0 or train.times.max() < cut_v
        assert test.n_events == 0 or test.times.min() >= cut_v
    return Split(train, test, rep, cut=cut_v)


def leave_last_out(sequences, *, min_length: int = 3, drop_unseen_items: bool = False,
                   session_col: str = "SessionId", item_col: str = "ItemId",
                   time_col: str = "Time") -> Split:
    """Per user sequence (time-ordered): ``train`` = all but the last two
    events, ``valid`` = all but the last (its last event is the validation
    target), ``test`` = the whole sequence (its last event is the test target).

    Users with fewer than ``min_length`` (>= 3) events have no target: all
    their events stay in ``train``, and they are not in ``valid``/``test``.
    With ``drop_unseen_items=True``, a user leaves ``valid`` when the
    validation target never occurs in ``train``, and leaves ``test`` when the
    test target occurs in no user's sequence before its last event.
    """
    min_length = _min_length(min_length, 3)  # train, validation and test
    sd = to_sessions(sequences, session_col, item_col, time_col)
    rep = Report("leave_last_out")
    c0 = counts(sd)
    rep.add("input", "all", c0, c0)
    lengths = sd.lengths()
    eligible = lengths >= min_length
    ends = sd.offsets[1:]
    pos_from_end = np.repeat(ends, lengths) - np.arange(sd.n_events)  # 1 = last event
    elig_ev = np.repeat(eligible, lengths)
    train = sd.select_events(~elig_ev | (pos_from_end > 2))
    rep.add(f"all but the last 2 events ({int((~eligible).sum())} users with fewer than "
            f"{min_length} events: all in train)", "train", c0, counts(train))
    valid = sd.select_events(elig_ev & (pos_from_end > 1))
    rep.add("all but the last event (target: the last)", "valid", c0, counts(valid))
    test = sd.select_sessions(eligible)
    rep.add("whole sequence (target: the last event)", "test", c0, counts(test))
    if drop_unseen_items:
        seen = np.zeros(sd.n_items, bool)
        seen[train.items] = True
        c = counts(valid)
        valid = valid.select_sessions(seen[valid.items[valid.offsets[1:] - 1]])
        rep.add("remove users whose target is not in train", "valid", c, counts(valid))
        seen[sd.items[pos_from_end > 1]] = True
        c = counts(test)
        test = test.select_sessions(seen[test.items[test.offsets[1:] - 1]])
        rep.add("remove users whose target occurs nowhere before", "test", c, counts(test))
    return Split(train.compact_items(), test.compact_items(), rep,
                 valid=valid.compact_items())


def user_time_split(events, *, cut=None, days: Optional[float] = None, unit: str = "s",
                    user_col: str = "UserId", item_col: str = "ItemId",
                    time_col: str = "Time") -> Split:
    """Split user sequences at a global time: ``train`` = every event before
    ``cut`` (all users), ``test`` = the *whole* sequences (events before the
    cut included: they are the history) of the users with at least one event
    at or after it and an earlier event of their own to condition on.

    ``cut``: a number in the data's time unit or a date/time (naive: UTC;
    numeric times read in ``unit``); or ``days``: the last ``days`` days
    before the last event. ``Split.cut`` holds the cut as a number, which
    ``grurec.evaluate_users(model, split, protocol="time")`` reads: the test
    targets are exactly the test events at or after it with an earlier event
    of the same user.
    """
    _check_cut_args(days, cut, unit)
    sd = to_sessions(events, user_col, item_col, time_col)
    cut_v = _cut_time(sd, days, cut, unit, "user_time_split")
    rep = Report("user_time_split")
    c0 = counts(sd)
    rep.add("input", "all", c0, c0)
    before = sd.times < cut_v
    train = sd.select_events(before)
    rep.add(f"events before the cut at {cut_v:.6g}", "train", c0, counts(train))
    lengths = sd.lengths()
    user = np.repeat(np.arange(sd.n_sessions), lengths)
    first = np.repeat(sd.offsets[:-1], lengths) == np.arange(sd.n_events)
    target = ~before & ~first  # at or after the cut, with an earlier event of the user
    has_target = np.bincount(user[target], minlength=sd.n_sessions) > 0
    test = sd.select_sessions(has_target)
    rep.add(f"whole sequences of users with events at or after the cut "
            f"({int(target.sum())} targets)", "test", c0, counts(test))
    return Split(train.compact_items(), test.compact_items(), rep, cut=cut_v)
