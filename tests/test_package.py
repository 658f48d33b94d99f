"""Packaging-level behaviour: SIMD dispatch, the environment cap, the CLI."""
import os
import subprocess
import sys

import pytest

import grurec


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):  # x86, AArch64
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "GRUREC_SIMD"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip(), out.stderr


def test_default_level_is_the_widest_the_cpu_supports():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    import platform

    if platform.machine() in ("aarch64", "arm64"):
        expected = "neon" if "asimd" in flags else "scalar"
    elif platform.machine() not in ("x86_64", "AMD64"):
        expected = "scalar"
    elif "avx512f" in flags:
        expected = "avx512"
    elif {"avx2", "fma"} <= flags:
        expected = "avx2"
    else:
        expected = "scalar"
    level, _ = _run("import grurec; print(grurec.simd_level())")
    assert level == expected
    assert grurec.available_simd_levels()[-1] == expected
    assert grurec.available_simd_levels()[0] == "scalar"


@pytest.mark.parametrize("level", grurec.available_simd_levels())
def test_env_var_caps_the_level(level):
    got, _ = _run("import grurec; print(grurec.simd_level())", GRUREC_SIMD=level)
    assert got == level


def test_env_var_with_unknown_value_warns_and_is_ignored():
    got, err = _run("import grurec; print(grurec.simd_level())", GRUREC_SIMD="sse9")
    assert got == grurec.available_simd_levels()[-1]
    assert "GRUREC_SIMD='sse9' is not one of" in err


def test_set_simd_level_rejects_unknown_level():
    with pytest.raises(ValueError, match="level must be one of"):
        grurec.set_simd_level("sse9")


def test_levels_of_the_other_architecture_are_refused():
    import platform

    other = "avx2" if platform.machine() in ("aarch64", "arm64") else "neon"
    assert other not in grurec.available_simd_levels()
    before = grurec.simd_level()
    with pytest.raises(ValueError, match="not available on this CPU/build"):
        grurec.set_simd_level(other)
    assert grurec.simd_level() == before
    got, err = _run("import grurec; print(grurec.simd_level())", GRUREC_SIMD=other)
    assert got == grurec.available_simd_levels()[-1]
    assert f"GRUREC_SIMD={other!r} is not supported here" in err


@pytest.mark.skipif(os.environ.get("GRUREC_TEST_INSTALLED") != "1",
                    reason="only when testing an installed wheel (.ci/wheel_check.sh)")
def test_grurec_comes_from_the_installed_wheel():
    """.ci/wheel_check.sh runs the suite against the wheel in a fresh venv:
    the package (and its native core) must be the installed one, not the
    source tree's."""
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    pkg = Path(grurec.__file__).resolve()
    assert "site-packages" in pkg.parts
    assert here not in pkg.parents
    assert Path(grurec._core.__file__).resolve().parent == pkg.parent
