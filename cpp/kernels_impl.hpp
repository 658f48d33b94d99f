// Kernel bodies, generic over the SIMD trait V of simd.hpp. Included once per
// level by kernels_<level>.cpp, which defines GRUREC_NS, the level macro, the
// micro-kernel shape (GRUREC_MR rows x GRUREC_NV registers) and the name of
// the exported table getter (GRUREC_TABLE_FN).
//
// sgemm is a BLIS-style blocked product: operands are packed into MR-row
// panels of A and NR-column panels of B (NR = NV * W), zero-padded to full
// panels, and an MR x NR register-blocked micro-kernel does all the FMAs.
// Packing takes arbitrary row/column strides, so one micro-kernel serves
// A @ B, A @ B^T and A^T @ B. Threads split C into disjoint tiles (no two
// threads write the same element; each packs what its tile needs).
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels.hpp"
#include "simd.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace GRUREC_NS {
namespace {

using grurec::kBprMax;
using grurec::kCrossEntropy;
using grurec::kTop1Max;

constexpr int W = V::W;
constexpr int MR = GRUREC_MR;
constexpr int NV = GRUREC_NV;
constexpr int NR = NV * W;
#ifndef GRUREC_KC
#define GRUREC_KC 256
#endif
constexpr int64_t KC = GRUREC_KC;      // depth of one packed block
constexpr int64_t MC = MR * 12;        // rows of A packed at once (L2)
constexpr int64_t NC = NR * 32;        // columns of B packed at once (L2)

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-thread packing buffers, grown on demand, freed at thread exit. Kept
// between calls so large packs do not fault in fresh pages every call.
struct Scratch {
  float* a = nullptr;
  int64_t a_cap = 0;
  float* b = nullptr;
  int64_t b_cap = 0;
  float* c = nullptr;  // sgemm's transposed result (see sgemm_swapped)
  int64_t c_cap = 0;
  float* l = nullptr;  // loss_row's per-column values kept between passes
  int64_t l_cap = 0;
  static float* grow(float*& p, int64_t& cap, int64_t n) {
    if (n > cap) {
      std::free(p);
      int64_t bytes = ((n * 4 + 63) / 64) * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap = p ? n : 0;
    }
    return p;
  }
  ~Scratch() {
    std::free(a);
    std::free(b);
    std::free(c);
    std::free(l);
  }
};
thread_local Scratch tls_scratch;

// Ap[p][k][i] = A(i0 + p*MR + i, k0 + k), zero for rows past m.
void pack_a(int64_t m, int64_t kc, const float* A, int64_t rsa, int64_t csa,
            float* Ap) {
  for (int64_t p = 0; p < m; p += MR) {
    const int64_t mr = imin(MR, m - p);
    const float* a = A + p * rsa;
    float* out = Ap + p * kc;
    if (csa == 1) {
      int64_t i = 0;
      if (kHasT8 && MR % 8 == 0) {
        // Row-major A: 8 x 8 register transposes (kc rounded down to 8).
        const int64_t k8 = kc - kc % 8;
        for (; i + 8 <= mr; i += 8) {
          for (int64_t k = 0; k < k8; k += 8) transpose8(a + i * rsa + k, rsa, out + k * MR + i, MR);
          for (int64_t k = k8; k < kc; ++k)
            for (int64_t l = 0; l < 8; ++l) out[k * MR + i + l] = a[(i + l) * rsa + k];
        }
      }
      for (; i < mr; ++i)
        for (int64_t k = 0; k < kc; ++k) out[k * MR + i] = a[i * rsa + k];
      for (int64_t i = mr; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) out[k * MR + i] = 0.0f;
    } else if (rsa == 1 && mr == MR) {
      // A transposed view (x^T in a weight gradient): the MR values of one
      // k are contiguous.
      for (int64_t k = 0; k < kc; ++k) std::memcpy(out + k * MR, a + k * csa, MR * sizeof(float));
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < mr; ++i) out[k * MR + i] = a[i * rsa + k * csa];
        for (int64_t i = mr; i < MR; ++i) out[k * MR + i] = 0.0f;
      }
    }
  }
}

// Bp[q][k][j] = B(k0 + k, j0 + q*NR + j), zero for columns past n.
void pack_b(int64_t kc, int64_t n, const float* B, int64_t rsb, int64_t csb,
            float* Bp) {
  for (int64_t q = 0; q < n; q += NR) {
    const int64_t nr = imin(NR, n - q);
    const float* b = B + q * csb;
    float* out = Bp + q * kc;
    if (csb == 1 && nr == NR) {
      for (int64_t k = 0; k < kc; ++k)
        for (int v = 0; v < NV; ++v)
          V::store(out + k * NR + v * W, V::load(b + k * rsb + v * W));
    } else if (csb == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < nr; ++j) out[k * NR + j] = b[k * rsb + j];
        for (int64_t j = nr; j < NR; ++j) out[k * NR + j] = 0.0f;
      }
    } else {
      // Transposing copy, 8 k at a time: 8 x 8 blocks in registers where
      // the operand is truly transposed (rsb == 1), scalar for the rest.
      int64_t k0 = 0;
      if (kHasT8 && rsb == 1) {
        for (; k0 + 8 <= kc; k0 += 8) {
          int64_t j = 0;
          for (; j + 8 <= nr; j += 8) transpose8(b + k0 + j * csb, csb, out + k0 * NR + j, NR);
          for (; j < nr; ++j)
            for (int64_t l = 0; l < 8; ++l) out[(k0 + l) * NR + j] = b[k0 + l + j * csb];
          for (j = nr; j < NR; ++j)
            for (int64_t l = 0; l < 8; ++l) out[(k0 + l) * NR + j] = 0.0f;
        }
      }
      for (; k0 < kc; k0 += 8) {
        const int64_t kb = imin(8, kc - k0);
        for (int64_t j = 0; j < nr; ++j) {
          const float* src = b + k0 * rsb + j * csb;
          for (int64_t l = 0; l < kb; ++l) out[(k0 + l) * NR + j] = src[l * rsb];
        }
        for (int64_t j = nr; j < NR; ++j)
          for (int64_t l = 0; l < kb; ++l) out[(k0 + l) * NR + j] = 0.0f;
      }
    }
  }
}

// C[MR,NR] tile = alpha * Ap^T Bp + beta * C over kc steps; only the
// top-left mr x nr of the tile is stored.
void micro_kernel(int64_t kc, const float* __restrict Ap,
                  const float* __restrict Bp, float* C, int64_t ldc,
                  float alpha, float beta, int64_t mr, int64_t nr) {
  V::reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();

  for (int64_t k = 0; k < kc; ++k) {
    V::reg b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = V::load(Bp + v * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const V::reg a = V::set1(Ap[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(a, b[v], acc[i][v]);
    }
    Ap += MR;
    Bp += NR;
  }

  const V::reg va = V::set1(alpha);
  if (mr == MR && nr == NR) {
    if (beta == 0.0f) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          V::store(C + i * ldc + v * W, V::mul(va, acc[i][v]));
    } else {
      const V::reg vb = V::set1(beta);
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          float* c = C + i * ldc + v * W;
          V::store(c, V::fmadd(va, acc[i][v], V::mul(vb, V::load(c))));
        }
    }
    return;
  }
  float tile[MR * NR];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) V::store(tile + i * NR + v * W, acc[i][v]);
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      float* c = C + i * ldc + j;
      const float t = alpha * tile[i * NR + j];
      *c = (beta == 0.0f) ? t : t + beta * *c;
    }
}

// One thread's share: C[i0:i1, j0:j1].
void gemm_tile(int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t K,
               float alpha, const float* A, int64_t rsa, int64_t csa,
               const float* B, int64_t rsb, int64_t csb, float beta, float* C,
               int64_t ldc) {
  Scratch& s = tls_scratch;
  float* Ap = Scratch::grow(s.a, s.a_cap, MC * KC);
  float* Bp = Scratch::grow(s.b, s.b_cap, NC * KC);
  if (!Ap || !Bp) return;  // allocation of < 1 MiB failed: nothing sane to do
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = imin(NC, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = imin(KC, K - pc);
      const float beta_k = (pc == 0) ? beta : 1.0f;
      pack_b(kc, nc, B + pc * rsb + jc * csb, rsb, csb, Bp);
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = imin(MC, i1 - ic);
        pack_a(mc, kc, A + ic * rsa + pc * csa, rsa, csa, Ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          for (int64_t ir = 0; ir < mc; ir += MR) {
            micro_kernel(kc, Ap + ir * kc, Bp + jr * kc,
                         C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta_k,
                         imin(MR, mc - ir), imin(NR, nc - jr));
          }
        }
      }
    }
  }
}

// One row of C (M == 1), alpha 1, beta 0 or 1, B row-major: the packed
// path's arithmetic for every C[0, j] (per KC block an FMA chain from zero
// over k in order, then stored (beta 0, first block) or added to C), without
// packing: at M == 1 packing B costs far more than the FMAs (a GRU step of
// one live session: 17 us instead of ~3). So a row's result does not depend
// on whether it was computed alone or in a batch.
constexpr int GV = 8;  // accumulator registers per column group
inline V::reg ld_pad(const float* p, int64_t c) {  // c < W floats, zero past them
  float t[W] = {};
  for (int64_t i = 0; i < c; ++i) t[i] = p[i];
  return V::load(t);
}
inline void st_part(float* p, int64_t c, V::reg r) {
  float t[W];
  V::store(t, r);
  for (int64_t i = 0; i < c; ++i) p[i] = t[i];
}
void gemv1(int64_t N, int64_t K, const float* A, int64_t csa, const float* B, int64_t rsb,
           float beta, float* C) {
  int64_t j0 = 0;
  for (; j0 + GV * W <= N; j0 += GV * W) {  // whole groups: accumulators in registers
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t k1 = imin(K, pc + KC);
      V::reg acc[GV];
#pragma GCC unroll 8
      for (int v = 0; v < GV; ++v) acc[v] = V::zero();
      for (int64_t k = pc; k < k1; ++k) {
        const V::reg a = V::set1(A[k * csa]);
        const float* b = B + k * rsb + j0;
#pragma GCC unroll 8
        for (int v = 0; v < GV; ++v) acc[v] = V::fmadd(a, V::load(b + v * W), acc[v]);
      }
      const bool add = pc > 0 || beta != 0.0f;
#pragma GCC unroll 8
      for (int v = 0; v < GV; ++v) {
        float* c = C + j0 + v * W;
        V::store(c, add ? V::add(acc[v], V::load(c)) : acc[v]);
      }
    }
  }
  if (j0 == N) return;
  const int64_t nv = (N - j0) / W, rem = (N - j0) % W;  // nv < GV
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t k1 = imin(K, pc + KC);
    V::reg acc[GV + 1];
    for (int v = 0; v <= nv; ++v) acc[v] = V::zero();
    for (int64_t k = pc; k < k1; ++k) {
      const V::reg a = V::set1(A[k * csa]);
      const float* b = B + k * rsb + j0;
      for (int64_t v = 0; v < nv; ++v) acc[v] = V::fmadd(a, V::load(b + v * W), acc[v]);
      if (rem) acc[nv] = V::fmadd(a, ld_pad(b + nv * W, rem), acc[nv]);
    }
    const bool add = pc > 0 || beta != 0.0f;
    for (int64_t v = 0; v < nv; ++v) {
      float* c = C + j0 + v * W;
      V::store(c, add ? V::add(acc[v], V::load(c)) : acc[v]);
    }
    if (rem) {
      float* c = C + j0 + nv * W;
      st_part(c, rem, add ? V::add(acc[nv], ld_pad(c, rem)) : acc[nv]);
    }
  }
}

void sgemm_blocked(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t rsa, int64_t csa, const float* B, int64_t rsb, int64_t csb,
                   float beta, float* C, int64_t ldc, int num_threads) {
  // Thread grid tn x tm over column and row panels: the one whose busiest
  // thread has the fewest micro-tiles; ties go to splitting columns (each
  // thread then packs only its own columns of B, the larger operand in
  // every GRU product).
  const int64_t pn = ceil_div(N, NR), pm = ceil_div(M, MR);
  const double macs = static_cast<double>(M) * N * K;
  int64_t nt = imax(1, imin(num_threads, static_cast<int64_t>(macs / 32768.0)));
  int64_t tn = 1, tm = 1, best = -1;
  for (int64_t a = imin(nt, pn); a >= 1; --a) {
    const int64_t b = imin(nt / a, pm);
    const int64_t cost = ceil_div(pn, a) * ceil_div(pm, b);
    if (best < 0 || cost < best) {
      best = cost;
      tn = a;
      tm = b;
    }
  }
  nt = tn * tm;
  auto run = [&](int64_t t) {
    const int64_t tj = t % tn, ti = t / tn;
    const int64_t j0 = (pn * tj / tn) * NR, j1 = imin(N, (pn * (tj + 1) / tn) * NR);
    const int64_t i0 = (pm * ti / tm) * MR, i1 = imin(M, (pm * (ti + 1) / tm) * MR);
    if (i0 < i1 && j0 < j1)
      gemm_tile(i0, i1, j0, j1, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc);
  };
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int64_t t = 0; t < nt; ++t) run(t);
    return;
  }
#endif
  run(0);
}

// Few columns and many rows (a query gradient dR W or a weight gradient
// dR^T q, N = H = 100): NR-column panels pad N far more than MR-row panels
// would (avx512: 100 -> 144 columns against 100 -> 104 rows). Such a product
// runs with the roles swapped, C^T = B^T A^T, into a scratch that is then
// transposed into C. Every element is the same FMA chain over k in the same
// order with the same alpha / beta steps (a * b == b * a exactly), so the
// result is bit for bit the unswapped one. Returns false (nothing done) when
// swapping would not save at least an eighth of the padded work, or when the
// FMAs it saves, (plain - swapped) K / W vector FMAs, do not pay for moving
// C through the scratch: at K = 32 (GRU4Rec's weight gradient dR^T q at
// batch 32) the transposes cost more than the padding (-10% events/s).
bool sgemm_swapped(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t rsa, int64_t csa, const float* B, int64_t rsb, int64_t csb,
                   float beta, float* C, int64_t ldc, int num_threads) {
  const int64_t plain = ceil_div(M, MR) * MR * ceil_div(N, NR) * NR;
  const int64_t swapped = ceil_div(N, MR) * MR * ceil_div(M, NR) * NR;
  if (8 * swapped > 7 * plain || (plain - swapped) * K < 8 * W * M * N) return false;
  Scratch& s = tls_scratch;
  float* Ct = Scratch::grow(s.c, s.c_cap, M * N);  // [N, M]
  if (!Ct) return false;
  if (beta != 0.0f)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) Ct[j * M + i] = C[i * ldc + j];
  sgemm_blocked(N, M, K, alpha, B, csb, rsb, A, csa, rsa, beta, Ct, M, num_threads);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = Ct[j * M + i];
  return true;
}

void sgemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t rsa, int64_t csa, const float* B, int64_t rsb, int64_t csb,
           float beta, float* C, int64_t ldc, int num_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        C[i * ldc + j] = (beta == 0.0f) ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  if (M == 1 && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && csb == 1) {
    gemv1(N, K, A, csa, B, rsb, beta, C);
    return;
  }
  if (sgemm_swapped(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, num_threads))
    return;
  sgemm_blocked(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, num_threads);
}

// --- element-wise ---------------------------------------------------------
// A row segment of n floats processed W lanes at a time; the last partial
// chunk goes through a zero-padded register so every lane runs the same math.
inline V::reg ldp(const float* p, int64_t c) {
  if (c == W) return V::load(p);
  float t[W] = {};
  for (int64_t i = 0; i < c; ++i) t[i] = p[i];
  return V::load(t);
}
inline void stp(float* p, int64_t c, V::reg r) {
  if (c == W) return V::store(p, r);
  float t[W];
  V::store(t, r);
  for (int64_t i = 0; i < c; ++i) p[i] = t[i];
}

void gru_fwd_gates(int64_t b0, int64_t b1, int64_t H, float* G,
                   const float* h_prev, float* rh) {
  for (int64_t b = b0; b < b1; ++b) {
    float* g = G + b * 3 * H;
    const float* h = h_prev + b * H;
    float* o = rh + b * H;
    for (int64_t j = 0; j < 2 * H; j += W) {
      const int64_t c = imin(W, 2 * H - j);
      stp(g + j, c, vsigmoid(ldp(g + j, c)));
    }
    for (int64_t j = 0; j < H; j += W) {
      const int64_t c = imin(W, H - j);
      stp(o + j, c, V::mul(ldp(g + j, c), ldp(h + j, c)));
    }
  }
}

void gru_fwd_out(int64_t b0, int64_t b1, int64_t H, float* G,
                 const float* h_prev, float* h_out) {
  for (int64_t b = b0; b < b1; ++b) {
    float* g = G + b * 3 * H;
    const float* h = h_prev + b * H;
    float* o = h_out + b * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t c = imin(W, H - j);
      const V::reg n = vtanh(ldp(g + 2 * H + j, c));
      stp(g + 2 * H + j, c, n);
      const V::reg z = ldp(g + H + j, c), hp = ldp(h + j, c);
      stp(o + j, c, V::fmadd(z, V::sub(n, hp), hp));
    }
  }
}

void gru_bwd_out(int64_t b0, int64_t b1, int64_t H, const float* dh,
                 const float* G, const float* h_prev, float* dA,
                 float* dh_prev) {
  const V::reg one = V::set1(1.0f);
  for (int64_t b = b0; b < b1; ++b) {
    const float* g = G + b * 3 * H;
    const float* h = h_prev + b * H;
    const float* d = dh + b * H;
    float* da = dA + b * 3 * H;
    float* dp = dh_prev + b * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t c = imin(W, H - j);
      const V::reg z = ldp(g + H + j, c), n = ldp(g + 2 * H + j, c);
      const V::reg hp = ldp(h + j, c), dv = ldp(d + j, c);
      const V::reg dz = V::mul(V::mul(dv, V::sub(n, hp)), V::mul(z, V::sub(one, z)));
      const V::reg dn = V::mul(V::mul(dv, z), V::sub(one, V::mul(n, n)));
      stp(da + H + j, c, dz);
      stp(da + 2 * H + j, c, dn);
      stp(dp + j, c, V::mul(dv, V::sub(one, z)));
    }
  }
}

void gru_bwd_gates(int64_t b0, int64_t b1, int64_t H, const float* drh,
                   const float* G, const float* h_prev, float* dA,
                   float* dh_prev) {
  const V::reg one = V::set1(1.0f);
  for (int64_t b = b0; b < b1; ++b) {
    const float* g = G + b * 3 * H;
    const float* h = h_prev + b * H;
    const float* d = drh + b * H;
    float* da = dA + b * 3 * H;
    float* dp = dh_prev + b * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t c = imin(W, H - j);
      const V::reg r = ldp(g + j, c), dv = ldp(d + j, c);
      stp(da + j, c, V::mul(V::mul(dv, ldp(h + j, c)), V::mul(r, V::sub(one, r))));
      stp(dp + j, c, V::fmadd(dv, r, ldp(dp + j, c)));
    }
  }
}

void gru_fwd_ra(int64_t b0, int64_t b1, int64_t H, float* G, const float* P,
                const float* h_prev, float* hn, float* h_out) {
  for (int64_t b = b0; b < b1; ++b) {
    float* g = G + b * 3 * H;
    const float* p = P + b * 3 * H;
    const float* h = h_prev + b * H;
    float* c = hn + b * H;
    float* o = h_out + b * H;
    for (int64_t j = 0; j < 2 * H; j += W) {
      const int64_t m = imin(W, 2 * H - j);
      stp(g + j, m, vsigmoid(V::add(ldp(g + j, m), ldp(p + j, m))));
    }
    for (int64_t j = 0; j < H; j += W) {
      const int64_t m = imin(W, H - j);
      const V::reg pn = ldp(p + 2 * H + j, m);
      stp(c + j, m, pn);
      const V::reg n = vtanh(V::add(ldp(g + 2 * H + j, m), V::mul(ldp(g + j, m), pn)));
      stp(g + 2 * H + j, m, n);
      const V::reg z = ldp(g + H + j, m), hp = ldp(h + j, m);
      stp(o + j, m, V::fmadd(z, V::sub(n, hp), hp));
    }
  }
}

void gru_bwd_ra(int64_t b0, int64_t b1, int64_t H, const float* G, const float* hn,
                float* dA, float* dP) {
  const V::reg one = V::set1(1.0f);
  for (int64_t b = b0; b < b1; ++b) {
    const float* g = G + b * 3 * H;
    const float* c = hn + b * H;
    float* da = dA + b * 3 * H;
    float* dp = dP + b * 3 * H;
    for (int64_t j = 0; j < H; j += W) {
      const int64_t m = imin(W, H - j);
      const V::reg r = ldp(g + j, m), dn = ldp(da + 2 * H + j, m);
      const V::reg dr = V::mul(V::mul(dn, ldp(c + j, m)), V::mul(r, V::sub(one, r)));
      stp(da + j, m, dr);
      stp(dp + j, m, dr);
      stp(dp + H + j, m, ldp(da + H + j, m));
      stp(dp + 2 * H + j, m, V::mul(dn, r));
    }
  }
}

void colsum_add(int64_t M, int64_t j0, int64_t j1, const float* A, int64_t lda,
                float* out) {
  for (int64_t j = j0; j < j1; j += W) {
    const int64_t c = imin(W, j1 - j);
    V::reg s = V::zero();
    for (int64_t i = 0; i < M; ++i) s = V::add(s, ldp(A + i * lda + j, c));
    stp(out + j, c, V::add(s, ldp(out + j, c)));
  }
}

void add(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; i += W) {
    const int64_t c = imin(W, n - i);
    stp(y + i, c, V::add(ldp(x + i, c), ldp(y + i, c)));
  }
}

// --- losses -----------------------------------------------------------------
// Lanes < c of a chunk, except lane `excl` (the target column, excluded
// from the negatives of the ranking losses), weigh 1; the rest 0.
inline V::reg lane_mask(int64_t c, int64_t excl) {
  float t[W];
  for (int64_t l = 0; l < W; ++l) t[l] = (l < c && l != excl) ? 1.0f : 0.0f;
  return V::load(t);
}

// ELU(alpha) (alpha = 0: identity) and its derivative, lane-wise, with
// exp(min(x, 0)) passed from one to the other (ex) where both are needed.
inline V::reg act_ex(V::reg x, float alpha, V::reg& ex) {
  if (alpha <= 0.0f) return x;
  ex = vexp(V::min(x, V::zero()));
  return V::add(V::max(x, V::zero()), V::mul(V::set1(alpha), V::sub(ex, V::set1(1.0f))));
}
inline V::reg dact_ex(V::reg x, V::reg ex, float alpha) {
  if (alpha <= 0.0f) return V::set1(1.0f);
  const V::reg p = V::pos_step(x);
  return V::add(p, V::mul(V::sub(V::set1(1.0f), p), V::mul(V::set1(alpha), ex)));
}
inline V::reg act(V::reg x, float alpha) {
  V::reg ex;
  return act_ex(x, alpha, ex);
}
inline V::reg dact(V::reg x, float alpha) {
  if (alpha <= 0.0f) return V::set1(1.0f);
  return dact_ex(x, vexp(V::min(x, V::zero())), alpha);
}
inline float act1(float x, float alpha) {
  float t[W] = {x};
  V::store(t, act(V::load(t), alpha));
  return t[0];
}
inline float dact1(float x, float alpha) {
  float t[W] = {x};
  V::store(t, dact(V::load(t), alpha));
  return t[0];
}

constexpr float kBig = 3.0e38f;

// One row; returns L_i. d (the dR row) doubles as scratch between passes.
// The ranking losses keep what pass A and B computed per column (the
// activation's exp, e_j, the sigmoids) in a thread's scratch for the
// gradient pass instead of computing it again: with ELU, three of six
// exponentials per score (bpr-max at RetailRocket's setting: the loss was
// 7.5% of a training step). The values, and so the results, are the same.
double loss_row(int kind, int64_t i, int64_t C, const float* r, const float* q,
                float elu, float bpreg, float scale, float* d) {
  const bool ranking = kind != kCrossEntropy;
  const int64_t excl_chunk = ranking ? (i / W) * W : -1;
  // [4, Cp]: exp(min(x, 0)) (ELU), e_j, and the loss's sigmoids.
  const int64_t Cp = ceil_div(C, W) * W;
  float* xs = ranking ? Scratch::grow(tls_scratch.l, tls_scratch.l_cap, 4 * Cp) : nullptr;
  if (ranking && !xs) {  // no memory for 16 C bytes: a NaN loss, which the trainer reports
    for (int64_t j = 0; j < C; ++j) d[j] = std::numeric_limits<float>::quiet_NaN();
    return std::numeric_limits<double>::quiet_NaN();
  }
  float* xex = xs;
  float* xe = xs + Cp;
  float* xsg = xs + 2 * Cp;
  float* xtq = xs + 3 * Cp;
  const bool keep_ex = ranking && elu > 0.0f;
  // Pass A: activated (and for CE, corrected) scores into d; masked max.
  V::reg vmax = V::set1(-kBig);
  for (int64_t j = 0; j < C; j += W) {
    const int64_t c = imin(W, C - j);
    V::reg ex = V::zero();
    V::reg a = act_ex(ldp(r + j, c), elu, ex);
    if (keep_ex) V::store(xex + j, ex);
    if (q) a = V::sub(a, ldp(q + j, c));
    stp(d + j, c, a);
    if (c < W || j == excl_chunk) {
      const V::reg w = lane_mask(c, j == excl_chunk ? i - j : -1);
      a = V::add(V::mul(a, w), V::mul(V::sub(w, V::set1(1.0f)), V::set1(kBig)));
    }
    vmax = V::max(vmax, a);
  }
  const float m = V::hmax(vmax);
  const float ri = d[i];
  const V::reg vm = V::set1(m), vri = V::set1(ri), one = V::set1(1.0f);

  // Pass B: e_j = exp(a_j - m) (0 where masked) and the row sums; e_j into
  // d (CE) or the scratch (ranking: d keeps a_j).
  V::reg sz = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  for (int64_t j = 0; j < C; j += W) {
    const int64_t c = imin(W, C - j);
    const V::reg a = ldp(d + j, c);
    V::reg e = vexp(V::sub(a, vm));
    if (c < W || j == excl_chunk) e = V::mul(e, lane_mask(c, j == excl_chunk ? i - j : -1));
    sz = V::add(sz, e);
    if (kind == kBprMax) {
      const V::reg sg = vsigmoid(V::sub(vri, a));  // sigma(r_i - r_j)
      s1 = V::fmadd(e, sg, s1);
      s2 = V::fmadd(e, V::mul(a, a), s2);
      s3 = V::fmadd(e, V::mul(sg, V::sub(one, sg)), s3);
      V::store(xsg + j, sg);
    } else if (kind == kTop1Max) {
      const V::reg sg = vsigmoid(V::sub(a, vri));  // sigma(r_j - r_i)
      const V::reg tq = vsigmoid(V::mul(a, a));
      s1 = V::fmadd(e, V::add(sg, tq), s1);
      s3 = V::fmadd(e, V::mul(sg, V::sub(one, sg)), s3);
      V::store(xsg + j, sg);
      V::store(xtq + j, tq);
    }
    if (ranking)
      V::store(xe + j, e);
    else
      stp(d + j, c, e);
  }
  const double Z = V::hsum(sz);
  double L;
  const float dai = dact1(r[i], elu);
  if (kind == kCrossEntropy) {
    L = std::log(Z) + m - ri;
    const V::reg k = V::set1(static_cast<float>(scale / Z));
    for (int64_t j = 0; j < C; j += W) {
      const int64_t c = imin(W, C - j);
      stp(d + j, c, V::mul(V::mul(ldp(d + j, c), k), dact(ldp(r + j, c), elu)));
    }
    d[i] -= scale * dai;
    return L;
  }
  const float invZ = static_cast<float>(1.0 / Z);
  if (kind == kBprMax) {
    const double P = V::hsum(s1) / Z + 1e-24, Q = V::hsum(s2) / Z;
    L = -std::log(P) + bpreg * Q;
    const V::reg vP = V::set1(static_cast<float>(1.0 / P)), vQ = V::set1(static_cast<float>(Q));
    const V::reg vl = V::set1(bpreg), two = V::set1(2.0f);
    for (int64_t j = 0; j < C; j += W) {
      const int64_t c = imin(W, C - j);
      const V::reg x = ldp(r + j, c);
      const V::reg a = q ? act(x, elu) : ldp(d + j, c);  // d: pass A's act(x)
      const V::reg s = V::mul(V::load(xe + j), V::set1(invZ));
      const V::reg sg = V::load(xsg + j);
      // s (1 - sg^2 / P) + bpreg s (a^2 - Q + 2a)
      V::reg g = V::mul(s, V::sub(one, V::mul(V::mul(sg, sg), vP)));
      g = V::fmadd(V::mul(vl, s), V::add(V::sub(V::mul(a, a), vQ), V::mul(two, a)), g);
      const V::reg da = keep_ex ? dact_ex(x, V::load(xex + j), elu) : one;
      stp(d + j, c, V::mul(V::mul(g, da), V::set1(scale)));
    }
    d[i] = static_cast<float>(scale * dai * (-(V::hsum(s3) / Z) / P));
    return L;
  }
  // TOP1-max
  L = V::hsum(s1) / Z;
  const V::reg vL = V::set1(static_cast<float>(L)), two = V::set1(2.0f);
  for (int64_t j = 0; j < C; j += W) {
    const int64_t c = imin(W, C - j);
    const V::reg x = ldp(r + j, c);
    const V::reg a = q ? act(x, elu) : ldp(d + j, c);  // d: pass A's act(x)
    const V::reg s = V::mul(V::load(xe + j), V::set1(invZ));
    const V::reg sg = V::load(xsg + j), tq = V::load(xtq + j);
    // s (c_j - L) + s (sg (1 - sg) + 2 a tq (1 - tq))
    const V::reg cj = V::add(sg, tq);
    V::reg g = V::add(V::sub(cj, vL), V::mul(sg, V::sub(one, sg)));
    g = V::fmadd(V::mul(two, a), V::mul(tq, V::sub(one, tq)), g);
    const V::reg da = keep_ex ? dact_ex(x, V::load(xex + j), elu) : one;
    stp(d + j, c, V::mul(V::mul(V::mul(s, g), da), V::set1(scale)));
  }
  d[i] = static_cast<float>(scale * dai * (-(V::hsum(s3) / Z)));
  return L;
}

double loss(int kind, int64_t b0, int64_t b1, int64_t C, const float* R,
            const float* qcorr, float elu, float bpreg, float scale, float* dR) {
  double total = 0.0;
  for (int64_t i = b0; i < b1; ++i)
    total += loss_row(kind, i, C, R + i * C, qcorr, elu, bpreg, scale, dR + i * C);
  return total;
}

void adagrad(int64_t n, float* w, float* acc, float* vel, const float* g,
             float lr, float mu, float eps, int nesterov) {
  const V::reg vlr = V::set1(lr), vmu = V::set1(mu), veps = V::set1(eps);
  for (int64_t i = 0; i < n; i += W) {
    const int64_t c = imin(W, n - i);
    const V::reg gi = ldp(g + i, c);
    const V::reg a = V::fmadd(gi, gi, ldp(acc + i, c));
    stp(acc + i, c, a);
    // lr * (g / sqrt(a)), not (lr * g) / sqrt(a): |g| / sqrt(a) <= 1, so the
    // step stays within lr, where lr * g alone overflows for a huge lr.
    const V::reg s = V::mul(vlr, V::div(gi, V::sqrt(V::add(a, veps))));
    if (mu > 0.0f) {
      const V::reg v = V::sub(V::mul(vmu, ldp(vel + i, c)), s);
      stp(vel + i, c, v);
      stp(w + i, c, V::add(ldp(w + i, c), nesterov ? V::sub(V::mul(vmu, v), s) : v));
    } else {
      stp(w + i, c, V::sub(ldp(w + i, c), s));
    }
  }
}

void adam(int64_t n, float* w, float* m, float* v, const float* g, float lr_t, float b1,
          float b2, float eps_t) {
  const V::reg vb1 = V::set1(b1), vc1 = V::set1(1.0f - b1), vb2 = V::set1(b2),
               vc2 = V::set1(1.0f - b2), vlr = V::set1(lr_t), veps = V::set1(eps_t);
  for (int64_t i = 0; i < n; i += W) {
    const int64_t c = imin(W, n - i);
    const V::reg gi = ldp(g + i, c);
    const V::reg mi = V::fmadd(vc1, gi, V::mul(vb1, ldp(m + i, c)));
    const V::reg vi = V::fmadd(vc2, V::mul(gi, gi), V::mul(vb2, ldp(v + i, c)));
    stp(m + i, c, mi);
    stp(v + i, c, vi);
    stp(w + i, c, V::sub(ldp(w + i, c), V::mul(vlr, V::div(mi, V::add(V::sqrt(vi), veps)))));
  }
}

const grurec::Kernels kTable = {
    GRUREC_LEVEL_NAME, sgemm,      gru_fwd_gates, gru_fwd_out, gru_bwd_out,
    gru_bwd_gates,     gru_fwd_ra, gru_bwd_ra,    colsum_add,  add,
    loss,              adagrad,    adam,
};

}  // namespace
}  // namespace GRUREC_NS

const grurec::Kernels* grurec::GRUREC_TABLE_FN() { return &GRUREC_NS::kTable; }
