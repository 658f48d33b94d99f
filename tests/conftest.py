import numpy as np
import pytest

import grurec

LEVELS = grurec.available_simd_levels()
THREADS = (1, 2)


@pytest.fixture(params=LEVELS)
def simd(request):
    """Run the test at one SIMD level, restoring the previous level after."""
    before = grurec.simd_level()
    grurec.set_simd_level(request.param)
    yield request.param
    grurec.set_simd_level(before)


@pytest.fixture(params=THREADS, ids=lambda n: f"t{n}")
def nthreads(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_terminal_summary(terminalreporter):
    """The number of hypothesis examples the fuzz tests ran (README figure)."""
    import sys

    fz = sys.modules.get("fuzzing")
    if fz is not None and fz.EXAMPLES_RUN:
        runs = fz.EXAMPLES_RUN
        terminalreporter.write_line(
            f"hypothesis examples run: {sum(runs.values())} in {len(runs)} property tests")
