"""Public data sets: raw downloads with the literature's preprocessing, and
the prepared files of ``../shared/data``.

Every loader returns a ``Dataset``: ``train`` to fit on and ``test`` to
evaluate on, a tuning pair ``train_tr`` / ``valid`` where the recipe defines
one, the preprocessed ``events`` before the split where that is one set, and a
``report`` with what every step kept and removed (``print(ds.report)``; the
steps are also logged at INFO on ``grurec.datasets``).

Raw downloads (file formats as published by their providers):

``load_rsc15``        YOOCHOOSE / RecSys Challenge 2015 ``yoochoose-clicks.dat``,
                      GRU4Rec preprocessing (Hidasi et al., ICLR 2016).
``load_retailrocket`` RetailRocket ``events.csv``, the GRU4Rec authors' recipe
                      (Hidasi & Czapp, RecSys 2023).
``load_diginetica``   CIKM Cup 2016 ``train-item-views.csv``, SR-GNN
                      preprocessing (Wu et al., AAAI 2019).
``load_movielens``    MovieLens ``ratings.dat`` / ``u.data`` / ``ratings.csv`` as
                      user sequences (BERT4Rec / SASRec style), leave-last-out.

Prepared files:

``load_session_files`` ``SessionId ItemId Time`` TSVs (the SR-GNN-style sets,
                       rsc15-100k), train/test and optionally train_tr/valid.
``load_user_item``     ``user item`` lines grouped by user in time order
                       (amazon-beauty), leave-last-out.
``load_recbole``       RecBole atomic ``.inter`` files (typed header), leave-last-out.
``load_user_sequences`` one line per user, ``user item item ...`` in time order
                       (the S3-Rec ``Beauty.txt``, beauty-s3rec), leave-last-out.
``load_prepared``      one of the folders of ``../shared/data`` by name.

Item and session ids are kept as the files have them (no renumbering).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .data import SessionData, to_sessions
from .report import Report, counts, frame_counts
from .splits import leave_last_out, time_split

PathLike = Union[str, os.PathLike]
S, I, T = "SessionId", "ItemId", "Time"


@dataclass
class Dataset:
    name: str
    train: SessionData
    test: Optional[SessionData]
    report: Report
    train_tr: Optional[SessionData] = None
    valid: Optional[SessionData] = None
    events: Optional[SessionData] = None
    notes: list = field(default_factory=list)

    def summary(self) -> dict:
        """{part: {"events", "sessions", "items"}} for every part present, plus
        "all_items": distinct items over train and test."""
        out = {}
        for part in ("events", "train", "test", "train_tr", "valid"):
            sd = getattr(self, part)
            if sd is not None:
                e, s, i = counts(sd)
                out[part] = {"events": e, "sessions": s, "items": i}
        parts = [p for p in (self.train, self.test) if p is not None]
        out["all_items"] = len(set().union(*(set(p.item_ids[np.unique(p.items)].tolist())
                                             for p in parts)))
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{p}={getattr(self, p)!r}" for p in
                          ("train", "test", "train_tr", "valid") if getattr(self, p) is not None)
        return f"Dataset({self.name!r}, {parts})"


# ----------------------------------------------------------------- steps on frames
class _Frame:
    """A pandas event table (SessionId, ItemId, Time) and the report of what
    each step did to it."""

    def __init__(self, df, report: Report, read_step: bool = True):
        self.df = df
        self.report = report
        if read_step:
            report.add("read", "all", frame_counts(df), frame_counts(df))

    def step(self, text: str, keep) -> None:
        before = frame_counts(self.df)
        self.df = self.df[keep] if keep is not None else self.df
        self.report.add(text, "all", before, frame_counts(self.df))

    def session_lengths(self):
        return self.df.groupby(S, sort=False)[I].transform("size")

    def item_support(self):
        return self.df.groupby(I, sort=False)[S].transform("size")

    def min_session_length(self, n: int, text: str = "") -> None:
        self.step(text or f"remove sessions shorter than {n}", self.session_lengths() >= n)

    def min_item_support(self, n: int) -> None:
        self.step(f"remove items with fewer than {n} events", self.item_support() >= n)

    def iterate(self, min_session_length: int, min_item_support: int) -> None:
        """Both filters, repeated until nothing changes (one report step)."""
        before = frame_counts(self.df)
        rounds = 0
        while True:
            rounds += 1
            n = len(self.df)
            self.df = self.df[self.session_lengths() >= min_session_length]
            self.df = self.df[self.item_support() >= min_item_support]
            if len(self.df) == n:
                break
        self.report.add(f"remove sessions shorter than {min_session_length} and items with "
                        f"fewer than {min_item_support} events, repeated until stable "
                        f"({rounds} rounds)", "all", before, frame_counts(self.df))


def _sessions(df, report: Report, text: str = "as sessions") -> SessionData:
    if len(df) == 0:
        raise ValueError(f"{report.name}: no events left after preprocessing:\n{report}")
    sd = to_sessions(df, S, I, T)
    report.add(text, "all", frame_counts(df), counts(sd))
    return sd


def _time_split_dataset(name, sd, report, days, straddling, valid_days, notes) -> Dataset:
    full = time_split(sd, days=days, straddling=straddling, drop_unseen_items=True)
    report.extend(full.report, "test split: ")
    train_tr = valid = None
    if valid_days:
        tune = time_split(full.train, days=valid_days, straddling=straddling,
                          drop_unseen_items=True)
        report.extend(tune.report, "validation split: ")
        train_tr, valid = tune.train, tune.test
    return Dataset(name, full.train, full.test, report, train_tr, valid, events=sd, notes=notes)


def _read_csv(path, **kw):
    import pandas as pd

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    return pd.read_csv(path, **kw)


def _unix_seconds(values) -> np.ndarray:
    import pandas as pd

    values = pd.Series(values)
    if values.dtype.kind in "iufb":
        # Numbers in a date column: parsed as text, as pandas < 3 did (pandas 3
        # deprecates parsing numbers with a format: a Pandas4Warning).
        values = values.astype(str)
    ts = pd.to_datetime(values, utc=True, format="ISO8601")
    ns = ts.dt.tz_localize(None).to_numpy() if hasattr(ts, "dt") else ts.tz_localize(None).to_numpy()
    unit = np.datetime_data(ns.dtype)[0]
    return (ns - np.datetime64(0, unit)) / np.timedelta64(1, "s")


# ----------------------------------------------------------------- raw: RSC15
def load_rsc15(path: Union[PathLike, Sequence[PathLike]], *, test_days: float = 1,
               valid_days: Optional[float] = 1, min_item_support: int = 5,
               nrows: Optional[int] = None) -> Dataset:
    """YOOCHOOSE clicks (``yoochoose-clicks.dat``: ``SessionId,Timestamp,ItemId,
    Category``, no header, ISO 8601 UTC timestamps) with the GRU4Rec
    preprocessing (Hidasi et al., ICLR 2016, section 4.1):

    1. read the clicks (several files are concatenated), times to unix seconds;
    2. remove sessions of length 1;
    3. remove items with fewer than ``min_item_support`` (5) clicks;
    4. remove sessions shorter than 2 (again: step 3 shortens sessions);
    5. test = the sessions whose *last* click is in the last ``test_days`` (1)
       day, assigned whole (never split mid-session); the rest trains;
    6. remove test clicks on items not in train, then test sessions shorter than 2;
    7. the same split on train gives ``train_tr`` / ``valid`` (``valid_days``).
    """
    import pandas as pd

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    parts = [_read_csv(p, header=None, usecols=[0, 1, 2], names=[S, "Timestamp", I],
                       dtype={S: np.int64, I: np.int64, "Timestamp": str}, nrows=nrows)
             for p in paths]
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    df = pd.DataFrame({S: df[S].to_numpy(), I: df[I].to_numpy(),
                       T: _unix_seconds(df["Timestamp"])})
    rep = Report("rsc15")
    f = _Frame(df, rep)
    f.min_session_length(2, "remove sessions of length 1")
    f.min_item_support(min_item_support)
    f.min_session_length(2)
    sd = _sessions(f.df, rep)
    return _time_split_dataset("rsc15", sd, rep, test_days, "test", valid_days,
                               ["GRU4Rec (ICLR 2016) preprocessing; sessions assigned to test "
                                "by their last click"])


# ----------------------------------------------------------------- raw: RetailRocket
def load_retailrocket(path: PathLike, *, event_types: Sequence[str] = ("view",),
                      session_gap: float = 3600, remove_repeats: bool = True,
                      min_item_support: int = 5, min_session_length: int = 2,
                      test_days: float = 7, valid_days: Optional[float] = 7,
                      straddling: str = "truncate") -> Dataset:
    """RetailRocket ``events.csv`` (``timestamp,visitorid,event,itemid,
    transactionid``, timestamps in ms) with the GRU4Rec authors' recipe
    (Hidasi & Czapp, RecSys 2023, data preprocessing of their comparison):

    1. keep the ``view`` events (``event_types``);
    2. sessions: a visitor's views split where ``session_gap`` (3600 s) or
       more passes between two of them (session ids: 0, 1, ... in visitor, time order);
    3. remove repeats: of consecutive views of the same item in a session, keep the first;
    4. remove sessions shorter than 2 and items with fewer than 5 views,
       repeated until nothing changes;
    5. split at ``test_days`` (7) days before the last event: sessions that
       start after it test; events before it train (``straddling="truncate"``:
       a session crossing the cut keeps only its part before the cut);
    6. remove test events on items not in train, then test sessions shorter than 2
       (and train sessions the cut left shorter than 2);
    7. the same split on train gives ``train_tr`` / ``valid``.
    """
    df = _read_csv(path, usecols=["timestamp", "visitorid", "event", "itemid"])
    rep = Report("retailrocket")
    rep.add("read", "all", _rr_counts(df), _rr_counts(df))
    before = _rr_counts(df)
    df = df[df["event"].isin(list(event_types))]
    rep.add(f"keep events {list(event_types)}", "all", before, _rr_counts(df))
    df = _sessionize(df["visitorid"].to_numpy(), df["itemid"].to_numpy(),
                     df["timestamp"].to_numpy() / 1000.0, session_gap)
    c = frame_counts(df)
    rep.add(f"sessions: a visitor's events split at gaps of {session_gap:g} s or more", "all",
            c, c)
    f = _Frame(df, rep, read_step=False)
    if remove_repeats:
        same = (df[S].to_numpy()[1:] == df[S].to_numpy()[:-1]) & \
               (df[I].to_numpy()[1:] == df[I].to_numpy()[:-1])
        f.step("remove consecutive repeats of an item in a session", ~np.r_[False, same])
    f.iterate(min_session_length, min_item_support)
    sd = _sessions(f.df, rep)
    return _time_split_dataset("retailrocket", sd, rep, test_days, straddling, valid_days,
                               ["Hidasi & Czapp (RecSys 2023) recipe"])


def _rr_counts(df):
    return (len(df), int(df["visitorid"].nunique()), int(df["itemid"].nunique()))


def _sessionize(user, item, t, gap):
    """Events sorted by (user, time) (stable), a new session at a new user
    or a pause of ``gap`` seconds or more."""
    import pandas as pd

    order = np.lexsort((t, user))
    user, item, t = user[order], item[order], t[order]
    new = np.r_[True, (user[1:] != user[:-1]) | (np.diff(t) >= gap)]
    return pd.DataFrame({S: np.cumsum(new) - 1, I: item, T: t})


# ----------------------------------------------------------------- raw: Diginetica
def load_diginetica(path: PathLike, *, test_days: int = 7, min_item_support: int = 5) -> Dataset:
    """CIKM Cup 2016 ``train-item-views.csv`` (``sessionId;userId;itemId;
    timeframe;eventdate``) with the SR-GNN preprocessing (Wu et al., AAAI 2019;
    the prepared ``diginetica`` set of ``../shared/data`` came from it):

    1. read; within a session, views are ordered by ``timeframe`` (ties: file
       order); a session's date is the ``eventdate`` of its last row in the file;
       ``Time`` = the session's first date (unix s, UTC) + timeframe / 1000;
    2. remove sessions of length 1;
    3. remove items with fewer than ``min_item_support`` (5) views;
    4. remove sessions shorter than 2;
    5. split date = last session date - ``test_days`` (7) days: sessions dated
       before it train, sessions dated after it test; sessions dated on the split
       date itself are in neither (as in SR-GNN's script; reported);
    6. remove test views of items not in train, then test sessions shorter than 2.

    There is no validation split in the recipe (``train_tr``/``valid`` are None;
    ``grurec.splits.time_split(ds.train, ...)`` makes one).
    """
    import pandas as pd

    df = _read_csv(path, sep=";", usecols=["sessionId", "itemId", "timeframe", "eventdate"])
    date = _unix_seconds(df["eventdate"])
    sess = df["sessionId"].to_numpy()
    g = pd.Series(date).groupby(sess, sort=False)
    first_day = g.transform("min").to_numpy()
    session_date = g.transform("last").to_numpy()
    ev = pd.DataFrame({S: sess, I: df["itemId"].to_numpy(),
                       T: first_day + df["timeframe"].to_numpy() / 1000.0,
                       "date": session_date})
    rep = Report("diginetica")
    f = _Frame(ev, rep)
    f.min_session_length(2, "remove sessions of length 1")
    f.min_item_support(min_item_support)
    f.min_session_length(2)
    ev = f.df
    split_date = ev["date"].max() - 86400 * test_days
    before = frame_counts(ev)
    tr = ev[ev["date"] < split_date]
    te = ev[ev["date"] > split_date]
    rep.add(f"sessions dated before the split date ({test_days} days before the last)",
            "train", before, frame_counts(tr))
    rep.add("sessions dated after the split date (those on it are dropped)", "test", before,
            frame_counts(te))
    c = frame_counts(te)
    te = te[te[I].isin(tr[I].unique())]
    rep.add("remove items not in train", "test", c, frame_counts(te))
    c = frame_counts(te)
    te = te[te.groupby(S, sort=False)[I].transform("size") >= 2]
    rep.add("remove sessions shorter than 2", "test", c, frame_counts(te))
    train, test = to_sessions(tr, S, I, T), to_sessions(te, S, I, T)
    return Dataset("diginetica", train, test, rep,
                   notes=["SR-GNN (AAAI 2019) preprocessing"])


# ----------------------------------------------------------------- raw: MovieLens
def load_movielens(path: PathLike, *, min_rating: Optional[float] = None,
                   min_user_events: int = 5, min_item_events: int = 0) -> Dataset:
    """MovieLens ratings as user sequences: ``ratings.dat`` (ML-1M/10M,
    ``UserID::MovieID::Rating::Timestamp``), ``u.data`` (ML-100K, tab separated)
    or ``ratings.csv`` (ML-20M/25M/latest, with header).

    1. read; every rating is an interaction (implicit feedback, as BERT4Rec);
       with ``min_rating``, only ratings >= it;
    2. remove items with fewer than ``min_item_events`` (0: off; SASRec uses 5);
    3. remove users with fewer than ``min_user_events`` (5) ratings (one pass);
    4. each user's ratings in time order (ties: file order) form one sequence;
    5. leave-last-out: ``test`` = whole sequences (target: last), ``valid`` =
       all but the last (target: second to last), ``train`` = all but the last two.
    """
    name = os.path.basename(os.fspath(path)).lower()
    cols = ["user", "item", "rating", T]
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        df = _read_csv(path)
        df.columns = cols[: len(df.columns)] + list(df.columns[4:])
    elif name.endswith(".dat") or name.endswith(".dat.gz"):
        df = _read_csv(path, sep="::", engine="python", header=None, names=cols)
    else:
        df = _read_csv(path, sep="\t", header=None, names=cols)
    df = df.rename(columns={"user": S, "item": I})[[S, I, "rating", T]]
    rep = Report("movielens")
    f = _Frame(df, rep)
    if min_rating is not None:
        f.step(f"keep ratings >= {min_rating}", f.df["rating"] >= min_rating)
    if min_item_events > 0:
        f.min_item_support(min_item_events)
    if min_user_events > 0:
        f.step(f"remove users with fewer than {min_user_events} ratings",
               f.session_lengths() >= min_user_events)
    return _sequence_dataset("movielens", f.df, rep)


def _sequence_dataset(name, df, rep, notes=()) -> Dataset:
    sd = _sessions(df, rep, "as user sequences (time order)")
    split = leave_last_out(sd)
    rep.extend(split.report, "leave-last-out: ")
    return Dataset(name, split.train, split.test, rep, train_tr=split.train, valid=split.valid,
                   events=sd, notes=list(notes) + [
                       "leave-last-out: test/valid sequences end with their target; "
                       "train_tr is train (all but the last two events)"])


# ----------------------------------------------------------------- prepared files
def load_session_files(train: PathLike, test: Optional[PathLike] = None, *,
                       train_tr: Optional[PathLike] = None, valid: Optional[PathLike] = None,
                       session_col: str = S, item_col: str = I, time_col: str = T,
                       name: str = "sessions") -> Dataset:
    """Prepared session files (``SessionId ItemId Time`` with a header; TSV,
    CSV, gzipped or not, or parquet) as they are: no step removes anything."""
    rep = Report(name)

    def one(p, part):
        if p is None:
            return None
        sd = to_sessions(p, session_col, item_col, time_col)
        rep.add(f"read {os.path.basename(os.fspath(p))}", part, counts(sd), counts(sd))
        return sd

    return Dataset(name, one(train, "train"), one(test, "test"), rep,
                   one(train_tr, "train_tr"), one(valid, "valid"))


def load_user_item(path: PathLike, *, sep: str = " ", name: str = "sequences") -> Dataset:
    """``user item`` per line (no header), grouped by user in time order (the
    BERT4Rec-style files, e.g. amazon-beauty). Time = line number. No step
    removes anything; leave-last-out split."""
    df = _read_csv(path, sep=sep, header=None, names=[S, I], usecols=[0, 1])
    df[T] = np.arange(len(df), dtype=np.float64)
    rep = Report(name)
    rep.add("read", "all", frame_counts(df), frame_counts(df))
    return _sequence_dataset(name, df, rep)


def load_user_sequences(path: PathLike, *, sep: Optional[str] = None,
                        name: str = "sequences") -> Dataset:
    """One line per user: ``user item item ...`` (``sep``: any whitespace by
    default), the items in time order, no timestamps (the S3-Rec files, e.g.
    ``Beauty.txt`` of beauty-s3rec). Time = the event's position in the file
    (0, 1, ...), so it orders events within and across users. A user line
    with no item, or a user on two lines, is an error naming the line. No step
    removes anything; leave-last-out split."""
    import pandas as pd

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    users, lengths, items = [], [], []
    seen = {}
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            parts = line.split(sep)
            if not parts or (len(parts) == 1 and not parts[0].strip()):
                continue  # blank line
            if len(parts) < 2:
                raise ValueError(f"{path!r}, line {ln}: user {parts[0]!r} has no items "
                                 "(expected 'user item item ...')")
            if parts[0] in seen:
                raise ValueError(f"{path!r}, line {ln}: user {parts[0]!r} already on line "
                                 f"{seen[parts[0]]} (expected one line per user)")
            seen[parts[0]] = ln
            users.append(parts[0])
            lengths.append(len(parts) - 1)
            items.extend(parts[1:])
    u = pd.Series(np.repeat(np.array(users, dtype=object), lengths))
    df = pd.DataFrame({S: _tokens(u), I: _tokens(pd.Series(items, dtype=object)),
                       T: np.arange(len(items), dtype=np.float64)})
    rep = Report(name)
    rep.add("read", "all", frame_counts(df), frame_counts(df))
    return _sequence_dataset(name, df, rep)


_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def load_recbole(path: PathLike, *, user_field: str = "user_id", item_field: str = "item_id",
                 time_field: Optional[str] = "timestamp", name: Optional[str] = None) -> Dataset:
    """A RecBole atomic ``.inter`` file: tab separated, typed header
    ``name:type`` (token, token_seq, float, float_seq). Tokens are read as
    strings and become integers when every one is a plain integer. Users'
    interactions in time order (ties: file order; no time field: file order);
    no step removes anything; leave-last-out split."""
    import pandas as pd

    head = _read_csv(path, sep="\t", nrows=0).columns
    fields = {}
    for h in head:
        fname, _, ftype = str(h).partition(":")
        if ftype not in _RECBOLE_TYPES:
            raise ValueError(f"{os.fspath(path)!r}: header field {h!r} is not 'name:type' with "
                             f"a type in {_RECBOLE_TYPES}")
        fields[fname] = (h, ftype)
    want = {"user": user_field, "item": item_field}
    if time_field is not None:
        want["time"] = time_field
    for role, fname in want.items():
        if fname not in fields:
            raise ValueError(f"{role} field {fname!r} not in the header of {os.fspath(path)!r}; "
                             f"it has {list(fields)} (pass {role}_field=...)")
    usecols = [fields[f][0] for f in want.values()]
    dtypes = {fields[f][0]: (str if fields[f][1].startswith("token") else np.float64)
              for f in want.values()}
    df = _read_csv(path, sep="\t", usecols=usecols, dtype=dtypes, keep_default_na=False,
                   na_values=[""])
    out = pd.DataFrame({S: _tokens(df[fields[user_field][0]]),
                        I: _tokens(df[fields[item_field][0]]),
                        T: (df[fields[time_field][0]].to_numpy(np.float64) if time_field
                            else np.arange(len(df), dtype=np.float64))})
    nm = name or os.path.splitext(os.path.basename(os.fspath(path)))[0]
    rep = Report(nm)
    rep.add("read", "all", frame_counts(out), frame_counts(out))
    return _sequence_dataset(nm, out, rep)


def _tokens(col):
    """Token strings as int64 when every one is a canonical integer ("7", not "07")."""
    import pandas as pd

    s = col.astype(object)
    if s.isna().any():
        return s.to_numpy()
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all() and (num == num.round()).all() and (num.abs() < 2**53).all():
        ints = num.astype(np.int64)
        if (ints.astype(str).to_numpy() == s.astype(str).to_numpy()).all():
            return ints.to_numpy()
    return s.to_numpy()


# ----------------------------------------------------------------- ../shared/data
def shared_data_dir() -> Optional[Path]:
    """``$GRUREC_SHARED_DATA``, else the first ``shared/data`` found in the
    current directory or above it; None if there is none."""
    env = os.environ.get("GRUREC_SHARED_DATA")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        cand = d / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


PREPARED = {
    "rsc15-100k": dict(kind="sessions", train="rsc15-100k/yoochoose-clicks-100k_train_full.txt",
                       test="rsc15-100k/yoochoose-clicks-100k_test.txt",
                       train_tr="rsc15-100k/yoochoose-clicks-100k_train_tr.txt",
                       valid="rsc15-100k/yoochoose-clicks-100k_train_valid.txt"),
    "yoochoose1_64": dict(kind="sessions",
                          train="yoochoose1_64/yoochoose1_64_sessions_train.tsv.gz",
                          test="yoochoose1_64/yoochoose1_64_sessions_test.tsv.gz"),
    "diginetica": dict(kind="sessions", train="diginetica/diginetica_sessions_train.tsv.gz",
                       test="diginetica/diginetica_sessions_test.tsv.gz"),
    "amazon-beauty": dict(kind="user_item", path="amazon-beauty/beauty.txt"),
    "ml-100k": dict(kind="recbole", path="ml-100k/ml-100k.inter"),
    "beauty-s3rec": dict(kind="user_sequences", path="beauty-s3rec/Beauty.txt"),
}


def load_prepared(name: str, root: Optional[PathLike] = None) -> Dataset:
    """One of the prepared sets of ``../shared/data`` by folder name:
    ``rsc15-100k``, ``yoochoose1_64``, ``diginetica``, ``amazon-beauty``,
    ``ml-100k``, ``beauty-s3rec`` (the sequences only; its item attributes are
    not read). ``root`` defaults to ``shared_data_dir()``."""
    if name not in PREPARED:
        raise ValueError(f"unknown prepared data set {name!r}; known: {sorted(PREPARED)}")
    base = Path(root) if root is not None else shared_data_dir()
    if base is None:
        raise FileNotFoundError("no shared/data directory found; pass root=... or set "
                                "GRUREC_SHARED_DATA")
    spec = PREPARED[name]
    if spec["kind"] == "sessions":
        return load_session_files(
            base / spec["train"], base / spec["test"],
            train_tr=base / spec["train_tr"] if "train_tr" in spec else None,
            valid=base / spec["valid"] if "valid" in spec else None, name=name)
    if spec["kind"] == "user_item":
        return load_user_item(base / spec["path"], name=name)
    if spec["kind"] == "user_sequences":
        return load_user_sequences(base / spec["path"], name=name)
    return load_recbole(base / spec["path"], name=name)
