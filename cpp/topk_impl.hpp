// Top-k / rank-count inner loops, generic over the SIMD trait V of simd.hpp.
// Included once per level by topk_<level>.cpp, which defines the level macro,
// GRUREC_NS, GRUREC_LEVEL_NAME, the table getter GRUREC_TOPK_FN and the
// micro-kernel shapes GRUREC_TOPK_MI1 (items per block of the one-query
// kernel) and GRUREC_TOPK_MI4 (items per block of the four-query kernel).
// See topk_kernels.hpp for the contract and the canonical score.
//
// A dot product keeps its D-vector in the lanes: W partial sums, one FMA
// chain per lane, then a halving-tree reduction. The reduction is done for W
// accumulators at once (a transposing tree of shuffles and adds that performs,
// for every accumulator, exactly the halving tree), so a block of MI items x
// MQ queries with MI * MQ = W (or a multiple of it) costs ceil(D/W) FMAs per
// pair plus about 3 vector operations per pair for the reduction. The same
// accumulator layout serves one query (MI1 consecutive items: a GEMV that
// streams the item table once) and many queries (MI4 items x 4 queries: the
// item rows are reused from L1 across the query block).
//
// Like kernels_impl.hpp this file uses no std:: templates: everything here is
// compiled with the level's -m flags inside an anonymous namespace.
#pragma once

#include <cstdint>
#include <cstring>

#include "simd.hpp"
#include "topk_kernels.hpp"

namespace GRUREC_NS {
namespace {

constexpr int W = V::W;
constexpr int MI1 = GRUREC_TOPK_MI1;
constexpr int MI4 = GRUREC_TOPK_MI4;
static_assert(MI1 % W == 0 || W == 1, "one-query block must fill whole registers");
static_assert((MI4 * 4) % W == 0, "four-query block must fill whole registers");

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

#if defined(GRUREC_LEVEL_AVX512)
// c < W floats from p, the other lanes 0 (lanes past c are never read).
inline V::reg ld_tail(const float* p, int64_t c) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << c) - 1u), p);
}
inline uint32_t gt_mask(V::reg a, V::reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline uint32_t eq_mask(V::reg a, V::reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }

// Halving folds applied to two registers at once (see reduce below).
inline __m512 fold256(__m512 a, __m512 b) {  // [a.lo + a.hi | b.lo + b.hi]
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
}
inline __m512 fold128(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}
inline __m512 fold64(__m512 a, __m512 b) {
  const __m512d ad = _mm512_castps_pd(a), bd = _mm512_castps_pd(b);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(ad, bd)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(ad, bd)));
}
inline __m512 fold32(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
// Lane j of the result = halving-tree sum of the lanes of a[j]. The four
// stages leave in[q + 4m]'s sum in lane 4q + m, so the inputs go in as
// in[s] = a[4 (s % 4) + s / 4].
inline V::reg reduce(const V::reg* a) {
  const __m512 s0 = fold256(a[0], a[4]), s1 = fold256(a[8], a[12]);
  const __m512 s2 = fold256(a[1], a[5]), s3 = fold256(a[9], a[13]);
  const __m512 s4 = fold256(a[2], a[6]), s5 = fold256(a[10], a[14]);
  const __m512 s6 = fold256(a[3], a[7]), s7 = fold256(a[11], a[15]);
  const __m512 r0 = fold128(s0, s1), r1 = fold128(s2, s3);
  const __m512 r2 = fold128(s4, s5), r3 = fold128(s6, s7);
  return fold32(fold64(r0, r1), fold64(r2, r3));
}
#elif defined(GRUREC_LEVEL_AVX2)
inline V::reg ld_tail(const float* p, int64_t c) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(c)), lane);
  return _mm256_maskload_ps(p, m);
}
inline uint32_t gt_mask(V::reg a, V::reg b) {
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)));
}
inline uint32_t eq_mask(V::reg a, V::reg b) {
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)));
}
inline __m256 fold128(__m256 a, __m256 b) {  // [a.lo + a.hi | b.lo + b.hi]
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
inline __m256 fold64(__m256 a, __m256 b) {
  const __m256d ad = _mm256_castps_pd(a), bd = _mm256_castps_pd(b);
  return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(ad, bd)),
                       _mm256_castpd_ps(_mm256_unpackhi_pd(ad, bd)));
}
inline __m256 fold32(__m256 a, __m256 b) {
  return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
// Lane j = halving-tree sum of a[j]; the stages leave in[h + 2m] in lane
// 4h + m, so in[s] = a[4 (s % 2) + s / 2].
inline V::reg reduce(const V::reg* a) {
  const __m256 s0 = fold128(a[0], a[4]), s1 = fold128(a[1], a[5]);
  const __m256 s2 = fold128(a[2], a[6]), s3 = fold128(a[3], a[7]);
  return fold32(fold64(s0, s1), fold64(s2, s3));
}
#else
inline V::reg ld_tail(const float* p, int64_t) { return *p; }
inline uint32_t gt_mask(V::reg a, V::reg b) { return a > b ? 1u : 0u; }
inline uint32_t eq_mask(V::reg a, V::reg b) { return a == b ? 1u : 0u; }
inline V::reg reduce(const V::reg* a) { return a[0]; }
#endif

inline int popcount(uint32_t m) { return __builtin_popcount(m); }

// Dot products of MQ query rows (Qp, stride ldq, zero-padded to a multiple
// of W) with MI item rows (X, stride D): T[b*ldt + a] for a < ni, b < nq.
// Missing rows (a >= ni, b >= nq) repeat the last valid one; their results
// are dropped. Accumulator j = b*MI + a; registers of W accumulators are
// reduced together, lane l of group g holding accumulator g*W + l.
template <int MI, int MQ>
inline void micro(int64_t D, const float* Qp, int64_t ldq, const float* X, int64_t ni,
                  int64_t nq, float* T, int64_t ldt) {
  constexpr int NA = MI * MQ;
  const float* xr[MI];
  for (int a = 0; a < MI; ++a) xr[a] = X + (a < ni ? a : ni - 1) * D;
  const float* qr[MQ];
  for (int b = 0; b < MQ; ++b) qr[b] = Qp + (b < nq ? b : nq - 1) * ldq;
  V::reg acc[NA];
#pragma GCC unroll 64
  for (int j = 0; j < NA; ++j) acc[j] = V::zero();
  const int64_t Df = D - D % W;
  for (int64_t c = 0; c < Df; c += W) {
    V::reg x[MI];
#pragma GCC unroll 64
    for (int a = 0; a < MI; ++a) x[a] = V::load(xr[a] + c);
#pragma GCC unroll 8
    for (int b = 0; b < MQ; ++b) {
      const V::reg q = V::load(qr[b] + c);
#pragma GCC unroll 64
      for (int a = 0; a < MI; ++a) acc[b * MI + a] = V::fmadd(q, x[a], acc[b * MI + a]);
    }
  }
  if (Df < D) {
    V::reg x[MI];
#pragma GCC unroll 64
    for (int a = 0; a < MI; ++a) x[a] = ld_tail(xr[a] + Df, D - Df);
#pragma GCC unroll 8
    for (int b = 0; b < MQ; ++b) {
      const V::reg q = V::load(qr[b] + Df);
#pragma GCC unroll 64
      for (int a = 0; a < MI; ++a) acc[b * MI + a] = V::fmadd(q, x[a], acc[b * MI + a]);
    }
  }
  if (MQ == 1 && MI == W && ni == MI) {
    V::store(T, reduce(acc));
    return;
  }
  float out[NA];
#pragma GCC unroll 8
  for (int g = 0; g < NA / W; ++g) V::store(out + g * W, reduce(acc + g * W));
  for (int64_t b = 0; b < lmin(nq, MQ); ++b)
    for (int64_t a = 0; a < lmin(ni, MI); ++a) T[b * ldt + a] = out[b * MI + a];
}

void dots(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq, const float* X,
          float* T, int64_t ldt) {
  const int64_t nq4 = nq - nq % 4;
  if (nq4 > 0) {
    for (int64_t i = 0; i < nx; i += MI4) {
      const int64_t ni = lmin(MI4, nx - i);
      for (int64_t b = 0; b < nq4; b += 4)
        micro<MI4, 4>(D, Qp + b * ldq, ldq, X + i * D, ni, 4, T + b * ldt + i, ldt);
    }
  }
  for (int64_t b = nq4; b < nq; ++b) {
    for (int64_t i = 0; i < nx; i += MI1)
      micro<MI1, 1>(D, Qp + b * ldq, ldq, X + i * D, lmin(MI1, nx - i), 1, T + b * ldt + i, ldt);
  }
}

// s_j = row[j] (+ bias[j]) for the chunk at j, c <= W lanes valid.
inline V::reg score_chunk(const float* row, const float* bias, int64_t j, int64_t c) {
  V::reg s = c == W ? V::load(row + j) : ld_tail(row + j, c);
  if (bias) s = V::add(s, c == W ? V::load(bias + j) : ld_tail(bias + j, c));
  return s;
}

// s * 0 is 0 for finite s and NaN otherwise; summing them flags any.
inline bool all_zero(V::reg flags) {
  const float h = V::hsum(flags);
  return h == 0.0f;
}

int64_t above(int64_t n, const float* row, const float* bias, float thr, int32_t* idx,
              float* val, bool* bad) {
  const V::reg t = V::set1(thr), zero = V::zero();
  V::reg flags = zero;
  int64_t m = 0;
  for (int64_t j = 0; j < n; j += W) {
    const int64_t c = lmin(W, n - j);
    const V::reg s = score_chunk(row, bias, j, c);
    flags = V::fmadd(s, zero, flags);
    uint32_t mk = gt_mask(s, t);
    if (c < W) mk &= (1u << c) - 1u;
    if (mk) {
      float tmp[W];
      V::store(tmp, s);
      while (mk) {
        const int l = __builtin_ctz(mk);
        idx[m] = static_cast<int32_t>(j + l);
        val[m] = tmp[l];
        ++m;
        mk &= mk - 1u;
      }
    }
  }
  if (!all_zero(flags)) *bad = true;
  return m;
}

void count(int64_t n, const float* row, const float* bias, float s, int64_t* gt, int64_t* eq,
           bool* bad) {
  const V::reg t = V::set1(s), zero = V::zero();
  V::reg flags = zero;
  int64_t g = 0, e = 0;
  for (int64_t j = 0; j < n; j += W) {
    const int64_t c = lmin(W, n - j);
    const V::reg v = score_chunk(row, bias, j, c);
    flags = V::fmadd(v, zero, flags);
    uint32_t mg = gt_mask(v, t), me = eq_mask(v, t);
    if (c < W) {
      mg &= (1u << c) - 1u;
      me &= (1u << c) - 1u;
    }
    g += popcount(mg);
    e += popcount(me);
  }
  *gt += g;
  *eq += e;
  if (!all_zero(flags)) *bad = true;
}

float stream_max(int64_t n, const float* x) {
  V::reg m0 = V::set1(-3.0e38f), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    m0 = V::max(m0, V::load(x + i));
    m1 = V::max(m1, V::load(x + i + W));
    m2 = V::max(m2, V::load(x + i + 2 * W));
    m3 = V::max(m3, V::load(x + i + 3 * W));
  }
  float r = V::hmax(V::max(V::max(m0, m1), V::max(m2, m3)));
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

const grurec::TopkKernels kTopk = {GRUREC_LEVEL_NAME, W, dots, above, count, stream_max};

}  // namespace
}  // namespace GRUREC_NS

const grurec::TopkKernels* grurec::GRUREC_TOPK_FN() { return &GRUREC_NS::kTopk; }
