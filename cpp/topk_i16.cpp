// The int16 prefilter of many-query top-k at the avx2 level: item packing,
// the integer score tiles with their error bound. See topk_kernels.hpp
// ("the int16 prefilter") for the contract and the derivation of the bound.
//
// Compiled with the avx2 level's flags and -ffp-contract=off (every fused
// multiply-add below is written out). Like topk_impl.hpp, everything lives in
// an anonymous namespace and uses no std:: templates or inline library
// functions (a COMDAT merge with another translation unit's copy could run
// these instructions on a CPU without them).
//
// Why integers: without AVX-512 there is no bf16 dot product, and F16C only
// converts (its products are float32's). vpmaddwd multiplies 16 int16 pairs
// and adds neighbours in one instruction, twice the multiply-adds of a
// float32 FMA, and exactly (int32 sums). Items are int8-valued (|x8| <= 127)
// in int16 lanes, queries int16 (|q16| <= Qm, Qm chosen so no int32 sum can
// overflow).
//
// Dimension names: D dimensions, D2 = ceil(D/2) int16 pairs, QL queries
// (padded to a multiple of 8, one ymm per 8), STRIP = 32 items per strip.
// Queries sit in lanes and items are broadcast (one dword = one pair of an
// item), as in topk_bf16.cpp. A register tile is NZ = 2 ymm of queries x
// NI = 4 items: 8 int32 accumulators, 2 query registers, a broadcast and a
// product (12 of the 16 ymm registers).
#include <immintrin.h>

#include <cstdint>

#include "topk_kernels.hpp"

namespace grurec_topk_i16 {
namespace {

constexpr int STRIP = 32;
constexpr int NI = 4;  // items per register tile
constexpr float kNormMax = 9223372036854775808.0f;  // 2^63: larger norms give inf
constexpr float kBiasMax = 8.507059173023462e+37f;  // 2^126: larger |bias| gives inf
constexpr float kTiny = 7.888609052210118e-31f;     // 2^-100: smaller rows get sx = 0

inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes < c of 8 set (c may be <= 0 or >= 8).
inline __m256i mask8(int64_t c) {
  const int cc = static_cast<int>(c < 0 ? 0 : (c > 8 ? 8 : c));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(cc), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m256 a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
// fl(sqrt(fl(ss + (D + 5) 2^-125))): a float32 sum of squares' norm bound
// (topk_kernels.hpp), inf at or above 2^63 and for a non-finite ss.
inline float norm_of(float ss, int64_t D) {
  const float n = __builtin_sqrtf(ss + static_cast<float>(D + 5) * 2.3509887e-38f);
  return n < kNormMax ? n : __builtin_inff();
}

// A strip of ni <= STRIP items (topk_kernels.hpp, TopkI16::pack_items).
void pack_items(int64_t ni, int64_t D, const float* X, const float* b,
                const grurec::I16Consts& c, uint32_t* xb, float* iv) {
  const int64_t D2 = (D + 1) / 2;
  float* sxv = iv;
  float* Ev = iv + STRIP;
  float* Fv = iv + 2 * STRIP;
  float* bpv = iv + 3 * STRIP;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  // Pass 1 over every row first, then pass 2: each row's pass 2 waits on its
  // pass 1's reductions, square root and division (a chain of ~100 cycles);
  // rows in two loops overlap those chains.
  float mxv[STRIP], nxv[STRIP];
  for (int64_t j = 0; j < ni; ++j) {
    const float* x = X + j * D;
    // pass 1: max |x| and the sum of squares. A NaN or inf makes the sum
    // NaN or inf and so the norm inf: `finite` below needs no other test.
    __m256 m = _mm256_setzero_ps(), ss = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= D; p += 8) {
      const __m256 v = _mm256_loadu_ps(x + p);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
      ss = _mm256_fmadd_ps(v, v, ss);
    }
    if (p < D) {  // masked lanes load 0: the same sums
      const __m256 v = _mm256_maskload_ps(x + p, mask8(D - p));
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
      ss = _mm256_fmadd_ps(v, v, ss);
    }
    mxv[j] = hmax(m);
    nxv[j] = norm_of(hsum(ss), D);
  }
  for (int64_t j = 0; j < STRIP; ++j) {
    uint32_t* dst = xb + j * D2;
    if (j >= ni) {
      for (int64_t k = 0; k < D2; ++k) dst[k] = 0;
      sxv[j] = Ev[j] = Fv[j] = 0.0f;
      bpv[j] = -__builtin_inff();  // never passes
      continue;
    }
    const float* x = X + j * D;
    const float mx = mxv[j], nx = nxv[j];
    const bool finite = nx < kNormMax;
    // sx >= mx / 127 (c.s127 >= 1 / (127 (1 - u))); rows below 2^-100 and
    // non-finite rows keep sx = 0, x8 = 0 (the whole row in the residual).
    const float sx = (finite && mx >= kTiny) ? mx * c.s127 : 0.0f;
    const __m256 vs = _mm256_set1_ps(sx), vr = _mm256_set1_ps(sx > 0.0f ? 1.0f / sx : 0.0f);
    // pass 2: x8 = clamp(round(x / sx)) as int16 pairs, residual e = x - sx x8
    __m256 se = _mm256_setzero_ps();
    for (int64_t p = 0; p < D; p += 16) {
      const bool full = p + 16 <= D;
      const __m256 v0 = full ? _mm256_loadu_ps(x + p) : _mm256_maskload_ps(x + p, mask8(D - p));
      const __m256 v1 =
          full ? _mm256_loadu_ps(x + p + 8) : _mm256_maskload_ps(x + p + 8, mask8(D - p - 8));
      // max(v, lo) returns lo for a NaN v, so every lane is an integer in range
      const __m256 r0 = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v0, vr), lo), hi),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 r1 = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v1, vr), lo), hi),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 e0 = _mm256_fnmadd_ps(vs, r0, v0), e1 = _mm256_fnmadd_ps(vs, r1, v1);
      se = _mm256_fmadd_ps(e0, e0, se);
      se = _mm256_fmadd_ps(e1, e1, se);
      // int16 x8[p .. p+16) in order: packs works per 128-bit lane
      const __m256i w = _mm256_permute4x64_epi64(
          _mm256_packs_epi32(_mm256_cvtps_epi32(r0), _mm256_cvtps_epi32(r1)), 0xD8);
      const int64_t nd = lmin(8, D2 - p / 2);  // dwords of this chunk
      if (nd == 8)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + p / 2), w);
      else
        _mm256_maskstore_epi32(reinterpret_cast<int*>(dst + p / 2), mask8(nd), w);
    }
    const float en = finite ? norm_of(hsum(se), D) : 0.0f;
    sxv[j] = sx;
    if (finite) {
      // E = ke en + kx nx + k0, F = kfe en + kfx nx + kf0 (topk_kernels.hpp)
      Ev[j] = c.ke * en + (c.kx * nx + c.k0);
      Fv[j] = c.kfe * en + (c.kfx * nx + c.kf0);
    } else {
      Ev[j] = Fv[j] = __builtin_inff();
    }
    // bp = b + eb, eb = kb |b| + ax nx + a0; inf for a bias of 2^126 or more
    // (or NaN) and for a non-finite row
    const float bb = b ? b[j] : 0.0f;
    const float ab = bb < 0.0f ? -bb : bb;
    bpv[j] = (finite && ab < kBiasMax) ? bb + (c.kb * ab + (c.ax * nx + c.a0)) : __builtin_inff();
  }
}

// acc += madd(x, q) with the sum written into acc's own register: GCC 12,
// left to itself, adds into the product's register and copies it back (8
// extra moves per step: the loop became front-end bound), or, given the
// accumulators as an array, keeps them in memory.
#define GRUREC_MADD_ACC(acc, x, q)                                              \
  do {                                                                          \
    const __m256i p_ = _mm256_madd_epi16(x, q);                                 \
    __asm__("vpaddd %1, %0, %0" : "+x"(acc) : "x"(p_));                         \
  } while (0)

// Items [j0, j0 + NI) of the strip against query groups [z0, z0 + NZ):
// top[j * ZQ + z] bit l = query 8 z + l survives (!(U < th)).
template <int NZ>
inline void tile(int64_t D2, int64_t QL, int64_t ZQ, const uint32_t* qv, const float* qf,
                 const uint32_t* xb, const float* iv, int64_t j0, int64_t z0, uint8_t* top) {
  static_assert(NI == 4 && (NZ == 1 || NZ == 2), "tile is written out for 4 x 2 and 4 x 1");
  __m256i a00 = _mm256_setzero_si256(), a10 = a00, a20 = a00, a30 = a00;
  __m256i a01 = a00, a11 = a00, a21 = a00, a31 = a00;
  const uint32_t* x0 = xb + j0 * D2;
  const uint32_t* x1 = x0 + D2;
  const uint32_t* x2 = x1 + D2;
  const uint32_t* x3 = x2 + D2;
  const uint32_t* q0 = qv + z0 * 8;
  for (int64_t k = 0; k < D2; ++k) {
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0 + k * QL));
    const __m256i v0 = _mm256_set1_epi32(static_cast<int>(x0[k]));
    const __m256i v1 = _mm256_set1_epi32(static_cast<int>(x1[k]));
    const __m256i v2 = _mm256_set1_epi32(static_cast<int>(x2[k]));
    const __m256i v3 = _mm256_set1_epi32(static_cast<int>(x3[k]));
    GRUREC_MADD_ACC(a00, v0, qa);
    GRUREC_MADD_ACC(a10, v1, qa);
    GRUREC_MADD_ACC(a20, v2, qa);
    GRUREC_MADD_ACC(a30, v3, qa);
    if (NZ == 2) {
      const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q0 + k * QL + 8));
      GRUREC_MADD_ACC(a01, v0, qb);
      GRUREC_MADD_ACC(a11, v1, qb);
      GRUREC_MADD_ACC(a21, v2, qb);
      GRUREC_MADD_ACC(a31, v3, qb);
    }
  }
  const __m256i acc[NI][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
  const float* sq = qf;
  const float* nq = qf + QL;
  const float* neq = qf + 2 * QL;
  const float* th = qf + 3 * QL;
  for (int z = 0; z < NZ; ++z) {
    const int64_t o = (z0 + z) * 8;
    const __m256 vsq = _mm256_loadu_ps(sq + o), vnq = _mm256_loadu_ps(nq + o);
    const __m256 vneq = _mm256_loadu_ps(neq + o), vth = _mm256_loadu_ps(th + o);
    for (int i = 0; i < NI; ++i) {
      const int64_t j = j0 + i;
      // U = fl(nq E + fl(neq F + fl(fl(fl(I) sq) sx + bp)))
      const __m256 a1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][z]), vsq);
      const __m256 a2 = _mm256_fmadd_ps(a1, _mm256_set1_ps(iv[j]), _mm256_set1_ps(iv[3 * STRIP + j]));
      const __m256 t = _mm256_fmadd_ps(vneq, _mm256_set1_ps(iv[2 * STRIP + j]), a2);
      const __m256 u = _mm256_fmadd_ps(vnq, _mm256_set1_ps(iv[STRIP + j]), t);
      top[j * ZQ + z0 + z] =
          static_cast<uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(u, vth, _CMP_NLT_UQ)));
    }
  }
}

#undef GRUREC_MADD_ACC

uint32_t scan(int64_t nq, int64_t D2, const uint32_t* qv, const float* qf, const uint32_t* xb,
              const float* iv, int64_t ni, uint8_t* top, const float* next, int64_t next_floats) {
  const int64_t ZQ = (nq + 7) / 8, QL = ZQ * 8;
  // The next strip's rows, spread over this strip's register tiles.
  const char* pf = reinterpret_cast<const char*>(next);
  int64_t pf_bytes = next ? next_floats * static_cast<int64_t>(sizeof(float)) : 0;
  const int64_t tiles = (ni + NI - 1) / NI;
  const int64_t pf_step = tiles > 0 ? (pf_bytes / tiles + 63) / 64 * 64 : 0;
  for (int64_t j0 = 0; j0 < ni; j0 += NI, pf += pf_step, pf_bytes -= pf_step) {
    for (int64_t o = 0; o < pf_step && o < pf_bytes; o += 64) __builtin_prefetch(pf + o, 0, 3);
    int64_t z = 0;
    for (; z + 2 <= ZQ; z += 2) tile<2>(D2, QL, ZQ, qv, qf, xb, iv, j0, z, top);
    if (z < ZQ) tile<1>(D2, QL, ZQ, qv, qf, xb, iv, j0, z, top);
  }
  uint32_t any = 0;
  for (int64_t j = 0; j < ni; ++j) {
    uint32_t m = 0;
    for (int64_t z = 0; z < ZQ; ++z) m |= top[j * ZQ + z];
    if (m) any |= 1u << j;
  }
  return any;
}

// U itself for queries r < nq x items j < ni of a strip (tests).
void bounds(int64_t nq, int64_t D2, const uint32_t* qv, const float* qf, const uint32_t* xb,
            const float* iv, int64_t ni, float* U, int64_t ld) {
  const int64_t QL = (nq + 7) / 8 * 8;
  for (int64_t j = 0; j < ni; ++j)
    for (int64_t r = 0; r < nq; ++r) {
      int32_t I = 0;
      for (int64_t k = 0; k < D2; ++k) {
        const uint32_t a = qv[k * QL + r], x = xb[j * D2 + k];
        I += static_cast<int16_t>(a & 0xFFFF) * static_cast<int16_t>(x & 0xFFFF) +
             static_cast<int16_t>(a >> 16) * static_cast<int16_t>(x >> 16);
      }
      // the same operations as tile(), one lane at a time
      const __m128 f = _mm_cvtsi32_ss(_mm_setzero_ps(), I);
      const __m128 a1 = _mm_mul_ss(f, _mm_set_ss(qf[r]));
      const __m128 a2 = _mm_fmadd_ss(a1, _mm_set_ss(iv[j]), _mm_set_ss(iv[3 * STRIP + j]));
      const __m128 t = _mm_fmadd_ss(_mm_set_ss(qf[2 * QL + r]), _mm_set_ss(iv[2 * STRIP + j]), a2);
      const __m128 u = _mm_fmadd_ss(_mm_set_ss(qf[QL + r]), _mm_set_ss(iv[STRIP + j]), t);
      U[r * ld + j] = _mm_cvtss_f32(u);
    }
}

const grurec::TopkI16 kI16 = {STRIP, pack_items, scan, bounds};

}  // namespace
}  // namespace grurec_topk_i16

const grurec::TopkI16* grurec_topk_i16_table() { return &grurec_topk_i16::kI16; }
