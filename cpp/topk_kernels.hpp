// The inner loops of top-k scoring and rank counting, one table per SIMD
// level (topk_impl.hpp compiled by topk_<level>.cpp, the same pattern as the
// kernel table of kernels.hpp, in a separate table so the two can grow
// independently). topk.cpp picks the table whose name matches the active
// kernel table, so grurec.set_simd_level / GRUREC_SIMD switch both.
//
// The canonical score. For a query q and an item row x, both of length D:
//   p_l = fma(q[8c+l], x[8c+l], p_l) for chunks c = 0, 1, ... in order,
//         l = 0..7, starting from p_l = 0, elements past D counting as 0;
//   dot = halving tree of the lanes: p_l + p_{l+4} (l < 4), then + the lane
//         2 further, then lane 0 + lane 1;
//   score = dot + bias[i]   (no addition without a bias).
// The avx2 and avx512 levels compute exactly this (so they agree with each
// other); the scalar level has the same lanes and tree but rounds the
// product before the addition (the x86-64 baseline has no FMA). Every path
// (one query or many, any block position, any thread count) computes the
// level's score, so at one level a score is a function of the query row, the
// item row and its bias only: topk and rank_counts agree, and duplicated
// item rows tie exactly.
#pragma once

#include <cstdint>

namespace grurec {

struct TopkKernels {
  const char* name;  // "scalar", "avx2" or "avx512"
  int pad;    // query rows passed to dots are zero-padded to a multiple of this
  int panel;  // queries per block of the many-query kernel

  // T[b*ldt + j] = dot(Qp[b*ldq : b*ldq + D], X[j*D : j*D + D]) for b < nq,
  // j < nx. Qp rows are zero from D to the next multiple of `pad` (ldq >=
  // that); X is row-major [nx, D]; nq, nx >= 1. work holds at least
  // (ceil(nq / panel) * panel + 16) * 8 * ceil(D / 8) floats.
  void (*dots)(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq,
               const float* X, float* T, int64_t ldt, float* work);

  // With s_j = row[j] (+ bias[j] when bias is not null), j < n: writes j and
  // s_j of every s_j > thr (so never a NaN) to idx/val in increasing j and
  // returns how many; sets *bad when some s_j is not finite.
  int64_t (*above)(int64_t n, const float* row, const float* bias, float thr,
                   int32_t* idx, float* val, bool* bad);

  // With s_j as above: *gt += #{j : s_j > s}, *eq += #{j : s_j == s}; sets
  // *bad when some s_j is not finite.
  void (*count)(int64_t n, const float* row, const float* bias, float s, int64_t* gt,
                int64_t* eq, bool* bad);

  // max(x[0..n)), reading every element once (a memory-bandwidth probe).
  float (*stream_max)(int64_t n, const float* x);
};

const TopkKernels* topk_kernels_scalar();
const TopkKernels* topk_kernels_avx2();    // nullptr when not compiled in
const TopkKernels* topk_kernels_avx512();  // nullptr when not compiled in

// The table of the level the kernel table K() runs at.
const TopkKernels& TK();

}  // namespace grurec
