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
