// Run-time choice of the kernel table: the widest SIMD level that both the
// build and the CPU (and its OS, which must save the wide registers) support.
#include <atomic>
#include <cstring>

#if defined(GRUREC_HAVE_NEON_LEVEL) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "kernels.hpp"

namespace grurec {

#ifndef GRUREC_HAVE_X86_LEVELS
const Kernels* kernels_avx2() { return nullptr; }
const Kernels* kernels_avx512() { return nullptr; }
#endif
#ifndef GRUREC_HAVE_NEON_LEVEL
const Kernels* kernels_neon() { return nullptr; }
#endif

namespace {

bool cpu_has_avx2() {
#if defined(GRUREC_HAVE_X86_LEVELS) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(GRUREC_HAVE_X86_LEVELS) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // AVX512BW too (every AVX-512 server and desktop CPU has it; the Xeon Phi
  // lines did not): the int8 top-k scan widens and multiplies int16 in zmm.
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

// AArch64 Advanced SIMD. Part of the base ISA, but asked of the OS all the
// same (HWCAP_ASIMD on Linux), like the x86 levels; Apple's OSes always have it.
bool cpu_has_neon() {
#if defined(GRUREC_HAVE_NEON_LEVEL) && defined(__linux__)
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
  return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#elif defined(GRUREC_HAVE_NEON_LEVEL)
  return true;
#else
  return false;
#endif
}

struct Levels {
  const Kernels* table[4];
  const char* names[5];
  int count = 0;
  Levels() {
    add(kernels_scalar(), true);
    add(kernels_avx2(), cpu_has_avx2());
    add(kernels_avx512(), cpu_has_avx512());
    add(kernels_neon(), cpu_has_neon());
    names[count] = nullptr;
  }
  void add(const Kernels* k, bool ok) {
    if (k && ok) {
      table[count] = k;
      names[count] = k->name;
      ++count;
    }
  }
};

const Levels& levels() {
  static const Levels l;
  return l;
}

std::atomic<const Kernels*> active{nullptr};

}  // namespace

const Kernels& K() {
  const Kernels* k = active.load(std::memory_order_acquire);
  if (!k) {
    const Levels& l = levels();
    k = l.table[l.count - 1];
    active.store(k, std::memory_order_release);
  }
  return *k;
}

const char* const* available_levels(int* count) {
  *count = levels().count;
  return levels().names;
}

bool set_level(const char* name) {
  const Levels& l = levels();
  for (int i = 0; i < l.count; ++i) {
    if (std::strcmp(l.names[i], name) == 0) {
      active.store(l.table[i], std::memory_order_release);
      return true;
    }
  }
  return false;
}

}  // namespace grurec
