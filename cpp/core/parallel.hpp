// Splitting row-wise work among OpenMP threads.
#pragma once

#include <algorithm>
#include <cstdint>

namespace grurec {

// f(r0, r1) over disjoint ranges covering rows [0, n), on up to nt threads;
// one thread when the work (element count) is too small to pay for a team.
// f must not throw.
template <class F>
void split_rows(int64_t n, int64_t work, int nt, F f) {
  int64_t t = nt;
  if (work < 16384 || n < 2) t = 1;
  t = std::min<int64_t>(t, n);
#ifdef _OPENMP
  if (t > 1) {
#pragma omp parallel for num_threads(static_cast<int>(t)) schedule(static, 1)
    for (int64_t i = 0; i < t; ++i) f(n * i / t, n * (i + 1) / t);
    return;
  }
#endif
  f(0, n);
}

// Rows ahead to prefetch when walking scattered rows of an item table: the
// tables are larger than the caches, so a row update waits on memory
// otherwise. An Adagrad row update with momentum reads three such rows, so a
// few rows ahead is too short to cover the memory latency: at the RSC15
// preset (1 thread, avx2) 4 / 8 / 16 / 32 rows ahead gave 25.6k / 26.4k /
// 27.3k / 27.0k events/s (the optimizer was a quarter of a step at 4).
constexpr int64_t kPrefetch = 16;

// Prefetches the D floats at p (for writing when write).
inline void prefetch_row(const float* p, int64_t D, bool write) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < D * 4; off += 64) {
    if (write)
      __builtin_prefetch(c + off, 1, 1);
    else
      __builtin_prefetch(c + off, 0, 1);
  }
}

}  // namespace grurec
