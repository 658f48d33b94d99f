"""UserGRU: a GRU over each known user's whole history (personalized
recommendation, GRU-based collaborative filtering).

Training is GRU4Rec's algorithm (``grurec.GRU4Rec``: session-parallel slots,
sampled losses, dropout, Adagrad with momentum) on one sequence per user,
with truncated back-propagation through time: each mini-batch is a window of
``bptt`` steps of every slot, gradients flow through the whole window, the
state carries across windows and resets between users, and every position
of the window has a loss. ``bptt=1`` trains exactly as GRU4Rec (the same
native trainer; ``docs/training.md``).

After ``fit`` the model keeps every training user's hidden state (every
layer's, users x sum(layers) float32) and the items they interacted with:
``recommend(users=[...])`` continues from the stored state (one top-k, no
replay), and ``update(user, items)`` advances a user's state by one GRU step
per event (a new user starts from zero). The states travel in the model
file. A user set too large to keep can instead be served from histories:
``recommend([history, ...])`` replays each history from a zero state, exactly
as the stored states were computed.
"""
from __future__ import annotations

import logging
import threading
from typing import Optional, Sequence

import numpy as np

from . import _core
from .base import _as_int, _bad, _check_int, register
from .data import SessionData, to_sessions
from .model import GRU4Rec, ModelFitError
from .narm import NARM

log = logging.getLogger("grurec")


class _UserStore:
    """Users' ids, every layer's state and the items each one has seen.

    Rows grow by doubling, so a new user costs amortised O(1); a lock makes
    ``update`` and reads consistent across threads. Snapshots of a model
    share its store (a refit publishes a new one)."""

    def __init__(self, ids, states: np.ndarray, seen_offsets: np.ndarray, seen_items: np.ndarray,
                 span: Optional[np.ndarray] = None, n_pos: Optional[np.ndarray] = None):
        self.lock = threading.Lock()
        ids = np.asarray(ids)
        self.kind = "int" if ids.dtype.kind in "iu" or len(ids) == 0 else "str"
        self.ids = [self.key(u) for u in ids.tolist()]
        self.index = {u: r for r, u in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("user ids must be unique")
        self.n = len(self.ids)
        self.states = states  # [capacity, sum H]
        # Items seen: the training history as CSR, plus what update() added.
        self.seen_offsets = seen_offsets
        self.seen_items = seen_items
        self.extra: dict[int, list[int]] = {}
        # UserNARM: each user's last K top-layer states [capacity, K, H_L],
        # oldest first (row r is position n_pos - K + r; zeros before the
        # first), and n_pos [capacity] the positions (known items) so far.
        self.span = span
        self.n_pos = n_pos

    def key(self, user, where: str = "user"):
        """A user id as stored (Python int or str); the other kind raises."""
        if isinstance(user, (int, np.integer)) and not isinstance(user, (bool, np.bool_)):
            if self.kind == "int":
                return int(user)
        elif isinstance(user, (str, np.str_)):
            if self.kind == "str":
                return str(user)
        else:
            raise TypeError(f"{where}: a user id must be an integer or a string, got "
                            f"{type(user).__name__} {user!r}")
        want = "integers" if self.kind == "int" else "strings"
        raise TypeError(f"{where}: {user!r} is a {type(user).__name__}, but the model's user "
                        f"ids are {want}")

    def row(self, user, create: bool) -> int:
        r = self.index.get(user, -1)
        if r < 0 and create:
            r = self.n
            if r == len(self.states):
                cap = max(16, 2 * r)
                self.states = _grown(self.states, cap, r)
                if self.span is not None:
                    self.span, self.n_pos = _grown(self.span, cap, r), _grown(self.n_pos, cap, r)
            self.ids.append(user)
            self.index[user] = r
            self.n += 1
        return r

    def part(self, rows: np.ndarray):
        """(states, span, n_pos) of ``rows`` (copies; span / n_pos None
        without a span)."""
        if self.span is None:
            return np.ascontiguousarray(self.states[rows]), None, None
        return (np.ascontiguousarray(self.states[rows]), self.span[rows].copy(),
                self.n_pos[rows].copy())

    def seen(self, r: int) -> np.ndarray:
        base = (self.seen_items[self.seen_offsets[r]:self.seen_offsets[r + 1]]
                if r + 1 < len(self.seen_offsets) else np.empty(0, np.int64))
        extra = self.extra.get(r)
        return base if not extra else np.concatenate([base, np.asarray(extra, np.int64)])


def _grown(a: np.ndarray, cap: int, r: int) -> np.ndarray:
    """``a`` with ``cap`` rows: its first ``r`` rows, then zeros."""
    g = np.zeros((cap,) + a.shape[1:], a.dtype)
    g[:r] = a[:r]
    return g


@register
class UserGRU(GRU4Rec):
    """Personalized next-item recommender over each user's whole history.

    Hyperparameters are GRU4Rec's (same names and meanings, see
    ``grurec.GRU4Rec``) plus:

    bptt: steps per truncated back-propagation window (1 = GRU4Rec's
        one-step training).
    max_len: if set, only each user's last ``max_len`` events train (the
        stored states still come from the whole history).

    ``fit(events, user_col="UserId", item_col="ItemId", time_col="Time")``
    takes every input ``grurec.to_sessions`` takes. Users with one event
    have nothing to train on but keep a state.
    """

    def __init__(
        self,
        layers: Sequence[int] = (224,),
        loss: str = "bpr-max",
        elu_param: float = 0.5,
        bpreg: float = 1.95,
        logq: float = 0.0,
        batch_size: int = 80,
        n_sample: int = 2048,
        sample_alpha: float = 0.4,
        embedding: int = 0,
        constrained_embedding: bool = True,
        dropout_p_embed: float = 0.5,
        dropout_p_hidden: float = 0.05,
        learning_rate: float = 0.05,
        momentum: float = 0.4,
        n_epochs: int = 10,
        momentum_type: str = "heavy-ball",
        optimizer: str = "adagrad",
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        gru_cell: str = "reset-after",
        num_threads: int = 0,
        random_state: Optional[int] = None,
        show_progress: bool = True,
        parallel: str = "hogwild",
        feature_mode: str = "input",
        id_dropout: float = 0.0,
        bptt: int = 8,
        max_len: Optional[int] = None,
    ):
        self.bptt = bptt
        self.max_len = max_len
        # GRU4Rec's, not super(): UserNARM's next class is NARM, whose
        # defaults would overwrite bptt and the attention options.
        GRU4Rec.__init__(
            self,
            layers=layers, loss=loss, elu_param=elu_param, bpreg=bpreg, logq=logq,
            batch_size=batch_size, n_sample=n_sample, sample_alpha=sample_alpha,
            embedding=embedding, constrained_embedding=constrained_embedding,
            dropout_p_embed=dropout_p_embed, dropout_p_hidden=dropout_p_hidden,
            learning_rate=learning_rate, momentum=momentum, n_epochs=n_epochs,
            momentum_type=momentum_type, optimizer=optimizer, adam_betas=adam_betas,
            adam_eps=adam_eps, gru_cell=gru_cell, num_threads=num_threads,
            random_state=random_state, show_progress=show_progress, parallel=parallel,
            feature_mode=feature_mode, id_dropout=id_dropout)
        self._users: Optional[_UserStore] = None

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "UserGRU":
        """A model with UserGRU preset ``name``'s hyperparameters (named after
        the data set they were chosen on: ``grurec.presets.user_names()``),
        any of them overridden by keyword."""
        from . import presets

        return cls(**dict(presets.get_user(name), **overrides))

    def _check_params(self) -> None:
        super()._check_params()
        self.bptt = _as_int("bptt", self.bptt, 1)
        if self.max_len is not None:
            self.max_len = _as_int("max_len", self.max_len, 2)

    def _train_window(self) -> int:
        return self.bptt

    # -------------------------------------------------------------------- fit
    def fit(self, data, user_col: str = "UserId", item_col: str = "ItemId",
            time_col: str = "Time", callback=None, *, show_progress: Optional[bool] = None,
            on_interrupt: str = "raise", valid=None, patience=None, metric: str = "mrr@20",
            item_features=None, value_col: Optional[str] = None, warm_start: bool = False):
        """Train on every user's events for ``n_epochs`` epochs, then store
        every user's state after their whole history.

        ``data``: events in any form ``grurec.to_sessions`` takes, with a user
        column (``user_col``) in place of the session column. The other
        arguments are ``GRU4Rec.fit``'s (``item_features`` included);
        ``value_col``: a column of non-negative interaction values (a rating,
        a count, a dwell time) used as each event's loss weight: predicting
        that event counts value / mean(value) times (a value of 0 is never a
        target). Needs an event table or file, not a ``SessionData``.
        ``valid`` / ``patience`` are not yet
        supported for users (choose the epochs with ``grurec.evaluate_users``
        on a leave-one-out split). ``warm_start=True``: continue training on
        new events (``GRU4Rec.fit``'s warm start: current weights and
        optimizer state, new item ids added; a known user's new events train
        as a sequence of their own, from a zero state), then advance the
        stored state of every user in ``data`` over their new events with the
        new weights (new users start from zero). Users without new events
        keep their states as they were.
        """
        from .base import _as_bool as _b

        if _b("warm_start", warm_start):
            if value_col is not None or valid is not None or patience is not None:
                raise ValueError("warm_start: value_col / valid / patience are not supported "
                                 "with warm_start yet")
            return self._fit_users_warm(data, user_col, item_col, time_col, callback,
                                        show_progress, on_interrupt, item_features)
        if valid is not None or patience is not None:
            raise ValueError("valid / patience: not supported by UserGRU yet; choose n_epochs "
                             "on a leave-one-out split (grurec.splits.leave_last_out)")
        if on_interrupt not in ("raise", "keep"):
            raise ValueError(f"on_interrupt: must be 'raise' or 'keep', got {on_interrupt!r}")
        self._check_params()
        from .base import _as_bool

        progress = self.show_progress if show_progress is None else _as_bool(
            "show_progress", show_progress)
        if value_col is None:
            full = to_sessions(data, user_col, item_col, time_col)  # private arrays
            rows = values = None
        else:
            # rows: the same layout with each event's input row number as its
            # item, put through the same selections to carry the values along.
            full, rows, values = _with_values(data, user_col, item_col, time_col, value_col)
        train = full
        if self.max_len is not None:
            keep = _last_events(train, self.max_len)
            train = train.select_events(keep)
            rows = None if rows is None else rows.select_events(keep)
        keep = train.lengths() >= 2
        train = train.select_sessions(keep).compact_items()
        weights = None
        if values is not None:
            rows = rows.select_sessions(keep)
            w = values[np.asarray(rows.item_ids)[rows.items]]
            targets = np.ones(len(w), bool)
            targets[train.offsets[:-1]] = False  # a user's first event is never a target
            mean = w[targets].mean() if targets.any() else 0.0
            if not mean > 0:
                raise ValueError(f"value column {value_col!r}: every training target has "
                                 "value 0, nothing to learn from")
            weights = (w / mean).astype(np.float32)
        if train.n_sessions == 0:
            raise ValueError("no user has 2 or more events: nothing to learn from")
        if item_features is not None:
            from .features import ItemFeatures

            if not isinstance(item_features, ItemFeatures):
                item_features = ItemFeatures(item_features, item_col)
        work = self._snapshot()
        work._fit_weights = weights
        try:
            finished = work._fit_sessions(train, callback, plan=None, show_bar=progress,
                                          item_features=item_features)
        finally:
            work.__dict__.pop("_fit_weights", None)
        if not finished:
            if on_interrupt == "raise" or not work._whole():
                raise KeyboardInterrupt(
                    f"fit interrupted in epoch {len(work.history)}; the model is unchanged")
            log.warning("training interrupted; on_interrupt='keep': keeping what it learned")
        work.interrupted = not finished
        work._users = work._store_from(full)
        self._publish(work)
        return self

    def _fit_users_warm(self, data, user_col, item_col, time_col, callback, show_progress,
                        on_interrupt, item_features):
        self._check_users()
        if data is None or (hasattr(data, "__len__") and not isinstance(data, (str, bytes))
                            and len(data) == 0):
            log.info("warm_start: no new events; the model is unchanged")
            return self
        new = to_sessions(data, user_col, item_col, time_col)
        progress = self.show_progress if show_progress is None else show_progress
        train = new
        if self.max_len is not None:
            train = train.select_events(_last_events(train, self.max_len))
        # GRU4Rec's warm start trains a copy and publishes it; the user store
        # is not part of it: it is advanced below, under its lock.
        GRU4Rec._fit_warm(self, train, "SessionId", "ItemId", "Time", callback, progress,
                          on_interrupt, item_features)
        vmap = self._lookup(np.asarray(new.item_ids))
        idx = vmap[new.items] if len(new.items) else np.empty(0, np.int64)
        st = self._users
        with st.lock:
            rows = np.array([st.row(st.key(u, f"user {u!r}"), create=True)
                             for u in new.session_ids.tolist()], np.int64)
            st.states[rows], span, n_pos = self._advance(new.offsets, idx, *st.part(rows))
            if span is not None:
                st.span[rows], st.n_pos[rows] = span, n_pos
            for j, r in enumerate(rows.tolist()):
                seq = idx[new.offsets[j]:new.offsets[j + 1]]
                if (seq >= 0).any():
                    st.extra.setdefault(r, []).extend(seq[seq >= 0].tolist())
        return self

    def _store_from(self, sd: SessionData) -> _UserStore:
        """Every user's state after their whole history, and their items."""
        vmap = self._lookup(np.asarray(sd.item_ids))  # -1: not in the vocabulary
        idx = vmap[sd.items] if len(sd.items) else np.empty(0, np.int64)
        states, span, n_pos = self._advance(sd.offsets, idx)
        seen_off, seen_items = _unique_csr(sd.offsets, idx)
        return _UserStore(sd.session_ids, states, seen_off, seen_items, span, n_pos)

    def _span_len(self) -> int:
        """Top-layer states kept per user besides the GRU state (UserNARM's
        attention span); 0 here."""
        return 0

    def _advance(self, offsets, idx, h0=None, span0=None, n_pos0=None):
        """Run sequences (offsets into item indices, -1 = unknown, skipped)
        from states h0 (zeros if None): (every layer's final state [S, sum
        H], and with a span (``_span_len() > 0``) the last K top-layer states
        [S, K, H_L] after span0's, and n_pos0 + the known positions; else
        None, None)."""
        states = self._all_states(offsets, idx, h0=h0)
        K = self._span_len()
        if K == 0:
            return states, None, None
        S, HL = len(offsets) - 1, self.layers[-1]
        span = np.zeros((S, K, HL), np.float32) if span0 is None else np.array(span0, np.float32)
        n_pos = np.zeros(S, np.int64) if n_pos0 is None else np.array(n_pos0, np.int64)
        idx = np.asarray(idx)
        ok = idx >= 0
        L = np.bincount(np.repeat(np.arange(S), np.diff(offsets))[ok], minlength=S).astype(np.int64)
        known = idx[ok]
        params, mode = self._input_params()
        kstart = np.concatenate([[0], np.cumsum(L)])
        # Users in blocks of about 2^20 known events: every position's
        # top-layer state of a block at once.
        s0 = 0
        while s0 < S:
            s1 = int(np.searchsorted(kstart, kstart[s0] + (1 << 20), side="right"))
            s1 = min(S, max(s1 - 1, s0 + 1))
            Lb = L[s0:s1]
            # A dummy item after each sequence: all_prefixes then gives a row
            # after every known position (rows offsets[s] - s + t).
            off = np.zeros(s1 - s0 + 1, np.int64)
            np.cumsum(Lb + 1, out=off[1:])
            items = np.zeros(off[-1], np.int32)
            seq = np.repeat(np.arange(s1 - s0), Lb)
            items[off[:-1][seq] + np.arange(len(seq)) - (kstart[s0:s1] - kstart[s0])[seq]] = \
                known[kstart[s0]:kstart[s1]]
            hb = None if h0 is None else np.ascontiguousarray(h0[s0:s1], np.float32)
            Y = _core.session_states(params, self.layers, mode, off, items, True,
                                     self.num_threads, h0=hb)  # [sum Lb, H_L]
            # Row r of the new span is position n_pos + Lb - K + r: a new
            # state when Lb - K + r >= 0, else the old span's row r + Lb.
            p = np.arange(K)[None, :] - K + Lb[:, None]
            new = p >= 0
            base = (kstart[s0:s1] - kstart[s0])[:, None] + p
            old = span[s0:s1]
            merged = np.empty_like(old)
            merged[new] = Y[base[new]]
            u, r = np.nonzero(~new)
            merged[u, r] = old[u, r + Lb[u]]
            span[s0:s1] = merged
            s0 = s1
        return states, span, n_pos + L

    def _user_queries(self, st: _UserStore, rows: np.ndarray) -> np.ndarray:
        """The vectors that score the items for stored rows ``rows`` (-1:
        unknown, zeros): the top layer's state."""
        HL = self.layers[-1]
        h = np.zeros((len(rows), HL), np.float32)
        ok = rows >= 0
        h[ok] = st.states[rows[ok], -HL:]
        return h

    def _all_states(self, offsets, idx, h0=None) -> np.ndarray:
        params, mode = self._input_params()  # with item features: the whole input table
        return _core.session_states(params, self.layers, mode,
                                    np.ascontiguousarray(offsets, np.int64),
                                    np.ascontiguousarray(idx, np.int32), False, self.num_threads,
                                    h0=h0, all_layers=True)

    # ------------------------------------------------------------------ users
    @property
    def user_ids(self) -> np.ndarray:
        """Ids of the users with a stored state (training users, then users
        added by ``update``), in row order."""
        self._check_users()
        with self._users.lock:
            return np.asarray(self._users.ids[:self._users.n])

    def user_states(self, users=None) -> np.ndarray:
        """float32 (n, H_L): the last layer's stored state of ``users`` (all
        users, in ``user_ids`` order, when None); zeros for unknown users."""
        self._check_users()
        st = self._users
        with st.lock:
            rows = (np.arange(st.n) if users is None else np.array(
                [st.index.get(st.key(u, f"users[{j}]"), -1) for j, u in enumerate(users)],
                np.int64))
            HL = self.layers[-1]
            out = np.zeros((len(rows), HL), np.float32)
            ok = rows >= 0
            out[ok] = st.states[rows[ok], -HL:]
        return out

    def _check_users(self):
        self._check_fitted()
        if self._users is None:
            raise RuntimeError("the model holds no user states (fit it on user events)")

    def update(self, user, items, unknown: str = "skip", coerce_ids: bool = False) -> "UserGRU":
        """Advance ``user``'s stored state by one GRU step per item (oldest
        first); a user not seen before starts from a zero state. Items the
        model does not know leave the state unchanged (``unknown="skip"``,
        counted in ``last_unknown_count``) or raise (``"error"``). The next
        ``recommend(users=...)`` sees the new state; safe to call from several
        threads (one user's updates apply in call order)."""
        self._check_users()
        if unknown not in ("skip", "error"):
            raise _bad("unknown", "must be 'skip' or 'error'", unknown)
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
            items = [items]
        idx = self._lookup(list(items), lambda j: f"items[{j}]", coerce_ids)
        missing = idx < 0
        n_missing = int(np.count_nonzero(missing))
        if unknown == "error" and n_missing:
            j = int(np.flatnonzero(missing)[0])
            raise ValueError(f"items[{j}]: item {list(items)[j]!r} is not in the model's "
                             "vocabulary (pass unknown='skip' to ignore it)")
        self.last_unknown_count = n_missing
        if n_missing:
            idx = idx[~missing]
        st = self._users
        user = st.key(user)
        m = self._snapshot()
        with st.lock:
            r = st.row(user, create=True)
            if len(idx) > 4 or (len(idx) and st.span is not None):
                # One native call for the whole sequence (with a span: the
                # top-layer state after every item too).
                rows = np.array([r], np.int64)
                states, span, n_pos = m._advance(np.array([0, len(idx)]), idx, *st.part(rows))
                st.states[r] = states[0]
                if span is not None:
                    st.span[r], st.n_pos[r] = span[0], n_pos[0]
            elif len(idx):  # a live event: one GRU step per item, no batching set-up
                spans, a = [], 0  # each layer's columns of the state row
                for H in m.layers:
                    spans.append((a, a + H))
                    a += H
                hs = [st.states[r:r + 1, a:b].copy() for a, b in spans]
                for i in idx.tolist():
                    m._step(hs, np.array([i], np.int64))
                for (a, b), h in zip(spans, hs):
                    st.states[r, a:b] = h[0]
            if len(idx):
                st.extra.setdefault(r, []).extend(idx.tolist())
        return self

    def recommend(self, sessions=None, k: int = 20, exclude_seen: Optional[bool] = None,
                  filter_items=None, unknown: str = "skip", *, users=None, **kw):
        """Top-k items for known users (``users=[...]``: from their stored
        states; ``exclude_seen`` defaults to True, every item the user had)
        or, as ``GRU4Rec.recommend``, for histories given in full
        (``sessions``; replayed from a zero state; ``exclude_seen`` defaults
        to False). A user without a stored state gets the zero state's list
        (the same as an empty history) and counts in ``last_unknown_users``.
        Returns (ids, scores) arrays (n, k), best first."""
        if users is None:
            if sessions is None:
                raise ValueError("recommend: give users=[...] or sessions")
            return super().recommend(sessions, k, bool(exclude_seen), filter_items, unknown,
                                     **kw)
        if sessions is not None:
            raise ValueError("recommend: give users or sessions, not both")
        if kw:
            raise TypeError(f"recommend(users=...): unexpected arguments {sorted(kw)}")
        self._check_users()
        k = _check_int("k", k, 1)
        exclude_seen = True if exclude_seen is None else bool(exclude_seen)
        if isinstance(users, (str, bytes)) or not hasattr(users, "__len__"):
            raise ValueError(f"users: expected a list of user ids, got {type(users).__name__}")
        m = self._snapshot()
        st = m._users
        with st.lock:
            rows = np.array([st.index.get(st.key(u, f"users[{j}]"), -1)
                             for j, u in enumerate(users)], np.int64)
            ok = rows >= 0
            h = m._user_queries(st, rows)
            seen = [st.seen(r) if r >= 0 else np.empty(0, np.int64) for r in rows.tolist()]
        self.last_unknown_users = int((~ok).sum())
        N = m.n_items
        candidate = None
        if filter_items is not None:
            fidx, _ = m._filter_indices(filter_items, unknown)
            candidate = np.zeros(N, bool)
            candidate[fidx[fidx >= 0]] = True
        n_cand = N if candidate is None else int(candidate.sum())
        ex_off = ex_idx = None
        k_eff = min(k, n_cand)
        if exclude_seen:
            # Sorted, repeats kept (the native exclusion test only needs
            # ascending rows); each user's distinct count bounds k. Cheaper
            # than np.unique on the serving path (one user per call).
            seen = [np.sort(s) for s in seen]
            lens = [len(s) for s in seen]
            ex_off = np.array([0] + lens, np.int64).cumsum()
            ex_idx = (seen[0] if len(seen) == 1 else np.concatenate(seen)) if seen else \
                np.empty(0, np.int64)
            for s in seen:
                n_seen = (len(s) - int(np.count_nonzero(s[1:] == s[:-1])) if candidate is None
                          else int(candidate[np.unique(s)].sum()))
                k_eff = min(k_eff, n_cand - n_seen)
        from .topk import _topk_csr

        W, b = m._output_params()
        top, scores = _topk_csr(h, W, b, max(k_eff, 0), ex_off,
                                ex_idx, candidate, m.num_threads, index=m._topk_index)
        return m.item_ids[top], scores


def _last_events(sd: SessionData, n: int) -> np.ndarray:
    """bool [n_events]: the events among each sequence's last ``n``."""
    from_end = np.repeat(sd.offsets[1:], sd.lengths()) - np.arange(sd.n_events)
    return from_end <= n


def _with_values(data, user_col, item_col, time_col, value_col):
    """(SessionData, the same layout with input row numbers as items, float64
    values by input row) from an event table or file with a value column; bad
    values name the column, row and value."""
    from .data import _extract, _Where

    if isinstance(data, SessionData):
        raise ValueError("value_col: needs events with a value column (a DataFrame, Arrow "
                         "table, dict or file), not a SessionData")
    where = _Where()
    u, i, t, v = _extract(data, (user_col, item_col, time_col, value_col),
                          ("user", "item", "time", "value"), None, where)
    try:
        vals = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.asarray(v, dtype=object)
        for r, x in enumerate(arr):
            try:
                float(x)
            except (TypeError, ValueError):
                raise ValueError(f"value column {value_col!r}, {where.row(r)}: {x!r} is not a "
                                 "number") from None
        raise
    bad = ~np.isfinite(vals) | (vals < 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"value column {value_col!r}, {where.row(r)}: {vals[r]!r} is not a "
                         "finite number >= 0")
    cols = {user_col: u, item_col: i, time_col: t}
    full = to_sessions(cols, user_col, item_col, time_col)
    # The same layout with row numbers as items gives each event's input row.
    rows = to_sessions({user_col: u, item_col: np.arange(len(vals)), time_col: t}, user_col,
                       item_col, time_col)
    return full, rows, vals


def _unique_csr(offsets: np.ndarray, idx: np.ndarray):
    """Per row, its distinct non-negative indices (sorted), as CSR."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    ok = idx >= 0
    N = int(idx.max()) + 1 if ok.any() else 1
    key = np.unique(rows[ok].astype(np.int64) * N + idx[ok])
    out_off = np.searchsorted(key // N, np.arange(len(offsets))).astype(np.int64)
    return out_off, (key % N).astype(np.int64)


@register
class UserNARM(UserGRU, NARM):
    """UserGRU with NARM's attention readout (``grurec.NARM``) over each
    user's history: the query after position t is ``[h_t ; c_t] W_q``, c_t
    the attention over the states of t's span (positions ``max(0,
    floor(t / bptt) bptt - attention_memory) .. t`` of the user's known
    items, as NARM's spans with the history as the session).

    Hyperparameters: UserGRU's and NARM's attention options
    (``attention_dim``, ``attention_memory``, ``attention_adagrad_init``).
    Training is UserGRU's with the readout (truncated BPTT over ``bptt``
    steps; the attention's memory read as constants). Besides the GRU state,
    the model keeps each user's last ``bptt + attention_memory`` top-layer
    states (users x (sum(layers) + (bptt + attention_memory) x layers[-1])
    float32), so ``recommend(users=...)`` and ``update`` still cost one
    attention readout / one GRU step per event, no replay. Histories given in
    full (``recommend(sessions)``, ``evaluate_users``) are replayed as NARM
    replays a session, with the same spans.
    """

    def __init__(
        self,
        layers: Sequence[int] = (224,),
        loss: str = "bpr-max",
        elu_param: float = 0.5,
        bpreg: float = 1.95,
        logq: float = 0.0,
        batch_size: int = 80,
        n_sample: int = 2048,
        sample_alpha: float = 0.4,
        embedding: int = 0,
        constrained_embedding: bool = True,
        dropout_p_embed: float = 0.5,
        dropout_p_hidden: float = 0.05,
        learning_rate: float = 0.05,
        momentum: float = 0.4,
        n_epochs: int = 10,
        momentum_type: str = "heavy-ball",
        optimizer: str = "adagrad",
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        gru_cell: str = "reset-after",
        num_threads: int = 0,
        random_state: Optional[int] = None,
        show_progress: bool = True,
        parallel: str = "hogwild",
        feature_mode: str = "input",
        id_dropout: float = 0.0,
        bptt: int = 8,
        max_len: Optional[int] = None,
        attention_dim: Optional[int] = None,
        attention_memory: int = 0,
        attention_adagrad_init: float = 0.0,
    ):
        self.attention_dim = attention_dim
        self.attention_memory = attention_memory
        self.attention_adagrad_init = attention_adagrad_init
        UserGRU.__init__(
            self, layers=layers, loss=loss, elu_param=elu_param, bpreg=bpreg, logq=logq,
            batch_size=batch_size, n_sample=n_sample, sample_alpha=sample_alpha,
            embedding=embedding, constrained_embedding=constrained_embedding,
            dropout_p_embed=dropout_p_embed, dropout_p_hidden=dropout_p_hidden,
            learning_rate=learning_rate, momentum=momentum, n_epochs=n_epochs,
            momentum_type=momentum_type, optimizer=optimizer, adam_betas=adam_betas,
            adam_eps=adam_eps, gru_cell=gru_cell, num_threads=num_threads,
            random_state=random_state, show_progress=show_progress, parallel=parallel,
            feature_mode=feature_mode, id_dropout=id_dropout, bptt=bptt, max_len=max_len)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "UserNARM":
        """A model with UserNARM preset ``name``'s hyperparameters
        (``grurec.presets.user_narm_names()``), or a UserGRU preset's (the
        attention options then at their defaults), overridden by keyword."""
        from . import presets

        return cls(**dict(presets.get_user_narm(name), **overrides))

    def _span_len(self) -> int:
        return self.bptt + self.attention_memory

    def _user_queries(self, st: _UserStore, rows: np.ndarray) -> np.ndarray:
        """NARM's query after each stored user's last position, from the
        kept span (the formulas of ``cpp/core/attention.hpp``, in NumPy:
        float32, a few K x H products per user); zeros for rows -1 and users
        without a known item (as a replayed empty history)."""
        K, T, M = self._span_len(), self.bptt, self.attention_memory
        p = self.params
        q = np.zeros((len(rows), p["att_W_q"].shape[1]), np.float32)
        sel = np.flatnonzero(rows >= 0)
        sel = sel[st.n_pos[rows[sel]] > 0]
        if len(sel) == 0:
            return q
        r = rows[sel]
        n, Y = st.n_pos[r], st.span[r]  # [m], [m, K, HL]
        t = n - 1
        start = np.maximum(0, (t // T) * T - M)
        pos = (n - K)[:, None] + np.arange(K)[None, :]
        h = Y[:, -1]
        z = (h @ p["att_A1"])[:, None, :] + Y @ p["att_A2"]
        e = (1.0 / (1.0 + np.exp(-z))) @ p["att_v"]  # [m, K]
        e = np.where(pos >= start[:, None], e, -np.inf)
        w = np.exp(e - e.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        c = np.einsum("mk,mkh->mh", w.astype(np.float32), Y)
        q[sel] = np.concatenate([h, c], axis=1) @ p["att_W_q"]
        return q


__all__ = ["UserGRU", "UserNARM", "ModelFitError"]
