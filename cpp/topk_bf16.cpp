// The bf16 prefilter of top-k: packing, the approximate-score tiles with
// their error bound, and the canonical dot for the pairs that survive. See
// topk_kernels.hpp for the contract and the derivation of the bound.
//
// Compiled with the avx512 level's flags plus -mavx512bf16 and
// -ffp-contract=off; topk.cpp hands the table out only when the CPU reports
// AVX512_BF16 and the active level is avx512. Like topk_impl.hpp, everything
// lives in an anonymous namespace and uses no std:: templates or inline
// library functions (a COMDAT merge with another translation unit's copy
// could run these instructions on a CPU without them).
//
// Dimension names: D dimensions, D2 = ceil(D/2) bf16 pairs, QL queries
// (padded to a multiple of 16, one zmm per 16), STRIP = 32 items per strip.
// Queries sit in lanes and items are broadcast: the items, converted anew
// for every call, then need no transpose (a row is loaded, converted and
// stored as it is, one sequential stream the hardware prefetcher follows),
// while the queries, transposed once per task, are reused against every
// item. A register tile is NZ zmm of queries x NI items (16 accumulators:
// vdpbf16ps has a latency of about 6 cycles at 2 per cycle here, so 12 must
// be in flight).
#include <immintrin.h>

#include <cstdint>

#include "topk_kernels.hpp"

namespace grurec_topk_bf16 {
namespace {

constexpr int STRIP = 32;
constexpr float kNormMax = 9223372036854775808.0f;  // 2^63: larger norms give inf
constexpr float kBiasMax = 8.507059173023462e+37f;  // 2^126: larger |bias| gives inf

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes < c of 16 set (c may be <= 0 or >= 16).
inline __mmask16 mask16(int64_t c) {
  return c >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : (c <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << c) - 1u));
}

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// 16 bf16 pairs of 16 floats lo and 16 floats hi: dword m = (lo|hi)[2m],
// [2m + 1], the even dim in the low half (what vdpbf16ps pairs).
inline __m512i pairs(__m512 lo, __m512 hi) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// The norm bound of topk_kernels.hpp from float32 sums of squares ss of D
// values: fl(sqrt(fl(ss + (D + 5) 2^-125))), inf at or above 2^63 and for a
// non-finite ss.
inline __m512 norms(__m512 ss, int64_t D) {
  const __m512 tiny = _mm512_set1_ps(static_cast<float>(D + 5) * 2.3509887e-38f);  // 2^-125
  const __m512 n = _mm512_sqrt_ps(_mm512_add_ps(ss, tiny));
  const __mmask16 ok = _mm512_cmp_ps_mask(n, _mm512_set1_ps(kNormMax), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(ok, _mm512_set1_ps(__builtin_inff()), n);
}

// Row x[0..D) as D2 bf16 pairs into dst; returns its float32 sum of squares
// (at most 2 ceil(D/32) + 4 <= D + 5 roundings per term).
inline float convert_row(int64_t D, const float* x, uint32_t* dst) {
  const int64_t D2 = (D + 1) / 2;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 32 <= D; p += 32) {
    const __m512 lo = _mm512_loadu_ps(x + p), hi = _mm512_loadu_ps(x + p + 16);
    s0 = _mm512_fmadd_ps(lo, lo, s0);
    s1 = _mm512_fmadd_ps(hi, hi, s1);
    _mm512_storeu_si512(dst + p / 2, pairs(lo, hi));
  }
  if (p < D) {
    const __m512 lo = _mm512_maskz_loadu_ps(mask16(D - p), x + p);
    const __m512 hi = _mm512_maskz_loadu_ps(mask16(D - p - 16), x + p + 16);
    s0 = _mm512_fmadd_ps(lo, lo, s0);
    s1 = _mm512_fmadd_ps(hi, hi, s1);
    _mm512_mask_storeu_epi32(dst + p / 2, mask16(D2 - p / 2), pairs(lo, hi));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// r[m] := column m of the 16 x 16 dword matrix with rows r[0..16).
inline void transpose16(__m512i* r) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // In 128-bit block L: r[4i + m] = column 4L + m of rows 4i .. 4i + 3.
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
#pragma GCC unroll 4
  for (int m = 0; m < 4; ++m) {
    const __m512i v0 = _mm512_shuffle_i32x4(r[m], r[4 + m], 0x88);
    const __m512i w0 = _mm512_shuffle_i32x4(r[m], r[4 + m], 0xDD);
    const __m512i v1 = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0xDD);
    t[m] = _mm512_shuffle_i32x4(v0, v1, 0x88);
    t[8 + m] = _mm512_shuffle_i32x4(v0, v1, 0xDD);
    t[4 + m] = _mm512_shuffle_i32x4(w0, w1, 0x88);
    t[12 + m] = _mm512_shuffle_i32x4(w0, w1, 0xDD);
  }
#pragma GCC unroll 16
  for (int m = 0; m < 16; ++m) r[m] = t[m];
}

void pack_queries(int64_t nq, int64_t D, const float* Qp, int64_t ldq, uint32_t* qv,
                  float* nrm) {
  const int64_t D2 = (D + 1) / 2, QL = (nq + 15) / 16 * 16;
  // Rows as pairs first (row r at rows + r * ldr), then 16 x 16 blocks
  // transposed into qv. ldr: whole zmm, plus one so the 16 rows of a block
  // do not all fall in the same cache sets.
  const int64_t ldr = (D2 + 15) / 16 * 16 + 16;
  uint32_t* rows = qv + D2 * QL;  // scratch: the caller gives qv room for it
  alignas(64) float ss[16];
  for (int64_t r0 = 0; r0 < QL; r0 += 16) {
    for (int64_t r = 0; r < 16; ++r) {
      uint32_t* row = rows + r * ldr;
      for (int64_t k = 0; k < ldr; k += 16) _mm512_storeu_si512(row + k, _mm512_setzero_si512());
      ss[r] = r0 + r < nq ? convert_row(D, Qp + (r0 + r) * ldq, row) : 0.0f;
    }
    _mm512_mask_storeu_ps(nrm + r0, mask16(nq - r0), norms(_mm512_load_ps(ss), D));
    for (int64_t k0 = 0; k0 < D2; k0 += 16) {
      __m512i t[16];
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) t[r] = _mm512_loadu_si512(rows + r * ldr + k0);
      transpose16(t);
      for (int64_t m = 0; m < 16 && k0 + m < D2; ++m)
        _mm512_storeu_si512(qv + (k0 + m) * QL + r0, t[m]);
    }
  }
}

void pack_items(int64_t ni, int64_t D, const float* X, const float* b, const grurec::Bf16Consts& c,
                uint32_t* xb, float* nx, float* bp, float* bm) {
  const int64_t D2 = (D + 1) / 2;
  alignas(64) float ss[STRIP];
  for (int64_t j = 0; j < ni; ++j) ss[j] = convert_row(D, X + j * D, xb + j * D2);
  for (int64_t j = ni; j < STRIP; ++j) {
    ss[j] = 0.0f;
    for (int64_t k = 0; k < D2; ++k) xb[j * D2 + k] = 0;
  }
  const __m512 kb = _mm512_set1_ps(c.kb), ax = _mm512_set1_ps(c.ax), a0 = _mm512_set1_ps(c.a0);
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  for (int g = 0; g < STRIP / 16; ++g) {
    const __mmask16 k = mask16(ni - 16 * g);
    const __m512 n = _mm512_maskz_mov_ps(k, norms(_mm512_load_ps(ss + 16 * g), D));
    const __m512 bv = b ? _mm512_maskz_loadu_ps(k, b + 16 * g) : _mm512_setzero_ps();
    const __m512 ab = _mm512_abs_ps(bv);
    __m512 eb = _mm512_fmadd_ps(kb, ab, _mm512_fmadd_ps(ax, n, a0));
    eb = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ab, _mm512_set1_ps(kBiasMax), _CMP_LT_OQ), inf, eb);
    _mm512_storeu_ps(nx + 16 * g, n);
    _mm512_storeu_ps(bp + 16 * g, _mm512_maskz_mov_ps(k, _mm512_add_ps(bv, eb)));
    _mm512_storeu_ps(bm + 16 * g, _mm512_maskz_mov_ps(k, _mm512_sub_ps(bv, eb)));
  }
}

// The bound's u and l (topk_kernels.hpp) from the approximation a, cq, nx and
// bp = fl(b + eb) / bm = fl(b - eb): fl(fma(nx, cq, fl(a + bp))) and
// fl(fma(-nx, cq, fl(a + bm))). scan and the bounds probe both use these.
inline __m512 upper(__m512 a, __m512 cq, __m512 nx, __m512 bp) {
  return _mm512_fmadd_ps(cq, nx, _mm512_add_ps(a, bp));
}
inline __m512 lower(__m512 a, __m512 cq, __m512 nx, __m512 bm) {
  return _mm512_fnmadd_ps(cq, nx, _mm512_add_ps(a, bm));
}

// acc[i][z] lane l = the bf16 dot of query 16 z + l (of the group at qv) and
// item i (of the items at xb).
template <int NZ, int NI>
inline void approx(int64_t D2, const uint32_t* qv, int64_t QL, const uint32_t* xb,
                   __m512 (&acc)[NI][NZ]) {
#pragma GCC unroll 16
  for (int i = 0; i < NI; ++i)
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) acc[i][z] = _mm512_setzero_ps();
  for (int64_t k = 0; k < D2; ++k) {
    __m512i q[NZ];
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) q[z] = _mm512_loadu_si512(qv + k * QL + 16 * z);
#pragma GCC unroll 16
    for (int i = 0; i < NI; ++i) {
      const __m512i x = _mm512_set1_epi32(static_cast<int>(xb[i * D2 + k]));
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z) acc[i][z] = _mm512_dpbf16_ps(acc[i][z], as_bh(q[z]), as_bh(x));
    }
  }
}

// Query groups [z0, z0 + NZ) x all STRIP items, NI at a time.
template <int NZ, int NI, bool CNT>
uint32_t scan_groups(int64_t z0, int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const float* th, const uint32_t* xb,
                 const float* nx, const float* bp, const float* bm, int64_t ni, const float* slo,
                 const float* shi, const uint16_t* tmask, uint16_t* top, uint16_t* unc,
                 int32_t* gt, const char* pf, int64_t pf_bytes) {
  const int64_t ZQ = (nq + 15) / 16, QL = 16 * ZQ;
  const int64_t pf_step = (pf_bytes / (STRIP / NI) + 63) / 64 * 64;  // bytes per item step
  uint32_t any = 0;  // items with a lane set in top or unc
  const uint32_t* q0 = qv + 16 * z0;
  __m512 c[NZ], t[NZ];
  __m512i g[NZ];
  __mmask16 lanes[NZ];  // the group's real queries
#pragma GCC unroll 4
  for (int z = 0; z < NZ; ++z) {
    lanes[z] = mask16(nq - 16 * (z0 + z));
    c[z] = _mm512_loadu_ps(cq + 16 * (z0 + z));
    t[z] = _mm512_loadu_ps(th + 16 * (z0 + z));
    g[z] = _mm512_setzero_si512();
  }
  for (int64_t j0 = 0; j0 < STRIP; j0 += NI, pf += pf_step, pf_bytes -= pf_step) {
    for (int64_t o = 0; o < pf_step && o < pf_bytes; o += 64) __builtin_prefetch(pf + o, 0, 3);
    __m512 acc[NI][NZ];
    approx<NZ, NI>(D2, q0, QL, xb + j0 * D2, acc);
#pragma GCC unroll 16
    for (int i = 0; i < NI; ++i) {
      const int64_t j = j0 + i;
      const __m512 n = _mm512_set1_ps(nx[j]), p = _mm512_set1_ps(bp[j]);
#pragma GCC unroll 4
      for (int z = 0; z < NZ; ++z) {
        const __m512 u = upper(acc[i][z], c[z], n, p);
        // not (u < th): true for a NaN u
        const __mmask16 m = _mm512_mask_cmp_ps_mask(lanes[z], u, t[z], _CMP_NLT_UQ);
        top[j * ZQ + z0 + z] = m;
        if (m) any |= 1u << j;
        if (CNT) {
          const __mmask16 tm = tmask[z0 + z];
          if (!tm || j >= ni) {
            unc[j * ZQ + z0 + z] = 0;
            continue;
          }
          const __m512 l = lower(acc[i][z], c[z], n, _mm512_set1_ps(bm[j]));
          const __mmask16 below =
              _mm512_cmp_ps_mask(u, _mm512_loadu_ps(slo + 16 * (z0 + z)), _CMP_LT_OQ);
          const __mmask16 above =
              _mm512_mask_cmp_ps_mask(tm, l, _mm512_loadu_ps(shi + 16 * (z0 + z)), _CMP_GT_OQ);
          g[z] = _mm512_mask_add_epi32(g[z], above, g[z], _mm512_set1_epi32(1));
          const __mmask16 un = static_cast<__mmask16>(tm & ~(below | above));
          unc[j * ZQ + z0 + z] = un;
          if (un) any |= 1u << j;
        }
      }
    }
  }
  if (CNT) {
#pragma GCC unroll 4
    for (int z = 0; z < NZ; ++z) {
      int32_t* dst = gt + 16 * (z0 + z);
      _mm512_storeu_si512(dst, _mm512_add_epi32(_mm512_loadu_si512(dst), g[z]));
    }
  }
  return any;
}

template <bool CNT>
uint32_t scan_all(int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const float* th,
              const uint32_t* xb, const float* nx, const float* bp, const float* bm, int64_t ni,
              const float* slo, const float* shi, const uint16_t* tmask, uint16_t* top,
              uint16_t* unc, int32_t* gt, const char* pf, int64_t pf_bytes) {
  const int64_t ZQ = (nq + 15) / 16;
  // The prefetch range, split over the calls below.
  const int64_t calls = (ZQ + 3) / 4;
  const int64_t part = (pf_bytes / calls + 63) / 64 * 64;
  uint32_t any = 0;
  int64_t z0 = 0;
  for (; z0 + 4 <= ZQ; z0 += 4)
    any |= scan_groups<4, 4, CNT>(z0, nq, D2, qv, cq, th, xb, nx, bp, bm, ni, slo, shi,
                           tmask, top, unc, gt, pf + z0 / 4 * part, part);
  switch (ZQ - z0) {
    case 3:
      any |= scan_groups<3, 4, CNT>(z0, nq, D2, qv, cq, th, xb, nx, bp, bm, ni, slo, shi,
                             tmask, top, unc, gt, pf + z0 / 4 * part, part);
      break;
    case 2:
      any |= scan_groups<2, 8, CNT>(z0, nq, D2, qv, cq, th, xb, nx, bp, bm, ni, slo, shi,
                             tmask, top, unc, gt, pf + z0 / 4 * part, part);
      break;
    case 1:
      any |= scan_groups<1, 16, CNT>(z0, nq, D2, qv, cq, th, xb, nx, bp, bm, ni, slo, shi,
                              tmask, top, unc, gt, pf + z0 / 4 * part, part);
      break;
    default:
      break;
  }
  return any & (ni >= STRIP ? 0xFFFFFFFFu : static_cast<uint32_t>((1ull << ni) - 1u));
}

uint32_t scan(int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const float* th,
          const uint32_t* xb, const float* nx, const float* bp, const float* bm, int64_t ni,
          const float* slo, const float* shi, const uint16_t* tmask, uint16_t* top,
          uint16_t* unc, int32_t* gt, const float* next, int64_t next_floats) {
  const char* pf = reinterpret_cast<const char*>(next);
  const int64_t bytes = next ? next_floats * static_cast<int64_t>(sizeof(float)) : 0;
  if (slo)
    return scan_all<true>(nq, D2, qv, cq, th, xb, nx, bp, bm, ni, slo, shi, tmask, top, unc, gt, pf,
                   bytes);
  return scan_all<false>(nq, D2, qv, cq, th, xb, nx, bp, bm, ni, th, th, nullptr, top, nullptr,
                    nullptr, pf, bytes);
}

void bounds(int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const uint32_t* xb,
            const float* nx, const float* bp, const float* bm, int64_t ni, float* U, float* Lo,
            int64_t ld) {
  const int64_t ZQ = (nq + 15) / 16, QL = 16 * ZQ;
  alignas(64) float u[16], l[16];
  for (int64_t z = 0; z < ZQ; ++z) {
    const __m512 c = _mm512_loadu_ps(cq + 16 * z);
    for (int64_t j = 0; j < ni; ++j) {
      __m512 acc[1][1];
      approx<1, 1>(D2, qv + 16 * z, QL, xb + j * D2, acc);
      const __m512 n = _mm512_set1_ps(nx[j]);
      _mm512_store_ps(u, upper(acc[0][0], c, n, _mm512_set1_ps(bp[j])));
      _mm512_store_ps(l, lower(acc[0][0], c, n, _mm512_set1_ps(bm[j])));
      for (int64_t r = 16 * z; r < nq && r < 16 * z + 16; ++r) {
        U[r * ld + j] = u[r - 16 * z];
        Lo[r * ld + j] = l[r - 16 * z];
      }
    }
  }
}

// The 4-lane tail of the canonical tree: p_l + p_{l+4}, then + 2, then 0 + 1.
inline float tree(__m256 p) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// The canonical dot of topk_kernels.hpp as the avx512 level computes it: 8
// lanes, one FMA per chunk of 8 (a chunk holding any of the D elements is
// done on all 8 lanes, the rest zero), then the halving tree; out[k] for
// query rows idx[k], four at a time (four independent FMA chains, the item
// row loaded once per chunk).
void dots(int64_t D, const float* x, int64_t n, const int32_t* idx, const float* Qp, int64_t ldq,
          float* out) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t Df = D / 8 * 8;
  // x is read only below D; the query rows are zero past D
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(D - Df)), lane);
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const float* q0 = Qp + idx[k] * ldq;
    const float* q1 = Qp + idx[k + 1] * ldq;
    const float* q2 = Qp + idx[k + 2] * ldq;
    const float* q3 = Qp + idx[k + 3] * ldq;
    __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
    for (int64_t c = 0; c < Df; c += 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
      p0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + c), xv, p0);
      p1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + c), xv, p1);
      p2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + c), xv, p2);
      p3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + c), xv, p3);
    }
    if (Df < D) {
      const __m256 xv = _mm256_maskload_ps(x + Df, tail);
      p0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + Df), xv, p0);
      p1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + Df), xv, p1);
      p2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + Df), xv, p2);
      p3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + Df), xv, p3);
    }
    out[k] = tree(p0);
    out[k + 1] = tree(p1);
    out[k + 2] = tree(p2);
    out[k + 3] = tree(p3);
  }
  for (; k < n; ++k) {
    const float* q = Qp + idx[k] * ldq;
    __m256 p = _mm256_setzero_ps();
    for (int64_t c = 0; c < Df; c += 8)
      p = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(x + c), p);
    if (Df < D) p = _mm256_fmadd_ps(_mm256_loadu_ps(q + Df), _mm256_maskload_ps(x + Df, tail), p);
    out[k] = tree(p);
  }
}

const grurec::TopkBf16 kBf16 = {STRIP, pack_queries, pack_items, scan, bounds, dots};

}  // namespace
}  // namespace grurec_topk_bf16

// The table's address (topk.cpp checks the CPU before using it).
const grurec::TopkBf16* grurec_topk_bf16_table() { return &grurec_topk_bf16::kBf16; }
