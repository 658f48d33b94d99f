#!/usr/bin/env bash
# Builds tests/native/kernel_check.cpp with the kernel sources and runs it:
#   tests/native/check_neon.sh          cross-compile for AArch64 (Debian's
#                                       g++-aarch64-linux-gnu) and run under
#                                       qemu-user: checks scalar and neon
#   tests/native/check_neon.sh native   the host's g++: checks every x86 level
# The flags follow CMakeLists.txt (-O3 -fno-math-errno, -ffp-contract=off for
# the top-k levels, OpenMP). Needs, on Debian:
#   apt-get install g++-aarch64-linux-gnu qemu-user
# Exit status: the driver's (non-zero when a check failed or, cross, when the
# neon level is missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-cross}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -O3 -fno-math-errno -fopenmp -Icpp)
if [ "$mode" = cross ]; then
  cxx=${CXX_AARCH64:-aarch64-linux-gnu-g++}
  defs=(-DGRUREC_HAVE_NEON_LEVEL=1)
  levels=(scalar neon)
  extra=()
  run=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
  want=(neon)
else
  cxx=${CXX:-g++}
  defs=(-DGRUREC_HAVE_X86_LEVELS=1)
  levels=(scalar avx2 avx512)
  extra=(topk_i16 topk_bf16)
  run=()
  want=()
fi
lflags() {  # per-level -m flags, as in CMakeLists.txt
  case $1 in
    avx2) echo "-mavx2 -mfma" ;;
    avx512) echo "-mavx512f -mavx512bw -mavx2 -mfma -mprefer-vector-width=512" ;;
    bf16) echo "-mavx512f -mavx512bf16 -mavx2 -mfma -mprefer-vector-width=512" ;;
  esac
}
objs=()
for l in "${levels[@]}"; do
  # shellcheck disable=SC2046
  "$cxx" "${flags[@]}" $(lflags "$l") -c "cpp/kernels_$l.cpp" -o "$out/k_$l.o" &
  # shellcheck disable=SC2046
  "$cxx" "${flags[@]}" $(lflags "$l") -ffp-contract=off -c "cpp/topk_$l.cpp" -o "$out/t_$l.o"
  wait
  objs+=("$out/k_$l.o" "$out/t_$l.o")
done
for e in "${extra[@]}"; do
  if [ "$e" = topk_i16 ]; then
    # shellcheck disable=SC2046
    "$cxx" "${flags[@]}" $(lflags avx2) -ffp-contract=off -c "cpp/$e.cpp" -o "$out/$e.o"
    objs+=("$out/$e.o")
  elif echo | "$cxx" -mavx512bf16 -x c++ -c - -o /dev/null 2>/dev/null; then
    # shellcheck disable=SC2046
    "$cxx" "${flags[@]}" $(lflags bf16) -ffp-contract=off -c "cpp/$e.cpp" -o "$out/$e.o"
    objs+=("$out/$e.o")
    defs+=(-DGRUREC_HAVE_BF16=1)
  fi
done
"$cxx" "${flags[@]}" "${defs[@]}" cpp/dispatch.cpp cpp/topk.cpp tests/native/kernel_check.cpp \
  "${objs[@]}" -o "$out/kernel_check"
echo "built kernel_check with $("$cxx" --version | head -1)"
"${run[@]}" "$out/kernel_check" "${want[@]}"
