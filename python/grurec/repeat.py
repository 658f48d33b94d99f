"""Repeat-aware scoring: a RepeatNet-style mixture on top of a trained session model.

RepeatNet (Ren et al., AAAI 2019) mixes two modes by a learned gate: a repeat
mode that re-scores the items already in the session by attention over their
clicks, and an explore mode over all items. ``RepeatAware(model)`` puts that
mixture on top of a trained GRU4Rec or NARM, post hoc: the model is not
changed, and the mixture's few parameters (about 20) are fitted by maximum
likelihood on validation sessions (``fit_mixture``). For a session prefix
with known clicks x_1 .. x_L (unknown items are skipped, as the model skips
them), model scores s over all N items and lse = logsumexp(s):

    P(i) = (1 - g) P_explore(i) + g * sum_{tau : x_tau = i} a_tau

    P_explore = softmax(beta s) over all items        (explore="all")
              = softmax(beta s) over items not clicked (explore="new", RepeatNet's)
    a_tau     = softmax over the clicks tau of
                w_rec[min(L - tau, R - 1)] + w_s (s_{x_tau} - lse)
                + w_cnt log(count of x_tau in the prefix) + w_last [tau is x_tau's last click]
    g         = sigmoid(v . f),  f = [1, log L, distinct / L, last item clicked before,
                                     lse - max(s), log sum_{i clicked} softmax(s)_i,
                                     max_{i clicked} s_i - max(s)]

with s and lse taken as beta s and logsumexp(beta s) throughout (R =
``recency`` positions; beta, one scale for the model's scores, is picked on
a grid by validation likelihood: a model trained with bpr-max has scores far
from calibrated log-probabilities). A prefix without known clicks has g = 0. The
scores this model gives are log P(i), exactly normalised over all items. The
mixture changes only the scores of the session's own items: every other item
keeps its order by s (shifted by log(1 - g) - lse), so ``recommend`` is the
model's top-k without the session's items, merged with the rescored session
items, and ``grurec.evaluate`` counts the other items above a per-event
threshold. Both need lse, which needs every item's score: they are computed
per block of events with one NumPy matrix product (``h @ W_y.T + b_y``).

Fitting: full-batch Adam on the mean negative log-likelihood of the
validation targets (targets the model does not know are left out), the
per-event quantities (lse, the session items' scores, the target's score)
computed once per candidate beta. beta is picked on a grid, by validation
likelihood or (default) by validation MRR@20 together with a shift of the
gate's bias (``RepeatAware``'s ``select``). ``docs/repeat.md`` has the
measurements.
"""
from __future__ import annotations

import copy
import hashlib
import io as _io
import json
import math
import os
import struct
from typing import Optional

import numpy as np

from .base import SessionRecommender, _check_int, _IdIndex, _is_bool
from .data import to_sessions

__all__ = ["RepeatAware", "GATE_FEATURES", "BETAS"]

GATE_FEATURES = ("bias", "log_length", "distinct_fraction", "last_repeats",
                 "lse_minus_max", "log_session_mass", "session_max_minus_max")
EXPLORE = ("all", "new")
SELECT = ("mrr", "nll")
SELECT_K = 20
SHIFTS = tuple(float(x) for x in np.arange(-6.0, 3.01, 0.5))  # gate bias shifts tried
BETAS = tuple(float(2.0 ** (k / 2)) for k in range(-6, 9))  # 1/8 .. 16, steps of sqrt(2)
MAGIC = b"\x89GRUMIX\n"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sIIQ")  # magic, version, json length, total length
_TRAILER = 32  # SHA-256 of everything before it


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _block_rows(n_items: int) -> int:
    """Events per block of full scores: about 64 MiB of float32 scores."""
    return max(1, (1 << 24) // max(n_items, 1))


class _Events:
    """The per-event quantities the mixture needs, for events that are
    contiguous slices ``items[start : start + length]`` of an item array
    (-1 = unknown, skipped), with full scores S [E, N] of each event.

    Positions (known clicks), flat, grouped by event in click order:
    ``p_ev``, ``p_rec`` (recency, 0 = last known click, capped at R - 1),
    ``p_u`` (index of the click's item among the event's distinct items),
    ``p_logcnt``, ``p_last`` (the item's last click), ``p_s`` (s - lse).
    Distinct items: ``u_ev``, ``u_item``, ``u_s`` (s - lse, float64).
    Events: ``lse``, ``feat`` [E, G], ``has`` (any known click), ``lse_new``
    (logsumexp over the items not clicked)."""

    def __init__(self, S, start, length, items, R, beta: float = 1.0):
        E, N = S.shape
        start = np.asarray(start, np.int64)
        length = np.asarray(length, np.int64)
        tot = int(length.sum())
        ev = np.repeat(np.arange(E, dtype=np.int64), length)
        within = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
        it = np.asarray(items, np.int64)[np.repeat(start, length) + within] if tot else \
            np.zeros(0, np.int64)
        known = it >= 0
        ev, it = ev[known], it[known]
        P = len(ev)
        n_known = np.bincount(ev, minlength=E)
        first = np.cumsum(n_known) - n_known
        k_within = np.arange(P, dtype=np.int64) - first[ev]  # 0 .. n_known - 1
        rec = n_known[ev] - 1 - k_within
        key = ev * N + it
        ukey, p_u, cnt = np.unique(key, return_inverse=True, return_counts=True)
        p_u = p_u.reshape(-1)
        u_ev, u_item = ukey // N, ukey % N
        # The last click of each distinct item: the largest position per group.
        last_pos = np.full(len(ukey), -1, np.int64)
        np.maximum.at(last_pos, p_u, np.arange(P, dtype=np.int64))
        p_last = np.zeros(P, bool)
        p_last[last_pos] = True

        self.E, self.N, self.R = E, N, R
        self.p_ev, self.p_rec, self.p_u = ev, np.minimum(rec, R - 1), p_u
        self.p_logcnt, self.p_last = np.log(cnt[p_u]), p_last
        self.u_ev, self.u_item = u_ev, u_item
        self.has = n_known > 0
        self._n_known, self._first, self._cnt = n_known, first, cnt
        self.scale(S, beta)

    def scale(self, S, beta: float) -> "_Events":
        """Set the score-dependent quantities for explore scores beta * S
        (the click structure stays); returns self."""
        E, N = S.shape
        u_ev, p_u, has = self.u_ev, self.p_u, self.has
        n_known, first, cnt = self._n_known, self._first, self._cnt
        # float32 exponentials summed in float64 (a few 1e-7 off float64's lse)
        m = beta * S.max(axis=1).astype(np.float64) if N else np.zeros(E)
        X = S * np.float32(beta)
        X -= m.astype(np.float32)[:, None]
        np.exp(X, out=X)
        lse = m + np.log(X.sum(axis=1, dtype=np.float64))
        del X
        u_s = beta * S[u_ev, self.u_item].astype(np.float64) - lse[u_ev]
        n_distinct = np.bincount(u_ev, minlength=E)
        mass = np.bincount(u_ev, weights=np.exp(u_s), minlength=E)
        smax_u = np.full(E, -np.inf)
        np.maximum.at(smax_u, u_ev, u_s + lse[u_ev])
        # Whether the last known click's item was clicked before it.
        last_click = first + n_known - 1
        last_rep = np.zeros(E)
        last_rep[has] = cnt[p_u[last_click[has]]] > 1
        L = np.maximum(n_known, 1).astype(np.float64)
        feat = np.zeros((E, len(GATE_FEATURES)))
        feat[:, 0] = 1.0
        feat[:, 1] = np.log(L)
        feat[:, 2] = n_distinct / L
        feat[:, 3] = last_rep
        feat[:, 4] = lse - m
        feat[:, 5] = np.where(has, np.log(np.maximum(mass, 1e-300)), 0.0)
        feat[:, 6] = np.where(has, smax_u - m, 0.0)
        self.beta = beta
        self.p_s = u_s[p_u]
        self.u_s = u_s
        self.lse, self.feat = lse, feat
        self.lse_new = lse + np.log(np.maximum(1.0 - mass, 1e-30))
        return self

    def target_u(self, targets):
        """Index among the distinct items of each event's target (-1: not a
        session item or unknown)."""
        t = np.asarray(targets, np.int64)
        key = self.u_ev * self.N + self.u_item
        q = np.arange(self.E, dtype=np.int64) * self.N + t
        if len(key) == 0:
            return np.full(self.E, -1, np.int64)
        j = np.minimum(np.searchsorted(key, q), len(key) - 1)
        return np.where((t >= 0) & (key[j] == q), j, -1)


class _Mixture:
    """The mixture's parameters and its math over an ``_Events``."""

    def __init__(self, R: int, explore: str, theta: Optional[np.ndarray] = None):
        self.R, self.explore = R, explore
        self.n_att = R + 3
        self.n = self.n_att + len(GATE_FEATURES)
        self.theta = np.zeros(self.n) if theta is None else np.asarray(theta, np.float64)

    def forward(self, ev: _Events, theta=None):
        """(per event: log g, log(1 - g), explore log-normaliser; per position:
        a; per distinct item: log rep, mixture log-probability)."""
        th = self.theta if theta is None else theta
        w_rec, w_s, w_cnt, w_last = th[:self.R], th[self.R], th[self.R + 1], th[self.R + 2]
        v = th[self.n_att:]
        e = w_rec[ev.p_rec] + w_s * ev.p_s + w_cnt * ev.p_logcnt + w_last * ev.p_last
        emax = np.full(ev.E, -np.inf)
        np.maximum.at(emax, ev.p_ev, e)
        ex = np.exp(e - emax[ev.p_ev])
        a = ex / np.bincount(ev.p_ev, weights=ex, minlength=ev.E)[ev.p_ev]
        rep = np.bincount(ev.p_u, weights=a, minlength=len(ev.u_ev))
        z = ev.feat @ v
        lg = np.where(ev.has, _log_sigmoid(z), -np.inf)
        l1g = np.where(ev.has, _log_sigmoid(-z), 0.0)
        norm = ev.lse if self.explore == "all" else ev.lse_new
        with np.errstate(divide="ignore"):
            log_rep = np.log(rep)
        ue = ev.u_ev
        rep_part = lg[ue] + log_rep
        if self.explore == "all":
            m_u = np.logaddexp(l1g[ue] + ev.u_s + ev.lse[ue] - norm[ue], rep_part)
        else:
            m_u = rep_part
        return z, lg, l1g, norm, a, log_rep, m_u


class _FitData:
    """Concatenated ``_Events`` of the validation events with their targets."""

    def __init__(self, parts, targets_s, targets_u):
        def cat(name, shift=None):
            arrs = []
            off = 0
            for p in parts:
                a = getattr(p, name)
                arrs.append(a + off if shift == "ev" else a + off if shift == "u" else a)
                off += p.E if shift == "ev" else len(p.u_ev) if shift == "u" else 0
            return np.concatenate(arrs) if arrs else np.zeros(0)

        ev = object.__new__(_Events)
        ev.E = sum(p.E for p in parts)
        ev.N = parts[0].N
        ev.R = parts[0].R
        ev.p_ev = cat("p_ev", "ev").astype(np.int64)
        ev.u_ev = cat("u_ev", "ev").astype(np.int64)
        ev.p_u = cat("p_u", "u").astype(np.int64)
        for name in ("p_rec", "p_logcnt", "p_last", "p_s", "u_item", "u_s", "lse", "lse_new",
                     "has"):
            setattr(ev, name, cat(name))
        ev.p_rec = ev.p_rec.astype(np.int64)
        ev.has = ev.has.astype(bool)
        ev.p_last = ev.p_last.astype(np.float64)
        ev.feat = np.concatenate([p.feat for p in parts])
        u_off = np.cumsum([0] + [len(p.u_ev) for p in parts])
        tu = [np.where(t >= 0, t + o, -1) for t, o in zip(targets_u, u_off)]
        self.ev = ev
        self.t_s = np.concatenate(targets_s)  # target's s - lse (float64)
        self.t_u = np.concatenate(tu)

    def nll(self, mix: _Mixture, theta):
        """(mean negative log-likelihood, its gradient)."""
        ev = self.ev
        z, lg, l1g, norm, a, log_rep, m_u = mix.forward(ev, theta)
        inS = self.t_u >= 0
        tu = np.where(inS, self.t_u, 0)
        c = l1g + ev.lse - norm  # s_y - lse + c = s_y + l1g - norm
        out_part = self.t_s + c
        if mix.explore == "new":
            out_part = np.where(inS, -np.inf, out_part)
        logp = np.where(inS, m_u[tu], out_part)
        # w_r: the posterior weight of the repeat mode for the target
        w_r = np.where(inS, np.exp(lg + log_rep[tu] - np.where(inS, logp, 0.0)), 0.0)
        w_r = np.where(ev.has, w_r, 0.0)
        E = len(logp)
        g = np.exp(lg)
        dz = np.where(ev.has, g - w_r, 0.0) / E  # d(-mean log p)/dz
        grad = np.zeros_like(theta)
        grad[mix.n_att:] = ev.feat.T @ dz  # (explore's normaliser does not depend on theta)
        # d(-log p)/de_tau = -w_r (q_tau - a_tau), q = a restricted to the target's clicks
        pe = ev.p_ev
        match = (self.t_u[pe] >= 0) & (ev.p_u == self.t_u[pe])
        rep_t = np.exp(log_rep[tu])[pe]
        q = np.where(match, a / np.where(match, rep_t, 1.0), 0.0)
        de = -w_r[pe] * (q - a) / E
        R = mix.R
        grad[:R] = np.bincount(ev.p_rec, weights=de, minlength=R)
        grad[R] = de @ ev.p_s
        grad[R + 1] = de @ ev.p_logcnt
        grad[R + 2] = de @ ev.p_last
        return -float(logp.mean()), grad


class RepeatAware(SessionRecommender):
    """A trained GRU4Rec or NARM with a repeat mode (module docstring).

    ``RepeatAware(model).fit_mixture(valid)`` fits the mixture on validation
    sessions (events the model did not train on: e.g. the end of the training
    data by time, ``grurec.splits.time_split``); then ``recommend``,
    ``new_session``, ``score_prefixes``, ``grurec.evaluate`` (mode
    "standard", no ``candidates``) and ``save`` / ``grurec.load`` work as for
    any model. Scores are log-probabilities of the next item.

    explore: ``"all"`` (explore over every item) or ``"new"`` (the session's
        items are left out of explore: RepeatNet's choice).
    recency: R, the number of recency weights (the last R - 1 clicks get one
        each, older clicks share the last).
    beta: the scale of the model's scores in explore, softmax(beta * s) (a
        model trained with a ranking loss, bpr-max, has scores that are not
        calibrated log-probabilities): None picks it on the grid ``BETAS``,
        a list picks it among those values, a number fixes it.
    select: how beta is picked: ``"nll"`` (the lowest validation negative
        log-likelihood) or ``"mrr"`` (the highest validation MRR@20, the
        gate's bias then also shifted by the best of ``SHIFTS``: likelihood
        is dominated by targets far down the list, MRR by the top of it).
        The other parameters are fitted by likelihood either way.
    steps, learning_rate, l2: Adam's steps, step size and an L2 penalty on
        the parameters (mean negative log-likelihood + l2 * |theta|^2).
    """

    def __init__(self, model, explore: str = "all", recency: int = 10, beta=None,
                 select: str = "mrr", steps: int = 300, learning_rate: float = 0.05,
                 l2: float = 1e-4):
        from .model import GRU4Rec
        from .user_model import UserGRU

        if not isinstance(model, GRU4Rec) or isinstance(model, UserGRU):
            raise TypeError(f"model: expected a GRU4Rec or NARM, got {type(model).__name__}")
        self.model = model
        self.explore = explore
        self.recency = recency
        self.beta = beta
        self.select = select
        self.steps = steps
        self.learning_rate = learning_rate
        self.l2 = l2
        self._check_params()
        self.theta: Optional[np.ndarray] = None
        self.beta_: Optional[float] = None  # the score scale in use (fitted or given)
        self.fit_history: list = []  # the penalised NLL per Adam step
        self.beta_nll: dict = {}  # beta -> validation NLL (after a third of the steps)
        self.beta_mrr: dict = {}  # beta -> validation MRR@20 (best gate shift)
        self.gate_shift_ = 0.0
        self.n_fit_events = 0
        self.last_unknown_count = 0
        self._ids = _IdIndex()

    # The model's vocabulary is this one's.
    @property
    def item_ids(self):
        return self.model.item_ids

    @property
    def popularity(self):
        return self.model.popularity

    @property
    def num_threads(self):
        return self.model.num_threads

    def _check_params(self) -> None:
        if not isinstance(self.explore, str) or self.explore not in EXPLORE:
            raise ValueError(f"explore must be one of {EXPLORE}, got {self.explore!r}")
        self.recency = _check_int("recency", self.recency, 1)
        if not isinstance(self.select, str) or self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        self.steps = _check_int("steps", self.steps, 0)
        def ok(b):
            return (not _is_bool(b) and isinstance(b, (int, float, np.floating))
                    and math.isfinite(b) and b > 0)

        b = self.beta
        if not (b is None or ok(b) or (isinstance(b, (list, tuple)) and b
                                       and all(ok(x) for x in b))):
            raise ValueError(f"beta must be None (picked on BETAS), a finite number > 0 or a "
                             f"non-empty list of them to pick from, got {b!r}")
        if isinstance(b, (list, tuple)):
            self.beta = [float(x) for x in b]
        for name in ("learning_rate", "l2"):
            v = getattr(self, name)
            if _is_bool(v) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")

    def _mixture(self) -> _Mixture:
        return _Mixture(self.recency, self.explore, self.theta)

    def _check_fitted(self) -> None:
        self.model._check_fitted()
        if self.theta is None or self.beta_ is None:
            raise RuntimeError("the repeat mixture is not fitted: call fit_mixture(valid) "
                               "with validation sessions first")

    def fit(self, *args, **kwargs):
        raise TypeError("RepeatAware.fit: train the model with model.fit(train), then fit the "
                        "mixture with RepeatAware(model).fit_mixture(valid)")

    # ------------------------------------------------------------------ fitting
    def fit_mixture(self, valid, session_col: str = "SessionId", item_col: str = "ItemId",
                    time_col: str = "Time", *, theta0=None) -> "RepeatAware":
        """Fit the mixture's parameters by maximum likelihood on ``valid``
        (anything ``grurec.to_sessions`` takes): every next event of every
        session, predicted from the prefix before it, whose item the model
        knows. ``theta0``: a starting point (default zeros: g = 1/2, uniform
        attention). Returns self; ``fit_history`` holds the loss per step."""
        self.model._check_fitted()
        self._check_params()
        m = self.model._snapshot()
        sd = to_sessions(valid, session_col, item_col, time_col, item_ids=m.item_ids,
                         unknown="keep")
        sd = sd.select_sessions(sd.lengths() >= 2)
        mix = _Mixture(self.recency, self.explore)
        grid = (BETAS if self.beta is None else tuple(self.beta)
                if isinstance(self.beta, list) else (float(self.beta),))
        parts = {b: [] for b in grid}
        ts = {b: [] for b in grid}
        tus, raw_t, tops = [], [], []
        for start, length, items, targets, S in _prefix_blocks(m, sd):
            keep = targets >= 0
            if not keep.any():
                continue
            S, t = S[keep], targets[keep]
            ev = _Events(S, start[keep], length[keep], items, self.recency, grid[0])
            tus.append(ev.target_u(t))
            s_t = S[np.arange(len(t)), t].astype(np.float64)
            raw_t.append(s_t)
            # The K best scores outside the session (for the MRR@K selection).
            X = S.copy()
            X[ev.u_ev, ev.u_item] = -np.inf
            K = min(SELECT_K, X.shape[1])
            tops.append(-np.partition(-X, K - 1, axis=1)[:, :K].astype(np.float64))
            del X
            for b in grid:
                e = ev if b == grid[0] else copy.copy(ev).scale(S, b)
                parts[b].append(e)
                ts[b].append(b * s_t - e.lse)
        if not tus:
            raise ValueError("fit_mixture: the validation data has no event to predict (a "
                             "session of 2+ events whose next item the model knows)")
        theta = np.zeros(mix.n) if theta0 is None else np.array(theta0, np.float64)
        if theta.shape != (mix.n,):
            raise ValueError(f"theta0: expected {mix.n} values, got shape {theta.shape}")
        raw_t, tops = np.concatenate(raw_t), np.concatenate(tops)
        # Every beta of the grid with a third of the steps (each starting where
        # the previous one ended), then the best one with all of them. "Best":
        # the lowest NLL, or with select="mrr" the highest validation MRR@K
        # over beta and a shift of the gate's bias.
        best = None
        self.beta_nll, self.beta_mrr = {}, {}
        th = theta
        for b in grid:
            data = _FitData(parts.pop(b), ts.pop(b), tus)
            th, hist = self._adam(data, mix, th.copy(),
                                  self.steps if len(grid) == 1 else max(self.steps // 3, 1))
            self.beta_nll[b] = hist[-1]
            shift, mrr = self._best_shift(data, mix, th, b, raw_t, tops)
            self.beta_mrr[b] = mrr
            key = -hist[-1] if self.select == "nll" else mrr
            if best is None or key > best[0]:
                best = (key, b, th, hist, data)
        _, b, th, hist, data = best
        if len(grid) > 1:
            th, hist2 = self._adam(data, mix, th.copy(), self.steps)
            hist = hist + hist2
        self.gate_shift_ = 0.0
        if self.select == "mrr":
            shift, self.valid_mrr = self._best_shift(data, mix, th, b, raw_t, tops)
            th = th.copy()
            th[mix.n_att] += shift  # the gate's bias: its feature is 1
            self.gate_shift_ = shift
        self.beta_, self.theta, self.fit_history, self.n_fit_events = b, th, hist, data.ev.E
        return self

    def _best_shift(self, data, mix, theta, beta, raw_t, tops):
        """(shift of the gate's bias in ``SHIFTS``, validation MRR@K with it):
        ranks from the K best scores outside each session (a target below
        them is a miss at K anyway)."""
        ev = data.ev
        K = tops.shape[1]
        best = (0.0, -1.0)
        for shift in (SHIFTS if self.select == "mrr" else (0.0,)):
            th = theta.copy()
            th[mix.n_att] += shift
            z, lg, l1g, norm, a, log_rep, m_u = mix.forward(ev, th)
            c = l1g - norm
            inS = data.t_u >= 0
            tu = np.maximum(data.t_u, 0)
            m_t = np.where(inS, m_u[tu], beta * raw_t + c)
            thr = np.where(inS, (m_t - c) / beta, raw_t)
            above = (tops > thr[:, None]).sum(axis=1)
            sess = np.bincount(ev.u_ev, weights=m_u > m_t[ev.u_ev], minlength=ev.E)
            rank = 1 + above + sess
            mrr = float(np.where((above < K) & (rank <= K), 1.0 / rank, 0.0).mean())
            if mrr > best[1] + 1e-12:
                best = (float(shift), mrr)
        return best

    def _adam(self, data, mix, theta, steps):
        """Full-batch Adam on the penalised mean NLL: (theta, loss per step)."""
        mo, ve = np.zeros_like(theta), np.zeros_like(theta)
        b1, b2, eps = 0.9, 0.999, 1e-8
        hist = []
        for step in range(1, steps + 1):
            loss, grad = data.nll(mix, theta)
            hist.append(loss + self.l2 * float(theta @ theta))
            grad = grad + 2 * self.l2 * theta
            mo = b1 * mo + (1 - b1) * grad
            ve = b2 * ve + (1 - b2) * grad * grad
            theta = theta - self.learning_rate * (mo / (1 - b1 ** step)) / (
                np.sqrt(ve / (1 - b2 ** step)) + eps)
        loss, _ = data.nll(mix, theta)
        hist.append(loss + self.l2 * float(theta @ theta))
        return theta, hist

    def with_model(self, model) -> "RepeatAware":
        """This fitted mixture on another model (e.g. the model refit on all
        training data after the mixture was fitted with one trained on the
        earlier part): the mixture's parameters do not depend on the items."""
        self._check_fitted()
        ra = RepeatAware(model, self.explore, self.recency, self.beta, self.select, self.steps,
                         self.learning_rate, self.l2)
        ra.theta, ra.beta_ = self.theta.copy(), self.beta_
        return ra

    def params(self) -> dict:
        """The fitted parameters by name."""
        self._check_fitted()
        R = self.recency
        th = self.theta
        out = {"beta": float(self.beta_)}
        out.update({f"w_rec{r}": float(th[r]) for r in range(R)})
        out.update(w_s=float(th[R]), w_cnt=float(th[R + 1]), w_last=float(th[R + 2]))
        out.update({f"v_{n}": float(x) for n, x in zip(GATE_FEATURES, th[R + 3:])})
        return out

    # ------------------------------------------------------------------ scoring
    def _full(self, start, length, items, h):
        """(events, S) for sessions given as slices with states h."""
        W, b = self.model._output_params()
        S = np.asarray(h @ W.T + b, np.float32)
        return _Events(S, start, length, items, self.recency, self.beta_), S

    def _score(self, rows, items, n):
        # score_prefixes: dense log-probabilities of every item.
        m = self.model
        offsets = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        out = np.empty((n, m.n_items), np.float32)
        step = _block_rows(m.n_items)
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            o = offsets[r0:r1 + 1]
            h = m._states(o - o[0], items[o[0]:o[-1]])
            ev, S = self._full(o[:-1] - o[0], np.diff(o), items[o[0]:o[-1]], h)
            out[r0:r1] = self._dense(ev, S)
        return out

    def _dense(self, ev: _Events, S) -> np.ndarray:
        """float64 [E, N] log-probabilities of every item (the reference the
        fast paths must agree with)."""
        mix = self._mixture()
        z, lg, l1g, norm, a, log_rep, m_u = mix.forward(ev)
        M = self.beta_ * S.astype(np.float64) + (l1g - norm)[:, None]
        M[ev.u_ev, ev.u_item] = m_u
        return M

    def _recommend_topk(self, rows, idx, n_sess, k, exclude_seen, candidate):
        from .topk import _topk_csr

        m = self.model
        offsets = np.searchsorted(rows, np.arange(n_sess + 1)).astype(np.int64)
        N = m.n_items
        out_top = np.empty((n_sess, k), np.int64)
        out_sc = np.empty((n_sess, k), np.float32)
        step = _block_rows(N)
        W, b = m._output_params()
        allowed = None if candidate.all() else candidate
        for r0 in range(0, n_sess, step):
            r1 = min(r0 + step, n_sess)
            o = offsets[r0:r1 + 1]
            its = idx[o[0]:o[-1]]
            h = m._states(o - o[0], its)
            ev, S = self._full(o[:-1] - o[0], np.diff(o), its, h)
            z, lg, l1g, norm, a, log_rep, m_u = self._mixture().forward(ev)
            # The best k items outside the session, by the model's own top-k.
            E = r1 - r0
            ex_off = np.searchsorted(ev.u_ev, np.arange(E + 1)).astype(np.int64)
            top, sc = _topk_csr(h, W, b, k, ex_off, ev.u_item, allowed, m.num_threads)
            cand_sc = np.where(top >= 0, self.beta_ * sc.astype(np.float64) + (l1g - norm)[:, None],
                               -np.inf)
            if exclude_seen:
                best, best_sc = top, cand_sc
            else:
                # Merge with the session's (allowed) items, padded per event.
                U = np.diff(ex_off)
                width = int(U.max()) if E else 0
                su_item = np.full((E, width), -1, np.int64)
                su_sc = np.full((E, width), -np.inf)
                col = np.arange(len(ev.u_ev)) - ex_off[ev.u_ev]
                ok = candidate[ev.u_item]
                su_item[ev.u_ev[ok], col[ok]] = ev.u_item[ok]
                su_sc[ev.u_ev[ok], col[ok]] = m_u[ok]
                best = np.concatenate([top, su_item], axis=1)
                best_sc = np.concatenate([cand_sc, su_sc], axis=1)
            big = np.where(best >= 0, best, N)  # empty slots last among -inf ties
            order = np.lexsort((big, -best_sc), axis=1)[:, :k]
            out_top[r0:r1] = np.take_along_axis(best, order, axis=1)
            out_sc[r0:r1] = np.take_along_axis(best_sc, order, axis=1)
        return out_top, out_sc

    def _eval_ranks(self, off, items, targets, known, cand, K, mode, nt):
        """``grurec.evaluate``'s ranks (mode "standard": 1 + the number of
        items with a strictly higher log-probability) and top-K lists for
        every prefix of a chunk of sessions, without a dense float64 matrix:
        items outside the session keep the order of s, so those above the
        target are counted in the model's own scores against a threshold."""
        from .topk import _topk_csr

        if mode != "standard":
            raise ValueError(f"mode={mode!r}: RepeatAware is evaluated with mode='standard' "
                             "(ranks = 1 + items with a strictly higher probability)")
        if cand is not None:
            raise ValueError("candidates: RepeatAware ranks among all items (its "
                             "probabilities are normalised over all of them)")
        m = self.model
        N = m.n_items
        W, b = m._output_params()
        h_all = m._states(off, items, all_prefixes=True, num_threads=nt)
        L = np.diff(off)
        S_ = len(L)
        n = len(targets)
        sess = np.repeat(np.arange(S_), L - 1)
        t = np.arange(n) - np.repeat(off[:-1] - np.arange(S_), L - 1)
        start, length = off[sess], t + 1
        ranks = np.full(n, np.inf)
        top = np.empty((n, min(K, N)), np.int64)
        step = _block_rows(N)
        mix = self._mixture()
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            h = h_all[r0:r1]
            S = np.asarray(h @ W.T + b, np.float32)
            ev = _Events(S, start[r0:r1], length[r0:r1], items, self.recency, self.beta_)
            z, lg, l1g, norm, a, log_rep, m_u = mix.forward(ev)
            c = l1g - norm
            tg = np.where(known[r0:r1], targets[r0:r1], 0)
            E = r1 - r0
            tu = ev.target_u(tg)
            s_t = S[np.arange(E), tg].astype(np.float64)
            m_t = np.where(tu >= 0, m_u[np.maximum(tu, 0)], self.beta_ * s_t + c)
            # Items outside the session above the target: beta s_j + c > m_t,
            # i.e. s_j > s_t for a target outside the session.
            thr = np.where(tu >= 0, (m_t - c) / self.beta_, s_t)
            above = (S > thr[:, None]).sum(axis=1)
            in_s_above = np.bincount(ev.u_ev, weights=S[ev.u_ev, ev.u_item] > thr[ev.u_ev],
                                     minlength=E)
            sess_above = np.bincount(ev.u_ev, weights=m_u > m_t[ev.u_ev], minlength=E)
            r = 1 + above - in_s_above + sess_above
            kn = known[r0:r1]
            ranks[r0:r1][kn] = r[kn]
            # Top-K lists (coverage, popularity): the merge recommend does.
            ex_off = np.searchsorted(ev.u_ev, np.arange(E + 1)).astype(np.int64)
            kk = top.shape[1]
            tp, sc = _topk_csr(h, W, b, kk, ex_off, ev.u_item, None, nt)
            cand_sc = np.where(tp >= 0, self.beta_ * sc.astype(np.float64) + c[:, None], -np.inf)
            U = np.diff(ex_off)
            width = int(U.max()) if E else 0
            su_item = np.full((E, width), -1, np.int64)
            su_sc = np.full((E, width), -np.inf)
            col = np.arange(len(ev.u_ev)) - ex_off[ev.u_ev]
            su_item[ev.u_ev, col] = ev.u_item
            su_sc[ev.u_ev, col] = m_u
            best = np.concatenate([tp, su_item], axis=1)
            best_sc = np.concatenate([cand_sc, su_sc], axis=1)
            order = np.lexsort((np.where(best >= 0, best, N), -best_sc), axis=1)[:, :kk]
            top[r0:r1] = np.take_along_axis(best, order, axis=1)
        return ranks, top

    def gate(self, sessions) -> np.ndarray:
        """P(repeat) after each of ``sessions`` (lists of item ids)."""
        self._check_fitted()
        m = self.model
        lengths = [len(s) for s in sessions]
        flat = [x for s in sessions for x in s]
        idx = m._lookup(flat) if flat else np.zeros(0, np.int64)
        off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        h = m._states(off, idx)
        ev, _ = self._full(off[:-1], np.diff(off), idx, h)
        z, lg, *_ = self._mixture().forward(ev)
        return np.exp(lg)

    # ------------------------------------------------------------ live sessions
    def new_session(self) -> "_RepeatLiveSession":
        """A live session (``click``, ``recommend``) of the model with the
        mixture: recommendations equal ``recommend([clicks so far])``."""
        self._check_fitted()
        return _RepeatLiveSession(self)

    # --------------------------------------------------------------- files
    def to_bytes(self) -> bytes:
        """The file's bytes: ``MAGIC``, version, JSON (the mixture's settings
        and parameters), the model's own file (``grurec.io``), SHA-256."""
        self._check_fitted()
        meta = dict(format="grurec-repeat", version=FORMAT_VERSION, explore=self.explore,
                    recency=self.recency, beta=self.beta, beta_=self.beta_, select=self.select,
                    steps=self.steps, learning_rate=self.learning_rate,
                    l2=self.l2, theta=[float(x) for x in self.theta],
                    gate_features=list(GATE_FEATURES))
        js = json.dumps(meta, sort_keys=True).encode()
        base = self.model.to_bytes()
        total = _HEAD.size + len(js) + len(base) + _TRAILER
        body = _HEAD.pack(MAGIC, FORMAT_VERSION, len(js), total) + js + base
        return body + hashlib.sha256(body).digest()

    def save(self, path) -> None:
        """Write ``to_bytes()`` to ``path`` atomically (temp file + rename)."""
        data = self.to_bytes()
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def from_bytes(cls, data) -> "RepeatAware":
        from .io import ModelFileError, from_bytes

        buf = bytes(data)
        if len(buf) < _HEAD.size + _TRAILER or not buf.startswith(MAGIC):
            raise ModelFileError("not a grurec repeat-mixture file (it does not start with "
                                 f"{MAGIC!r} or is too short)")
        magic, version, jl, total = _HEAD.unpack(buf[:_HEAD.size])
        if version != FORMAT_VERSION:
            raise ModelFileError(f"repeat-mixture file version {version}; this grurec reads "
                                 f"{FORMAT_VERSION}")
        if total != len(buf):
            raise ModelFileError(f"repeat-mixture file: {len(buf)} bytes, the header says "
                                 f"{total}")
        if hashlib.sha256(buf[:-_TRAILER]).digest() != buf[-_TRAILER:]:
            raise ModelFileError("corrupted repeat-mixture file: the SHA-256 does not match")
        if _HEAD.size + jl + _TRAILER > total:
            raise ModelFileError("corrupted repeat-mixture file: bad metadata length")
        try:
            meta = json.loads(buf[_HEAD.size:_HEAD.size + jl].decode())
            theta = np.array(meta["theta"], np.float64)
            kw = {k: meta[k] for k in ("explore", "recency", "beta", "select", "steps",
                                       "learning_rate", "l2")}
            beta_ = float(meta["beta_"])
        except (ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"corrupted repeat-mixture file: bad metadata ({e})") from None
        model = from_bytes(buf[_HEAD.size + jl:-_TRAILER])
        ra = cls(model, **kw)
        if (theta.shape != (_Mixture(ra.recency, ra.explore).n,) or not np.isfinite(theta).all()
                or not (math.isfinite(beta_) and beta_ > 0)):
            raise ModelFileError("corrupted repeat-mixture file: bad parameters")
        ra.theta, ra.beta_ = theta, beta_
        return ra

    @classmethod
    def load(cls, source) -> "RepeatAware":
        """From a path, bytes or a binary file object (``grurec.load`` does
        this too for these files)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls.from_bytes(source)
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                return cls.from_bytes(f.read())
        if isinstance(source, _io.IOBase) or hasattr(source, "read"):
            return cls.from_bytes(source.read())
        raise TypeError(f"load() takes a path, bytes or a binary file object, got "
                        f"{type(source).__name__}")

    def __reduce__(self):
        return (RepeatAware.from_bytes, (self.to_bytes(),))


def _prefix_blocks(m, sd):
    """For blocks of prefixes of ``sd``'s sessions (every prefix with a next
    event): (start, length into the block's items, the block's items, the
    next item (-1: unknown), full scores S [E, N])."""
    from .evaluation import _chunks

    W, b = m._output_params()
    for s0, s1 in _chunks(sd.offsets, 32768):
        off = sd.offsets[s0:s1 + 1] - sd.offsets[s0]
        items = sd.items[sd.offsets[s0]:sd.offsets[s1]].astype(np.int64)
        L = np.diff(off)
        S_ = len(L)
        starts = np.zeros(len(items), bool)
        starts[off[:-1]] = True
        targets = items[~starts]
        n = len(targets)
        sess = np.repeat(np.arange(S_), L - 1)
        t = np.arange(n) - np.repeat(off[:-1] - np.arange(S_), L - 1)
        h_all = m._states(off, items.astype(np.int32), all_prefixes=True)
        step = _block_rows(m.n_items)
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            S = np.asarray(h_all[r0:r1] @ W.T + b, np.float32)
            yield off[sess[r0:r1]], t[r0:r1] + 1, items, targets[r0:r1], S


class _RepeatLiveSession:
    """A live session of a ``RepeatAware``: the model's live session for the
    state, the mixture over its clicks for ``recommend``."""

    __slots__ = ("_ra", "_live")

    def __init__(self, ra: RepeatAware):
        self._ra = ra._snapshot()
        self._live = ra.model.new_session()

    @property
    def items(self):
        return self._live.items

    @property
    def n_unknown(self):
        return self._live.n_unknown

    def click(self, item_id, unknown: str = "skip", coerce_ids: bool = False):
        self._live.click(item_id, unknown, coerce_ids)
        return self

    def recommend(self, k: int = 20, exclude_seen: bool = False, filter_items=None):
        """(ids, scores) as ``RepeatAware.recommend([clicks so far], k)``."""
        ra = self._ra
        k = _check_int("k", k, 1)
        items = np.asarray(self._live._items, np.int64)
        N = ra.model.n_items
        candidate = np.ones(N, bool)
        if filter_items is not None:
            fidx, _ = ra.model._filter_indices(filter_items, "skip")
            candidate = np.zeros(N, bool)
            candidate[fidx[fidx >= 0]] = True
        n_cand = int(candidate.sum())
        if exclude_seen and len(items):
            n_cand -= int(candidate[np.unique(items)].sum())
        k = min(k, n_cand)
        if k < 1:
            return ra.model.item_ids[:0], np.zeros(0, np.float32)
        top, sc = ra._recommend_topk(np.zeros(len(items), np.int64), items, 1, k, exclude_seen,
                                     candidate)
        return ra.model.item_ids[top[0]], sc[0]
