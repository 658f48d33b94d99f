"""Named GRU4Rec hyperparameter sets.

The published configurations of GRU4Rec (the official implementation's
parameter files, as run by Hidasi & Czapp, RecSys 2023) and the settings
grurec's own search found for the data sets in its README:

    model = grurec.GRU4Rec.from_preset("rsc15", n_epochs=5, num_threads=2)
    grurec.presets.get("retailrocket")        # a fresh dict, to inspect or edit
    grurec.presets.describe()                 # name -> where the setting comes from
    grurec train EVENTS -o MODEL --preset rsc15 --n-epochs 5     (command line)

A preset sets every algorithm hyperparameter of ``GRU4Rec`` (a later change of
a default never changes what a preset trains); run-time options (``num_threads``,
``random_state``, ``parallel``, ``show_progress``) are left to the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Preset", "PRESETS", "names", "get", "describe"]


@dataclass(frozen=True)
class Preset:
    name: str
    params: Mapping[str, Any]
    source: str  # "published: ..." or "grurec: ..."

    @property
    def published(self) -> bool:
        """A published GRU4Rec setting (else one grurec's search found)."""
        return self.source.startswith("published:")


def _preset(name: str, source: str, **params: Any) -> Preset:
    return Preset(name, MappingProxyType(params), source)


_RSC15 = dict(
    loss="cross-entropy", layers=[100], batch_size=32, n_sample=2048, sample_alpha=0.75,
    logq=1.0, elu_param=0.0, bpreg=0.0, embedding=0, constrained_embedding=True,
    dropout_p_embed=0.1, dropout_p_hidden=0.0, learning_rate=0.1, momentum=0.0, n_epochs=10)

_RETAILROCKET = dict(
    loss="bpr-max", layers=[224], batch_size=80, n_sample=2048, sample_alpha=0.4, logq=0.0,
    elu_param=0.5, bpreg=1.95, embedding=0, constrained_embedding=True, dropout_p_embed=0.5,
    dropout_p_hidden=0.05, learning_rate=0.05, momentum=0.4, n_epochs=10)

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    _preset("rsc15", "published: GRU4Rec's RSC15 setting (cross-entropy with logQ, "
            "shared embedding), official parameter file", **_RSC15),
    _preset("retailrocket", "published: GRU4Rec's RetailRocket setting (BPR-max with ELU "
            "0.5, shared embedding), official parameter file", **_RETAILROCKET),
    _preset("yoochoose1_64", "grurec: Optuna search on a validation split of yoochoose1_64's "
            "training file (benchmarks/tune.py, trial 23 of 28)",
            loss="bpr-max", layers=[252], batch_size=80, n_sample=2048,
            sample_alpha=0.15000000000000002, logq=0.0, elu_param=0.0, bpreg=0.05, embedding=0,
            constrained_embedding=True, dropout_p_embed=0.5, dropout_p_hidden=0.4,
            learning_rate=0.029584593598206838, momentum=0.45, n_epochs=14),
    _preset("diginetica", "grurec: search on a validation split of diginetica's training "
            "file (benchmarks/tune.py); the published RetailRocket setting stayed the best",
            **_RETAILROCKET),
)})


def names() -> list[str]:
    """The preset names, in the order above."""
    return list(PRESETS)


def get(name: str) -> dict[str, Any]:
    """A fresh dict of preset ``name``'s hyperparameters (lists copied too)."""
    try:
        p = PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"preset: unknown name {name!r}; known: {', '.join(PRESETS)}") from None
    return {k: list(v) if isinstance(v, list) else v for k, v in p.params.items()}


def describe() -> dict[str, str]:
    """Preset name -> where its setting comes from."""
    return {n: p.source for n, p in PRESETS.items()}
