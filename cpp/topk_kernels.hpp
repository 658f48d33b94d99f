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
// The avx2, avx512 and neon levels compute exactly this (so they agree with
// each other); the scalar level has the same lanes and tree but rounds the
// product before the addition (the x86-64 baseline has no FMA). Every path
// (one query or many, any block position, any thread count) computes the
// level's score, so at one level a score is a function of the query row, the
// item row and its bias only: topk and rank_counts agree, and duplicated
// item rows tie exactly.
#pragma once

#include <cstdint>

namespace grurec {

struct TopkKernels {
  const char* name;  // "scalar", "avx2", "avx512" or "neon"
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

  // The canonical dot of one query row q (zero from D to the next multiple
  // of `pad`) and one item row x[0..D): dots(1, 1, ...)'s value without its
  // set-up (a one-row call pads a block of rows), for the single pairs a
  // prefilter passes on and for target scores.
  float (*dot1)(int64_t D, const float* q, const float* x);

  // max(x[0..n)), reading every element once (a memory-bandwidth probe).
  float (*stream_max)(int64_t n, const float* x);

  // The int8 prefilter's scan (below): for ng groups of 16 items (group g:
  // x8 + g * 32 * D2, [k][16][2] int8: item l's dims 2k and 2k + 1 at
  // k * 32 + 2l and + 1, zero past D; per item sc, E, F, bp at g * 16 + l)
  // and nq queries (a task's, up to 256) packed as the int16 prefilter packs them
  // (i16_pack_queries: qv[k * QL + r] = int16 pair k of query r, low half
  // dim 2k; qf[r] = sq, qf[QL + r] = nq, qf[2 QL + r] = neq; th[r]):
  //   m[g * nq + r] bit l = !(t3 < th[r]),
  //   I = sum_d q16_d x8_d (exact int32),
  //   t3 = fl(neq F + fl(nq E + fl(fl(fl(I) sq) sc + bp))), each fl one or
  //   two roundings (FMA or not),
  // so a clear bit proves the item's canonical score is below th[r].
  void (*scan8)(int64_t ng, int64_t D2, const int8_t* x8, const float* sc, const float* E,
                const float* F, const float* bp, int64_t nq, const uint32_t* qv, int64_t QL,
                const float* qf, const float* th, uint16_t* m);
};

// --- the int8 prefilter of a prepared table (TopkInt8 in topk.hpp) --------
// Memory-bound top-k (few queries: every item row is read once per call and
// used for a handful of dot products) reads a prepared int8 copy of the
// table instead of the float32 rows: about a quarter of the bytes. Every
// (query, item) pair gets an upper bound t3 of its canonical score (an exact
// integer dot of int8 items and int16 queries, widened by a rigorous error
// bound); only pairs with t3 >= the query's threshold are scored canonically (from the
// float32 rows) and offered as before, so results are identical bit for
// bit. Tasks with rank-count targets do not use it.
//
// The table. Item x (float32, length D), m = max |x_d|; s = m / 127 rounded
// up to float32; x8_d = round(x_d / s) clamped to [-127, 127]; e = x - s x8,
// en >= ||e|| (double, rounded up, plus 2 T sqrt(D) for a build under DAZ),
// nx >= ||x||. A row with m < 2^-100 gets s = 0 (s is never subnormal, which
// a DAZ process would read as 0), x8 = 0 and en >= ||x||; a non-finite row or
// one with nx >= 2^63, E = F = inf. Rows are stored in pairs of dimensions
// (the scan's layout above), zero past D.
//
// The query (i16_pack_queries, shared with the int16 prefilter): q16 =
// round(q / sq) with |q16| <= Qm (127 Qm 2 D2 < 2^31: I never overflows),
// eq = q - sq q16, nq >= ||q||, neq >= ||eq|| (double, rounded up). Under DAZ
// the packing reads a subnormal q_d as 0: the q it quantizes differs from
// the true one by less than T per element.
//
// The bound (u = 2^-24, T = 2^-126, g(n) = nu / (1 - nu), S = q.x exact,
// c the canonical dot of topk_kernels.hpp, bias b, P = sq s I exact):
//   S = P + sq q16.e + eq.x (+ the DAZ difference, |.| <= T sqrt(D) nx), and
//   ||sq q16|| <= ||q|| + ||eq||, so S <= P + ||q|| en + ||eq|| (en + nx)
//   + T sqrt(D) nx;
//   |c - S| <= g(D+4) ||q|| nx + (D+14) T + T sqrt(D)(||q|| + nx)
//     (the bf16 derivation above);
//   the test's float operations: at most 9 roundings (fl(I), the product
//   with sq, then three steps of at most two), each at most u of a value
//   below 1.001 (|P| + |bp| + nq E + neq F), plus T for underflow; and |P|
//   <= (||q|| + ||eq||)(nx + en) (Cauchy-Schwarz: s x8 = x - e).
// So t3 >= c + b when
//   E  >= (en + g(D+4) nx + T sqrt(D) + 9.01u (nx + en)) / (1 - 9.01u),
//   F  >= (nx + en)(1 + 9.01u) / (1 - 9.01u),
//   bp >= b + eb,  eb >= (9.01u |b| + (D+23) T + 2 T sqrt(D) nx) / (1 - 9.01u);
// the build multiplies the relative terms by 1.25 and the absolute ones by 2
// and rounds up. Decisions, for a float32 threshold t: skip when t3 < t
// (then c + b < t and the score fl(c + b) <= t is never offered), or when
// t3 < below(g) for another task's K-th best g (the score is then < g: not
// in the answer, and never a tie). "t3 < t" is false for NaN, and t3 is inf
// or NaN whenever a score could be non-finite: an item with a non-finite
// value or nx >= 2^63 gets E = F = inf, a query with a non-finite value or
// norm >= 2^63 gets nq = inf, a bias with |b| >= 2^126 gets bp = inf; below
// those |c + b| < 2^127. So every non-finite score is still computed and
// reported.

// --- the bf16 prefilter (cpp/topk_bf16.cpp) --------------------------------
// Compute-bound top-k (many queries per task) first scores every (query,
// item) pair approximately in bf16 (vdpbf16ps: 32 multiply-adds per
// instruction, twice float32's 16) and computes the canonical float32 score
// only for the pairs whose approximation, widened by a rigorous error bound,
// can still matter: a pair is skipped only when its canonical score is
// provably <= the query's running threshold (top-k), or provably below /
// above the target's score (rank counts). Results are therefore identical
// to scoring everything canonically; only the work differs.
//
// Used only at the avx512 level, when the CPU reports AVX512_BF16 and the
// prefilter is enabled (bf16_prefilter_set; GRUREC_TOPK_BF16=0 in the
// environment turns it off at load). No state outlives a call: the items
// are converted to bf16 a strip at a time, per call.
//
// The bound. For query q and item x (float32, length D), let S = sum q_i x_i
// (exact, real arithmetic), M = sum |q_i x_i| <= ||q|| ||x|| (Cauchy-Schwarz),
// c the canonical dot, A the bf16 approximation, u = 2^-24, g(n) = nu/(1-nu),
// T = 2^-126 (the smallest normal float):
//   |c - S| <= g(D+4) M + (D+14) T + T sqrt(D)(||q|| + ||x||)
//     (every product passes through at most ceil(D/8) + 3 roundings; T for
//     each of the at most 8 ceil(D/8) + 7 operations covers underflow,
//     gradual or flushed; the last term covers subnormal inputs read as zero,
//     should the process run with DAZ set);
//   bf16 inputs: subnormals flushed (|dq_i| < T), then rounded to nearest
//   (relative 2^-8 each), so |q~_i x~_i - q_i x_i| <= (2^-7 + 2^-16)|q_i x_i|
//   + T(|q_i| + |x_i|), hence |S~ - S| <= (2^-7 + 2^-16) M
//   + T sqrt(D)(||q|| + ||x||);
//   |A - S~| <= g(Dp) (1 + 2^-7 + 2^-16) M + 2 Dp T  (Dp = D rounded up to
//   even; bf16 products are exact in float32 unless they underflow; per
//   instruction at most two roundings, and at most four flushes of a
//   subnormal: two products, two sums);
// so |c - A| <= Kc ||q|| ||x|| + 2 T sqrt(D)(||q|| + ||x||) + (3D + 16) T with
//   Kc = 2^-7 + 2^-16 + g(D+4) + g(Dp)(1 + 2^-7 + 2^-16).
// The test itself is computed in float32 (topk_bf16.cpp): with bias b,
//   u = fl(fma(nx, cq, fl(A + fl(b + eb)))),  l = fl(fma(-nx, cq, fl(A + fl(b - eb)))),
// where nx >= ||x|| / rho and nq >= ||q|| / rho are float32 norms
// (fl(sqrt(fl(ss + (D+5) 2T))) of a float32 sum of squares ss: see
// bf16_bound in topk.cpp for rho), cq >= (Kc + 2.02u(1+2^-6)(1+g(Dp)))
// rho^2 nq / (1 - 1.02u) covers the relative term and the rounding of the
// three operations against |A| <= 1.02 ||q|| ||x|| (+ a few T, in the
// constant below), and eb >= (3.01u |b| + 2 T sqrt(D) rho nx + (3D + 17) T)
// / (1 - 3.01u) the rest of the item's part; the query's absolute part
// aq = 2 T sqrt(D) rho nq is taken off the threshold instead. Then, in real
// numbers,
//   l - aq <= c + b <= u + aq.
// Every constant is multiplied by a safety factor (1.25 for cq, 2 for the
// absolute terms) and rounded up. Decisions, for a float32 threshold t:
//   top-k: skip when u < t' with t' = below(fl(t - aq)) (the next float
//     down): then c + b < t, so the score fl(c + b) <= t never enters
//     (candidates need a score > t);
//   rank counts, target score s: certainly not >= s when u < s_lo with
//     s_lo = below(fl(below(s) - aq)) (then c + b < below(s), so the score
//     is <= below(s) < s); certainly > s when l > s_hi with
//     s_hi = above(fl(above(s) + aq)); anything else is scored exactly.
// "u < t" is false for a NaN u, and u, l are never finite when a score could
// be non-finite: an item with a non-finite value, or a norm >= 2^63, gets
// nx = inf; a query with norm >= 2^63 gets cq = inf; a bias with |b| >=
// 2^126 gets eb = inf; below those limits |c + b| < 2^127 cannot overflow.
// So every NaN or infinite score is computed exactly and reported as before.
//
// Layout: queries in lanes. A task's queries, padded with zero queries to
// QL = a multiple of 16, are qv[k * QL + r] = bf16 pair k of query r (dims
// 2k in the low half, 2k + 1 in the high half, zero past D), k < D2 =
// ceil(D/2); a strip of STRIP items is xb[j * D2 + k] = pair k of item j
// (items past the strip's ni zero). Query-lane masks come in groups of 16
// queries: mask z, bit l = query 16 z + l.
struct Bf16Consts {
  float kb;  // eb = kb |b| + ax nx + a0 (float32 fma's, rounded up by construction)
  float ax;
  float a0;
};

struct TopkBf16 {
  int strip;  // items per strip (32)

  // qv[D2 * QL] as above and nrm[r] = query r's float32 norm (inf when
  // >= 2^63 or not finite) for r < nq; Qp rows (stride ldq) hold D floats.
  // qv must have room for bf16_qv_size(nq, D2) dwords (the rest is scratch).
  void (*pack_queries)(int64_t nq, int64_t D, const float* Qp, int64_t ldq, uint32_t* qv,
                       float* nrm);

  // A strip of ni <= strip items X[j*D .. j*D + D) (bias b[j] or null):
  // xb[strip * D2], nx[strip], bp[strip] = fl(b + eb), bm[strip] = fl(b - eb);
  // entries past ni are zero.
  void (*pack_items)(int64_t ni, int64_t D, const float* X, const float* b,
                     const Bf16Consts& c, uint32_t* xb, float* nx, float* bp, float* bm);

  // For the nq queries (cq[QL], th[QL]; lanes past nq are never set) and
  // the strip's items j < strip, with ZQ = QL / 16:
  //   top[j * ZQ + z] = queries of group z with !(u < th) (survivors of the
  //   top-k test; bits for items past the strip's ni are meaningless);
  // and when slo is not null, for the queries in tmask[z]:
  //   unc[j * ZQ + z] = queries with neither u < slo nor l > shi (to be
  //   scored exactly), gt[r] += #items with l > shi[r] (j < ni only).
  // Returns the items j < ni with any lane set in top or unc (bit j).
  // Meanwhile it prefetches next[0 .. next_floats) (the rows of the next
  // strip; null for none): packed a strip at a time, the rows come in bursts
  // the hardware prefetcher runs too little ahead of.
  uint32_t (*scan)(int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const float* th,
               const uint32_t* xb, const float* nx, const float* bp, const float* bm, int64_t ni,
               const float* slo, const float* shi, const uint16_t* tmask, uint16_t* top,
               uint16_t* unc, int32_t* gt, const float* next, int64_t next_floats);

  // u and l themselves for queries r < nq x items j < ni of a strip:
  // U[r*ld + j], Lo[r*ld + j] (a probe for tests: the bound must hold).
  void (*bounds)(int64_t nq, int64_t D2, const uint32_t* qv, const float* cq, const uint32_t* xb,
                 const float* nx, const float* bp, const float* bm, int64_t ni, float* U,
                 float* Lo, int64_t ld);

  // out[k] = the canonical dot of the avx512 level (equal to its dots'
  // results) of item row x[0..D) and query row Qp + idx[k] * ldq, k < n;
  // query rows are zero from D to the next multiple of 8.
  void (*dots)(int64_t D, const float* x, int64_t n, const int32_t* idx, const float* Qp,
               int64_t ldq, float* out);
};

// Dwords pack_queries needs at qv for nq queries of D2 = ceil(D/2) pairs.
inline int64_t bf16_qv_size(int64_t nq, int64_t D2) {
  const int64_t QL = (nq + 15) / 16 * 16;
  return D2 * QL + 16 * ((D2 + 15) / 16 * 16 + 16);
}

// The prefilter's table: null when not compiled in or the CPU lacks AVX512_BF16.
const TopkBf16* topk_bf16_kernels();

// --- the int16 prefilter (cpp/topk_i16.cpp) --------------------------------
// The avx2 level's counterpart of the bf16 prefilter, for top-k tasks of
// many queries without rank-count targets (those run as before). Every
// (query, item) pair gets an integer approximation from vpmaddwd (16
// multiply-adds per instruction, exact int32 sums) and a rigorous upper bound
// U of its canonical score; only pairs with U >= the query's threshold are
// scored canonically and offered, so results are identical bit for bit.
// GRUREC_TOPK_I16=0 in the environment turns it off at load
// (i16_prefilter_set switches it). No state outlives a call.
//
// Quantization. Query q (topk.cpp, in double): m = max |q_d|, sq = m / Qm
// rounded up to float32, q16_d = round(q_d / sq) (|q16_d| <= Qm, an integer),
// eq = q - sq q16, neq >= ||eq||, nq >= ||q|| (double sums, rounded up, at
// least 2^-126 so no DAZ reads them as 0). Qm = min(32767, (2^31 - 1) /
// (254 D2)), so |sum q16 x8| < 2^31. Item x (topk_i16.cpp, float32): mx =
// max |x_d|, sx = fl(mx s127) >= mx / 127, x8_d = round(x_d / sx) clamped to
// [-127, 127], e = x - sx x8 (one fused rounding per element), nx and en the
// float32 norm bounds of x and of the computed e (fl(sqrt(fl(ss + (D+5)
// 2^-125))) as for bf16: ||x|| <= rho nx). Rows with mx < 2^-100 keep sx = 0
// (all of x in e); a non-finite row, or one with nx >= 2^63, gets E = F = bp
// = inf, a query with a non-finite value or norm >= 2^63 gets nq = inf.
//
// The bound (u = 2^-24, T = 2^-126, g(n) = nu / (1 - nu), S = q.x exact, c
// the canonical dot, I = sum q16_d x8_d exact, A = sq sx I):
//   S - A = (q - eq).e + eq.x, so |S - A| <= nq ||e|| + neq (||x|| + ||e||);
//   |c - S| <= g(D+4) ||q|| nx + (D+14) T + T sqrt(D)(||q|| + nx) (bf16 above);
//   ||e|| <= (1 + u) rho en + sqrt(D) T (the rounding of e, flushed e_d);
// The test: U = fl(nq E + fl(neq F + fl(fl(fl(I) sq) sx + bp))), five
// roundings, each at most u of a partial sum of |A| + |bp| + neq F + nq E
// (|A| <= (nq + neq)(||x|| + ||e||)), plus 5 T for underflow. So U >= c + b
// when
//   E (1 - 5.1u) >= ||e|| + g(D+4) ||x|| + T sqrt(D) + 5.2u (||x|| + ||e||),
//   F (1 - 5.1u) >= (||x|| + ||e||)(1 + 5.2u),
//   bp >= b + eb, eb (1 - 6.2u) >= 6.2u |b| + (D+20) T + T sqrt(D) ||x||
// (6.2u: the chain and bp's own rounding). I16Consts holds the coefficients
// of E = ke en + kx nx + k0, F = kfe en + kfx nx + kf0, eb = kb |b| + ax nx
// + a0 with a safety factor (1.25 on relative terms, 2 on absolute ones,
// which also covers the float32 roundings of E, F and eb), rounded up.
// Decision, as for the int8 prefilter: skip a pair when U < th, th = the
// query's running K-th best, or just below a higher one another task of the
// same query reached (the score is then <= th: never offered, or < the
// shared one: not in the answer). "U < th" is false for NaN, and U is inf or
// NaN whenever a score could be non-finite.
struct I16Consts {
  float s127;  // >= 1 / (127 (1 - u)): sx = fl(mx s127) >= mx / 127
  float ke, kx, k0, kfe, kfx, kf0;
  float kb, ax, a0;
};

struct TopkI16 {
  int strip;  // items per strip (32)

  // A strip of ni <= strip items X[j*D .. j*D + D) (bias b[j] or null):
  // xb[strip * D2] int16 pairs (dims 2k in the low half, 2k + 1 high, zero
  // past D); iv[4 * strip] = per item sx, E, F, bp. Items past ni get zero
  // rows and bp = -inf.
  void (*pack_items)(int64_t ni, int64_t D, const float* X, const float* b, const I16Consts& c,
                     uint32_t* xb, float* iv);

  // nq queries as qv[k * QL + r] (int16 pair k of query r, QL = nq rounded
  // up to 8, padded lanes zero) and qf[4 * QL] = per query sq, nq, neq, th;
  // items j < ni of a packed strip: top[j * ZQ + z] (ZQ = QL / 8) bit l =
  // !(U < th) for query 8 z + l (bits of padded lanes are meaningless).
  // Returns the items j < ni with any bit set (bit j). Meanwhile it
  // prefetches next[0 .. next_floats) (the next strip's rows, null for
  // none), as the bf16 scan does: pack_items reads a strip's rows in one
  // burst the hardware prefetcher runs too little ahead of (at batch 64,
  // N = 1M, d = 100 a third of pack_items' time waited on those loads).
  uint32_t (*scan)(int64_t nq, int64_t D2, const uint32_t* qv, const float* qf,
                   const uint32_t* xb, const float* iv, int64_t ni, uint8_t* top,
                   const float* next, int64_t next_floats);

  // U itself for queries r < nq x items j < ni: U[r * ld + j] (tests).
  void (*bounds)(int64_t nq, int64_t D2, const uint32_t* qv, const float* qf, const uint32_t* xb,
                 const float* iv, int64_t ni, float* U, int64_t ld);
};

// The int16 prefilter's table: null when not compiled in or the CPU lacks AVX2/FMA.
const TopkI16* topk_i16_kernels();

const TopkKernels* topk_kernels_scalar();
const TopkKernels* topk_kernels_avx2();    // nullptr when not compiled in
const TopkKernels* topk_kernels_avx512();  // nullptr when not compiled in
const TopkKernels* topk_kernels_neon();    // nullptr when not compiled in (x86)

// The table of the level the kernel table K() runs at.
const TopkKernels& TK();

}  // namespace grurec
