"""GRU4Rec: session-based recommendation with GRUs (Hidasi et al. ICLR 2016;
Hidasi & Karatzoglou CIKM 2018). Python sets up and validates; whole epochs
run in C++ (``cpp/train.cpp``), with the GIL released.
"""
from __future__ import annotations

import logging
import math
import numbers
import time
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from . import _core
from .base import SessionRecommender, _all_finite, _as_bool, _as_float, _as_int, register
from .data import SessionData, drop_short_sessions, to_sessions

if TYPE_CHECKING:  # for the annotations (and the API docs) only
    from .session import LiveSession

log = logging.getLogger("grurec")

LOSSES = ("cross-entropy", "bpr-max", "top1-max")
PARALLEL = ("hogwild", "sync")
MOMENTUM_TYPES = ("heavy-ball", "nesterov")
OPTIMIZERS = ("adagrad", "adam")
GRU_CELLS = ("reset-after", "reset-before")
FEATURE_MODES = ("input", "output", "both")  # where item features enter (docs/features.md)


class ModelFitError(RuntimeError):
    """Training could not continue (e.g. the loss became NaN or infinite)."""


@register
class GRU4Rec(SessionRecommender):
    """Session-based next-item recommender.

    Hyperparameters keep the published names, so tuned settings carry over.
    The defaults are the official parameter file ``retailrocket_bprmax_shared``
    (``grurec.presets``): of the settings compared, it had the best mean rank
    by validation MRR@20 over every session data set grurec carries
    (``benchmarks/choose_defaults.py``; table in ``docs/own-data.md``).


    layers: hidden sizes of the stacked GRU layers, e.g. ``[100]``.
    loss: ``"cross-entropy"``, ``"bpr-max"`` or ``"top1-max"``.
    elu_param: final activation of the scores, ELU(elu_param); 0 = linear.
    bpreg: BPR-max score regularization.
    logq: strength of the logQ correction of cross-entropy (0 = off).
    batch_size, n_sample, sample_alpha: session-parallel mini-batch size; extra
        negatives per mini-batch, drawn with probability ~ popularity^sample_alpha.
    embedding: 0 = one-hot input, else the size of a separate input embedding.
    constrained_embedding: the input vector of an item is its output vector
        (shared table); overrides ``embedding``.
    dropout_p_embed, dropout_p_hidden, learning_rate, momentum, n_epochs.
    momentum_type: ``"heavy-ball"`` (default, as the official implementation:
        ``v = momentum * v - step; w += v``) or ``"nesterov"`` (grurec before
        0.2: ``w += momentum * v - step``). The step is Adagrad's.
    optimizer: ``"adagrad"`` (default: Adagrad with ``momentum``, as the
        official GRU4Rec trains) or ``"adam"`` (Kingma & Ba 2015, with
        ``learning_rate`` as its step size; ``momentum`` and ``momentum_type``
        are then unused, as sklearn's MLP ignores ``momentum`` without
        ``solver="sgd"``). The item tables' rows a mini-batch does not touch
        keep their moments (lazy, as torch's ``SparseAdam``); the bias
        corrections count every mini-batch of every worker and epoch.
    adam_betas, adam_eps: Adam's moment decay rates (beta1, beta2) and epsilon.
    gru_cell: ``"reset-after"`` (default, the official PyTorch GRU4Rec and
        cuDNN: the reset gate scales the recurrent product, bias included; a
        second, recurrent bias ``bh{l}`` per layer) or ``"reset-before"`` (the
        original Theano GRU4Rec, one bias). Layer 0 fed by one-hot item ids is
        always reset-before, as in the official code.
    Weights are initialised as the official code does (each gate block uniform
    in +-sqrt(6 / (fan_in + fan_out)), item tables +-sqrt(6 / (N + H)), biases
    zero), drawn from ``random_state`` (the official code draws them from a
    fixed seed; here the seed covers them, dropout and sampling alike).
    feature_mode, id_dropout: item features (``fit(..., item_features=...)``,
        ``grurec.ItemFeatures``, docs/features.md). ``feature_mode="input"``:
        an item's input row is its id row plus a feature projection;
        ``"output"``: its scoring vector is ``W_y`` row plus a feature
        projection (items added with ``add_items`` are then ranked by their
        features); ``"both"``: the two, each with its own feature tables.
        ``id_dropout``: the probability that a training row's id part is
        dropped, so the features learn to stand alone (cold items). No effect
        without features.
    num_threads: 0 = all cores. random_state: seed (None = fresh entropy).
    parallel: how threads share training. ``"hogwild"`` (default): each thread
        runs its own stream of session-parallel mini-batches over every
        num_threads-th session, updating the shared weights without locks
        (as word2vec and fastText do); scales with cores, and results vary
        slightly from run to run with more than one thread. ``"sync"``: one
        stream, the matrix products split across threads; the published
        algorithm step for step, but it scales poorly at GRU4Rec's small
        batch sizes. With one thread both are the same, and a fixed
        random_state gives identical weights.
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
        feature_mode: str = "input",
        id_dropout: float = 0.0,
        num_threads: int = 0,
        random_state: Optional[int] = None,
        show_progress: bool = True,
        parallel: str = "hogwild",
    ):
        # Stored as given; _check_params() converts and checks them (also in
        # fit(), so values assigned after construction are checked too).
        self.layers = layers
        self.loss = loss
        self.elu_param = elu_param
        self.bpreg = bpreg
        self.logq = logq
        self.batch_size = batch_size
        self.n_sample = n_sample
        self.sample_alpha = sample_alpha
        self.embedding = embedding
        self.constrained_embedding = constrained_embedding
        self.dropout_p_embed = dropout_p_embed
        self.dropout_p_hidden = dropout_p_hidden
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.n_epochs = n_epochs
        self.momentum_type = momentum_type
        self.optimizer = optimizer
        self.adam_betas = adam_betas
        self.adam_eps = adam_eps
        self.gru_cell = gru_cell
        self.feature_mode = feature_mode
        self.id_dropout = id_dropout
        self.num_threads = num_threads
        self.random_state = random_state
        self.show_progress = show_progress
        self.parallel = parallel
        self._check_params()
        super().__init__()
        self.params: dict[str, np.ndarray] = {}
        self._topk_index = None  # prepare_serving's TopkIndex of W_y, b_y
        self.epochs_trained = 0
        self.history: list[dict] = []
        self.best_epoch: Optional[int] = None
        self.interrupted = False  # the last fit was cut short (on_interrupt="keep")
        self.item_features = None  # the fitted features' encoding rules (FeatureSpec)
        self._feat: dict[str, np.ndarray] = {}  # encoded features in item order (docs/features.md)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GRU4Rec":
        """A model with preset ``name``'s hyperparameters (``grurec.presets``:
        the official parameter files such as ``"rsc15_xe_shared_100"`` and
        ``"retailrocket_bprmax_shared"``, and the settings grurec's search
        found), any of them overridden by keyword:
        ``GRU4Rec.from_preset("rsc15_xe_shared_100", n_epochs=5, num_threads=2)``."""
        from . import presets

        return cls(**dict(presets.get(name), **overrides))

    @classmethod
    def from_params(cls, params, **overrides) -> "GRU4Rec":
        """A model from a dict of hyperparameters (``grurec.tune``'s
        ``best_params``, a JSON file's contents) or a ``grurec.presets.Preset``
        (its ``params``), any of them overridden by keyword. A name that is
        not a GRU4Rec argument raises ValueError."""
        import inspect
        from collections.abc import Mapping

        p = getattr(params, "params", params)
        if not isinstance(p, Mapping):
            raise TypeError(f"params: expected a dict or a Preset, got {type(params).__name__}")
        p = dict(p, **overrides)
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(k for k in p if k not in known)
        if unknown:
            raise ValueError(f"params: {unknown[0]!r} is not a {cls.__name__} hyperparameter; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**p)

    # ------------------------------------------------------------------ setup
    def _check_params(self) -> None:
        """Convert every hyperparameter to its type and check its range; the
        error names the hyperparameter. Integers may be given as whole floats
        (2.0) or NumPy scalars, never as bools, strings or fractions."""
        def bad(name, why):
            raise ValueError(f"{name}: {why}, got {getattr(self, name)!r}")

        lay = self.layers
        lay = list(lay) if isinstance(lay, (list, tuple)) or (
            isinstance(lay, np.ndarray) and lay.ndim == 1) else [lay]
        lay = [_as_int("layers", h, 1) for h in lay]
        # A list that is already what it would become stays the same object
        # (sklearn.base.clone checks that __init__ stores what it is given).
        if not (type(self.layers) is list and self.layers == lay
                and all(type(h) is int for h in self.layers)):
            self.layers = lay
        for name in ("batch_size", "n_sample", "embedding", "n_epochs", "num_threads"):
            setattr(self, name, _as_int(name, getattr(self, name), 0))
        for name in ("elu_param", "bpreg", "logq", "sample_alpha", "momentum", "learning_rate",
                     "dropout_p_embed", "dropout_p_hidden", "id_dropout", "adam_eps"):
            setattr(self, name, _as_float(name, getattr(self, name)))
        for name in ("constrained_embedding", "show_progress"):
            setattr(self, name, _as_bool(name, getattr(self, name)))
        rs = self.random_state
        if not (rs is None or isinstance(rs, (np.random.Generator, np.random.BitGenerator,
                                              np.random.SeedSequence))):
            if isinstance(rs, (bool, np.bool_)) or not isinstance(rs, numbers.Integral):
                raise TypeError(f"random_state: must be None, an integer >= 0 or a NumPy "
                                f"Generator/SeedSequence, got {rs!r} ({type(rs).__name__})")
            if rs < 0:
                bad("random_state", "must be >= 0")
        for name, choices in (("loss", LOSSES), ("parallel", PARALLEL),
                              ("momentum_type", MOMENTUM_TYPES), ("optimizer", OPTIMIZERS),
                              ("gru_cell", GRU_CELLS),
                              ("feature_mode", FEATURE_MODES)):
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in choices:
                bad(name, f"must be one of {choices}")
        if not self.layers or any(h < 1 for h in self.layers):
            bad("layers", "needs one or more positive layer sizes")
        for name in ("elu_param", "bpreg", "logq", "sample_alpha", "momentum"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                bad(name, "must be a finite number >= 0")
        if self.momentum >= 1:
            bad("momentum", "must be < 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            bad("learning_rate", "must be > 0")
        betas = self.adam_betas
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            bad("adam_betas", "must be two numbers (beta1, beta2), each in [0, 1)")
        betas = [_as_float("adam_betas", b) for b in betas]
        if not all(0 <= b < 1 for b in betas):
            bad("adam_betas", "must be two numbers (beta1, beta2), each in [0, 1)")
        # A list, as layers (and as a model file or JSON gives it back)
        if not (type(self.adam_betas) is list and self.adam_betas == betas):
            self.adam_betas = betas
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            bad("adam_eps", "must be > 0")
        for name in ("dropout_p_embed", "dropout_p_hidden", "id_dropout"):
            v = getattr(self, name)
            if not (0 <= v < 1):
                bad(name, "must be in [0, 1)")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1")
        if self.n_sample < 0:
            bad("n_sample", "must be >= 0")
        if self.embedding < 0:
            bad("embedding", "must be 0 (one-hot input) or a positive size")
        if self.n_epochs < 0:
            bad("n_epochs", "must be >= 0")
        if self.num_threads < 0:
            bad("num_threads", "must be >= 0 (0 = all cores)")
        if self.loss != "cross-entropy" and self.n_sample == 0 and self.batch_size == 1:
            raise ValueError("loss: ranking losses need negatives: n_sample > 0 or batch_size > 1")

    @property
    def mode(self) -> int:
        if self.constrained_embedding:
            return 2
        return 1 if self.embedding > 0 else 0

    def _uses_vel(self) -> bool:
        """Whether every weight has a velocity buffer (``_vel``): Adagrad's
        momentum, or Adam's first moment (its second is in ``_opt``)."""
        return self.optimizer == "adam" or self.momentum > 0

    def _reset_after(self, layer: int) -> bool:
        """Whether layer ``layer`` is a reset-after cell (has a bias ``bh{layer}``)."""
        return self.gru_cell == "reset-after" and (layer > 0 or self.mode != 0)

    def _init_params(self, n_items: int, rng: np.random.Generator) -> None:
        def uniform(rows, cols):
            s = math.sqrt(6.0 / (rows + cols))
            return rng.uniform(-s, s, (rows, cols)).astype(np.float32)

        def gate_blocks(rows, H):  # each gate block initialised on its own fan
            return np.concatenate([uniform(rows, H) for _ in range(3)], axis=1)

        p: dict[str, np.ndarray] = {}
        HL = self.layers[-1]
        in_dim = {0: n_items, 1: self.embedding, 2: HL}[self.mode]
        if self.mode == 1:
            p["emb"] = uniform(n_items, self.embedding)
        for l, H in enumerate(self.layers):
            p[f"W_ih{l}"] = gate_blocks(in_dim, H)
            p[f"W_hh{l}"] = gate_blocks(H, H)
            p[f"b{l}"] = np.zeros(3 * H, np.float32)
            if self._reset_after(l):
                p[f"bh{l}"] = np.zeros(3 * H, np.float32)
            in_dim = H
        p["W_y"] = uniform(n_items, HL)
        p["b_y"] = np.zeros(n_items, np.float32)
        self.params = p
        self._topk_index = None  # prepare_serving's snapshot belongs to the old weights
        self._opt = {k: np.zeros_like(v) for k, v in p.items()}
        self._vel = {k: np.zeros_like(v) for k, v in p.items()} if self._uses_vel() else {}
        self._opt_step = 0  # Adam's steps so far (its bias corrections)
        self._opt_of = self.optimizer  # whose state _opt and _vel hold

    def _param_shapes(self, n_items: int) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight ``_init_params`` creates (model files
        are checked against it before any weight is used)."""
        HL = self.layers[-1]
        in_dim = {0: n_items, 1: self.embedding, 2: HL}[self.mode]
        shapes: dict[str, tuple[int, ...]] = {}
        if self.mode == 1:
            shapes["emb"] = (n_items, self.embedding)
        for l, H in enumerate(self.layers):
            shapes[f"W_ih{l}"] = (in_dim, 3 * H)
            shapes[f"W_hh{l}"] = (H, 3 * H)
            shapes[f"b{l}"] = (3 * H,)
            if self._reset_after(l):
                shapes[f"bh{l}"] = (3 * H,)
            in_dim = H
        shapes["W_y"] = (n_items, HL)
        shapes["b_y"] = (n_items,)
        shapes.update(self._feature_shapes())
        return shapes

    def _train_window(self) -> int:
        """Steps per back-propagation window: 1 for GRU4Rec (UserGRU: bptt)."""
        return 1

    def _readout_args(self) -> Optional[dict]:
        """The attention readout's weights as train_epoch takes them (NARM), or None."""
        return None

    def _row_width(self) -> int:
        """Width of an item's input row: what the feature tables project to."""
        return {0: 3 * self.layers[0], 1: self.embedding, 2: self.layers[-1]}[self.mode]

    def _feat_in(self) -> bool:
        """Item features enter the input rows."""
        return bool(self.__dict__.get("_feat")) and self.feature_mode in ("input", "both")

    def _feat_out(self) -> bool:
        """Item features enter the scoring vectors."""
        return bool(self.__dict__.get("_feat")) and self.feature_mode in ("output", "both")

    def _shared_features(self) -> bool:
        """feature_mode "both" with the shared embedding: the input row of an
        item is its scoring vector, features included (one set of tables,
        ``feat_out_*``), as the id part is shared."""
        return self.feature_mode == "both" and self.mode == 2

    def _feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Feature weights (with features): input side ``feat_T{f}``
        [V_f + 1, I] per categorical field and ``feat_W_z`` [Z, I]; output
        side ``feat_out_T{f}`` [V_f + 1, H_L] and ``feat_out_W_z`` [Z, H_L]."""
        out: dict[str, tuple[int, ...]] = {}
        for side, on, width in (("feat_", self._feat_in, self._row_width),
                                ("feat_out_", self._feat_out, lambda: self.layers[-1])):
            if not on() or (side == "feat_" and self._shared_features()):
                continue
            w = width()
            out.update({f"{side}T{f}": (len(v) + 1, w)
                        for f, v in enumerate(self.item_features.vocab.values())})
            if self._feat["z"].shape[1]:
                out[f"{side}W_z"] = (self._feat["z"].shape[1], w)
        return out

    def _init_feature_params(self, rng: np.random.Generator) -> None:
        """Feature weights, drawn from their own stream (a jumped copy of the
        model's), so the id weights and training draws are those of a model
        without features; row 0 of every table (unknown categories) is zero."""
        import copy

        bg = copy.deepcopy(rng.bit_generator)
        jump = hasattr(bg, "jumped")
        # The input side's stream as before output features existed; the
        # output side's its own (two jumps).
        frng = {"feat_": np.random.Generator(bg.jumped() if jump else bg),
                "feat_out_": np.random.Generator(bg.jumped(2) if jump else copy.deepcopy(bg))}
        for k, (rows, cols) in self._feature_shapes().items():
            r = frng["feat_out_" if k.startswith("feat_out_") else "feat_"]
            s = math.sqrt(6.0 / (rows + cols))
            w = r.uniform(-s, s, (rows, cols)).astype(np.float32)
            if k.startswith(("feat_T", "feat_out_T")):
                w[0] = 0
            self.params[k] = w
            self._opt[k] = np.zeros_like(w)
            if self._uses_vel():
                self._vel[k] = np.zeros_like(w)

    def _set_features(self, enc, spec) -> None:
        """Keep encoded features (``EncodedFeatures`` in item order) and the
        encoding rules; None clears them."""
        self._input_cache = self._output_cache = None
        if enc is None:
            self.item_features, self._feat = None, {}
            return
        feat = {"z": np.ascontiguousarray(enc.z, np.float32)}
        for f, (o, i) in enumerate(zip(enc.cat_offsets, enc.cat_ids)):
            feat[f"off{f}"] = np.ascontiguousarray(o, np.int64)
            feat[f"ids{f}"] = np.ascontiguousarray(i, np.int32)
        self.item_features, self._feat = spec, feat

    def _feature_args(self, triple, side: str = "input") -> Optional[dict]:
        """The features of one side (``"input"`` or ``"output"``) as
        train_epoch / feature_tower take them, or None when that side has none."""
        if not (self._feat_in() if side == "input" else self._feat_out()):
            return None
        pre = "feat_" if side == "input" and not self._shared_features() else "feat_out_"
        n_fields = len(self.item_features.categorical)
        fields = [(self._feat[f"off{f}"], self._feat[f"ids{f}"], triple(f"{pre}T{f}"))
                  for f in range(n_fields)]
        has_z = f"{pre}W_z" in self.params
        return {"fields": fields, "z": self._feat["z"] if has_z else None,
                "W_z": triple(f"{pre}W_z") if has_z else None,
                "id_dropout": self.id_dropout}

    def _input_params(self) -> tuple[dict, int]:
        """(params, mode) for inference: with features, the id table replaced
        by the whole input table (id rows + feature projection, computed once
        per set of weights by the native tower, no dropout); the shared mode
        then reads it as a separate embedding."""
        p = self.params
        if not self._feat_in():
            return p, self.mode
        key = tuple(id(a) for a in p.values())
        cache = self.__dict__.get("_input_cache")
        if cache is not None and cache[0] == key:
            return cache[1], cache[2]
        id_name = {0: "W_ih0", 1: "emb", 2: "W_y"}[self.mode]
        args = self._feature_args(lambda k: (p[k], np.zeros_like(p[k]), None))
        N = len(self.item_ids)
        table = _core.feature_tower(np.arange(N, dtype=np.int32), p[id_name], args["fields"],
                                    args["z"], args["W_z"], None, 0.0, 0,
                                    self.num_threads or 0)["x"]
        q = dict(p)
        mode = self.mode
        if mode == 0:
            q["W_ih0"] = table
        else:
            q["emb"] = table
            mode = 1
        self._input_cache = (key, q, mode)
        return q, mode

    def _output_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(W [N, H_L], b [N]) that every scoring path ranks items with:
        ``W_y`` and ``b_y``, or with output-side features the whole scoring
        table ``W_y + feature projection`` (computed once per set of weights
        by the native tower, no dropout; the cache holds the weights it was
        computed from, so their ids stay unique while it lives)."""
        p = self.params
        if not self._feat_out():
            return p["W_y"], p["b_y"]
        key = tuple(id(a) for a in p.values())
        cache = self.__dict__.get("_output_cache")
        if cache is not None and cache[0] == key:
            return cache[1], p["b_y"]
        args = self._feature_args(lambda k: (p[k], np.zeros_like(p[k]), None), "output")
        N = len(self.item_ids)
        W = _core.feature_tower(np.arange(N, dtype=np.int32), p["W_y"], args["fields"],
                                args["z"], args["W_z"], None, 0.0, 0, self.num_threads or 0)["x"]
        self._output_cache = (key, W, dict(p))
        return W, p["b_y"]

    def _triple(self, name):
        return (self.params[name], self._opt[name], self._vel.get(name))

    # -------------------------------------------------------------------- fit
    def fit(self, data, session_col: str = "SessionId", item_col: str = "ItemId",
            time_col: str = "Time", callback: Optional[Callable[[int, float], None]] = None,
            *, valid=None, patience: Optional[int] = None, metric: str = "mrr@20",
            show_progress: Optional[bool] = None, on_interrupt: str = "raise",
            item_features=None, warm_start: bool = False):
        """Train on events for ``n_epochs`` epochs.

        ``data``: anything ``grurec.data.to_sessions`` takes: a pandas or polars
        DataFrame, a pyarrow Table, a dict of arrays, a path to a CSV/TSV/parquet
        file, or a ``SessionData`` (copied: changing it during fit is safe).
        ``callback(epoch, loss)`` runs after every epoch.

        The model trains a private copy and becomes it in one step when
        training ends; until then, and for good if training fails (a
        ``ModelFitError``, ``MemoryError``, an exception from ``callback``),
        the model stays exactly as it was, fitted or not, so threads serving
        from it meanwhile see the old model or the new one, never a mix.

        Ctrl-C (SIGINT) stops training within about a second. With
        ``on_interrupt="raise"`` (the default) ``fit`` then raises
        ``KeyboardInterrupt`` and the model is left as it was before the call.
        With ``on_interrupt="keep"`` ("stop and keep") the partly trained
        model is kept (with ``valid``: the best epoch's weights): ``fit``
        returns normally with ``interrupted`` set to True (and a warning
        logged); ``history[-1]`` is the cut-short epoch.

        Validation and early stopping (more in ``grurec.fitting``):

        valid: held-out sessions, evaluated after every epoch with
            ``grurec.evaluate`` (full ranking): events in any form ``data``
            takes (same columns), or a fraction in (0, 1): the sessions that
            start in the last ``valid`` share of the training events (by
            time) are held out, the earlier events of sessions that straddle
            that time stay in training. The model ends with the weights of
            the best epoch; ``history`` holds every epoch's ``metric`` and
            ``best_epoch`` the epoch kept.
        patience: stop after this many epochs without improvement (None:
            train all ``n_epochs``); needs ``valid``.
        metric: what "best" means: ``"mrr@K"``, ``"recall@K"`` or ``"ndcg@K"``.
        show_progress: progress bars for this call (None: ``self.show_progress``).
        item_features: a ``grurec.ItemFeatures`` (or a table it reads): the
            items' features enter as ``feature_mode`` says (docs/features.md);
            items without a row get zero features (counted, logged).
        warm_start: continue training a fitted model on ``data`` (new events)
            for ``n_epochs`` more epochs, from its weights and optimizer state
            (a model loaded from a file saved without ``optimizer=True``
            continues with fresh optimizer state, logged).
            Item ids the model does not have join the vocabulary with id rows
            initialised as ``fit`` does, feature rows from ``item_features``
            (zeros without); popularity adds the new events' counts. Items
            only added with ``add_items`` keep their zero id rows and start
            learning them. ``None`` or an empty table changes nothing. Not
            with ``valid`` (yet).
        """
        from .fitting import ValidationPlan

        if on_interrupt not in ("raise", "keep"):
            raise ValueError(f"on_interrupt: must be 'raise' or 'keep', got {on_interrupt!r}")
        self._check_params()
        progress = self.show_progress if show_progress is None else _as_bool(
            "show_progress", show_progress)
        if _as_bool("warm_start", warm_start):
            if valid is not None or patience is not None:
                raise ValueError("warm_start: valid / patience are not supported with "
                                 "warm_start yet")
            return self._fit_warm(data, session_col, item_col, time_col, callback, progress,
                                  on_interrupt, item_features)
        plan = ValidationPlan.create(valid, patience, metric)
        if item_features is not None:
            from .features import ItemFeatures

            if not isinstance(item_features, ItemFeatures):
                item_features = ItemFeatures(item_features, item_col)
        sd = to_sessions(data, session_col, item_col, time_col)  # private arrays
        if plan is not None:
            sd = plan.carve(sd, session_col, item_col, time_col)
        n_short = int((sd.lengths() < 2).sum())
        # Items seen only in single-event sessions are never trained: they
        # leave the vocabulary (recommend() then treats them as unknown).
        sd = drop_short_sessions(sd).compact_items()
        if sd.n_sessions == 0:
            raise ValueError("no session has 2 or more events: nothing to learn from")
        if n_short:
            log.info("skipped %d sessions with a single event", n_short)
        work = self._snapshot()  # other threads keep using the old model meanwhile
        try:
            finished = work._fit_sessions(sd, callback, plan=plan, show_bar=progress,
                                          item_features=item_features)
        except KeyboardInterrupt:
            # Ctrl-C in Python code (between epochs, in the callback, in the
            # validation): "keep" keeps the copy only if it is a whole model
            # (the best epoch's, with validation), never a half-built one.
            if on_interrupt != "keep":
                raise
            if plan is not None:
                plan.restore_best(work)
            if not work._whole():
                raise
            finished = False
            if work.history:
                work.history[-1]["interrupted"] = True
        if plan is not None:  # the best epoch's weights, also when interrupted
            plan.restore_best(work)
        if not finished:
            if on_interrupt == "keep" and not work._whole():
                raise ModelFitError("training was interrupted and the weights it leaves are "
                                    "NaN or infinite; the model was left as it was before fit()")
            if on_interrupt == "raise":
                raise KeyboardInterrupt(
                    f"fit interrupted in epoch {len(work.history)}; the model is unchanged "
                    "(pass on_interrupt='keep' to keep what it learned)")
            log.warning("training interrupted in epoch %d; on_interrupt='keep': the model "
                        "keeps what it learned (interrupted=True)", len(work.history))
        work.interrupted = not finished
        self._publish(work)  # the one step that makes the new model this one
        return self

    def _fit_warm(self, data, session_col, item_col, time_col, callback, progress,
                  on_interrupt, item_features):
        """fit(..., warm_start=True): see ``fit``."""
        self._check_fitted()
        self._check_weights_match()
        if data is None or (hasattr(data, "__len__") and not isinstance(data, (str, bytes))
                            and len(data) == 0):
            log.info("warm_start: no new events; the model is unchanged")
            return self
        if item_features is not None:
            from .features import ItemFeatures

            if not self.__dict__.get("_feat"):
                raise ValueError("warm_start: the model was fitted without item features; "
                                 "features cannot be added by continuing (refit with them)")
            if not isinstance(item_features, ItemFeatures):
                item_features = ItemFeatures(item_features, item_col)
        sd = drop_short_sessions(to_sessions(data, session_col, item_col, time_col)).compact_items()
        if sd.n_sessions == 0:
            log.info("warm_start: no session has 2 or more events; the model is unchanged")
            return self
        work = self._snapshot()  # trains copies: readers keep the old model meanwhile
        work.params = {k: v.copy() for k, v in self.params.items()}
        opt, vel = self.__dict__.get("_opt") or {}, self.__dict__.get("_vel") or {}
        state_of = self.__dict__.get("_opt_of", "adagrad")
        if set(opt) != set(self.params):
            log.info("warm_start: the model has no optimizer state (a file saved without "
                     "optimizer=True); continuing with fresh optimizer state")
            opt, vel = {}, {}
        elif state_of != self.optimizer:
            log.info("warm_start: the optimizer state is %s's and the model now uses %s; "
                     "continuing with fresh optimizer state", state_of, self.optimizer)
            opt, vel = {}, {}
        if not opt:
            work._opt_step = 0
        work._opt_of = self.optimizer
        work._opt = {k: opt[k].copy() if k in opt else np.zeros_like(v)
                     for k, v in work.params.items()}
        work._vel = {k: vel[k].copy() if k in vel else np.zeros_like(v)
                     for k, v in work.params.items()} if self._uses_vel() else {}
        work._topk_index = None
        work._input_cache = work._output_cache = None
        work.history = list(self.history)
        if work.popularity is None:
            work.popularity = np.zeros(work.n_items, np.int64)
        rs = self.random_state
        rng = np.random.default_rng(
            [int(rs), self.epochs_trained, self.n_items] if isinstance(rs, numbers.Integral)
            else rs)  # an int seed: a stream of its own per continuation
        sd_ids = np.asarray(sd.item_ids)
        new = sd_ids[work._lookup(sd_ids) < 0]
        if len(new):
            work._add_trained_items(new, item_features, rng)
        items = work._lookup(sd_ids)[sd.items].astype(np.int32)
        work.popularity = work.popularity + np.bincount(items, minlength=work.n_items)
        try:
            finished = work._train_epochs(sd.offsets, items, int(sd.n_events - sd.n_sessions),
                                          rng, callback, None, progress)
        except KeyboardInterrupt:
            if on_interrupt != "keep" or not work._whole():
                raise
            finished = False
        if not finished:
            if on_interrupt == "raise" or not work._whole():
                raise KeyboardInterrupt(f"fit interrupted in epoch {len(work.history)}; the "
                                        "model is unchanged")
            log.warning("training interrupted; on_interrupt='keep': keeping what it learned")
        work.interrupted = not finished
        self._publish(work)
        return self

    def _add_trained_items(self, new, item_features, rng) -> None:
        """warm_start's new ids: grown as ``add_items`` grows them (feature
        rows from ``item_features`` where it has them), then id rows drawn
        as ``_init_params`` draws them."""
        N0 = len(self.item_ids)
        if self.__dict__.get("_feat") and item_features is not None:
            have = item_features._positions(new) >= 0
            if have.any():
                ids, enc = self.item_features.encode_new(item_features.table(new[have]),
                                                         item_features.item_col)
                self._grow(ids, enc)
            new = new[~have]
        if len(new) and self.__dict__.get("_feat"):
            log.info("warm_start: %d new items have no feature row (their features are zero)",
                     len(new))
        if len(new):
            self._grow(new, None)
        N = len(self.item_ids)

        def uniform(cols):
            s = math.sqrt(6.0 / (N + cols))
            return rng.uniform(-s, s, (N - N0, cols)).astype(np.float32)

        if self.mode == 0:
            H = self.layers[0]
            self.params["W_ih0"][N0:] = np.concatenate([uniform(H) for _ in range(3)], axis=1)
        elif self.mode == 1:
            self.params["emb"][N0:] = uniform(self.embedding)
        self.params["W_y"][N0:] = uniform(self.layers[-1])

    def _fit_sessions(self, sd: SessionData, callback, plan=None,
                      show_bar: Optional[bool] = None, item_features=None) -> bool:
        """Train ``self`` (a private copy, see ``fit``) from scratch; False
        when Ctrl-C cut training short. ``plan``: a ``grurec.fitting``
        validation plan, run after every epoch (it may stop training)."""
        if show_bar is None:
            show_bar = self.show_progress
        self.item_ids = np.asarray(sd.item_ids)
        n_items = len(sd.item_ids)
        rng = np.random.default_rng(self.random_state)
        self._set_features(None, None)
        self._init_params(n_items, rng)
        if item_features is not None:
            from .features import FeatureSpec

            enc = item_features.encode(self.item_ids)
            self._set_features(enc, FeatureSpec(item_features.spec()))
            self._init_feature_params(rng)
        self.popularity = np.bincount(sd.items, minlength=n_items).astype(np.int64)
        self.epochs_trained = 0
        self.history = []
        self.best_epoch = None
        return self._train_epochs(sd.offsets, sd.items, int(sd.n_events - sd.n_sessions), rng,
                                  callback, plan, show_bar)

    def _train_epochs(self, offsets, items, n_train_events, rng, callback, plan,
                      show_bar) -> bool:
        """``n_epochs`` epochs over sessions ``offsets`` / ``items`` (model
        indices) from the current weights and optimizer state, in place;
        epochs are numbered after ``epochs_trained``. False when Ctrl-C cut
        training short."""
        pop = self.popularity.astype(np.float32)
        e0 = self.epochs_trained
        L = len(self.layers)
        args = (
            [self._triple(f"W_ih{l}") for l in range(L)],
            [self._triple(f"W_hh{l}") for l in range(L)],
            [self._triple(f"b{l}") for l in range(L)],
            [self._triple(f"bh{l}") if self._reset_after(l) else None for l in range(L)],
            self._triple("W_y"),
            self._triple("b_y"),
            self._triple("emb") if self.mode == 1 else None,
        )
        features = self._feature_args(self._triple)
        out_features = self._feature_args(self._triple, "output")
        readout = self._readout_args()
        for epoch in range(e0, e0 + self.n_epochs):
            cfg = dict(
                loss=self.loss, elu_param=self.elu_param, bpreg=self.bpreg, logq=self.logq,
                batch_size=self.batch_size, n_sample=self.n_sample,
                sample_alpha=self.sample_alpha, mode=self.mode,
                dropout_p_embed=self.dropout_p_embed, dropout_p_hidden=self.dropout_p_hidden,
                learning_rate=self.learning_rate, momentum=self.momentum,
                momentum_type=self.momentum_type, optimizer=self.optimizer,
                adam_beta1=self.adam_betas[0], adam_beta2=self.adam_betas[1],
                adam_eps=self.adam_eps, opt_step=self.__dict__.get("_opt_step", 0), seed=int(rng.integers(0, 2**63)), num_threads=self.num_threads,
                workers=(self.num_threads or _core.default_num_threads())
                if self.parallel == "hogwild" else 1,
                bptt=self._train_window(),
                weights=self.__dict__.get("_fit_weights"),  # UserGRU's value column
            )
            bar = None
            if show_bar:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_train_events, desc=f"epoch {epoch + 1}/{e0 + self.n_epochs}",
                           unit="ev", unit_scale=True, leave=True)
            seen = [0]

            def progress(events, loss_sum, batches):
                if bar is not None:
                    bar.update(events - seen[0])
                    # A sum of 0 is a frame without a loss reading (the native
                    # loop sends 0 while it waits for other workers): keep the
                    # last one shown rather than flash loss=0.0000.
                    if loss_sum > 0:
                        bar.set_postfix(loss=f"{loss_sum / max(events, 1):.4f}", refresh=False)
                seen[0] = events
                return True

            t0 = time.perf_counter()
            r = _core.train_epoch(*args, cfg, offsets, items, pop, progress,
                                  **({"features": features} if features else {}),
                                  **({"out_features": out_features} if out_features else {}),
                                  **({"readout": readout} if readout else {}))
            dt = time.perf_counter() - t0
            self._opt_step = r.get("opt_step", 0)
            if bar is not None:
                bar.close()
            if r["status"] == "interrupted":  # fit() checks the weights if it keeps them
                self.history.append(dict(epoch=epoch + 1, loss=r["loss_sum"] / max(r["events"], 1),
                                         events=r["events"], seconds=dt, interrupted=True,
                                         events_per_s=r["events"] / dt if dt else 0.0))
                return False
            # A failed epoch raises: fit() then drops this copy, and the
            # model keeps its previous state (never NaN/inf weights).
            if not all(_all_finite(a) for a in self.params.values()):
                # An update overflowed although its loss was finite (non-finite
                # gradients through saturated units, a step near the float32 limit).
                raise ModelFitError(
                    f"the weights became NaN or infinite in epoch {epoch + 1}, mini-batch "
                    f"{r['batches'] + 1} or earlier; the model was left as it was before fit() "
                    "(try a lower learning_rate)")
            if r["status"] == "nonfinite":
                raise ModelFitError(
                    f"loss became NaN or infinite in epoch {epoch + 1}, mini-batch "
                    f"{r['batches'] + 1}; the model was left as it was before fit() (try a "
                    "lower learning_rate)")
            loss = r["loss_sum"] / max(r["events"], 1)
            self.history.append(dict(epoch=epoch + 1, loss=loss, events=r["events"],
                                     seconds=dt, events_per_s=r["events"] / dt if dt else 0.0))
            self.epochs_trained += 1
            log.info("epoch %d: loss %.4f, %.0f events/s", epoch + 1, loss, r["events"] / dt)
            stop = plan is not None and plan.after_epoch(self)
            if callback is not None:
                callback(epoch + 1, loss)
            if stop:
                break
        return True

    # -------------------------------------------------------------- inference
    def _check_fitted(self):
        if not self.params:
            raise RuntimeError("the model is not fitted: call fit() first")

    def _whole(self) -> bool:
        """Weights, optimizer state and popularity all belong to item_ids,
        and the weights are finite (a state fit may publish)."""
        try:
            self._check_weights_match()
        except (RuntimeError, ValueError, TypeError):
            return False
        return (self.popularity is not None and len(self.popularity) == len(self.item_ids)
                and set(self._opt) == set(self.params)
                and all(_all_finite(a) for a in self.params.values()))

    def _check_weights_match(self) -> None:
        """The weights fit the hyperparameters that shape them (``layers``,
        ``embedding``, ``constrained_embedding``): assigning another value
        after fit would make a file ``load`` rejects and live sessions of the
        wrong size. Raises ValueError naming what changed."""
        self._check_fitted()
        want = self._param_shapes(len(self.item_ids))
        have = {k: tuple(v.shape) for k, v in self.params.items()}
        if have != want:
            raise ValueError(
                "the weights no longer match the hyperparameters (layers="
                f"{self.layers}, embedding={self.embedding}, constrained_embedding="
                f"{self.constrained_embedding}): were they changed after fit()? Set them back "
                "or refit")

    def _states(self, offsets: np.ndarray, items: np.ndarray, all_prefixes: bool = False,
                num_threads: Optional[int] = None) -> np.ndarray:
        """Last-layer hidden states, in C++ with the GIL released: after each
        session (offsets [S+1] into item indices, -1 = unknown, skipped), or
        after every prefix that has a next event (``all_prefixes``; rows
        ``offsets[s] - s + t``). The state starts at zero for every session."""
        self._check_fitted()
        params, mode = self._input_params()
        return _core.session_states(params, self.layers, mode,
                                    np.ascontiguousarray(offsets, np.int64),
                                    np.ascontiguousarray(items, np.int32), all_prefixes,
                                    self.num_threads if num_threads is None else num_threads)

    def _step(self, states: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        """One GRU step for a batch of item indices; updates ``states`` in place
        and returns the last layer's output (B, H_L)."""
        p, mode = self._input_params()
        B = len(items)
        x = None
        if mode == 1:
            x = p["emb"][items]
        elif mode == 2:
            x = p["W_y"][items]
        for l, H in enumerate(self.layers):
            h_out = np.empty((1, B, H), np.float32)
            rh = np.empty((1, B, H), np.float32)
            gates = np.empty((1, B, 3 * H), np.float32)
            if l == 0 and mode == 0:
                gates[0] = p["W_ih0"][items] + p["b0"]
                _core.gru_forward_gates(h_out, gates, rh, states[l], p[f"W_hh{l}"], 1)
            else:
                _core.gru_forward(h_out, gates, rh, np.ascontiguousarray(x[None]), states[l],
                                  p[f"W_ih{l}"], p[f"W_hh{l}"], p[f"b{l}"], p.get(f"bh{l}"), 1)
            states[l] = h_out[0]
            x = h_out[0]
        return x

    def score_items(self, h: np.ndarray) -> np.ndarray:
        """Scores of every item for final hidden states ``h`` (B, H_L): a dense
        (B, n_items) matrix; ``recommend`` never builds one."""
        W, b = self._output_params()
        return h @ W.T + b

    def _score(self, rows, items, n):
        # score_prefixes(): dense scores of every item after each prefix.
        offsets = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        return self.score_items(self._states(offsets, items)).astype(np.float32, copy=False)

    def _recommend_topk(self, rows, idx, n_sess, k, exclude_seen, candidate):
        # Final states in C++, then the blocked top-k over the output table:
        # no (n_sessions, n_items) matrix for any number of sessions.
        from .topk import _topk_csr

        offsets = np.searchsorted(rows, np.arange(n_sess + 1)).astype(np.int64)
        h = self._states(offsets, idx)
        ex_off = ex_idx = None
        if exclude_seen:
            key = np.unique(rows.astype(np.int64) * self.n_items + idx)  # sorted, deduplicated
            ex_idx = key % self.n_items
            ex_off = np.searchsorted(key // self.n_items, np.arange(n_sess + 1)).astype(np.int64)
        allowed = None if candidate.all() else candidate
        W, b = self._output_params()
        return _topk_csr(h, W, b, k, ex_off, ex_idx, allowed, self.num_threads,
                         index=self._topk_index)

    def explain(self, sequence, items=None, k: int = 10, coerce_ids: bool = False):
        """Why the model recommends what it does after ``sequence`` (item ids,
        oldest first): for each of the top ``k`` items (or the given
        ``items``), the score change when each click is left out, computed in
        C++ in one batched run (``grurec.explain``). Returns an
        ``Explanation``; clicks on unknown items contribute 0."""
        from .explain import explain

        return explain(self, sequence, items, k, coerce_ids)

    def item_vectors(self) -> np.ndarray:
        """float32 (n_items, H): the output item table ``W_y`` (a copy), row i
        for ``item_ids[i]``; with ``constrained_embedding`` also the input
        vectors; with output-side item features the scoring vectors (``W_y``
        plus the feature projection). ``similar_items`` ranks by their cosine
        similarity. (The per-item output bias ``params["b_y"]`` is not part
        of them.)"""
        self._check_fitted()
        return self._output_params()[0].copy()

    def prepare_serving(self, num_threads: int = 0) -> "GRU4Rec":
        """Prepare the output item table for fast top-k: ``recommend`` and live
        sessions then score against a ``grurec.TopkIndex`` of it, whose int8
        copy makes calls with few queries (a live session's
        ``recommend``) up to ~3x faster on large catalogues, with identical
        results. It is a snapshot: ``fit`` drops it (call this again after
        training), and weights changed by hand in ``params`` do not reach it.
        Costs about n_items * (5 H + 20) bytes. Returns the model."""
        from .topk import TopkIndex

        self._check_fitted()
        W, b = self._output_params()
        self._topk_index = TopkIndex(W, b, num_threads=num_threads)
        return self

    def add_items(self, table, item_col: Optional[str] = None, *, items=None) -> "GRU4Rec":
        """Add items never seen in training (cold items), with no retraining:
        ``table`` holds their features, in any form ``grurec.ItemFeatures``
        reads, with the columns the model was fitted with (``item_col``:
        default, the fitted features' item column). Each new item gets a
        scoring vector from its features alone (id row and bias zero), joins
        ``item_ids`` (popularity 0), and from then on ``recommend``,
        ``evaluate``, live sessions and ``UserGRU.recommend`` rank it with the
        others, and ``filter_items`` / ``exclude_seen`` apply to it; with
        ``feature_mode="both"`` a click on it also feeds its input features
        to the GRU. Categories not in the training vocabularies count as
        unknown (logged). Needs a model fitted with ``item_features`` and
        ``feature_mode`` ``"output"`` or ``"both"``; an id the model already
        has raises ValueError. A ``prepare_serving`` index is rebuilt.
        ``table`` may also be a ``grurec.ItemFeatures``: ``items`` then picks
        its rows (default: every item of it the model does not have).
        Returns the model."""
        self._check_fitted()
        if not self.__dict__.get("_feat"):
            raise ValueError("add_items: the model has no item features; fit it with "
                             "item_features=... and feature_mode='output' or 'both'")
        if not self._feat_out():
            raise ValueError("add_items: with feature_mode='input' new items would get input "
                             "rows only and nothing to score them with; fit with "
                             "feature_mode='output' or 'both' to serve cold items")
        from .features import ItemFeatures

        if isinstance(table, ItemFeatures):
            if items is None:
                have = self._lookup(list(table.item_ids), coerce_ids=True)
                items = table.item_ids[have < 0]
            item_col = table.item_col
            table = table.table(items)
        elif items is not None:
            raise ValueError("add_items: items= picks rows of an ItemFeatures; for a table, "
                             "pass only the new items' rows")
        ids, enc = self.item_features.encode_new(table, item_col)
        if len(ids) == 0:
            return self
        kind_int = self.item_ids.dtype.kind in "iu"
        if kind_int != (ids.dtype.kind in "iu"):
            raise TypeError(f"add_items: the model's item ids are "
                            f"{'integers' if kind_int else 'strings'}, the new ones "
                            f"{'integers' if not kind_int else 'strings'} (e.g. {str(ids[0])!r})")
        known = self._lookup(list(ids), lambda j: f"add_items row {j}")
        if (known >= 0).any():
            from .features import _py

            j = int(np.flatnonzero(known >= 0)[0])
            raise ValueError(f"add_items: item {_py(ids[j])!r} is already in the model (add only "
                             "new items; fit(..., warm_start=True) trains known ones)")
        for c, n in enc.n_unknown.items():
            if n:
                log.info("add_items: %d values of %r are not in the training vocabulary "
                         "(they add nothing)", n, c)
        work = self._snapshot()
        work._grow(ids, enc)
        if work._topk_index is not None:
            work.prepare_serving(self.num_threads)
        self._publish(work)
        return self

    def _grow(self, ids, enc) -> None:
        """Append items ``ids`` with encoded features ``enc`` (or None: zero
        features): zero id rows, biases and optimizer state, popularity 0.
        New arrays throughout (readers of the old model keep theirs)."""
        n_new = len(ids)
        N = len(self.item_ids)
        new_ids = np.asarray(ids)
        if self.item_ids.dtype.kind in "iu":
            new_ids = new_ids.astype(self.item_ids.dtype)
        self.item_ids = np.concatenate([self.item_ids, new_ids])
        by_items = [k for k, shape in self._param_shapes(N).items()
                    if shape[0] == N and k in ("W_y", "b_y", "emb", "W_ih0")
                    and not (k == "W_ih0" and self.mode != 0)]

        def grow(a):
            return np.concatenate([a, np.zeros((n_new,) + a.shape[1:], a.dtype)])

        self.params = dict(self.params)
        self._opt = dict(self._opt)
        self._vel = dict(self._vel)
        for k in by_items:
            self.params[k] = grow(self.params[k])
            for st in (self._opt, self._vel):
                if k in st:
                    st[k] = grow(st[k])
        if self.__dict__.get("_feat"):
            feat = dict(self._feat)
            z = enc.z if enc is not None else np.zeros((n_new, feat["z"].shape[1]), np.float32)
            feat["z"] = np.ascontiguousarray(np.concatenate([feat["z"], z]), np.float32)
            for f in range(len(self.item_features.categorical)):
                off, cid = feat[f"off{f}"], feat[f"ids{f}"]
                o2 = enc.cat_offsets[f] if enc is not None else np.zeros(n_new + 1, np.int64)
                c2 = enc.cat_ids[f] if enc is not None else np.zeros(0, np.int32)
                feat[f"off{f}"] = np.concatenate([off, off[-1] + o2[1:]]).astype(np.int64)
                feat[f"ids{f}"] = np.concatenate([cid, c2]).astype(np.int32)
            self._feat = feat
        self._input_cache = self._output_cache = None
        if self.popularity is not None:
            self.popularity = np.concatenate([self.popularity, np.zeros(n_new, np.int64)])

    def new_session(self) -> "LiveSession":
        """A live session: ``click(item_id)`` advances it by one GRU step,
        ``recommend(k)`` scores every item from its state. A service can keep
        thousands; each holds only its hidden state and clicked items."""
        from .session import LiveSession

        self._check_weights_match()
        return LiveSession(self)

    # ------------------------------------------------------------ model files
    def save(self, path, *, optimizer: bool = False) -> None:
        """Write the model to one file, atomically (see ``grurec.io``).

        ``optimizer=True`` also stores the optimizer state (only needed to
        continue training). Item ids must be integers or strings. An
        unfitted model is refused (RuntimeError); ``to_bytes`` still writes
        one (pickling and copying need that)."""
        from .io import save

        self._check_fitted()
        self._check_weights_match()
        save(self, path, optimizer=optimizer)

    def to_bytes(self, *, optimizer: bool = False) -> bytes:
        """The model file's bytes (what ``save`` writes)."""
        from .io import to_bytes

        if self.params:
            self._check_weights_match()
        return to_bytes(self, optimizer=optimizer)

    @classmethod
    def from_bytes(cls, data) -> "GRU4Rec":
        """A model from ``to_bytes`` output; ``grurec.ModelFileError`` if the
        bytes are not an intact model file."""
        from .io import from_bytes

        return from_bytes(data, cls=cls)

    def __reduce__(self):
        # Pickling (multiprocessing, Dask, copy.deepcopy) goes through the
        # model file format: the pickle holds the class and the file's bytes.
        from .io import _rebuild

        return (_rebuild, (type(self), self.to_bytes()))
