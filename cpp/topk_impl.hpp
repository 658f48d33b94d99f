// Top-k / rank-count inner loops, one copy per SIMD level. Included once per
// level by topk_<level>.cpp, which defines the level macro, GRUREC_NS,
// GRUREC_LEVEL_NAME and the table getter GRUREC_TOPK_FN. See
// topk_kernels.hpp for the contract and the canonical score.
//
// The canonical dot product keeps 8 partial sums (lane l takes elements
// 8c + l, chunk c by chunk c, one FMA each) and reduces them by the halving
// tree: lane l + 4 onto l, then l + 2 onto l, then lane 1 onto lane 0. An
// 8-lane accumulator is a ymm register (avx2) or half a zmm (avx512):
//
// * many queries (dots through panel_micro): a register block of MI items x
//   MQ queries, every (item, query) pair its own 8-lane accumulator; avx512
//   puts two queries in a zmm (queries packed [chunk][query pair][8]) and
//   broadcasts the item's chunk to both halves (a load, no shuffle). Per pair
//   that is ceil(D/8) 8-lane FMAs and, for the reduction, 14 shuffles and 7
//   adds per 16 pairs (avx512) or per 8 pairs (avx2).
// * one query (one_micro): a block of rows, one accumulator per row (avx2)
//   or per two rows (avx512: [row a | row b], one zmm load per row and one
//   shuffle per output for every 16 floats). The item table is streamed
//   once, with a software prefetch of the block after next (the rows of a
//   block are read interleaved, a pattern the hardware prefetcher follows
//   poorly: ~20 instead of ~31 GB/s on one thread here).
//
// Both paths give every (query, item) pair the same arithmetic, so avx2 and
// avx512 give the same scores and every path agrees bit for bit. The scalar
// level has the same lanes and tree but multiplies and adds separately (the
// x86-64 baseline has no FMA), so its last bits differ.
//
// * neon: the avx2 blocking in two q registers per 8-lane accumulator
//   (many queries: 4 items x 2 queries; one query: 4 items), so neon's
//   scores equal avx2's bit for bit as well.
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
constexpr int L = 8;            // lanes of the canonical accumulator
constexpr int64_t kPrefetch = 2048;  // one-query prefetch: bytes past the block after next
constexpr int64_t kPanelAhead = 4;   // many-query micro-blocks prefetched ahead

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// r[a] = base + min(a, n - 1) * ld for a < m: the rows of a register block,
// rows past the n real ones repeating the last (their results are dropped).
inline void block_rows(const float* base, int64_t n, int64_t ld, int m, const float** r) {
  for (int a = 0; a < m; ++a) r[a] = base + (a < n ? a : n - 1) * ld;
}

#if defined(GRUREC_LEVEL_AVX512) || defined(GRUREC_LEVEL_AVX2)
// Lanes < c of 8 set (c may be <= 0 or >= 8).
inline __m256i mask8(int64_t c) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int cc = static_cast<int>(c < 0 ? 0 : (c > 8 ? 8 : c));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(cc), lane);
}
// 8 floats from p, lanes at or past c zero (never read).
inline __m256 load8(const float* p, int64_t c) {
  return c >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask8(c));
}
inline __m256 fold128(__m256 a, __m256 b) {  // [a.lo + a.hi | b.lo + b.hi]
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
#endif

#if defined(GRUREC_LEVEL_AVX512)
constexpr int MI = 4, MG = 4;  // many-query block: 4 items x 4 zmm of 2 queries
constexpr int PANEL = 2 * MG;  // queries per many-query block
constexpr int ONE = 16;        // rows per one-query block

inline V::reg ld_tail(const float* p, int64_t c) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << c) - 1u), p);
}
inline uint32_t gt_mask(V::reg a, V::reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline uint32_t eq_mask(V::reg a, V::reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }

inline __m512 join(__m256 a, __m256 b) {  // [a | b]
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)), _mm256_castps_pd(b), 1));
}
// p[0..8) in both halves (c valid).
inline __m512 bcast8(const float* p) {
  return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p))));
}
inline __m512 bcast8_tail(const float* p, int64_t c) {
  const __m256 x = load8(p, c);
  return join(x, x);
}
// Halving folds, two registers at a time. Blocks are 128-bit.
inline __m512 fold_l4(__m512 v, __m512 w) {  // blocks: (vA, vB, wA, wB), lanes l + l+4
  return _mm512_add_ps(_mm512_shuffle_f32x4(v, w, 0x88), _mm512_shuffle_f32x4(v, w, 0xDD));
}
// Block j, lane m of the result = the 4-lane tree (l + l+2, then 0 + 1) of
// block j of u[m].
inline __m512 reduce4(__m512 u0, __m512 u1, __m512 u2, __m512 u3) {
  const __m512d a0 = _mm512_castps_pd(u0), a1 = _mm512_castps_pd(u1);
  const __m512d a2 = _mm512_castps_pd(u2), a3 = _mm512_castps_pd(u3);
  const __m512 s0 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a0, a1)),
                                  _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a1)));
  const __m512 s1 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a2, a3)),
                                  _mm512_castpd_ps(_mm512_unpackhi_pd(a2, a3)));
  return _mm512_add_ps(_mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(3, 1, 3, 1)));
}
// Eight zmm of two 8-lane accumulators each: block j, lane m of the result =
// the canonical sum of half (j % 2) of v[2m + j / 2].
inline __m512 reduce16(const __m512* v) {
  return reduce4(fold_l4(v[0], v[1]), fold_l4(v[2], v[3]), fold_l4(v[4], v[5]),
                 fold_l4(v[6], v[7]));
}
inline __m128 block(__m512 v, int j) {
  switch (j) {
    case 0: return _mm512_castps512_ps128(v);
    case 1: return _mm512_extractf32x4_ps(v, 1);
    case 2: return _mm512_extractf32x4_ps(v, 2);
    default: return _mm512_extractf32x4_ps(v, 3);
  }
}

// Pk[c][g][h][l] = q_{2g+h}[8c + l] for a panel of PANEL query rows (Qp,
// stride ldq, zero past D; rows >= nq zero), c < C = ceil(D/8).
void pack_panel(int64_t nq, int64_t C, const float* Qp, int64_t ldq, float* Pk) {
  for (int64_t c = 0; c < C; ++c)
    for (int q = 0; q < PANEL; ++q) {
      float* dst = Pk + (c * PANEL + q) * L;
      if (q < nq)
        std::memcpy(dst, Qp + q * ldq + L * c, L * sizeof(float));
      else
        std::memset(dst, 0, L * sizeof(float));
    }
}
inline int64_t panel_floats(int64_t D) { return PANEL * L * ((D + L - 1) / L); }

// T[q*ldt + a] = dot(query q of the packed panel, item row a of X) for
// a < ni (rows >= ni repeat the last; dropped), q < nq.
void panel_micro(int64_t D, const float* Pk, const float* X, int64_t ni, int64_t nq, float* T,
                 int64_t ldt) {
  const float* xr[MI];
  block_rows(X, ni, D, MI, xr);
  __m512 acc[MI][MG];
#pragma GCC unroll 16
  for (int a = 0; a < MI; ++a)
#pragma GCC unroll 8
    for (int g = 0; g < MG; ++g) acc[a][g] = _mm512_setzero_ps();
  const int64_t Cf = D / L;
  for (int64_t c = 0; c < Cf; ++c) {
    __m512 q[MG];
#pragma GCC unroll 8
    for (int g = 0; g < MG; ++g) q[g] = _mm512_loadu_ps(Pk + (c * MG + g) * 2 * L);
#pragma GCC unroll 16
    for (int a = 0; a < MI; ++a) {
      const __m512 x = bcast8(xr[a] + L * c);
#pragma GCC unroll 8
      for (int g = 0; g < MG; ++g) acc[a][g] = _mm512_fmadd_ps(q[g], x, acc[a][g]);
    }
  }
  if (D % L) {
    const int64_t c = Cf;
    __m512 q[MG];
#pragma GCC unroll 8
    for (int g = 0; g < MG; ++g) q[g] = _mm512_loadu_ps(Pk + (c * MG + g) * 2 * L);
#pragma GCC unroll 16
    for (int a = 0; a < MI; ++a) {
      const __m512 x = bcast8_tail(xr[a] + L * c, D % L);
#pragma GCC unroll 8
      for (int g = 0; g < MG; ++g) acc[a][g] = _mm512_fmadd_ps(q[g], x, acc[a][g]);
    }
  }
  // Queries 2g .. 2g+3 x items 0..3 per reduction: block j = query 2g + j.
#pragma GCC unroll 4
  for (int g = 0; g < MG; g += 2) {
    const __m512 v[8] = {acc[0][g], acc[0][g + 1], acc[1][g], acc[1][g + 1],
                         acc[2][g], acc[2][g + 1], acc[3][g], acc[3][g + 1]};
    const __m512 r = reduce16(v);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t q = 2 * g + j;
      if (q >= nq) break;
      float* dst = T + q * ldt;
      if (ni == MI) {
        _mm_storeu_ps(dst, block(r, j));
      } else {
        float tmp[4];
        _mm_storeu_ps(tmp, block(r, j));
        for (int64_t a = 0; a < ni; ++a) dst[a] = tmp[a];
      }
    }
  }
}

// One query q (zero-padded to a multiple of 8) against exactly 16 rows of X
// (stride D): T[0..16). Accumulator 2m holds rows (m, m + 4), 2m + 1 rows
// (m + 8, m + 12), so reduce16 yields the rows in order. pf, if not 0, is the
// address of a later block of 16 rows (64 D bytes): each 16-float step
// prefetches the next 1 KiB of it, which covers it by the last step. Rows are
// addressed from one pointer and strides, and prefetches from one more: with
// 16 row pointers GCC runs out of registers and spills vectors.
void one_micro(int64_t D, const float* q, const float* X, float* T, uintptr_t pf) {
  const int64_t S = 4 * D;  // floats from row r to row r + 4
  __m512 acc[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) acc[i] = _mm512_setzero_ps();
  // 16 floats of two rows at a time: [a0 a1 | b0 b1] (8-float chunks) ->
  // [a0 | b0] and [a1 | b1], one zmm load per row and one shuffle per output.
  int64_t p = 0;
  for (; p + 2 * L <= D; p += 2 * L, pf += pf ? 1024 : 0) {
    if (pf) {
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) __builtin_prefetch(reinterpret_cast<const void*>(pf + 64 * j), 0, 3);
    }
    const __m512 q0 = bcast8(q + p), q1 = bcast8(q + p + L);
    const float* r = X + p;
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m, r += D) {
      const __m512 za = _mm512_loadu_ps(r), zb = _mm512_loadu_ps(r + S);
      const __m512 zc = _mm512_loadu_ps(r + 2 * S), zd = _mm512_loadu_ps(r + 3 * S);
      acc[2 * m] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(za, zb, 0x44), q0, acc[2 * m]);
      acc[2 * m + 1] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(zc, zd, 0x44), q0, acc[2 * m + 1]);
      acc[2 * m] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(za, zb, 0xEE), q1, acc[2 * m]);
      acc[2 * m + 1] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(zc, zd, 0xEE), q1, acc[2 * m + 1]);
    }
  }
  if (p < D) {  // 1..15 floats left: one or two chunks, the rest masked off
    if (pf) {  // 1 KiB per step, this one included, covers the 64 D bytes
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) __builtin_prefetch(reinterpret_cast<const void*>(pf + 64 * j), 0, 3);
    }
    const int64_t c = D - p;
    const __mmask16 k = static_cast<__mmask16>((1u << c) - 1u);
    // q is zero from D to the next multiple of 8: q1 exists only when c > 8
    const __m512 q0 = bcast8(q + p), q1 = c > L ? bcast8(q + p + L) : _mm512_setzero_ps();
    const float* r = X + p;
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m, r += D) {
      const __m512 za = _mm512_maskz_loadu_ps(k, r), zb = _mm512_maskz_loadu_ps(k, r + S);
      const __m512 zc = _mm512_maskz_loadu_ps(k, r + 2 * S);
      const __m512 zd = _mm512_maskz_loadu_ps(k, r + 3 * S);
      acc[2 * m] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(za, zb, 0x44), q0, acc[2 * m]);
      acc[2 * m + 1] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(zc, zd, 0x44), q0, acc[2 * m + 1]);
      if (c > L) {
        acc[2 * m] = _mm512_fmadd_ps(_mm512_shuffle_f32x4(za, zb, 0xEE), q1, acc[2 * m]);
        acc[2 * m + 1] =
            _mm512_fmadd_ps(_mm512_shuffle_f32x4(zc, zd, 0xEE), q1, acc[2 * m + 1]);
      }
    }
  }
  _mm512_storeu_ps(T, reduce16(acc));
}

#elif defined(GRUREC_LEVEL_AVX2)
constexpr int MI = 4, MQ = 2;  // many-query block: 4 items x 2 queries
constexpr int PANEL = MQ;
constexpr int ONE = 8;  // rows per one-query block

inline V::reg ld_tail(const float* p, int64_t c) { return load8(p, c); }
inline uint32_t gt_mask(V::reg a, V::reg b) {
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)));
}
inline uint32_t eq_mask(V::reg a, V::reg b) {
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)));
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
// Lane 4h + m of the result = the canonical sum of v[h + 2m].
inline __m256 reduce8(const __m256* v) {
  return fold32(fold64(fold128(v[0], v[1]), fold128(v[2], v[3])),
                fold64(fold128(v[4], v[5]), fold128(v[6], v[7])));
}
inline int64_t panel_floats(int64_t) { return 0; }  // rows are used as they are

// T[b*ldt + a] for MI items x MQ query rows (Qp, stride ldq, zero past D).
void panel_micro(int64_t D, const float* Qp, int64_t ldq, const float* X, int64_t ni,
                 int64_t nq, float* T, int64_t ldt) {
  const float* xr[MI];
  block_rows(X, ni, D, MI, xr);
  const float* qr[MQ];
  block_rows(Qp, nq, ldq, MQ, qr);
  __m256 acc[MI][MQ];
#pragma GCC unroll 8
  for (int a = 0; a < MI; ++a)
#pragma GCC unroll 4
    for (int b = 0; b < MQ; ++b) acc[a][b] = _mm256_setzero_ps();
  for (int64_t p = 0; p < D; p += L) {
    const int64_t c = D - p;
    __m256 x[MI];
#pragma GCC unroll 8
    for (int a = 0; a < MI; ++a) x[a] = c >= L ? _mm256_loadu_ps(xr[a] + p) : load8(xr[a] + p, c);
#pragma GCC unroll 4
    for (int b = 0; b < MQ; ++b) {
      const __m256 q = _mm256_loadu_ps(qr[b] + p);
#pragma GCC unroll 8
      for (int a = 0; a < MI; ++a) acc[a][b] = _mm256_fmadd_ps(q, x[a], acc[a][b]);
    }
  }
  // Lane 4h + m = item m, query h.
  const __m256 v[8] = {acc[0][0], acc[0][1], acc[1][0], acc[1][1],
                       acc[2][0], acc[2][1], acc[3][0], acc[3][1]};
  const __m256 r = reduce8(v);
  for (int h = 0; h < MQ && h < nq; ++h) {
    const __m128 blk = h == 0 ? _mm256_castps256_ps128(r) : _mm256_extractf128_ps(r, 1);
    if (ni == MI) {
      _mm_storeu_ps(T + h * ldt, blk);
    } else {
      float tmp[4];
      _mm_storeu_ps(tmp, blk);
      for (int64_t a = 0; a < ni; ++a) T[h * ldt + a] = tmp[a];
    }
  }
}

// One query against exactly 8 rows of X (stride D): T[0..8); row r's
// accumulator goes in slot 4 (r % 2) + r / 2 so reduce8 yields the rows in
// order. pf as for avx512 (a block of 8 rows, 32 D bytes: 4 lines per
// 8-float step).
void one_micro(int64_t D, const float* q, const float* X, float* T, uintptr_t pf) {
  __m256 acc[ONE];
#pragma GCC unroll 8
  for (int r = 0; r < ONE; ++r) acc[r] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + L <= D; p += L, pf += pf ? 256 : 0) {
    if (pf) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) __builtin_prefetch(reinterpret_cast<const void*>(pf + 64 * j), 0, 3);
    }
    const __m256 qv = _mm256_loadu_ps(q + p);
    const float* x = X + p;
#pragma GCC unroll 8
    for (int r = 0; r < ONE; ++r, x += D) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), qv, acc[r]);
  }
  if (p < D) {
    if (pf) {  // 256 bytes per step, this one included, covers the 32 D bytes
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) __builtin_prefetch(reinterpret_cast<const void*>(pf + 64 * j), 0, 3);
    }
    const __m256 qv = _mm256_loadu_ps(q + p);  // zero past D
    const __m256i k = mask8(D - p);
#pragma GCC unroll 8
    for (int r = 0; r < ONE; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_maskload_ps(X + r * D + p, k), qv, acc[r]);
  }
  const __m256 v[8] = {acc[0], acc[4], acc[1], acc[5], acc[2], acc[6], acc[3], acc[7]};
  _mm256_storeu_ps(T, reduce8(v));
}
#elif defined(GRUREC_LEVEL_NEON)
// The canonical 8-lane accumulator is two q registers (lanes 0-3, 4-7);
// vfmaq_f32 is a fused multiply-add like vfmadd, so every pair gets exactly
// the avx2 / avx512 arithmetic and the three levels agree bit for bit.
constexpr int MI = 4;     // items per many-query block
constexpr int PANEL = 2;  // queries per many-query block

inline V::reg ld_tail(const float* p, int64_t c) {  // lanes at or past c zero (c may be <= 0)
  float t[4] = {};
  for (int64_t i = 0; i < c && i < 4; ++i) t[i] = p[i];
  return vld1q_f32(t);
}
inline uint32_t bits4(uint32x4_t m) {
  const uint32x4_t w = {1u, 2u, 4u, 8u};
  return vaddvq_u32(vandq_u32(m, w));
}
inline uint32_t gt_mask(V::reg a, V::reg b) { return bits4(vcgtq_f32(a, b)); }
inline uint32_t eq_mask(V::reg a, V::reg b) { return bits4(vceqq_f32(a, b)); }

// Lane a of the result = the canonical tree of item a's 8 lanes (lo[a] |
// hi[a]): lanes l + l+4, then l + l+2, then lane 0 + lane 1.
inline float32x4_t reduce4(const float32x4_t* lo, const float32x4_t* hi) {
  float32x4_t s[4];
  for (int a = 0; a < 4; ++a) s[a] = vaddq_f32(lo[a], hi[a]);
  const float32x4_t x = vaddq_f32(vcombine_f32(vget_low_f32(s[0]), vget_low_f32(s[1])),
                                  vcombine_f32(vget_high_f32(s[0]), vget_high_f32(s[1])));
  const float32x4_t y = vaddq_f32(vcombine_f32(vget_low_f32(s[2]), vget_low_f32(s[3])),
                                  vcombine_f32(vget_high_f32(s[2]), vget_high_f32(s[3])));
  return vpaddq_f32(x, y);
}

// T[b*ldt + a] for MI items x NQ query rows (Qp, stride ldq, zero past D to
// the next multiple of 8); rows past ni / nq repeat the last and are dropped.
template <int NQ>
void panel_micro(int64_t D, const float* Qp, int64_t ldq, const float* X, int64_t ni,
                 int64_t nq, float* T, int64_t ldt) {
  const float* xr[MI];
  block_rows(X, ni, D, MI, xr);
  const float* qr[NQ];
  block_rows(Qp, nq, ldq, NQ, qr);
  float32x4_t lo[NQ][MI], hi[NQ][MI];
  for (int b = 0; b < NQ; ++b)
    for (int a = 0; a < MI; ++a) lo[b][a] = hi[b][a] = vdupq_n_f32(0.0f);
  int64_t p = 0;
  for (; p + L <= D; p += L) {
    float32x4_t ql[NQ], qh[NQ];
#pragma GCC unroll 4
    for (int b = 0; b < NQ; ++b) {
      ql[b] = vld1q_f32(qr[b] + p);
      qh[b] = vld1q_f32(qr[b] + p + 4);
    }
#pragma GCC unroll 4
    for (int a = 0; a < MI; ++a) {
      const float32x4_t xl = vld1q_f32(xr[a] + p), xh = vld1q_f32(xr[a] + p + 4);
#pragma GCC unroll 4
      for (int b = 0; b < NQ; ++b) {
        lo[b][a] = vfmaq_f32(lo[b][a], ql[b], xl);
        hi[b][a] = vfmaq_f32(hi[b][a], qh[b], xh);
      }
    }
  }
  if (p < D) {  // elements past D count as 0 (fma(0, 0, p) like the x86 masked loads)
    const int64_t c = D - p;
    for (int a = 0; a < MI; ++a) {
      const float32x4_t xl = ld_tail(xr[a] + p, c), xh = ld_tail(xr[a] + p + 4, c - 4);
      for (int b = 0; b < NQ; ++b) {
        lo[b][a] = vfmaq_f32(lo[b][a], vld1q_f32(qr[b] + p), xl);
        hi[b][a] = vfmaq_f32(hi[b][a], vld1q_f32(qr[b] + p + 4), xh);
      }
    }
  }
  for (int b = 0; b < NQ && b < nq; ++b) {
    float out[4];
    vst1q_f32(out, reduce4(lo[b], hi[b]));
    for (int64_t a = 0; a < ni; ++a) T[b * ldt + a] = out[a];
  }
}

void dots(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq, const float* X,
          float* T, int64_t ldt, float*) {
  const int64_t mb_bytes = MI * D * 4;
  for (int64_t i = 0; i < nx; i += MI) {
    const int64_t ni = lmin(MI, nx - i);
    const char* ahead = reinterpret_cast<const char*>(X + i * D) + kPanelAhead * mb_bytes;
    for (int64_t o = 0; o < mb_bytes; o += 64) __builtin_prefetch(ahead + o, 0, 3);
    int64_t b = 0;
    for (; b + PANEL <= nq; b += PANEL)
      panel_micro<PANEL>(D, Qp + b * ldq, ldq, X + i * D, ni, PANEL, T + b * ldt + i, ldt);
    if (b < nq) panel_micro<1>(D, Qp + b * ldq, ldq, X + i * D, ni, 1, T + b * ldt + i, ldt);
  }
}
#endif

#if defined(GRUREC_LEVEL_AVX512) || defined(GRUREC_LEVEL_AVX2)
void dots(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq, const float* X,
          float* T, int64_t ldt, float* work) {
  // Queries in panels; a remainder too small to fill a panel usefully goes
  // one query at a time.
  int64_t npanel = nq / PANEL;
  const int64_t rem = nq - npanel * PANEL;
  if (rem > 1 && 4 * rem >= PANEL) ++npanel;
  if (npanel > 0) {
#if defined(GRUREC_LEVEL_AVX512)
    const int64_t pf = panel_floats(D);
    for (int64_t p = 0; p < npanel; ++p)
      pack_panel(lmin(PANEL, nq - p * PANEL), pf / (PANEL * L), Qp + p * PANEL * ldq, ldq,
                 work + p * pf);
#else
    (void)work;
#endif
    const int64_t mb_bytes = MI * D * 4;
    for (int64_t i = 0; i < nx; i += MI) {
      const int64_t ni = lmin(MI, nx - i);
      // The rows of a later micro-block, in case they still come from memory.
      const char* ahead = reinterpret_cast<const char*>(X + i * D) + kPanelAhead * mb_bytes;
      for (int64_t o = 0; o < mb_bytes; o += 64) __builtin_prefetch(ahead + o, 0, 3);
      for (int64_t p = 0; p < npanel; ++p) {
#if defined(GRUREC_LEVEL_AVX512)
        panel_micro(D, work + p * pf, X + i * D, ni, lmin(PANEL, nq - p * PANEL),
                    T + p * PANEL * ldt + i, ldt);
#else
        panel_micro(D, Qp + p * PANEL * ldq, ldq, X + i * D, ni, lmin(PANEL, nq - p * PANEL),
                    T + p * PANEL * ldt + i, ldt);
#endif
      }
    }
  }
  // One query: a stream over the rows, prefetching the block after next
  // (plus kPrefetch bytes). A last partial block is copied into `work`,
  // padded with zero rows, so the kernel always sees ONE rows.
  const int64_t nfull = nx / ONE * ONE;
  for (int64_t b = lmin(npanel * PANEL, nq); b < nq; ++b) {
    const float* qb = Qp + b * ldq;
    // a prefetch never faults, so its address may lie past the table
    const uintptr_t ahead = (2 * ONE * D) * sizeof(float) + kPrefetch;
    for (int64_t i = 0; i < nfull; i += ONE) {
      const float* xi = X + i * D;
      one_micro(D, qb, xi, T + b * ldt + i, reinterpret_cast<uintptr_t>(xi) + ahead);
    }
    if (nfull < nx) {
      const int64_t ni = nx - nfull;
      std::memcpy(work, X + nfull * D, sizeof(float) * ni * D);
      std::memset(work + ni * D, 0, sizeof(float) * (ONE - ni) * D);
      float out[ONE];
      one_micro(D, qb, work, out, 0);
      for (int64_t a = 0; a < ni; ++a) T[b * ldt + nfull + a] = out[a];
    }
  }
}

#elif defined(GRUREC_LEVEL_NEON)
// (dots, ld_tail and the masks are above)
#else  // scalar: the same 8 lanes and tree, multiply and add separately
constexpr int PANEL = 4;
inline V::reg ld_tail(const float* p, int64_t) { return *p; }
inline uint32_t gt_mask(V::reg a, V::reg b) { return a > b ? 1u : 0u; }
inline uint32_t eq_mask(V::reg a, V::reg b) { return a == b ? 1u : 0u; }

inline float dot8(int64_t D, const float* q, const float* x) {
  float p[L] = {};
  int64_t k = 0;
  for (; k + L <= D; k += L)
    for (int l = 0; l < L; ++l) p[l] = q[k + l] * x[k + l] + p[l];
  for (int l = 0; k + l < D; ++l) p[l] = q[k + l] * x[k + l] + p[l];
  for (int l = 0; l < 4; ++l) p[l] = p[l] + p[l + 4];
  for (int l = 0; l < 2; ++l) p[l] = p[l] + p[l + 2];
  return p[0] + p[1];
}

void dots(int64_t nq, int64_t nx, int64_t D, const float* Qp, int64_t ldq, const float* X,
          float* T, int64_t ldt, float*) {
  for (int64_t i = 0; i < nx; ++i)
    for (int64_t b = 0; b < nq; ++b) T[b * ldt + i] = dot8(D, Qp + b * ldq, X + i * D);
}
#endif

// dot1: one (query, item) pair, the canonical lanes and tree (see
// topk_kernels.hpp), with no block set-up.
#if defined(GRUREC_LEVEL_AVX512) || defined(GRUREC_LEVEL_AVX2)
float dot1(int64_t D, const float* q, const float* x) {
  __m256 acc = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + L <= D; p += L) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(q + p), acc);
  if (p < D) acc = _mm256_fmadd_ps(load8(x + p, D - p), _mm256_loadu_ps(q + p), acc);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));  // l + l+4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                               // l + l+2
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));                              // 0 + 1
}
#elif defined(GRUREC_LEVEL_NEON)
float dot1(int64_t D, const float* q, const float* x) {
  float32x4_t lo = vdupq_n_f32(0.0f), hi = vdupq_n_f32(0.0f);
  int64_t p = 0;
  for (; p + L <= D; p += L) {
    lo = vfmaq_f32(lo, vld1q_f32(q + p), vld1q_f32(x + p));
    hi = vfmaq_f32(hi, vld1q_f32(q + p + 4), vld1q_f32(x + p + 4));
  }
  if (p < D) {
    const int64_t c = D - p;
    lo = vfmaq_f32(lo, vld1q_f32(q + p), ld_tail(x + p, c));
    hi = vfmaq_f32(hi, vld1q_f32(q + p + 4), ld_tail(x + p + 4, c - 4));
  }
  const float32x4_t s = vaddq_f32(lo, hi);
  const float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
  return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}
#else
float dot1(int64_t D, const float* q, const float* x) { return dot8(D, q, x); }
#endif

inline int popcount(uint32_t m) { return __builtin_popcount(m); }

// s_j = row[j] (+ bias[j]) for the chunk at j, c <= W lanes valid.
inline V::reg score_chunk(const float* row, const float* bias, int64_t j, int64_t c) {
  V::reg s = c == W ? V::load(row + j) : ld_tail(row + j, c);
  if (bias) s = V::add(s, c == W ? V::load(bias + j) : ld_tail(bias + j, c));
  return s;
}

// s * 0 is 0 for finite s and NaN otherwise; summing them flags any.
inline bool all_zero(V::reg flags) { return V::hsum(flags) == 0.0f; }

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


constexpr int64_t kScanAhead = 4;  // int8 scan: groups prefetched ahead

// The int8 prefilter's scan (topk_kernels.hpp): 16 items in lanes, up to 8
// (avx512) or 4 queries at a time. Each pair of dimensions of a group is widened to int16
// once and multiplied with every query's int16 pair (pmaddwd: two products
// and their sum per int32 lane, exact), so the integer dot I is exact; only
// the test at the end is floating point.
#if defined(GRUREC_LEVEL_AVX512)
template <int NR>
inline void scan8_group(int64_t D2, const int8_t* xg, const uint32_t* qv, int64_t QL,
                        __m512 sc, __m512 E, __m512 F, __m512 bp, const float* qf,
                        const float* th, uint16_t* m) {
  __m512i acc[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) acc[j] = _mm512_setzero_si512();
  for (int64_t k = 0; k < D2; ++k) {
    // the group kScanAhead groups on, a line per two steps (a prefetch never faults)
    if (!(k & 1)) __builtin_prefetch(xg + kScanAhead * 32 * D2 + k * 32, 0, 3);
    // 32 int8: item l's dims 2k, 2k+1 at 2l, 2l+1 -> int16 lanes 2l, 2l+1
    const __m512i x = _mm512_cvtepi8_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + k * 32)));
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j)
      acc[j] = _mm512_add_epi32(
          acc[j], _mm512_madd_epi16(x, _mm512_set1_epi32(static_cast<int>(qv[k * QL + j]))));
  }
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const __m512 b1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), _mm512_set1_ps(qf[j]));
    const __m512 t1 = _mm512_fmadd_ps(b1, sc, bp);
    const __m512 t2 = _mm512_fmadd_ps(_mm512_set1_ps(qf[QL + j]), E, t1);
    const __m512 t3 = _mm512_fmadd_ps(_mm512_set1_ps(qf[2 * QL + j]), F, t2);
    m[j] = static_cast<uint16_t>(_mm512_cmp_ps_mask(t3, _mm512_set1_ps(th[j]), _CMP_NLT_UQ));
  }
}

void scan8(int64_t ng, int64_t D2, const int8_t* x8, const float* sc, const float* E,
           const float* F, const float* bp, int64_t nq, const uint32_t* qv, int64_t QL,
           const float* qf, const float* th, uint16_t* m) {
  for (int64_t g = 0; g < ng; ++g) {
    const int8_t* xg = x8 + g * 32 * D2;
    const __m512 s = _mm512_loadu_ps(sc + g * 16), e = _mm512_loadu_ps(E + g * 16),
                 f = _mm512_loadu_ps(F + g * 16), b = _mm512_loadu_ps(bp + g * 16);
    for (int64_t r = 0; r < nq; r += 8) {
      const uint32_t* q = qv + r;
      const float* f3 = qf + r;
      uint16_t* mo = m + g * nq + r;
      switch (lmin(8, nq - r)) {
        case 1: scan8_group<1>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 2: scan8_group<2>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 3: scan8_group<3>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 4: scan8_group<4>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 5: scan8_group<5>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 6: scan8_group<6>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 7: scan8_group<7>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        default: scan8_group<8>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
      }
    }
  }
}
#elif defined(GRUREC_LEVEL_AVX2)
// Items 0-7 and 8-15 of a group in two halves of 16 bytes per pair of dims.
template <int NR>
inline void scan8_group(int64_t D2, const int8_t* xg, const uint32_t* qv, int64_t QL,
                        const float* sc, const float* E, const float* F, const float* bp,
                        const float* qf, const float* th, uint16_t* m) {
  __m256i lo[NR], hi[NR];
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j) lo[j] = hi[j] = _mm256_setzero_si256();
  for (int64_t k = 0; k < D2; ++k) {
    if (!(k & 1)) __builtin_prefetch(xg + kScanAhead * 32 * D2 + k * 32, 0, 3);
    const __m256i xl = _mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(xg + k * 32)));
    const __m256i xh = _mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(xg + k * 32 + 16)));
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const __m256i q = _mm256_set1_epi32(static_cast<int>(qv[k * QL + j]));
      lo[j] = _mm256_add_epi32(lo[j], _mm256_madd_epi16(xl, q));
      hi[j] = _mm256_add_epi32(hi[j], _mm256_madd_epi16(xh, q));
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j) {
    const __m256 sq = _mm256_set1_ps(qf[j]), nq = _mm256_set1_ps(qf[QL + j]);
    const __m256 neq = _mm256_set1_ps(qf[2 * QL + j]), t = _mm256_set1_ps(th[j]);
    int bits = 0;
    for (int h = 0; h < 2; ++h) {
      const __m256 b1 = _mm256_mul_ps(_mm256_cvtepi32_ps(h ? hi[j] : lo[j]), sq);
      const __m256 t1 = _mm256_fmadd_ps(b1, _mm256_loadu_ps(sc + 8 * h), _mm256_loadu_ps(bp + 8 * h));
      const __m256 t2 = _mm256_fmadd_ps(nq, _mm256_loadu_ps(E + 8 * h), t1);
      const __m256 t3 = _mm256_fmadd_ps(neq, _mm256_loadu_ps(F + 8 * h), t2);
      bits |= _mm256_movemask_ps(_mm256_cmp_ps(t3, t, _CMP_NLT_UQ)) << (8 * h);
    }
    m[j] = static_cast<uint16_t>(bits);
  }
}
#elif defined(GRUREC_LEVEL_NEON)
// vld2 splits a pair of dims into dim 2k and dim 2k + 1 of the 16 items;
// vmlal widens each to int32 products (exact) in four q registers.
template <int NR>
inline void scan8_group(int64_t D2, const int8_t* xg, const uint32_t* qv, int64_t QL,
                        const float* sc, const float* E, const float* F, const float* bp,
                        const float* qf, const float* th, uint16_t* m) {
  int32x4_t acc[NR][4];
  for (int j = 0; j < NR; ++j)
    for (int c = 0; c < 4; ++c) acc[j][c] = vdupq_n_s32(0);
  for (int64_t k = 0; k < D2; ++k) {
    const int8x16x2_t v = vld2q_s8(xg + k * 32);
    const int16x8_t a0 = vmovl_s8(vget_low_s8(v.val[0])), a1 = vmovl_high_s8(v.val[0]);
    const int16x8_t b0 = vmovl_s8(vget_low_s8(v.val[1])), b1 = vmovl_high_s8(v.val[1]);
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const uint32_t w = qv[k * QL + j];
      const int16_t qa = static_cast<int16_t>(w & 0xFFFFu), qb = static_cast<int16_t>(w >> 16);
      acc[j][0] = vmlal_n_s16(vmlal_n_s16(acc[j][0], vget_low_s16(a0), qa), vget_low_s16(b0), qb);
      acc[j][1] = vmlal_high_n_s16(vmlal_high_n_s16(acc[j][1], a0, qa), b0, qb);
      acc[j][2] = vmlal_n_s16(vmlal_n_s16(acc[j][2], vget_low_s16(a1), qa), vget_low_s16(b1), qb);
      acc[j][3] = vmlal_high_n_s16(vmlal_high_n_s16(acc[j][3], a1, qa), b1, qb);
    }
  }
  for (int j = 0; j < NR; ++j) {
    const float32x4_t sq = vdupq_n_f32(qf[j]), nq = vdupq_n_f32(qf[QL + j]);
    const float32x4_t neq = vdupq_n_f32(qf[2 * QL + j]), t = vdupq_n_f32(th[j]);
    uint32_t bits = 0;
    for (int c = 0; c < 4; ++c) {
      const float32x4_t b1 = vmulq_f32(vcvtq_f32_s32(acc[j][c]), sq);
      const float32x4_t t1 = vfmaq_f32(vld1q_f32(bp + 4 * c), b1, vld1q_f32(sc + 4 * c));
      const float32x4_t t2 = vfmaq_f32(t1, nq, vld1q_f32(E + 4 * c));
      const float32x4_t t3 = vfmaq_f32(t2, neq, vld1q_f32(F + 4 * c));
      // !(t3 < t): true for NaN as well
      bits |= bits4(vmvnq_u32(vcltq_f32(t3, t))) << (4 * c);
    }
    m[j] = static_cast<uint16_t>(bits);
  }
}
#endif
#if defined(GRUREC_LEVEL_AVX2) || defined(GRUREC_LEVEL_NEON)
// Groups of 16 items, up to 4 queries at a time (scan8_group above).
void scan8(int64_t ng, int64_t D2, const int8_t* x8, const float* sc, const float* E,
           const float* F, const float* bp, int64_t nq, const uint32_t* qv, int64_t QL,
           const float* qf, const float* th, uint16_t* m) {
  for (int64_t g = 0; g < ng; ++g) {
    const int8_t* xg = x8 + g * 32 * D2;
    const float *s = sc + g * 16, *e = E + g * 16, *f = F + g * 16, *b = bp + g * 16;
    for (int64_t r = 0; r < nq; r += 4) {
      const uint32_t* q = qv + r;
      const float* f3 = qf + r;
      uint16_t* mo = m + g * nq + r;
      switch (lmin(4, nq - r)) {
        case 1: scan8_group<1>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 2: scan8_group<2>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        case 3: scan8_group<3>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
        default: scan8_group<4>(D2, xg, q, QL, s, e, f, b, f3, th + r, mo); break;
      }
    }
  }
}
#elif !defined(GRUREC_LEVEL_AVX512)  // scalar: each product and sum rounded separately (the bound allows it)
void scan8(int64_t ng, int64_t D2, const int8_t* x8, const float* sc, const float* E,
           const float* F, const float* bp, int64_t nq, const uint32_t* qv, int64_t QL,
           const float* qf, const float* th, uint16_t* m) {
  for (int64_t g = 0; g < ng; ++g) {
    const int8_t* xg = x8 + g * 32 * D2;
    for (int64_t r = 0; r < nq; ++r) {
      int32_t acc[16] = {};
      for (int64_t k = 0; k < D2; ++k) {
        const uint32_t w = qv[k * QL + r];
        const int32_t qa = static_cast<int16_t>(w & 0xFFFFu), qb = static_cast<int16_t>(w >> 16);
        for (int l = 0; l < 16; ++l)
          acc[l] += qa * xg[k * 32 + 2 * l] + qb * xg[k * 32 + 2 * l + 1];
      }
      uint32_t bits = 0;
      for (int l = 0; l < 16; ++l) {
        const int64_t i = g * 16 + l;
        const float b1 = static_cast<float>(acc[l]) * qf[r];
        const float t1 = b1 * sc[i] + bp[i];
        const float t2 = qf[QL + r] * E[i] + t1;
        const float t3 = qf[2 * QL + r] * F[i] + t2;
        if (!(t3 < th[r])) bits |= 1u << l;
      }
      m[g * nq + r] = static_cast<uint16_t>(bits);
    }
  }
}
#endif

// Query rows handed to dots are zero-padded to a multiple of 8.
constexpr int PAD = L;

const grurec::TopkKernels kTopk = {GRUREC_LEVEL_NAME, PAD,  PANEL,      dots,       above,
                                   count,             dot1, stream_max, scan8};

}  // namespace
}  // namespace GRUREC_NS

const grurec::TopkKernels* grurec::GRUREC_TOPK_FN() { return &GRUREC_NS::kTopk; }
