"""Hyperparameter search for grurec models on Optuna (``pip install "grurec[tune]"``).

    result = grurec.tune.tune(train, valid=valid, n_trials=40, storage="tune.db")
    result.best_params                      # a dict: GRU4Rec(**result.best_params)
    model = grurec.GRU4Rec.from_params(result.preset, num_threads=2)
    result.table()                          # one row per trial, best first

    grurec tune TRAIN --valid VALID --n-trials 40 --storage tune.db   (command line)

**Validation.** The model is trained on ``train`` and scored on ``valid``,
never on a test set. Without ``valid``, the last ``valid_fraction`` of
``train``'s sessions by start time validate (``split_validation``: a time
split, so no validation event precedes a training event), and the rest
trains.

**Objective.** ``metric@cutoff`` (``recall``, ``mrr`` or ``ndcg``) on the
validation sessions, full ranking (``grurec.evaluate``), maximized. GRU4Rec
is evaluated inside ``fit``'s callback after every ``eval_every``-th epoch
and the last; each value is reported to Optuna, whose pruner may stop the
trial there. The trial's value is its best evaluated epoch, and that epoch
is its ``n_epochs`` in ``best_params``.

**Search spaces** (``space_for``): for GRU4Rec, per loss, the ranges of the
published GRU4Rec parameter spaces (Hidasi & Czapp, RecSys 2023, and the
official implementation's ``paropt``): one layer of 64-512 units (step 32),
batch_size 32-256 (step 16), dropout_p_embed and dropout_p_hidden 0-0.85 (step
0.05), learning_rate 0.01-0.25 (step 0.005), momentum 0-0.9 (step 0.05),
sample_alpha 0-1 (step 0.1); cross-entropy adds logq 0 or 1; bpr-max adds
bpreg 0-2 (step 0.05) and elu_param 0-1 (step 0.05); top1-max (grurec's
choice) elu_param 0-1. Fixed: n_sample 2048, the shared (constrained)
embedding. Several losses make ``loss`` a categorical parameter, each
loss with its own conditional space. grurec's own spaces for the
neighbourhood baselines: ItemKNN (lmbd, alpha) and VSKNN (k, sample_size,
weighting, similarity, idf_weighting). ``space=`` adds or replaces entries,
``fixed=`` pins any constructor argument.

**Storage.** A file path (default ``grurec-tune.db``) is an SQLite database:
one file, and running the same call again resumes the study until it holds
``n_trials`` finished (complete or pruned) trials. A URL
(``postgresql://user@host:5432/db``, through psycopg 3 from
``grurec[postgres]``) is any SQLAlchemy database: start the
same call (or ``grurec tune``) on every machine and they share one study.
Every RDB storage gets a heartbeat: a trial whose worker stopped beating for
``grace_period`` seconds (killed, machine lost) is marked failed by the next
worker to start a trial, and re-run once per ``max_retry`` with the same
parameters (Optuna's ``RetryFailedTrialCallback``). Each worker process
holds at most ``pool_size`` + 1 database connections (the trial loop and the
heartbeat thread), so a PostgreSQL server with the default
``max_connections=100`` serves about 30 workers at the default pool_size=2.

**Seeds.** ``seed`` seeds the sampler (TPE) and, with the trial number, each
trial's ``random_state``; workers sharing a study should get different
seeds, or they draw the same first (random) trials.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import os
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .data import to_sessions

log = logging.getLogger("grurec")

__all__ = ["tune", "TuneResult", "space_for", "split_validation", "METRICS",
           "DEFAULT_STORAGE"]

METRICS = ("recall", "mrr", "ndcg")
DEFAULT_STORAGE = "grurec-tune.db"
LOSSES = ("cross-entropy", "bpr-max", "top1-max")

# A spec is ("int", low, high, step), ("float", low, high, step or None),
# ("logfloat", low, high) or ("categorical", [choices]).
_GRU4REC = {
    "layers": ("int", 64, 512, 32),
    "batch_size": ("int", 32, 256, 16),
    "dropout_p_embed": ("float", 0.0, 0.85, 0.05),
    "dropout_p_hidden": ("float", 0.0, 0.85, 0.05),
    "learning_rate": ("float", 0.01, 0.25, 0.005),
    "momentum": ("float", 0.0, 0.9, 0.05),
    "sample_alpha": ("float", 0.0, 1.0, 0.1),
}
_GRU4REC_LOSS = {
    "cross-entropy": {"logq": ("categorical", [0.0, 1.0])},
    "bpr-max": {"bpreg": ("float", 0.0, 2.0, 0.05), "elu_param": ("float", 0.0, 1.0, 0.05)},
    "top1-max": {"elu_param": ("float", 0.0, 1.0, 0.05)},
}
_GRU4REC_FIXED = dict(n_sample=2048, constrained_embedding=True, embedding=0, logq=0.0,
                      bpreg=0.0, elu_param=0.0)
_BASELINES = {
    "ItemKNN": {"lmbd": ("float", 0.0, 100.0, 5.0), "alpha": ("float", 0.0, 1.0, 0.05)},
    "VSKNN": {"k": ("int", 50, 500, 50), "sample_size": ("int", 500, 5000, 500),
              "weighting": ("categorical", ["linear", "same", "div", "quadratic"]),
              "similarity": ("categorical", ["cosine", "dot"]),
              "idf_weighting": ("categorical", [False, True])},
    "Popularity": {},
    "SessionPopularity": {},
}
# Constructor arguments that are run-time options, not hyperparameters: they
# are not part of ``best_params`` (as with grurec.presets).
_RUNTIME = ("num_threads", "random_state", "show_progress", "parallel")


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - exercised where optuna is absent
        raise ImportError('grurec.tune needs Optuna: pip install "grurec[tune]"') from None
    return optuna


def _model_class(model):
    from .base import SessionRecommender, model_classes

    if isinstance(model, type) and issubclass(model, SessionRecommender):
        return model
    classes = model_classes()
    if not isinstance(model, str) or model not in classes:
        raise ValueError(f"model: expected a grurec model class or one of {sorted(classes)}, "
                         f"got {model!r}")
    return classes[model]


def _losses(loss) -> list:
    seq = [loss] if isinstance(loss, str) else list(loss) if loss is not None else []
    if not seq or any(not isinstance(x, str) or x not in LOSSES for x in seq):
        raise ValueError(f"loss: expected one of {LOSSES} or a list of them, got {loss!r}")
    return list(dict.fromkeys(seq))


def space_for(model="GRU4Rec", loss="cross-entropy") -> dict:
    """The default search space of ``model`` (for GRU4Rec: of ``loss``), as
    ``{name: spec}``; specs are ``("int", low, high, step)``, ``("float",
    low, high, step or None)``, ``("logfloat", low, high)`` or
    ``("categorical", [choices])``."""
    cls = _model_class(model)
    if cls.__name__ == "GRU4Rec":
        (loss,) = _losses(loss)
        return {**_GRU4REC, **_GRU4REC_LOSS[loss]}
    if cls.__name__ not in _BASELINES:
        raise ValueError(f"model: grurec has no default search space for {cls.__name__}; "
                         "pass space={...}")
    return dict(_BASELINES[cls.__name__])


def _check_spec(name: str, spec) -> tuple:
    ok = isinstance(spec, (tuple, list)) and len(spec) >= 2
    kind = spec[0] if ok else None
    if kind == "categorical" and ok and len(spec) == 2 and len(spec[1]) > 0:
        return ("categorical", list(spec[1]))
    if kind in ("int", "float", "logfloat") and len(spec) in (3, 4):
        low, high = spec[1], spec[2]
        step = spec[3] if len(spec) == 4 else None
        nums = all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                   for v in (low, high) + (() if step is None else (step,)))
        if nums and low <= high and (step is None or step > 0) and not (
                kind == "logfloat" and (low <= 0 or step is not None)):
            if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
                raise ValueError(f"space[{name!r}]: int bounds and step must be whole numbers, "
                                 f"got {spec!r}")
            return (kind, low, high, step)
    raise ValueError(f"space[{name!r}]: expected ('int', low, high[, step]), ('float', low, "
                     f"high[, step]), ('logfloat', low > 0, high) or ('categorical', "
                     f"[choices]), got {spec!r}")


def _suggest(trial, space: Mapping[str, tuple], prefix: str = "") -> dict:
    out = {}
    for name, (kind, *a) in space.items():
        key = prefix + name
        if kind == "categorical":
            out[name] = trial.suggest_categorical(key, a[0])
        elif kind == "int":
            out[name] = trial.suggest_int(key, int(a[0]), int(a[1]), step=int(a[2] or 1))
        elif kind == "float":  # on a grid: 0.3, not 0.30000000000000004
            v = trial.suggest_float(key, float(a[0]), float(a[1]), step=a[2])
            out[name] = v if a[2] is None else round(v, 12)
        else:
            out[name] = trial.suggest_float(key, float(a[0]), float(a[1]), log=True)
    return out


def split_validation(train, *, valid_fraction: float = 0.1, session_col: str = "SessionId",
                     item_col: str = "ItemId", time_col: str = "Time"):
    """(train part, validation part) of ``train`` by time: the sessions that
    start in the last ``valid_fraction`` of sessions (ordered by start time)
    validate; the earlier ones, and the events before the cut of sessions
    that straddle it, train (``grurec.splits.time_split`` with
    ``straddling="truncate"``). Validation events on items the training part
    lacks are dropped (as GRU4Rec's ``train_valid`` file does)."""
    from .splits import time_split

    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, numbers.Real) or \
            not (0 < valid_fraction < 1):
        raise ValueError(f"valid_fraction: must be a number in (0, 1), got {valid_fraction!r}")
    sd = to_sessions(train, session_col, item_col, time_col)
    if sd.times is None:
        raise ValueError("valid_fraction: the training data has no times to split by; pass "
                         "valid= explicitly")
    first = np.sort(sd.times[sd.offsets[:-1]])
    n_valid = max(1, int(round(sd.n_sessions * valid_fraction)))
    if n_valid >= sd.n_sessions:
        raise ValueError(f"valid_fraction={valid_fraction}: too few sessions "
                         f"({sd.n_sessions}) to split off a validation set")
    sp = time_split(sd, cut=float(first[sd.n_sessions - n_valid]), straddling="truncate",
                    drop_unseen_items=True)
    return sp.train, sp.test


def _storage(storage, heartbeat_interval, grace_period, max_retry, pool_size):
    optuna = _optuna()
    if storage is None:
        storage = DEFAULT_STORAGE
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if isinstance(storage, os.PathLike) or (isinstance(storage, str) and "://" not in storage):
        url = "sqlite:///" + os.path.abspath(os.fspath(storage))
    elif isinstance(storage, str):
        url = storage
    else:
        raise TypeError(f"storage: expected a file path, a database URL or an Optuna storage, "
                        f"got {type(storage).__name__}")
    if url.startswith(("postgresql://", "postgres://")):
        # grurec[postgres] brings psycopg 3; SQLAlchemy before 2.1 would
        # look for psycopg2 on a bare postgresql:// URL.
        try:
            import psycopg  # noqa: F401

            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        except ImportError:
            pass
    if url.startswith("sqlite"):
        # Several processes may share one file: wait for its lock, not fail.
        engine = {"connect_args": {"timeout": 60}}
    else:
        engine = {"pool_size": pool_size, "max_overflow": 1, "pool_pre_ping": True}
    # Optuna 4.9 renamed the retry callback and its argument; take either.
    Retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    kw = "heartbeat_stale_trial_callback"
    if Retry is None:  # pragma: no cover - Optuna < 4.9
        Retry, kw = optuna.storages.RetryFailedTrialCallback, "failed_trial_callback"
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine,
                                          heartbeat_interval=heartbeat_interval,
                                          grace_period=grace_period,
                                          **{kw: Retry(max_retry=max_retry)})


def _retry_of(trial):
    """The number of the failed trial that ``trial`` re-runs, else None."""
    return trial.system_attrs.get("failed_trial")


def _pruner(pruner):
    optuna = _optuna()
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    raise ValueError(f"pruner: expected 'median', 'hyperband', 'none' or an Optuna pruner, "
                     f"got {pruner!r}")


def _jsonable(params: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


@dataclass
class TuneResult:
    """What ``tune`` found. ``best_params``: the best trial's hyperparameters
    (a fresh dict; GRU4Rec's ``n_epochs`` is its best evaluated epoch);
    ``preset``: the same as a ``grurec.presets.Preset`` for ``from_params``;
    ``table()``: every trial of the study."""

    study: Any
    model: str
    objective: str
    best_value: Optional[float]
    best_trial: Optional[int]
    best_params: Optional[dict]

    @property
    def preset(self):
        from types import MappingProxyType

        from .presets import Preset

        if self.best_params is None:
            raise ValueError("the study has no completed trial yet")
        return Preset(f"tuned:{self.study.study_name}", MappingProxyType(dict(self.best_params)),
                      f"grurec: tune study {self.study.study_name!r}, trial {self.best_trial}, "
                      f"validation {self.objective} {self.best_value:.6g}")

    def make_model(self, **overrides):
        """A fresh (unfitted) model of the best setting, options overridden by keyword."""
        from .base import model_classes

        cls = model_classes()[self.model]
        if hasattr(cls, "from_params"):
            return cls.from_params(self.preset, **overrides)
        return cls(**dict(self.best_params, **overrides))

    def table(self):
        """A pandas DataFrame, one row per trial, best value first: number,
        state, value, best_epoch, epochs evaluated, seconds, worker, the
        trial it retries (if any), then the hyperparameters."""
        import pandas as pd

        return _table(self.study, pd)


def _table(study, pd):
    rows = []
    for t in study.get_trials(deepcopy=False):
        p = t.user_attrs.get("params", {})
        rows.append(dict(
            number=t.number, state=t.state.name, value=t.value,
            best_epoch=t.user_attrs.get("best_epoch"),
            epochs=len(t.user_attrs.get("values", [])),
            seconds=(t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
            worker=t.user_attrs.get("worker"),
            retry_of=_retry_of(t),
            **{k: v for k, v in p.items() if k not in _RUNTIME}))
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["value", "number"], ascending=[False, True],
                            na_position="last").reset_index(drop=True)
    return df


def _finished(study) -> int:
    TS = _optuna().trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED)))


def _best(study, cls_name):
    TS = _optuna().trial.TrialState
    done = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None, None, None
    t = max(done, key=lambda t: (t.value, -t.number))
    params = {k: v for k, v in t.user_attrs["params"].items() if k not in _RUNTIME}
    if t.user_attrs.get("best_epoch") is not None and "n_epochs" in params:
        params["n_epochs"] = int(t.user_attrs["best_epoch"])
    return float(t.value), t.number, params


def tune(train, *, valid=None, valid_fraction: float = 0.1, model="GRU4Rec",
         loss: Union[str, Sequence[str]] = "cross-entropy", space: Optional[Mapping] = None,
         fixed: Optional[Mapping] = None, metric: str = "recall", cutoff: int = 20,
         n_trials: int = 20, timeout: Optional[float] = None, n_epochs: int = 10,
         eval_every: int = 1, storage=None, study_name: str = "grurec", seed: Optional[int] = 0,
         pruner="median", sampler=None, enqueue: Sequence = (), num_threads: int = 0,
         heartbeat_interval: int = 60, grace_period: Optional[int] = None, max_retry: int = 1,
         pool_size: int = 2, session_col: str = "SessionId", item_col: str = "ItemId",
         time_col: str = "Time") -> TuneResult:
    """Search ``model``'s hyperparameters; see the module docstring.

    train / valid: anything ``grurec.to_sessions`` takes. n_trials: the study
    runs until it holds this many finished (complete or pruned) trials, over
    every call and worker (a worker stops after its current trial once the
    count is reached, so two workers may finish one extra); timeout: seconds
    for this call. enqueue: preset names or parameter dicts to try first.
    Returns a ``TuneResult`` (also when the study was already complete).
    """
    optuna = _optuna()
    from .base import _check_int
    from .evaluation import evaluate

    cls = _model_class(model)
    is_gru = cls.__name__ == "GRU4Rec"
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    cutoff = _check_int("cutoff", cutoff, 1)
    n_trials = _check_int("n_trials", n_trials, 0)
    n_epochs = _check_int("n_epochs", n_epochs, 1)
    eval_every = _check_int("eval_every", eval_every, 1)
    num_threads = _check_int("num_threads", num_threads, 0)
    heartbeat_interval = _check_int("heartbeat_interval", heartbeat_interval, 1)
    max_retry = _check_int("max_retry", max_retry, 0)
    pool_size = _check_int("pool_size", pool_size, 1)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not timeout > 0):
        raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    if grace_period is not None:
        grace_period = _check_int("grace_period", grace_period, 1)
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(f"study_name: expected a non-empty string, got {study_name!r}")
    fixed = dict(fixed or {})
    if not isinstance(space, (Mapping, type(None))):
        raise TypeError(f"space: expected a dict of name -> spec, got {type(space).__name__}")
    losses = _losses(fixed.pop("loss", loss)) if is_gru else []
    extra = {n: _check_spec(n, s) for n, s in (space or {}).items()}
    if is_gru:
        spaces = {ls: {**space_for(cls, ls), **extra} for ls in losses}
    else:
        spaces = {None: {**space_for(cls), **extra}}
    for sp in spaces.values():
        for n in fixed:
            sp.pop(n, None)  # a fixed value wins over a searched one
    objective_name = f"{metric}@{cutoff}"

    # Data, once: the trials share the converted sessions.
    if valid is None:
        tr, va = split_validation(train, valid_fraction=valid_fraction, session_col=session_col,
                                  item_col=item_col, time_col=time_col)
    else:
        tr = to_sessions(train, session_col, item_col, time_col)
        va = to_sessions(valid, session_col, item_col, time_col)
    if int((va.lengths() >= 2).sum()) == 0:
        raise ValueError("valid: no validation session has 2 or more events: nothing to score")
    if is_gru:  # what GRU4Rec.fit trains on, prepared once for every trial
        from .data import drop_short_sessions

        tr_gru = drop_short_sessions(tr).compact_items()
        if tr_gru.n_sessions == 0:
            raise ValueError("train: no session has 2 or more events: nothing to learn from")

    st = _storage(storage, heartbeat_interval, grace_period, max_retry, pool_size)
    sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(storage=st, study_name=study_name, direction="maximize",
                                sampler=sampler, pruner=_pruner(pruner), load_if_exists=True)
    want = {"objective": objective_name, "model": cls.__name__}
    for key, v in want.items():
        have = study.user_attrs.get(key)
        if have is None:
            study.set_user_attr(key, v)
        elif have != v:
            raise ValueError(f"study {study_name!r} optimizes {key} {have!r}, not {v!r}: use "
                             "another study_name (or the same settings) to resume it")
    for e in enqueue:
        _enqueue(study, e, cls, is_gru, losses)

    worker = f"{socket.gethostname()}:{os.getpid()}"
    # Every algorithm hyperparameter is recorded (defaults too), so that a
    # later change of a default never changes what best_params trains.
    import inspect

    defaults = {n: (list(p.default) if isinstance(p.default, tuple) else p.default)
                for n, p in inspect.signature(cls.__init__).parameters.items()
                if n != "self" and n not in _RUNTIME and p.default is not p.empty}

    def objective(trial):
        if is_gru:
            ls = trial.suggest_categorical("loss", losses) if len(losses) > 1 else losses[0]
            p = {**defaults, **_GRU4REC_FIXED, **_suggest(trial, spaces[ls], ""), "loss": ls}
            if "layers" in p and not isinstance(p["layers"], (list, tuple)):
                p["layers"] = [int(p["layers"])]
            p.update(n_epochs=n_epochs, num_threads=num_threads, show_progress=False)
        else:
            p = {**defaults, **_suggest(trial, spaces[None], "")}
        p.update(fixed)
        if is_gru and "random_state" not in fixed:
            p["random_state"] = None if seed is None else seed + trial.number
        trial.set_user_attr("params", _jsonable(p))
        trial.set_user_attr("worker", worker)
        m = cls(**p)
        values = []

        def score(epoch):
            r = evaluate(m, va, cutoffs=(cutoff,), session_col=session_col, item_col=item_col,
                         time_col=time_col, num_threads=num_threads)
            v = float(r[objective_name])
            values.append((epoch, v))
            trial.set_user_attr("values", values)
            return v

        if is_gru:
            def callback(epoch, _loss):
                if epoch % eval_every and epoch != m.n_epochs:
                    return
                trial.report(score(epoch), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")

            # fit() trains a private copy and publishes it only at the end, so
            # the callback could not score the epoch's model; the trial's model
            # is its own, so it trains in place (what fit does on its copy).
            m._check_params()
            if not m._fit_sessions(tr_gru, callback):
                raise KeyboardInterrupt("tuning interrupted (Ctrl-C)")
        else:
            m.fit(tr)
            score(0)
        best_epoch, best = max(values, key=lambda ev: (ev[1], -ev[0]))
        trial.set_user_attr("best_epoch", best_epoch if is_gru else None)
        return best

    from .model import ModelFitError

    left = n_trials - _finished(study)
    if left > 0:
        stop = optuna.study.MaxTrialsCallback(
            n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
        t0 = time.perf_counter()
        # A diverged trial (ModelFitError) is recorded as failed; the study goes on.
        study.optimize(objective, n_trials=left, timeout=timeout,
                       callbacks=[stop], catch=(ModelFitError,))
        log.info("tune: %d trials in %.0f s", _finished(study), time.perf_counter() - t0)
    best_value, best_trial, best_params = _best(study, cls.__name__)
    return TuneResult(study, cls.__name__, objective_name, best_value, best_trial, best_params)


def _enqueue(study, e, cls, is_gru, losses):
    """Queue a preset (by name) or a parameter dict as a trial, in the names
    the search space uses."""
    from . import presets

    p = presets.get(e) if isinstance(e, str) else dict(e) if isinstance(e, Mapping) else None
    if p is None:
        raise TypeError(f"enqueue: expected preset names or dicts, got {e!r}")
    if is_gru:
        if isinstance(p.get("layers"), (list, tuple)):
            if len(p["layers"]) != 1:
                raise ValueError(f"enqueue: the search space has one layer, got {p['layers']!r}")
            p["layers"] = int(p["layers"][0])
        if p.get("loss", losses[0]) not in losses:
            raise ValueError(f"enqueue: loss {p.get('loss')!r} is not searched ({losses})")
        if len(losses) == 1:
            p.pop("loss", None)
    study.enqueue_trial(_jsonable(p), skip_if_exists=True)


def load_best(path) -> dict:
    """The ``best_params`` dict that ``grurec tune --best-json`` wrote."""
    with open(path) as f:
        return json.load(f)["best_params"]


# ------------------------------------------------------------- command line
def add_parser(sub, columns) -> None:
    """The ``grurec tune`` subcommand (``columns`` adds --session-col etc.)."""
    t = sub.add_parser(
        "tune", help="search hyperparameters with Optuna (SQLite file or a shared database)",
        description="Search a model's hyperparameters on a validation split of TRAIN; start "
                    "the same command on every machine with one --storage URL to share a study. "
                    "Needs: pip install \"grurec[tune]\".")
    t.add_argument("train", help="training events (CSV/TSV/parquet)")
    t.add_argument("--valid", help="validation events (default: the last --valid-fraction of "
                                   "TRAIN's sessions by time)")
    t.add_argument("--valid-fraction", type=float, default=0.1)
    t.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="SQLite file or database URL, e.g. postgresql://user@host/db "
                        f"(default {DEFAULT_STORAGE})")
    t.add_argument("--study", default="grurec", help="study name (default grurec)")
    t.add_argument("--n-trials", type=int, default=20,
                   help="finished trials the study should hold, over all workers (0: only "
                        "show the study)")
    t.add_argument("--timeout", type=float, help="seconds for this worker")
    t.add_argument("--model", default="GRU4Rec")
    t.add_argument("--loss", nargs="+", default=["cross-entropy"], choices=LOSSES)
    t.add_argument("--metric", default="recall", choices=METRICS)
    t.add_argument("--cutoff", type=int, default=20)
    t.add_argument("--n-epochs", type=int, default=10)
    t.add_argument("--eval-every", type=int, default=1)
    t.add_argument("--seed", type=int, default=0,
                   help="sampler seed; give each worker its own (default 0)")
    t.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    t.add_argument("--num-threads", type=int, default=0, help="native threads (0: all cores)")
    t.add_argument("--enqueue", nargs="+", default=[], metavar="PRESET",
                   help="presets to try first")
    t.add_argument("--fixed", nargs="+", default=[], metavar="NAME=JSON",
                   help="pin hyperparameters, e.g. n_sample=1024 layers=[100]")
    t.add_argument("--heartbeat", type=int, default=60, help="heartbeat interval, seconds")
    t.add_argument("--grace-period", type=int, help="seconds without a heartbeat before a "
                                                    "trial is failed and retried (2x heartbeat)")
    t.add_argument("--max-retry", type=int, default=1)
    t.add_argument("--pool-size", type=int, default=2, help="database connections per worker")
    t.add_argument("--best-json", help="write the best setting here (GRU4Rec.from_params)")
    t.add_argument("--top", type=int, default=10, help="trials to print (default 10)")
    t.add_argument("--quiet", action="store_true", help="no per-trial log lines")
    columns(t)
    t.set_defaults(func=cmd_tune)


def _parse_fixed(items) -> dict:
    out = {}
    for it in items:
        name, sep, text = it.partition("=")
        if not sep or not name:
            raise ValueError(f"--fixed: expected NAME=VALUE, got {it!r}")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text  # a bare word: a string value (loss=bpr-max)
    return out


def cmd_tune(args) -> int:
    import sys

    try:
        optuna = _optuna()
    except ImportError as e:
        print(f"grurec tune: {e}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING if args.quiet else optuna.logging.INFO)
    r = tune(args.train, valid=args.valid, valid_fraction=args.valid_fraction, model=args.model,
             loss=args.loss, fixed=_parse_fixed(args.fixed), metric=args.metric,
             cutoff=args.cutoff, n_trials=args.n_trials, timeout=args.timeout,
             n_epochs=args.n_epochs, eval_every=args.eval_every, storage=args.storage,
             study_name=args.study, seed=args.seed, pruner=args.pruner, enqueue=args.enqueue,
             num_threads=args.num_threads, heartbeat_interval=args.heartbeat,
             grace_period=args.grace_period, max_retry=args.max_retry,
             pool_size=args.pool_size, session_col=args.session_col, item_col=args.item_col,
             time_col=args.time_col)
    import pandas as pd

    table = r.table()
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(table.head(args.top).to_string(index=False) if len(table) else "(no trials)")
    states = table["state"].value_counts().to_dict() if len(table) else {}
    print(f"study {args.study!r}: {len(table)} trials "
          f"({', '.join(f'{n} {s.lower()}' for s, n in states.items()) or 'none'})")
    if r.best_params is None:
        print("no completed trial yet")
        return 0
    print(f"best: trial {r.best_trial}, validation {r.objective} = {r.best_value:.4f}")
    print(json.dumps(r.best_params))
    if args.best_json:
        with open(args.best_json, "w") as f:
            json.dump({"model": r.model, "objective": r.objective, "value": r.best_value,
                       "trial": r.best_trial, "study": args.study,
                       "best_params": r.best_params}, f, indent=2)
        print(f"wrote {args.best_json}")
    return 0
