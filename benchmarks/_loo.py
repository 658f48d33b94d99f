"""Leave-one-out data and evaluation shared by the user-sequence baselines
(torch_usergru.py, torch_sasrec.py): one item vocabulary for all parts, the
split of grurec.splits.leave_last_out, and a full-ranking evaluator.

Dimension names: U users, N items, K cutoff.

Protocol (the usual one for user sequences, e.g. SASRec, Kang & McAuley 2018):
``train`` holds every user's events but the last two, ``valid`` every event
but the last (its last event is the validation target), ``test`` the whole
sequence (its last event is the test target). A model conditions on
everything before the target (a model with a window conditions on the last
``max_len`` of those events), scores ALL items, the items of the user's
history (everything before the target) are excluded (score -inf), and the
target's rank is 1 + the number of items scored strictly higher. A target
that is also in the history is therefore always a miss; their number is
reported (``n_target_in_history``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import grurec
from grurec.data import SessionData

DATASETS = ("beauty-s3rec", "amazon-beauty", "ml-100k")


@dataclass
class LeaveOneOut:
    """The three parts over one vocabulary (``item_ids``, N items: every item
    of the data set, so items seen only as a target are ranked too)."""

    name: str
    train: SessionData  # all but each user's last 2 events
    valid: SessionData  # all but the last event; target = its last event
    test: SessionData  # the whole sequence; target = its last event
    item_ids: np.ndarray  # [N]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def read_s3rec(path: Path) -> dict:
    """S3-Rec's ``Beauty.txt``: one line per user, ``user item item ...`` in
    time order (no timestamps; the position is the time)."""
    users, items, times = [], [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            seq = parts[1:]
            users += [parts[0]] * len(seq)
            items += seq
            times += range(len(seq))
    return {"SessionId": np.asarray(users, dtype=np.int64), "ItemId": np.asarray(items, dtype=np.int64),
            "Time": np.asarray(times, dtype=np.float64)}


def load_events(name: str, root: Optional[Path] = None) -> SessionData:
    """Every event of a data set of ``../shared/data``, as user sequences."""
    if name not in DATASETS:
        raise ValueError(f"data set: one of {DATASETS}, got {name!r}")
    base = Path(root) if root is not None else grurec.datasets.shared_data_dir()
    if base is None:
        raise FileNotFoundError("no shared/data directory found; set GRUREC_SHARED_DATA")
    if name == "beauty-s3rec" and name not in grurec.datasets.PREPARED:
        return grurec.to_sessions(read_s3rec(base / "beauty-s3rec" / "Beauty.txt"))
    ds = grurec.datasets.load_prepared(name, root=base)
    return ds.events if ds.events is not None else ds.test


def leave_one_out(name: str, root: Optional[Path] = None) -> LeaveOneOut:
    events = load_events(name, root)
    split = grurec.splits.leave_last_out(events)
    vocab = events.item_ids

    def remap(sd):
        return grurec.to_sessions(sd, item_ids=vocab)

    return LeaveOneOut(name, remap(split.train), remap(split.valid), remap(split.test), vocab)


def targets(sd: SessionData) -> tuple[list, np.ndarray]:
    """Each sequence's history (all but its last event) and its target (the last)."""
    off, items = sd.offsets, sd.items.astype(np.int64)
    hist = [items[off[u]:off[u + 1] - 1] for u in range(sd.n_sessions)]
    return hist, items[off[1:] - 1]


def evaluate(score: Callable[[list], "np.ndarray"], sd: SessionData, n_items: int,
             cutoffs=(10, 20), batch_size: int = 256) -> dict:
    """Full-ranking leave-one-out metrics. ``score(histories)`` takes a list of
    item-index arrays (each a user's history, oldest first) and returns scores
    [len(histories), N] (NumPy or torch). History items get -inf; rank = 1 +
    the number of items scored strictly higher than the target."""
    hist, tgt = targets(sd)
    ranks = np.empty(len(tgt), np.int64)
    in_hist = 0
    for s in range(0, len(tgt), batch_size):
        h = hist[s:s + batch_size]
        sc = np.array(score(h), dtype=np.float32, copy=True)  # [b, N]
        rows = np.repeat(np.arange(len(h)), [len(x) for x in h])
        sc[rows, np.concatenate(h) if h else np.zeros(0, np.int64)] = -np.inf
        t = tgt[s:s + batch_size]
        ts = sc[np.arange(len(h)), t]
        ranks[s:s + len(h)] = (sc > ts[:, None]).sum(1) + 1
        miss = np.isneginf(ts)
        in_hist += int(miss.sum())
        ranks[s:s + len(h)][miss] = n_items + 1
    out = {"n_users": int(len(tgt)), "n_target_in_history": in_hist}
    for k in cutoffs:
        hit = ranks <= k
        out[f"hr@{k}"] = float(hit.mean()) if len(tgt) else 0.0
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()) if len(tgt) else 0.0
    return out
