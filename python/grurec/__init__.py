"""grurec: GRU-based recommenders (GRU4Rec and beyond) with a fast C++ core.

The native core picks the widest SIMD level the CPU supports at import
(``simd_level()``); the environment variable ``GRUREC_SIMD`` (``scalar``,
``avx2``, ``avx512``, or ``neon`` on ARM64) caps it, which is how the tests
cover every path.
"""
import os as _os
import warnings as _warnings

from . import _core, baselines
from . import datasets, fitting, presets, splits  # noqa: F401  (grurec.datasets, ...)
from . import distributed, tune  # noqa: F401  (Optuna / Dask are imported on first use)
from .data import SessionData, sessions_from_frame, to_sessions
from .evaluation import evaluate
from .features import ItemFeatures
from .io import ModelFileError, load
from .model import GRU4Rec, ModelFitError
from .user_model import UserGRU, UserNARM
from .narm import NARM
from .bidir import BiGRU4Rec
from .repeat import RepeatAware
from .ops import gru_backward, gru_forward
from .topk import TopkIndex, topk
from .user_evaluation import evaluate_users

__version__ = "0.2.0"

__all__ = [
    "GRU4Rec",
    "UserGRU",
    "UserNARM",
    "NARM",
    "BiGRU4Rec",
    "RepeatAware",
    "ItemFeatures",
    "ModelFitError",
    "ModelFileError",
    "SessionData",
    "evaluate",
    "evaluate_users",
    "load",
    "sessions_from_frame",
    "to_sessions",
    "simd_level",
    "available_simd_levels",
    "set_simd_level",
    "gru_forward",
    "gru_backward",
    "topk",
    "TopkIndex",
    "baselines",
    "datasets",
    "fitting",
    "presets",
    "splits",
]

_LEVELS = ("scalar", "avx2", "avx512", "neon")


def simd_level() -> str:
    """The SIMD level the native kernels run at: 'scalar', 'avx2', 'avx512' or 'neon'."""
    return _core.simd_level()


def available_simd_levels() -> list[str]:
    """Every level this CPU and build can run, narrowest first."""
    return list(_core.available_simd_levels())


def set_simd_level(level: str) -> None:
    """Switch the kernels to ``level`` (for tests and comparisons).

    Not safe while another thread is inside a native call.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    _core.set_simd_level(level)


def _apply_env_cap() -> None:
    want = _os.environ.get("GRUREC_SIMD", "").strip().lower()
    if not want:
        return
    if want not in _LEVELS:
        _warnings.warn(
            f"GRUREC_SIMD={want!r} is not one of {_LEVELS}; ignored", RuntimeWarning, stacklevel=3
        )
        return
    have = available_simd_levels()
    if want in have:
        _core.set_simd_level(want)
    else:
        _warnings.warn(
            f"GRUREC_SIMD={want!r} is not supported here; using {have[-1]!r}",
            RuntimeWarning,
            stacklevel=3,
        )


_apply_env_cap()
