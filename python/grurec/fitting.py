"""Validation while training: ``GRU4Rec.fit(data, valid=..., patience=...,
metric=...)``.

After every epoch the held-out sessions are evaluated by ``grurec.evaluate``
(full ranking, the same code and the same numbers as a later call of it);
the weights of the best epoch so far are kept (a copy, with the optimizer
state), and training stops once ``patience`` epochs in a row did not improve
on the best. When training ends, early or not (also after Ctrl-C), the model
holds the best epoch's weights; ``history[e][metric]`` records the curve and
``best_epoch`` the epoch kept.

``valid`` may be a fraction: the sessions that start in the last ``valid``
share of the training events, by time, become the validation set, as
``grurec.splits.time_split`` makes one (``straddling="truncate"``: the events
of a straddling session before the cut stay in training, the rest is
dropped), so no validation event precedes a training event.
"""
from __future__ import annotations

import logging
import numbers
from typing import Optional

import numpy as np

from .data import SessionData, to_sessions

log = logging.getLogger("grurec")

__all__ = ["ValidationPlan", "parse_metric", "METRICS"]

METRICS = ("mrr", "recall", "ndcg")


def parse_metric(metric) -> tuple[str, int]:
    """(name, K) of ``"mrr@20"``-style text; ValueError naming ``metric``."""
    ok = isinstance(metric, str) and metric.count("@") == 1
    if ok:
        name, k = metric.split("@")
        ok = name in METRICS and k.isdigit() and int(k) >= 1
    if not ok:
        raise ValueError(f"metric: expected one of {', '.join(m + '@K' for m in METRICS)} "
                         f"with K >= 1 (e.g. 'mrr@20'), got {metric!r}")
    return name, int(k)


def _fraction(valid) -> Optional[float]:
    """``valid`` as a fraction in (0, 1), or None when it is not a number."""
    if isinstance(valid, (bool, np.bool_)) or not isinstance(valid, numbers.Real):
        return None
    v = float(valid)
    if not (0.0 < v < 1.0):
        raise ValueError(f"valid: a fraction of the training data must be in (0, 1), got "
                         f"{valid!r}")
    return v


class ValidationPlan:
    """What ``fit`` does with ``valid``, ``patience`` and ``metric``: carve or
    read the validation sessions, score each epoch, keep the best weights."""

    def __init__(self, valid, patience: Optional[int], metric: str):
        self.valid = valid
        self.patience = patience
        self.metric = metric
        self.name, self.k = parse_metric(metric)
        self.valid_sd: Optional[SessionData] = None
        self.best_value: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self._best_state = None
        self._bad_epochs = 0

    @classmethod
    def create(cls, valid, patience, metric) -> Optional["ValidationPlan"]:
        """A plan, or None without ``valid``; checks every argument first."""
        from .base import _check_int

        parse_metric(metric)
        if patience is not None:
            patience = _check_int("patience", patience, 1, allow_none=True)
        if valid is None:
            if patience is not None:
                raise ValueError("patience: early stopping needs validation data; pass valid= "
                                 "(held-out events, or a fraction such as 0.1)")
            return None
        if isinstance(valid, (bool, np.bool_)):
            raise ValueError(f"valid: expected held-out events or a fraction in (0, 1), got "
                             f"{valid!r}")
        _fraction(valid)
        return cls(valid, patience, metric)

    def carve(self, sd: SessionData, session_col: str, item_col: str,
              time_col: str) -> SessionData:
        """The training sessions; sets ``valid_sd``."""
        frac = _fraction(self.valid)
        if frac is None:
            self.valid_sd = to_sessions(self.valid, session_col, item_col, time_col)
            train = sd
        else:
            from .splits import time_split

            if sd.times is None:
                raise ValueError(f"valid={self.valid!r}: carving a validation share by time "
                                 "needs event times; this data has none (pass valid= events)")
            if sd.n_events == 0:
                raise ValueError("no events to train on")
            cut = float(np.quantile(sd.times, 1.0 - frac))
            sp = time_split(sd, cut=cut, straddling="truncate", min_length=1)
            train, self.valid_sd = sp.train, sp.test
        n_pred = int(np.maximum(self.valid_sd.lengths() - 1, 0).sum())
        if n_pred == 0:
            raise ValueError(f"valid: no validation session has 2 or more events (valid="
                             f"{self.valid!r} gives {self.valid_sd.n_sessions} sessions, "
                             f"{self.valid_sd.n_events} events)")
        log.info("validation: %d sessions, %d predictions; training: %d events",
                 self.valid_sd.n_sessions, n_pred, train.n_events)
        return train

    def after_epoch(self, model) -> bool:
        """Score ``model`` (just trained one more epoch), record it in its
        history, keep its weights if best. True: stop training."""
        from .evaluation import evaluate

        res = evaluate(model, self.valid_sd, cutoffs=(self.k,), show_progress=False)
        value = float(res[self.metric])
        epoch = model.epochs_trained
        model.history[-1][self.metric] = value
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_epoch, self._bad_epochs = value, epoch, 0
            self._best_state = tuple({k: v.copy() for k, v in d.items()}
                                     for d in (model.params, model._opt, model._vel)) + (
                model.__dict__.get("_opt_step", 0),)
        else:
            self._bad_epochs += 1
        model.best_epoch = self.best_epoch
        log.info("epoch %d: validation %s %.4f (best %.4f, epoch %d)", epoch, self.metric,
                 value, self.best_value, self.best_epoch)
        return self.patience is not None and self._bad_epochs >= self.patience

    def restore_best(self, model) -> None:
        """Put the best epoch's weights (and optimizer state) back."""
        if self._best_state is None:
            return
        model.best_epoch = self.best_epoch
        if self.best_epoch == model.epochs_trained and len(model.history) == self.best_epoch:
            return  # the last epoch was the best: its weights are in place
        model.params, model._opt, model._vel, model._opt_step = self._best_state
        model.epochs_trained = self.best_epoch
        model._topk_index = None
        log.info("restored the weights of epoch %d (validation %s %.4f)", self.best_epoch,
                 self.metric, self.best_value)
