"""Optional dependencies of a test module: skipped with a reason where absent,
but required where ``GRUREC_REQUIRE_OPTIONAL=1`` (``.ci/run`` sets it, so
that CI runs the Optuna, Dask and PostgreSQL tests for real)."""
from __future__ import annotations

import importlib
import os

import pytest

REQUIRED = os.environ.get("GRUREC_REQUIRE_OPTIONAL", "") not in ("", "0")


def need(module: str, extra: str):
    """Import ``module`` or skip (fail under GRUREC_REQUIRE_OPTIONAL)."""
    if REQUIRED:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f'{module} is not installed (pip install '
                                              f'"grurec[{extra}]")')


def unavailable(why: str):
    """Skip a test whose service is unavailable; fail under GRUREC_REQUIRE_OPTIONAL."""
    if REQUIRED:
        pytest.fail(f"GRUREC_REQUIRE_OPTIONAL is set but {why}")
    pytest.skip(why)
