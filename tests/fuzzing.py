"""Shared pieces of the property-based fuzz tests (tests/test_fuzz_*.py).

Every fuzz test runs a fixed number of examples, derived from the test's name
(``derandomize=True``, no example database), so a CI run is reproducible and
its size is known. ``counted`` tallies the examples actually run; conftest.py
prints the total at the end of the session ("hypothesis examples run: ...").
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter

import numpy as np

try:  # the property tests skip themselves without hypothesis
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None

EXAMPLES_RUN: Counter = Counter()


def fuzz_settings(n: int):
    """A fixed number of examples, no deadline (sanitizer builds are slow),
    derandomized and without a database: the same examples on every run."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def counted(test):
    """Count every call of the test body (one per example)."""
    name = test.__name__

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        EXAMPLES_RUN[name] += 1
        return test(*args, **kwargs)

    return wrapper


class Rejected(Exception):
    """Raised by ``outcome`` when the call was rejected cleanly."""


def outcome(fn, *names, allowed=(ValueError, TypeError)):
    """Run fn(). If it raises one of ``allowed``, the message must name one of
    ``names`` (the argument or column at fault); then ``Rejected`` is raised
    so the caller can tell a clean rejection from a result. Anything else
    (another exception type, an unhelpful message) fails the test."""
    try:
        return fn()
    except allowed as e:
        msg = str(e)
        if names and not any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg)
                             for n in names):
            raise AssertionError(
                f"{type(e).__name__} does not name the problem (expected one of {names}): "
                f"{msg!r}") from e
        raise Rejected(msg) from e


# Values that are wrong for almost every argument, and a few that are right.
def nasty_values():
    return [
        math.nan, math.inf, -math.inf, -1, 0, 1, 3, 2**31, 2**63, 2**70, -(2**70), 2.5, 1.0,
        -0.0, 1e-300, 1e300, True, False, None, "a", "1", "", b"x", [1], [], (2, 3), {},
        {1}, np.int64(3), np.int8(-1), np.uint64(2**63), np.float32(0.5),
        np.float64(math.nan), np.array([1, 2]), np.array(2), complex(1, 1), object(),
    ]


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def whole(v) -> bool:
    """An integer, or a finite float with an integer value."""
    if is_int(v):
        return True
    return (isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer())


def hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def object_array(seq) -> np.ndarray:
    """A 1-D object array holding exactly the elements of seq (np.array would
    turn nested sequences into more dimensions)."""
    a = np.empty(len(seq), dtype=object)
    for i, e in enumerate(seq):
        a[i] = e
    return a


def real(v) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)))
