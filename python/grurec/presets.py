"""Named GRU4Rec hyperparameter sets.

Two kinds, and the name says which:

- the official GRU4Rec parameter files (Hidasi & Czapp, RecSys 2023; the
  official implementation's ``paramfiles/*_best.py``), named after the file:
  ``rsc15_xe_shared_100``, ``yoochoose_xe_shared``, ``retailrocket_bprmax_shared``,
  ``diginetica_bprmax_shared``, ``rees46_xe_shared``, ``coveo_bprmax_shared``;
  these train with the official algorithm (reset-after cell, heavy-ball momentum);
- settings grurec's own search found, named ``search_<data>_valid`` after the
  validation split they were searched on (``benchmarks/tune.py``); they record
  the cell and momentum form they were searched with.

    model = grurec.GRU4Rec.from_preset("rsc15_xe_shared_100", n_epochs=5, num_threads=2)
    grurec.presets.get("retailrocket_bprmax_shared")  # a fresh dict, to inspect or edit
    grurec.presets.describe()                          # name -> where the setting comes from
    grurec train EVENTS -o MODEL --preset rsc15_xe_shared_100 --n-epochs 5   (command line)

A preset sets every algorithm hyperparameter of ``GRU4Rec`` (a later change of
a default never changes what a preset trains); run-time options (``num_threads``,
``random_state``, ``parallel``, ``show_progress``) are left to the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Preset", "PRESETS", "USER_PRESETS", "NARM_PRESETS", "names", "get", "describe",
           "user_names", "get_user", "narm_names", "get_narm"]


@dataclass(frozen=True)
class Preset:
    name: str
    params: Mapping[str, Any]
    source: str  # "official: ..." or "grurec: ..."

    @property
    def official(self) -> bool:
        """One of the official GRU4Rec parameter files (else a grurec search result)."""
        return self.source.startswith("official:")


# What every official parameter file shares.
_OFFICIAL = dict(constrained_embedding=True, embedding=0, n_sample=2048, n_epochs=10,
                 momentum_type="heavy-ball", optimizer="adagrad", adam_betas=[0.9, 0.999],
                 adam_eps=1e-8, gru_cell="reset-after", feature_mode="input", id_dropout=0.0)


def _official(name: str, loss: str, layers: list, batch_size: int, dropout: tuple,
              learning_rate: float, momentum: float, sample_alpha: float, bpreg: float,
              elu_param: float, logq: float) -> Preset:
    params = dict(_OFFICIAL, loss=loss, layers=layers, batch_size=batch_size,
                  dropout_p_embed=dropout[0], dropout_p_hidden=dropout[1],
                  learning_rate=learning_rate, momentum=momentum, sample_alpha=sample_alpha,
                  bpreg=bpreg, elu_param=elu_param, logq=logq)
    return Preset(name, MappingProxyType(params),
                  f"official: GRU4Rec's parameter file paramfiles/{name}_best.py")


def _searched(name: str, source: str, **params: Any) -> Preset:
    # Searched without item features: their settings are the no-feature ones.
    params = dict(params, feature_mode="input", id_dropout=0.0, optimizer="adagrad",
                  adam_betas=[0.9, 0.999], adam_eps=1e-8)
    return Preset(name, MappingProxyType(params), "grurec: " + source)


PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    #         name                          loss       layers  batch (embed, hidden)  lr    mom   alpha bpreg elu logq
    _official("rsc15_xe_shared_100", "cross-entropy", [100], 32, (0.0, 0.4), 0.2, 0.2, 0.5, 0.0, 0.0, 1.0),
    _official("yoochoose_xe_shared", "cross-entropy", [480], 48, (0.0, 0.2), 0.07, 0.0, 0.2, 0.0, 0.0, 1.0),
    _official("retailrocket_bprmax_shared", "bpr-max", [224], 80, (0.5, 0.05), 0.05, 0.4, 0.4, 1.95, 0.5, 0.0),
    _official("diginetica_bprmax_shared", "bpr-max", [512], 128, (0.5, 0.3), 0.05, 0.15, 0.3, 0.9, 1.0, 0.0),
    _official("rees46_xe_shared", "cross-entropy", [512], 240, (0.45, 0.0), 0.065, 0.0, 0.5, 0.0, 0.0, 1.0),
    _official("coveo_bprmax_shared", "bpr-max", [512], 144, (0.35, 0.0), 0.05, 0.4, 0.2, 1.85, 1.0, 0.0),
    _searched("search_yoochoose1_64_valid",
              "Optuna search on a validation split of yoochoose1_64's training file "
              "(benchmarks/tune.py, trial 23 of 28; grurec 0.1's cell and momentum)",
              loss="bpr-max", layers=[252], batch_size=80, n_sample=2048,
              sample_alpha=0.15000000000000002, logq=0.0, elu_param=0.0, bpreg=0.05, embedding=0,
              constrained_embedding=True, dropout_p_embed=0.5, dropout_p_hidden=0.4,
              learning_rate=0.029584593598206838, momentum=0.45, n_epochs=14,
              momentum_type="nesterov", gru_cell="reset-before"),
    _searched("search_diginetica_valid",
              "search on a validation split of diginetica's training file (benchmarks/tune.py; "
              "the RetailRocket file's values stayed the best; grurec 0.1's cell and momentum)",
              loss="bpr-max", layers=[224], batch_size=80, n_sample=2048, sample_alpha=0.4,
              logq=0.0, elu_param=0.5, bpreg=1.95, embedding=0, constrained_embedding=True,
              dropout_p_embed=0.5, dropout_p_hidden=0.05, learning_rate=0.05, momentum=0.4,
              n_epochs=10, momentum_type="nesterov", gru_cell="reset-before"),
)})

# Names of grurec 0.1, which are no official file's: a clear error says what replaced them.
_RENAMED = {"rsc15": "rsc15_xe_shared_100 (the official file; grurec 0.1's 'rsc15' was not it)",
            "retailrocket": "retailrocket_bprmax_shared",
            "yoochoose1_64": "search_yoochoose1_64_valid",
            "diginetica": "search_diginetica_valid (or the official diginetica_bprmax_shared)"}


# UserGRU settings, named after the data set they were chosen on (leave-one-out
# validation: each user's second-to-last event, full ranking; benchmarks/bench_users.py).
# Every UserGRU hyperparameter is set (run-time options excepted, as above).
# The first beauty-s3rec setting (a manual sweep of 11 settings around GRU4Rec's
# defaults, 1 seed; bptt 1/4/8, batch 16-80, learning rate 0.05-0.2, loss, dropout);
# learning rate 0.05, not the sweep's best 0.1, which diverged silently for some seeds.
# ml-100k still uses it (the search below did not look at ml-100k).
_USER_SWEEP = dict(
    loss="bpr-max", layers=[224], batch_size=16, n_sample=2048, sample_alpha=0.4, logq=0.0,
    elu_param=0.5, bpreg=1.95, embedding=0, constrained_embedding=True, dropout_p_embed=0.5,
    dropout_p_hidden=0.05, learning_rate=0.05, momentum=0.4, n_epochs=10,
    momentum_type="heavy-ball", optimizer="adagrad", adam_betas=[0.9, 0.999], adam_eps=1e-8,
    gru_cell="reset-after", feature_mode="input", id_dropout=0.0, bptt=8, max_len=None)
# Issue 17's search (benchmarks/search_user_gru.py; trial table in
# benchmarks/results/search_user_gru_beauty-s3rec.json): more shared negatives (4096, then
# 8192, 16384 on the validation target), uniform negatives (sample_alpha 0), and n_epochs
# where the validation curve peaked (benchmarks/user_curve.py).
_USER_BEAUTY = dict(_USER_SWEEP, n_sample=16384, sample_alpha=0.0, n_epochs=12)
_BEAUTY_SOURCE = ("an Optuna study on beauty-s3rec's leave-one-out validation target (the "
                  "second-to-last event; 1 seed per trial), spent on 5 finished one-factor "
                  "variants of the earlier 11-setting manual sweep's setting (cross-entropy "
                  "with logQ, bptt 16, 320 units, n_sample 4096; n_epochs read off each "
                  "trial's validation curve) after a wider TPE space proved too slow on one "
                  "core; n_sample 2048 -> 4096 and n_epochs 10 -> 8 won (validation HR@10 / "
                  "NDCG@10 .0999 / .0625 -> .1033 / .0648) and were confirmed on the test "
                  "target with 3 seeds (docs/users.md); then n_sample 8192 (validation "
                  ".1057 / .0665, seed 0; test target, seeds 0-2: .0989 / .0620, 4096: "
                  ".0957 / .0600), then 16384 with n_epochs 10 off its validation curve "
                  "(`benchmarks/user_curve.py`: .1077 / .0679 at epoch 10, .1076 / .0680 "
                  "at 8; 8192's best .1057 / .0665; test target, seeds 0-2: .0999 / .0625); then uniform "
                  "negatives (sample_alpha 0.0; validation .1098 / .0690 at epoch 12, its "
                  "best; test target, seeds 0-2: .0996 / .0617, level with 0.4 within the "
                  "seeds' spread); learning rate 0.05 kept (0.1 diverged silently for some "
                  "seeds); then hidden dropout 0.05 -> 0.3 (validation .1147 / .0725 at "
                  "epoch 12, 0.15 .1123 / .0713, batch 32 .1076 / .0661, 0.15 with embedding "
                  "dropout 0.3 lower; test target, seeds 0-2: .1045 / .0648)")
USER_PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("beauty-s3rec", MappingProxyType(dict(_USER_BEAUTY, dropout_p_hidden=0.3)),
           "grurec: " + _BEAUTY_SOURCE),
    Preset("amazon-beauty", MappingProxyType(dict(_USER_BEAUTY, sample_alpha=0.4, n_epochs=10,
                                                  dropout_p_hidden=0.3)),
           "grurec: beauty-s3rec's setting (the same Amazon category, another "
           "preprocessing; 16384 negatives, 10 epochs, before beauty-s3rec's moved to "
           "uniform negatives; hidden dropout 0.3 as beauty-s3rec's since); not searched "
           "on this set. Test target, seeds 0-2: .0627 / .0397 (hidden dropout 0.05: "
           ".0601 / .0380; beauty-s3rec's earlier 4096 / 8 setting: "
           ".0547 / .0346; 8192 on this set's validation target, seed 0: .0634 / .0401)"),
    Preset("beauty-s3rec-attributes",
           MappingProxyType(dict(_USER_BEAUTY, n_sample=8192, sample_alpha=0.4, n_epochs=8,
                                 feature_mode="output", id_dropout=0.3)),
           "grurec: beauty-s3rec's setting with the item attributes on the output side "
           "(fit(..., item_features=grurec.features.beauty_attributes(path))) and 8192 "
           "shared negatives: on the validation target (seed 0, `bench_users.py --target "
           "valid`) HR@10 / NDCG@10 .1071 / .0654 with 4096, .1083 / .0679 with 8192; test "
           "target, seeds 0-2: .1033 / .0635 (4096: .1003 / .0614); output vs both compared "
           "earlier on the test target with 1 seed; learning rate 0.1 diverged with "
           "features"),
    Preset("ml-100k", MappingProxyType(dict(_USER_SWEEP, max_len=200)),
           "grurec: beauty-s3rec's earlier setting (the 11-setting manual sweep: n_sample "
           "2048, 10 epochs) with max_len=200 (MovieLens histories are long); not searched "
           "on this set"),
)})


def user_names() -> list[str]:
    """The UserGRU preset names (data set names)."""
    return list(USER_PRESETS)


# NARM settings, named after the data set: GRU4Rec's searched setting for it with
# NARM's readout trained on GRU4Rec's schedule (bptt 1, one optimizer step per
# event) and attending over the last 20 states (attention_memory 19). Chosen over
# bptt 5 without memory (yoochoose1_64, docs/narm.md); NARM's own learning rate,
# memory and attention width were not searched.
def _narm(name: str, base: str, source: str, **extra) -> Preset:
    params = dict(PRESETS[base].params, bptt=1, attention_memory=19, attention_dim=None,
                  attention_adagrad_init=0.0)
    params.update(extra)
    return Preset(name, MappingProxyType(params), "grurec: " + source)


NARM_PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    _narm("yoochoose1_64", "search_yoochoose1_64_valid",
          "search_yoochoose1_64_valid (GRU4Rec's search) with bptt 1 and attention_memory 19; "
          "on the validation split (docs/repeat.md's) MRR@20 / Recall@20 30.02 / 69.63, "
          "GRU4Rec's setting alone 30.28 / 70.22 (seed 0); the attention settings were not "
          "searched"),
    _narm("diginetica", "search_diginetica_valid",
          "search_diginetica_valid (GRU4Rec's search) with bptt 1 and attention_memory 19, "
          "as yoochoose1_64's NARM preset, and attention_adagrad_init 1 (with 0 the first "
          "epoch blew up: loss 9.2, validation MRR@20 5.94 after 2 epochs; with 1: 0.44, "
          "16.78); not searched further", attention_adagrad_init=1.0),
)})


def _fresh(p: Preset) -> dict[str, Any]:
    """A preset's hyperparameters as a new dict (lists copied too)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in p.params.items()}


def narm_names() -> list[str]:
    """The NARM preset names (data set names)."""
    return list(NARM_PRESETS)


def _own_or_base(name: str, own: Mapping[str, Preset], base, unknown: str) -> dict[str, Any]:
    """A fresh dict of preset ``name`` from a family's ``own`` presets, else
    from the family it extends (``base(name)``); an unknown name raises
    ValueError(``unknown``)."""
    if name in own:
        return _fresh(own[name])
    try:
        return base(name)
    except ValueError:
        raise ValueError(unknown) from None


def get_narm(name: str) -> dict[str, Any]:
    """A fresh dict of NARM preset ``name``'s hyperparameters; a GRU4Rec preset
    name gives that setting (NARM's own options at their defaults)."""
    return _own_or_base(name, NARM_PRESETS, get,
                        f"NARM preset: unknown name {name!r}; known: "
                        f"{', '.join(NARM_PRESETS)} (NARM's own) and the GRU4Rec presets "
                        f"{', '.join(PRESETS)}")


def get_user(name: str) -> dict[str, Any]:
    """A fresh dict of UserGRU preset ``name``'s hyperparameters."""
    try:
        p = USER_PRESETS[name]
    except (KeyError, TypeError):
        hint = " (a GRU4Rec preset: use GRU4Rec.from_preset)" if name in PRESETS else ""
        raise ValueError(f"UserGRU preset: unknown name {name!r}{hint}; known: "
                         f"{', '.join(USER_PRESETS)}") from None
    return _fresh(p)


# UserNARM settings (docs/narm.md "For users"): UserGRU's beauty-s3rec setting as it
# was validated (8192 negatives, 8 epochs) with an attention memory of 8 (spans of
# 9-16 states at bptt 8) and the readout's Adagrad accumulators starting at 1 (at 0
# the first epochs blew up, as NARM's did on diginetica). A UserGRU preset's name
# gives that setting with the attention options at their defaults.
_USER_NARM_BEAUTY = dict(_USER_BEAUTY, n_sample=8192, sample_alpha=0.4, n_epochs=8,
                         attention_dim=None,
                         attention_memory=8, attention_adagrad_init=1.0)
USER_NARM_PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("beauty-s3rec", MappingProxyType(_USER_NARM_BEAUTY),
           "grurec: UserGRU's beauty-s3rec setting (8192 negatives, 8 epochs) with "
           "attention_memory 8 and attention_adagrad_init 1; validation target, seed 0 "
           "(`benchmarks/user_curve.py --model UserNARM`): HR@10 / NDCG@10 .1058 / .0660 "
           "at epoch 8 (its best), UserGRU with the same setting .1057 / .0665; with "
           "attention_adagrad_init 0 it diverged (HR@10 .0043 after 4 epochs)"),
)})


def user_narm_names() -> list[str]:
    """The UserNARM preset names (data set names)."""
    return list(USER_NARM_PRESETS)


def get_user_narm(name: str) -> dict[str, Any]:
    """A fresh dict of UserNARM preset ``name``'s hyperparameters; a UserGRU
    preset name gives that setting (the attention options at their
    defaults)."""
    return _own_or_base(name, USER_NARM_PRESETS, get_user,
                        f"UserNARM preset: unknown name {name!r}; known: "
                        f"{', '.join(USER_NARM_PRESETS) or '(none of its own)'} and the "
                        f"UserGRU presets {', '.join(USER_PRESETS)}")


def names() -> list[str]:
    """The preset names, in the order above."""
    return list(PRESETS)


def get(name: str) -> dict[str, Any]:
    """A fresh dict of preset ``name``'s hyperparameters (lists copied too)."""
    try:
        p = PRESETS[name]
    except (KeyError, TypeError):
        hint = f" (renamed: use {_RENAMED[name]})" if isinstance(name, str) and name in _RENAMED else ""
        if isinstance(name, str) and name in USER_PRESETS:
            hint = " (a UserGRU preset: use UserGRU.from_preset)"
        raise ValueError(f"preset: unknown name {name!r}{hint}; known: {', '.join(PRESETS)}") from None
    return _fresh(p)


def describe() -> dict[str, str]:
    """Preset name -> where its setting comes from (UserGRU presets included)."""
    return {n: p.source for n, p in {**PRESETS, **USER_PRESETS}.items()} | {
        f"NARM {n}": p.source for n, p in NARM_PRESETS.items()} | {
        f"UserNARM {n}": p.source for n, p in USER_NARM_PRESETS.items()}
