// Vector traits for one SIMD level. This header is included by exactly one
// translation unit per level (kernels_scalar.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp, kernels_neon.cpp), each compiled with its own -m flags,
// with GRUREC_LEVEL_{SCALAR,AVX2,AVX512,NEON} and GRUREC_NS defined. Everything here is
// generic over `V`, so the same kernel source serves every level.
//
// Everything lives in an anonymous namespace inside GRUREC_NS: code compiled
// with -mavx512f must never be merged by the linker with a same-named inline
// function of another level (an ODR/COMDAT merge would run AVX-512 code on a
// CPU without it). For the same reason the kernel files use no std::
// templates that other translation units might also instantiate.
//
// Contract of a trait V:
//   V::W                 lanes per register
//   V::reg               register type
//   zero/set1/load/store load and store are unaligned
//   add/sub/mul/div/fmadd fmadd(a, b, c) = a * b + c
//   min/max/sqrt, pos_step (1 where > 0), hsum/hmax (horizontal sum / max of the lanes)
//   exp                  |rel err| < 2e-7 on [-87, 88]; inputs clamped there
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(GRUREC_LEVEL_AVX2) || defined(GRUREC_LEVEL_AVX512)
#include <immintrin.h>
#endif
#if defined(GRUREC_LEVEL_NEON)
#include <arm_neon.h>
#endif

namespace GRUREC_NS {
namespace {

// Polynomial exp shared by every level: x = n ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 minimax polynomial (Cephes expf coefficients),
// 2^n by adding n to the exponent bits.
constexpr float kExpHi = 88.3762626647949f;
constexpr float kExpLo = -87.3365478515625f;  // keeps 2^n normal
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;

#if defined(GRUREC_LEVEL_AVX512)
struct V {
  using reg = __m512;
  static constexpr int W = 16;
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg set1(float x) { return _mm512_set1_ps(x); }
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg a) { _mm512_storeu_ps(p, a); }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static inline reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static inline reg sqrt(reg a) { return _mm512_sqrt_ps(a); }
  static inline reg pos_step(reg a) {  // 1 where a > 0, else 0
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, zero(), _CMP_GT_OQ), set1(1.0f));
  }
  static inline float hmax(reg a) { return _mm512_reduce_max_ps(a); }
  static inline reg round(reg a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // 2^n for integral-valued float n in the normal range.
  static inline reg pow2n(reg n) {
    __m512i i = _mm512_cvtps_epi32(n);
    i = _mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(i);
  }
  static inline float hsum(reg a) { return _mm512_reduce_add_ps(a); }
};
#elif defined(GRUREC_LEVEL_AVX2)
struct V {
  using reg = __m256;
  static constexpr int W = 8;
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg set1(float x) { return _mm256_set1_ps(x); }
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg a) { _mm256_storeu_ps(p, a); }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static inline reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static inline reg sqrt(reg a) { return _mm256_sqrt_ps(a); }
  static inline reg pos_step(reg a) {
    return _mm256_and_ps(_mm256_cmp_ps(a, zero(), _CMP_GT_OQ), set1(1.0f));
  }
  static inline float hmax(reg a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  static inline reg round(reg a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static inline reg pow2n(reg n) {
    __m256i i = _mm256_cvtps_epi32(n);
    i = _mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(i);
  }
  static inline float hsum(reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};
#elif defined(GRUREC_LEVEL_NEON)
// AArch64 Advanced SIMD (NEON is part of the AArch64 base ISA; the level is
// still picked at run time from HWCAP_ASIMD). min/max are compare + select,
// not vminq/vmaxq: like x86 minps/maxps and the scalar `a < b ? a : b` they
// return the second operand when either is NaN, so every level clamps a NaN
// the same way (vexp's clamp, the losses' masking).
struct V {
  using reg = float32x4_t;
  static constexpr int W = 4;
  static inline reg zero() { return vdupq_n_f32(0.0f); }
  static inline reg set1(float x) { return vdupq_n_f32(x); }
  static inline reg load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, reg a) { vst1q_f32(p, a); }
  static inline reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static inline reg sub(reg a, reg b) { return vsubq_f32(a, b); }
  static inline reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static inline reg div(reg a, reg b) { return vdivq_f32(a, b); }
  static inline reg fmadd(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static inline reg min(reg a, reg b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
  static inline reg max(reg a, reg b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static inline reg sqrt(reg a) { return vsqrtq_f32(a); }
  static inline reg pos_step(reg a) {
    return vreinterpretq_f32_u32(
        vandq_u32(vcgtq_f32(a, zero()), vreinterpretq_u32_f32(set1(1.0f))));
  }
  static inline float hmax(reg a) {  // lanes (0, 2), (1, 3), then 0, 1: the x86 order
    const reg m = max(a, vextq_f32(a, a, 2));
    return vgetq_lane_f32(max(m, vextq_f32(m, m, 1)), 0);
  }
  static inline reg round(reg a) { return vrndnq_f32(a); }  // ties to even, like x86
  static inline reg pow2n(reg n) {
    int32x4_t i = vcvtnq_s32_f32(n);
    i = vshlq_n_s32(vaddq_s32(i, vdupq_n_s32(127)), 23);
    return vreinterpretq_f32_s32(i);
  }
  static inline float hsum(reg a) {  // (a0 + a2) + (a1 + a3), like the x86 trees
    const float32x2_t s = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
  }
};
#else  // scalar: portable C++, one lane
struct V {
  using reg = float;
  static constexpr int W = 1;
  static inline reg zero() { return 0.0f; }
  static inline reg set1(float x) { return x; }
  static inline reg load(const float* p) { return *p; }
  static inline void store(float* p, reg a) { *p = a; }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg sub(reg a, reg b) { return a - b; }
  static inline reg mul(reg a, reg b) { return a * b; }
  static inline reg div(reg a, reg b) { return a / b; }
  static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static inline reg min(reg a, reg b) { return a < b ? a : b; }
  static inline reg max(reg a, reg b) { return a > b ? a : b; }
  static inline reg sqrt(reg a) { return std::sqrt(a); }
  static inline reg pos_step(reg a) { return a > 0.0f ? 1.0f : 0.0f; }
  static inline float hmax(reg a) { return a; }
  static inline reg round(reg a) { return std::nearbyint(a); }
  static inline reg pow2n(reg n) {
    int32_t i = (static_cast<int32_t>(n) + 127) << 23;
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
  }
  static inline float hsum(reg a) { return a; }
};
#endif

// dst[c * ds + r] = src[r * ss + c] for an 8 x 8 block (r, c < 8): the
// transposing copy that packing a transposed operand needs. kHasT8 says
// whether this level has a vector version (else packing loops in scalar).
#if defined(GRUREC_LEVEL_AVX2) || defined(GRUREC_LEVEL_AVX512)
constexpr bool kHasT8 = true;
static inline void transpose8(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * ss), r1 = _mm256_loadu_ps(src + 1 * ss);
  __m256 r2 = _mm256_loadu_ps(src + 2 * ss), r3 = _mm256_loadu_ps(src + 3 * ss);
  __m256 r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss);
  __m256 r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ds, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#elif defined(GRUREC_LEVEL_NEON)
constexpr bool kHasT8 = true;
// One 4 x 4 block: rows src + r * ss (r < 4) to columns dst + c * ds.
static inline void transpose4(const float* src, int64_t ss, float* dst, int64_t ds) {
  const float32x4_t r0 = vld1q_f32(src), r1 = vld1q_f32(src + ss);
  const float32x4_t r2 = vld1q_f32(src + 2 * ss), r3 = vld1q_f32(src + 3 * ss);
  const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
  const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
  const float64x2_t d0 = vreinterpretq_f64_f32(t0), d1 = vreinterpretq_f64_f32(t1);
  const float64x2_t d2 = vreinterpretq_f64_f32(t2), d3 = vreinterpretq_f64_f32(t3);
  vst1q_f32(dst, vreinterpretq_f32_f64(vtrn1q_f64(d0, d2)));
  vst1q_f32(dst + ds, vreinterpretq_f32_f64(vtrn1q_f64(d1, d3)));
  vst1q_f32(dst + 2 * ds, vreinterpretq_f32_f64(vtrn2q_f64(d0, d2)));
  vst1q_f32(dst + 3 * ds, vreinterpretq_f32_f64(vtrn2q_f64(d1, d3)));
}
static inline void transpose8(const float* src, int64_t ss, float* dst, int64_t ds) {
  transpose4(src, ss, dst, ds);
  transpose4(src + 4, ss, dst + 4 * ds, ds);
  transpose4(src + 4 * ss, ss, dst + 4, ds);
  transpose4(src + 4 * ss + 4, ss, dst + 4 * ds + 4, ds);
}
#else
constexpr bool kHasT8 = false;
static inline void transpose8(const float* src, int64_t ss, float* dst, int64_t ds) {
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c) dst[c * ds + r] = src[r * ss + c];
}
#endif

// exp(x), inputs clamped to [kExpLo, kExpHi].
static inline V::reg vexp(V::reg x) {
  x = V::min(V::max(x, V::set1(kExpLo)), V::set1(kExpHi));
  V::reg n = V::round(V::mul(x, V::set1(kLog2e)));
  V::reg r = V::fmadd(n, V::set1(-kLn2Hi), x);
  r = V::fmadd(n, V::set1(-kLn2Lo), r);
  V::reg p = V::set1(kP0);
  p = V::fmadd(p, r, V::set1(kP1));
  p = V::fmadd(p, r, V::set1(kP2));
  p = V::fmadd(p, r, V::set1(kP3));
  p = V::fmadd(p, r, V::set1(kP4));
  p = V::fmadd(p, r, V::set1(kP5));
  V::reg r2 = V::mul(r, r);
  p = V::fmadd(p, r2, V::add(r, V::set1(1.0f)));
  return V::mul(p, V::pow2n(n));
}

// sigmoid(x) = 1 / (1 + exp(-x))
static inline V::reg vsigmoid(V::reg x) {
  V::reg one = V::set1(1.0f);
  return V::div(one, V::add(one, vexp(V::sub(V::zero(), x))));
}

// tanh(x) = 2 sigmoid(2x) - 1; absolute error ~1e-7, saturates cleanly.
static inline V::reg vtanh(V::reg x) {
  V::reg two = V::set1(2.0f);
  return V::fmadd(two, vsigmoid(V::mul(two, x)), V::set1(-1.0f));
}

}  // namespace
}  // namespace GRUREC_NS
