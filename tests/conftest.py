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


@pytest.fixture(scope="session")
def user_events():
    """Synthetic user histories (3,000 events, 120 items) for the user models."""
    from grurec.synthetic import generate_sessions

    df = generate_sessions(n_events=3000, n_items=120, mean_length=6, signal=0.8, seed=3)
    return df.rename(columns={"SessionId": "UserId"})


@pytest.fixture(scope="session")
def user_histories():
    """user id -> item list in time order, of an events table."""
    def histories(df):
        df = df.sort_values(["UserId", "Time"], kind="stable")
        return {u: g.ItemId.tolist() for u, g in df.groupby("UserId", sort=False)}
    return histories


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
