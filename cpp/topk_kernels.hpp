// The inner loops of top-k scoring and rank counting, one table per SIMD
// level (topk_impl.hpp compiled by topk_<level>.cpp, the same pattern as the
// kernel table of kernels.hpp, in a separate table so the two can grow
// independently). topk.cpp picks the table whose name matches the active
// kernel table, so grurec.set_simd_level / GRUREC_SIMD switch both.
//
// The canonical score. For a query q and an item row x, both of length D,
// with W the lane count of the level (16 avx512, 8 avx2, 1 scalar):
//   p_l = fma(q[cW+l], x[cW+l], p_l) for chunks c = 0, 1, ... in order,
//         starting from p_l = 0, lanes past D contributing 0 * 0;
//   dot = the halving tree of the lanes: fold lane l + W/2 onto lane l, then
//         l + W/4 onto l, ..., down to one lane;
//   score = dot + bias[i]   (no addition without a bias).
// Every path (one query or many, any block position, any thread count)
// computes exactly this, so at one SIMD level a score is a function of the
// query row, the item row and its bias only: topk and rank_counts agree
// bit for bit, and duplicated item rows tie exactly.
#pragma once

#include <cstdint>

namespace grurec {

struct TopkKernels {
  const char* name;  // "scalar", "avx2" or "avx512"
  int lanes;         // W above: query rows passed to dots are padded to a multiple of it

  // T[b*ldt + j] = dot(Qp[b*ldq : b*ldq + D], X[j*D : j*D + D]) for b < nq,
  // j < nx. Qp rows are zero from D to the next multiple of `lanes`
  // (ldq >= that); X is row-major [nx, D]. nq, nx >= 1.
  void (*dots)(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq,
               const float* X, float* T, int64_t ldt);

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
