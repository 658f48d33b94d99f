// Top-k and rank counts: planning, threads, candidate selection, merging.
// The SIMD inner loops are in topk_impl.hpp (one table per level).
#include "topk.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "kernels.hpp"
#include "topk_kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace grurec {

#ifndef GRUREC_HAVE_X86_LEVELS
const TopkKernels* topk_kernels_avx2() { return nullptr; }
const TopkKernels* topk_kernels_avx512() { return nullptr; }
#endif
#ifndef GRUREC_HAVE_NEON_LEVEL
const TopkKernels* topk_kernels_neon() { return nullptr; }
#endif

}  // namespace grurec

#ifdef GRUREC_HAVE_BF16
const grurec::TopkBf16* grurec_topk_bf16_table();  // topk_bf16.cpp
#endif
#ifdef GRUREC_HAVE_X86_LEVELS
const grurec::TopkI16* grurec_topk_i16_table();  // topk_i16.cpp
#endif

namespace grurec {

const TopkBf16* topk_bf16_kernels() {
#if defined(GRUREC_HAVE_BF16) && (defined(__GNUC__) || defined(__clang__))
  static const TopkBf16* t = [] {
    __builtin_cpu_init();
    const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    return ok ? grurec_topk_bf16_table() : nullptr;
  }();
  return t;
#else
  return nullptr;
#endif
}

const TopkI16* topk_i16_kernels() {
#if defined(GRUREC_HAVE_X86_LEVELS) && (defined(__GNUC__) || defined(__clang__))
  static const TopkI16* t = [] {
    __builtin_cpu_init();
    const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok ? grurec_topk_i16_table() : nullptr;
  }();
  return t;
#else
  return nullptr;
#endif
}

namespace {
// -1 until read: GRUREC_TOPK_BF16=0 / GRUREC_TOPK_I16=0 in the environment
// turns the bf16 / int16 prefilter off.
std::atomic<int> bf16_on{-1}, i16_on{-1};
// Counters for tests (bf16_stats, i16_stats): pairs approximated, pairs
// scored exactly after the prefilter, item blocks run each way.
struct Counters {
  std::atomic<int64_t> pairs{0}, exact{0}, used{0}, plain{0};
  void add(int64_t p, int64_t e, int64_t u, int64_t n) {
    pairs.fetch_add(p, std::memory_order_relaxed);
    exact.fetch_add(e, std::memory_order_relaxed);
    used.fetch_add(u, std::memory_order_relaxed);
    plain.fetch_add(n, std::memory_order_relaxed);
  }
};
Counters st_bf16, st_i16;
// The same for the int8 prefilter.
std::atomic<int64_t> st8_pairs{0}, st8_exact{0}, st8_blocks{0};

// A counter's value, zeroed on the way when reset.
int64_t read_counter(std::atomic<int64_t>& c, bool reset) {
  return reset ? c.exchange(0) : c.load();
}

// A prefilter's switch: on unless the environment variable `var` was "0"
// at the first read.
bool switch_on(std::atomic<int>& on, const char* var) {
  int v = on.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv(var);
    v = (e && std::strcmp(e, "0") == 0) ? 0 : 1;
    int expect = -1;
    on.compare_exchange_strong(expect, v);
    v = on.load();
  }
  return v == 1;
}

// A prefilter's counters, zeroed on the way when reset.
TopkPrefilterStats read_counters(Counters& c, bool reset) {
  TopkPrefilterStats r;
  r.pairs = read_counter(c.pairs, reset);
  r.exact = read_counter(c.exact, reset);
  r.blocks_used = read_counter(c.used, reset);
  r.blocks_plain = read_counter(c.plain, reset);
  return r;
}
}  // namespace

TopkInt8Stats int8_stats(bool reset) {
  TopkInt8Stats r;
  r.pairs = read_counter(st8_pairs, reset);
  r.exact = read_counter(st8_exact, reset);
  r.blocks = read_counter(st8_blocks, reset);
  return r;
}

bool bf16_prefilter_available() { return topk_bf16_kernels() != nullptr; }
bool bf16_prefilter_enabled() { return switch_on(bf16_on, "GRUREC_TOPK_BF16"); }
void bf16_prefilter_set(bool on) { bf16_on.store(on ? 1 : 0); }
TopkBf16Stats bf16_stats(bool reset) { return read_counters(st_bf16, reset); }

bool i16_prefilter_available() { return topk_i16_kernels() != nullptr; }
bool i16_prefilter_enabled() { return switch_on(i16_on, "GRUREC_TOPK_I16"); }
void i16_prefilter_set(bool on) { i16_on.store(on ? 1 : 0); }
TopkI16Stats i16_stats(bool reset) { return read_counters(st_i16, reset); }

const TopkKernels& TK() {
  const char* name = K().name;
  const TopkKernels* t = nullptr;
  if (std::strcmp(name, "avx512") == 0) t = topk_kernels_avx512();
  if (std::strcmp(name, "avx2") == 0) t = topk_kernels_avx2();
  if (std::strcmp(name, "neon") == 0) t = topk_kernels_neon();
  if (!t) t = topk_kernels_scalar();
  return *t;
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t clamp64(int64_t x, int64_t lo, int64_t hi) { return std::max(lo, std::min(hi, x)); }

// The float next to x towards -inf / +inf (x itself for -inf / +inf and NaN).
float below(float x) {
  if (!(x > -kInf)) return x;
  if (x == 0.0f) return -std::numeric_limits<float>::denorm_min();
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  b += (b >> 31) ? 1u : static_cast<uint32_t>(-1);
  std::memcpy(&x, &b, sizeof b);
  return x;
}
float above(float x) { return -below(-x); }

// The smallest float >= d (d finite within float range, or inf).
float round_up(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) < d) f = above(f);
  return f;
}

// Queries per task from which the bf16 prefilter pays: it converts every
// item to bf16 (plus its norm) once per task and streams the table more
// slowly than the float32 path. Measured at N = 1M, d = 100, 1 / 2 threads
// (ms, float32 path vs prefilter): 12 queries 18.3 / 18.0 and 10.5 / 12.4;
// 16: 18.6 / 19.2 and 12.4 / 12.8; 24: 27.1 / 21.7 and 15.3 / 11.9;
// 32: 36.0 / 20.8 and 20.7 / 12.3.
constexpr int64_t kBf16MinQueries = 20;
// A block whose pairs went on to the exact score more often than 1 in this
// many makes the next blocks (2, 4, ... 64) go without the prefilter. Each
// exact score costs (item by item, with the bookkeeping) about 25 x what the
// prefilter saves per pair: at batch 64, N = 1M, d = 100, 1 thread, 5.7% of
// pairs exact (rank-count targets in the middle of the scores) took 88 ms
// against 74 ms without the prefilter, and 0.07% took 34 ms.
constexpr int64_t kBf16MaxExact = 32;
// Dimensions the bound covers comfortably (g(n) below needs n 2^-24 << 1).
constexpr int64_t kBf16MaxD = int64_t{1} << 20;

// The constants of the bf16 error bound for D dimensions (the derivation is
// in topk_kernels.hpp): cq = kq nq and aq = kaq nq per query (nq its float32
// norm, computed in double and rounded up), and the item's eb terms.
struct Bf16Bound {
  double kq, kaq;
  Bf16Consts item;
  // A query's cq and aq from its float32 norm nq (topk and bf16_probe alike).
  void query(float nq, float* cq, float* aq) const {
    *cq = round_up(kq * nq);
    *aq = round_up(kaq * nq);
  }
};

// float32's unit roundoff and smallest normal, and gamma_n(n) = n u / (1 - n u),
// the relative error of n float32 roundings (Higham): the terms of both
// prefilters' bounds (topk_kernels.hpp has the derivations).
constexpr double kU = 0x1p-24, kT = 0x1p-126;
double gamma_n(double n) { return n * kU / (1.0 - n * kU); }
// The relative error of a D-term sum of squares in double and its square
// root: D + 8 roundings of at most 2^-53 each.
double double_slack(int64_t D) { return 1.0 + (static_cast<double>(D) + 8.0) * 0x1p-52; }

Bf16Bound bf16_bound(int64_t D) {
  const double d = static_cast<double>(D), dp = static_cast<double>(2 * ((D + 1) / 2));
  const double b16 = std::ldexp(1.0, -7) + std::ldexp(1.0, -16);  // bf16 rounding of a product
  const double kc = b16 + gamma_n(d + 4) + gamma_n(dp) * (1.0 + b16);
  // ||x|| <= rho nx: the norm's float32 sum of squares (<= D + 5 roundings
  // per term), the addition of the tiny term and the square root.
  const double rho = 1.0 / ((1.0 - kU) * (1.0 - kU) * (1.0 - gamma_n(d + 5)));
  const double inflate = 1.0 + std::ldexp(1.0, -20);  // eb's own float32 rounding
  const double safety_rel = 1.25, safety_abs = 2.0;
  Bf16Bound b;
  b.kq = safety_rel * (kc + 2.02 * kU * (1.0 + 1.0 / 64) * (1.0 + gamma_n(dp))) * rho * rho /
         (1.0 - 1.02 * kU);
  b.kaq = safety_abs * 2.0 * kT * std::sqrt(d) * rho;
  const double rest = inflate / (1.0 - 3.01 * kU);
  b.item.kb = round_up(safety_rel * 3.01 * kU * rest);
  b.item.ax = round_up(safety_abs * 2.0 * kT * std::sqrt(d) * rho * rest);
  b.item.a0 = round_up(safety_abs * (3.0 * d + 17.0) * kT * rest);
  return b;
}

// A row's max |v|, its sum of squares (double) and whether every value is finite.
struct RowStats {
  double m = 0.0, ss = 0.0;
  bool finite = true;
};
RowStats row_stats(const float* v, int64_t D) {
  RowStats r;
  for (int64_t k = 0; k < D; ++k) {
    const double x = v[k];
    if (!std::isfinite(x)) r.finite = false;
    r.m = std::max(r.m, std::fabs(x));
    r.ss += x * x;
  }
  return r;
}

// Queries per task from which the int16 prefilter is used (avx2 level):
// the scan packs every item once per task and runs whole groups of 8 query
// lanes, so it pays only from a few groups on. Measured at N = 1M, d = 100
// (Xeon forced to avx2: no AVX2-only machine here), ms float32 path /
// prefilter at 1 and 2 threads: 8 queries 44 / 59 and 23 / 30; 16: 62 / 67
// and 34 / 35; 20: 79 / 84 and 41 / 43; 22: 83 / 81 and 44 / 41; 24:
// 86-94 / 76-79 and 47-48 / 39-41.
constexpr int64_t kI16MinQueries = 22;
// Dimensions it takes: Qm (below) stays >= 2064 up to here.
constexpr int64_t kI16MaxD = 4096;

// The coefficients of the int16 prefilter's E, F and eb (topk_kernels.hpp).
I16Consts i16_consts(int64_t D) {
  const double d = static_cast<double>(D), sd = std::sqrt(d);
  const double rho = 1.0 / ((1.0 - kU) * (1.0 - kU) * (1.0 - gamma_n(d + 5)));
  const double rel = 1.25, abs_ = 2.0, div = 1.0 - 5.1 * kU, div_b = 1.0 - 6.2 * kU;
  I16Consts c;
  c.s127 = round_up(1.0 / (127.0 * (1.0 - kU)));
  c.ke = round_up(rel * (1.0 + kU) * rho * (1.0 + 5.2 * kU) / div);
  c.kx = round_up(rel * rho * (gamma_n(d + 4) + 5.2 * kU) / div);
  c.k0 = round_up(abs_ * 2.1 * sd * kT / div);
  c.kfe = round_up(rel * (1.0 + kU) * rho * (1.0 + 5.2 * kU) / div);
  c.kfx = round_up(rel * rho * (1.0 + 5.2 * kU) / div);
  c.kf0 = round_up(abs_ * 1.1 * sd * kT / div);
  c.kb = round_up(rel * 6.2 * kU / div_b);
  c.ax = round_up(abs_ * sd * kT * rho / div_b);
  c.a0 = round_up(abs_ * (d + 20.0) * kT / div_b);
  return c;
}

// The largest |q16| for D dimensions: 127 Qm (2 D2) < 2^31.
int64_t i16_qmax(int64_t D) {
  const int64_t D2 = (D + 1) / 2;
  return std::min<int64_t>(32767, (int64_t{2147483647}) / (254 * std::max<int64_t>(D2, 1)));
}

// Packs nq query rows (Qp, stride ldq) for the int16 scan: qv[k * QL + r]
// and qf[0 .. 3 QL) = sq, nq, neq (topk_kernels.hpp); th is the caller's.
// Lanes past nq are zero.
void i16_pack_queries(int64_t nq, int64_t D, const float* Qp, int64_t ldq, int64_t QL,
                      uint32_t* qv, float* qf) {
  const int64_t D2 = (D + 1) / 2;
  const double Qm = static_cast<double>(i16_qmax(D));
  std::fill(qv, qv + D2 * QL, 0u);
  std::fill(qf, qf + 3 * QL, 0.0f);
  for (int64_t r = 0; r < nq; ++r) {
    const float* q = Qp + r * ldq;
    const RowStats rs = row_stats(q, D);
    const double m = rs.m, ss = rs.ss;
    const bool finite = rs.finite;
    const double nrm = std::sqrt(ss) * double_slack(D);
    if (!finite || !(nrm < std::ldexp(1.0, 63))) {
      qf[QL + r] = kInf;  // U = inf: every pair is scored exactly
      continue;
    }
    float sq = 0.0f;
    double es = ss;
    if (m >= std::ldexp(1.0, -100)) {
      sq = round_up(m / Qm);
      es = 0.0;
      for (int64_t k = 0; k < D; ++k) {
        const double q16 = std::nearbyint(static_cast<double>(q[k]) / sq);  // |q16| <= Qm
        const double e = static_cast<double>(q[k]) - static_cast<double>(sq) * q16;
        es += e * e;
        const uint32_t h = static_cast<uint16_t>(static_cast<int16_t>(q16));
        uint32_t& w = qv[(k / 2) * QL + r];
        w |= (k % 2) ? (h << 16) : h;
      }
    }
    qf[r] = sq;
    qf[QL + r] = std::max(round_up(nrm), static_cast<float>(kT));
    qf[2 * QL + r] = std::max(round_up(std::sqrt(es) * double_slack(D)), static_cast<float>(kT));
  }
}

// The int8 table (topk_kernels.hpp, "the int8 prefilter", for the bound).
// Per item: the scale, the int8 row (dim k at x8[k]), and E, F and bp in
// double, rounded up.
void int8_item(const float* x, float b, bool has_bias, int64_t D, int8_t* x8, float* sc,
               float* E, float* F, float* bp) {
  const double d = static_cast<double>(D), sd = std::sqrt(d);
  const RowStats rs = row_stats(x, D);
  const double m = rs.m, ss = rs.ss;
  const bool finite = rs.finite;
  const double nx = std::sqrt(ss) * double_slack(D);
  float s = 0.0f;
  double es = 0.0;
  // Rows below 2^-100 keep s = 0 (all their weight in en), so s is never
  // subnormal (a DAZ process would read it as zero).
  if (finite && nx < std::ldexp(1.0, 63) && m >= std::ldexp(1.0, -100)) {
    s = round_up(m / 127.0);
    for (int64_t k = 0; k < D; ++k) {
      double q = 0.0;
      if (s > 0.0f) q = std::max(-127.0, std::min(127.0, std::nearbyint(static_cast<double>(x[k]) / s)));
      x8[k] = static_cast<int8_t>(q);
      const double e = static_cast<double>(x[k]) - static_cast<double>(s) * q;
      es += e * e;
    }
  } else {
    for (int64_t k = 0; k < D; ++k) x8[k] = 0;
    es = finite ? ss : 0.0;
  }
  const double en = std::sqrt(es) * double_slack(D) + 2.0 * kT * sd;
  const double rel = 1.25, div = 1.0 - 9.01 * kU;
  *sc = s;
  if (!finite || !(nx < std::ldexp(1.0, 63))) {
    *E = *F = kInf;
  } else {
    *E = round_up(rel * (en + gamma_n(d + 4) * nx + kT * sd + 9.01 * kU * (nx + en)) / div);
    *F = round_up(rel * (nx + en) * (1.0 + 9.01 * kU) / div);
  }
  const double bb = has_bias ? static_cast<double>(b) : 0.0;
  if (!(std::fabs(bb) < std::ldexp(1.0, 126))) {
    *bp = kInf;
  } else {
    const double eb = 2.0 * (9.01 * kU * std::fabs(bb) + (d + 23.0) * kT + 2.0 * kT * sd * nx) / div;
    *bp = round_up(bb + eb);
  }
}

struct Cand {
  float s;
  int64_t i;
};
// The order of results: score descending, then item index ascending.
inline bool better(const Cand& a, const Cand& b) { return a.s > b.s || (a.s == b.s && a.i < b.i); }

// How the work is cut. Tasks are (query block, item range) pairs, task t =
// (t / P, t % P).
struct Plan {
  int64_t dp;   // padded query row length (a multiple of tk.pad)
  int64_t Qs;   // queries scored together against an item block (L1-sized, whole panels)
  int64_t QB;   // queries per task (the last query block may be shorter)
  int64_t nQB;  // query blocks
  int64_t P;    // item ranges
  int64_t Nb;   // items per block (L2-sized)
  int64_t cap;  // candidate slots per query (top-k only)
  int64_t panel;  // queries per block of the many-query kernel
  int64_t max_threads;  // at most one thread per ~256K multiply-adds (a fork costs ~10 us)
  const TopkBf16* bf16;  // the prefilter's table, or null when it is not used
  const TopkI16* i16;    // the int16 prefilter's table, or null
  bool i8;               // tasks scan a prepared int8 table (topk() sets it)
  int64_t QL16;          // query lanes of a task for it (QB rounded up to 8)
  int64_t D2;   // bf16 pairs per row (prefilter)
  int64_t QL;   // query lanes of a task (QB rounded up to 16; prefilter)
  int64_t work() const { return (Qs + panel + 16) * dp; }
  int64_t tasks() const { return nQB * P; }
  int64_t range_begin(int64_t p, int64_t N) const { return N * p / P; }
};

Plan make_plan(int64_t Q, int64_t N, int64_t D, int64_t K, int T, const TopkKernels& tk) {
  Plan p;
  p.dp = std::max<int64_t>(tk.pad, ceil_div(D, tk.pad) * tk.pad);
  // Query sub-block: its packed rows (about 24 KiB) stay in L1 while the
  // item rows of a micro-block are reused against it.
  p.panel = tk.panel;
  p.Qs = clamp64(24576 / (p.dp * 4), p.panel, 256) / p.panel * p.panel;
  p.cap = K + clamp64(K, 64, 65536);
  const int64_t qb_max = clamp64((int64_t{1} << 21) / p.cap, 1, 256);  // <= 2M candidates per thread
  if (Q <= 0) {
    p.QB = 1;
    p.nQB = 0;
  } else {
    p.nQB = ceil_div(Q, qb_max);
    p.QB = ceil_div(Q, p.nQB);
  }
  p.Qs = std::max<int64_t>(1, std::min(p.Qs, p.QB));
  // Enough tasks for load balance on a shared machine (a thread that loses
  // its core holds up the end of the call by at most one task): about 8 per
  // thread, splitting the items when there are few query blocks.
  p.P = 1;
  if (T > 1 && p.nQB > 0 && p.nQB < 8 * T) p.P = ceil_div(8 * T, p.nQB);
  p.P = std::min<int64_t>(p.P, std::max<int64_t>(1, N / 1024));
  if (p.P > 1) {
    // Partial lists cost Q * P * K entries: keep them under 4M (64 MiB).
    const int64_t limit = int64_t{1} << 22;
    if (Q * p.P * K > limit) p.P = std::max<int64_t>(1, limit / std::max<int64_t>(1, Q * K));
  }
  // Item block: about 384 KiB of item rows (reused from L2 by every query
  // sub-block of the task), and a score tile Qs x Nb of at most 128 KiB.
  int64_t nb = 393216 / (std::max<int64_t>(D, 1) * 4);
  nb = std::min(nb, 32768 / p.Qs);
  p.Nb = clamp64(nb, 64, 4096) / 16 * 16;
  const double macs = static_cast<double>(Q) * static_cast<double>(N) * std::max<int64_t>(D, 1);
  p.max_threads = static_cast<int64_t>(std::min(1024.0, std::max(1.0, macs / 262144.0)));
  // The bf16 prefilter: at the avx512 level only (its canonical dot is that
  // level's), when some task will have enough queries.
  p.bf16 = nullptr;
  if (std::strcmp(tk.name, "avx512") == 0 && D >= 1 && D <= kBf16MaxD &&
      std::min(p.QB, Q) >= kBf16MinQueries && bf16_prefilter_enabled())
    p.bf16 = topk_bf16_kernels();
  // The int16 prefilter: at the avx2 level (its canonical dot is that
  // level's), for top-k without rank counts (topk() checks that).
  p.i16 = nullptr;
  if (std::strcmp(tk.name, "avx2") == 0 && D >= 1 && D <= kI16MaxD &&
      std::min(p.QB, Q) >= kI16MinQueries && i16_prefilter_enabled())
    p.i16 = topk_i16_kernels();
  p.i8 = false;
  p.D2 = (D + 1) / 2;
  p.QL = ceil_div(p.QB, 16) * 16;
  p.QL16 = ceil_div(p.QB, 8) * 8;
  return p;
}

// One query's running top-k: buf[0..n) holds candidates, all of which beat
// every item seen and dropped; thr is a lower bound of the final K-th best
// score (-inf, then first_threshold's, then the K-th best after each cut), so
// only scores > thr can still enter.
struct Running {
  Cand* buf;
  int64_t n;
  float thr;
};

void cut(Running& r, int64_t K) {
  std::nth_element(r.buf, r.buf + (K - 1), r.buf + r.n, better);
  r.n = K;
  r.thr = r.buf[K - 1].s;
}

// a = max(a, v) (v not NaN).
void raise_to(std::atomic<float>& a, float v) {
  float cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// Offers item i with score v to r (items arrive in increasing index order).
inline void offer(Running& r, float v, int64_t i, const uint8_t* allowed, const int64_t* ex0,
                  const int64_t* ex1, int64_t cap, int64_t K) {
  if (!(v > r.thr)) return;  // the threshold rose since v was filtered
  if (allowed && !allowed[i]) return;
  if (ex0 != ex1 && std::binary_search(ex0, ex1, i)) return;
  if (r.n == cap) {
    cut(r, K);
    if (!(v > r.thr)) return;
  }
  r.buf[r.n++] = {v, i};
}

// A threshold for the first block a query sees: just below the K-th best
// eligible score among the block's first max(4K, 256) items (-inf if fewer
// than K are eligible or a score is NaN). Every score >= that K-th best
// passes it, which loses nothing (the final K-th best can only be higher),
// and saves pushing the whole first block through the candidate buffer.
// Scores as in `above`.
float first_threshold(int64_t nb, const float* row, const float* bias, int64_t i0,
                      const uint8_t* allowed, const int64_t* ex0, const int64_t* ex1, int64_t K,
                      float* scratch) {
  nb = std::min(nb, std::max<int64_t>(4 * K, 256));
  if (nb < K) return -kInf;
  int64_t n = 0;
  const int64_t* ex = ex0;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t i = i0 + j;
    if (allowed && !allowed[i]) continue;
    if (ex != ex1) {
      while (ex != ex1 && *ex < i) ++ex;
      if (ex != ex1 && *ex == i) continue;
    }
    const float v = bias ? row[j] + bias[j] : row[j];
    if (v != v) return -kInf;
    scratch[n++] = v;
  }
  if (n < K) return -kInf;
  std::nth_element(scratch, scratch + (K - 1), scratch + n, std::greater<float>());
  return std::nextafter(scratch[K - 1], -kInf);
}

// Sorted best min(n, K) of r into idx/score, padding to K with -1 / -inf.
void finish(Running& r, int64_t K, int64_t* idx, float* score) {
  if (r.n > K) cut(r, K);
  std::sort(r.buf, r.buf + r.n, better);
  for (int64_t j = 0; j < r.n; ++j) {
    idx[j] = r.buf[j].i;
    score[j] = r.buf[j].s;
  }
  for (int64_t j = r.n; j < K; ++j) {
    idx[j] = -1;
    score[j] = -kInf;
  }
}

// Per-thread buffers, sized on the first task.
struct Scratch {
  std::vector<float> qp;     // [QB, dp] padded query rows
  std::vector<float> tile;   // [Qs, Nb] scores of a query sub-block x an item block
  std::vector<float> work;   // packed queries of a sub-block (dots)
  std::vector<int32_t> ci;   // [Nb] candidate positions in a tile row
  std::vector<float> cv;     // [Nb] their scores
  std::vector<float> sc;     // [Nb] scratch for first_threshold
  std::vector<Cand> cand;    // [QB, cap] candidate buffers
  std::vector<Running> run;  // [QB]
  std::vector<float> st;     // [QB] target scores (rank counts)
  std::vector<int64_t> cnt;  // [QB, 2] greater / equal counts (rank counts)
  // bf16 prefilter (plan.bf16 only; topk_kernels.hpp for the layouts)
  std::vector<uint32_t> qb;  // [D2, QL] bf16 query pairs (+ pack_queries' scratch)
  std::vector<float> qv;     // [6, QL] per query lane: norm, cq, aq, th, slo, shi
  std::vector<uint16_t> tmask;  // [QL / 16] lanes with a target (rank counts)
  std::vector<uint16_t> top, unc;  // [strip, QL / 16] survivor / uncertain lanes of a strip
  std::vector<int32_t> gt;   // [QL] certainly-greater counts
  std::vector<uint32_t> xb;  // [strip, D2] bf16 items of a strip
  std::vector<float> iv;     // [3, strip] per item: nx, bp, bm
  std::vector<int32_t> rq;   // [QL] queries to score an item against exactly
  std::vector<float> rv;     // [QL] their dots
  // int8 prefilter (i8 only): scan masks [groups of a block + 2, QB], per
  // query its norm and threshold
  std::vector<uint16_t> m8;
  std::vector<uint32_t> q8v;  // [D2, QB rounded up to 8] int16 query pairs (i16_pack_queries)
  std::vector<float> q8f;     // [4, that]: sq, nq, neq, th per query lane
  // int16 prefilter (plan.i16 only)
  std::vector<uint32_t> q16v;  // [D2, QL16] int16 query pairs
  std::vector<float> q16f;     // [4, QL16] sq, nq, neq, th
  std::vector<uint8_t> top8;   // [strip, QL16 / 8] survivor lanes of a strip
  std::vector<uint32_t> x16;   // [strip, D2] int16 items of a strip
  std::vector<float> iv16;     // [4, strip] sx, E, F, bp
  void size(const Plan& p) {
    if (!qp.empty()) return;
    qp.assign(p.QB * p.dp, 0.0f);
    tile.resize(p.Qs * p.Nb);
    work.resize(p.work());
    ci.resize(p.Nb);
    cv.resize(p.Nb);
    sc.resize(p.Nb);
    cand.resize(p.QB * p.cap);
    run.resize(p.QB);
    st.resize(p.QB);
    cnt.resize(p.QB * 2);
    if (p.bf16) {
      qb.resize(bf16_qv_size(p.QB, p.D2));
      qv.resize(6 * p.QL);
      tmask.resize(p.QL / 16);
      top.resize(p.bf16->strip * p.QL / 16);
      unc.resize(p.bf16->strip * p.QL / 16);
      gt.resize(p.QL);
      xb.resize(p.bf16->strip * p.D2);
      iv.resize(3 * p.bf16->strip);
      rq.resize(p.QL);
      rv.resize(p.QL);
    }
    if (p.i16) {
      q16v.resize(p.D2 * p.QL16);
      q16f.resize(4 * p.QL16);
      top8.resize(p.i16->strip * p.QL16 / 8);
      x16.resize(p.i16->strip * p.D2);
      iv16.resize(4 * p.i16->strip);
    }
    if (p.i8) {
      m8.resize((p.Nb / 16 + 2) * p.QB);
      q8v.resize(p.D2 * ceil_div(p.QB, 8) * 8);
      q8f.resize(4 * ceil_div(p.QB, 8) * 8);
    }
  }
};

// Copies queries [q0, q0 + nq) into zero-padded rows.
void pad_queries(float* qp, const float* queries, int64_t q0, int64_t nq, int64_t D,
                 int64_t dp) {
  for (int64_t q = 0; q < nq; ++q) {
    float* dst = qp + q * dp;
    if (D > 0) std::memcpy(dst, queries + (q0 + q) * D, sizeof(float) * D);
    std::fill(dst + D, dst + dp, 0.0f);
  }
}

// The score of each query's target (targets[q] >= 0; nq queries already in
// s.qp) by the same kernel and bias addition as every other score, so the
// target ties with itself exactly; zeroes the counts.
void target_scores(Scratch& s, const TopkKernels& tk, const Plan& plan, const float* items,
                   const float* bias, const int64_t* targets, int64_t nq, int64_t D) {
  for (int64_t q = 0; q < nq; ++q) {
    s.cnt[2 * q] = s.cnt[2 * q + 1] = 0;
    const int64_t tgt = targets[q];
    if (tgt < 0) continue;
    const float dot = tk.dot1(D, s.qp.data() + q * plan.dp, items + tgt * D);
    s.st[q] = bias ? dot + bias[tgt] : dot;
  }
}

// greater/equal from the partial counts [P, Q, 2] of the item ranges; -1 for
// a query without a target.
void sum_counts(const std::vector<int64_t>& part, const int64_t* targets, int64_t Q, int64_t P,
                int64_t* greater, int64_t* equal) {
  for (int64_t q = 0; q < Q; ++q) {
    if (targets[q] < 0) {
      greater[q] = equal[q] = -1;
      continue;
    }
    int64_t g = 0, e = 0;
    for (int64_t p = 0; p < P; ++p) {
      g += part[(p * Q + q) * 2];
      e += part[(p * Q + q) * 2 + 1];
    }
    greater[q] = g;
    equal[q] = e - 1;  // the target equals itself
  }
}

// Runs f(task, scratch) for every task on up to num_threads threads; false
// when a scratch allocation failed (no exception leaves the region).
template <class F>
bool run_tasks(int64_t tasks, int num_threads, const Plan& plan, F f) {
  std::atomic<bool> failed{false};
  const int nt = static_cast<int>(std::min<int64_t>({num_threads, tasks, plan.max_threads}));
  auto body = [&](int64_t t, Scratch& s) {
    if (failed.load(std::memory_order_relaxed)) return;
    try {
      s.size(plan);
      f(t, s);
    } catch (...) {
      failed.store(true);
    }
  };
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      Scratch s;
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < tasks; ++t) body(t, s);
    }
    return !failed.load();
  }
#endif
  Scratch s;
  for (int64_t t = 0; t < tasks; ++t) body(t, s);
  return !failed.load();
}

}  // namespace

int topk(int64_t* out_idx, float* out_score, const float* queries, const float* items,
         const float* bias, int64_t Q, int64_t N, int64_t D, int64_t K,
         const int64_t* excl_off, const int64_t* excl_idx, const uint8_t* allowed,
         int num_threads, const int64_t* targets, int64_t* greater, int64_t* equal,
         const TopkInt8* i8, const StopFlag* stop) {
  if (Q <= 0) return kTopkOk;
  const TopkKernels& tk = TK();
  if (i8 && (i8->N != N || i8->D != D || D < 1)) i8 = nullptr;
  const bool counts = targets != nullptr && greater != nullptr && equal != nullptr;
  Plan plan_ = make_plan(Q, N, D, K, num_threads, tk);
  plan_.i8 = i8 != nullptr && !counts && plan_.QB <= kInt8MaxQueries;
  const Plan& plan = plan_;
  const int64_t P = plan.P;
  // Partial lists when the items are split: [Q, P] counts, [Q, P, K] entries;
  // partial rank counts [P, Q, 2].
  std::vector<int64_t> part_n;
  std::vector<Cand> part;
  std::vector<int64_t> part_cnt;
  try {
    if (P > 1) {
      part_n.resize(Q * P);
      part.resize(Q * P * K);
    }
    if (counts) part_cnt.assign(P * Q * 2, 0);
  } catch (...) {
    return kTopkNoMemory;
  }
  std::atomic<bool> bad{false};
  const Bf16Bound bound = plan.bf16 ? bf16_bound(D) : Bf16Bound{};
  // The prefilter's shared thresholds when the items are split (P > 1): per
  // query the highest r.thr any of its tasks has reached. A task's r.thr has
  // K eligible items of its range scoring >= it, so an item scoring strictly
  // below it cannot be in the answer, and the prefilter may skip it in every
  // task; without this each task would warm its threshold up from its own
  // first block, and pass ~10x the pairs on to the exact score at 2 threads.
  // (Ties are never skipped, and r.thr, which decides what enters a task's
  // list, stays the task's own: the lists and the merge are as before.)
  const bool plan_i8 = plan.i8;
  std::unique_ptr<std::atomic<float>[]> shared;
  const bool plan_i16 = plan.i16 != nullptr && !counts;
  const I16Consts c16 = plan_i16 ? i16_consts(D) : I16Consts{};
  if ((plan.bf16 || plan_i8 || plan_i16) && P > 1) {
    try {
      shared.reset(new std::atomic<float>[Q]);
    } catch (...) {
      return kTopkNoMemory;
    }
    for (int64_t q = 0; q < Q; ++q) shared[q].store(-kInf, std::memory_order_relaxed);
  }

  auto task = [&](int64_t t, Scratch& s) {
    const int64_t qblk = t / P, p = t % P;
    const int64_t qa = qblk * plan.QB, nQ = std::min(plan.QB, Q - qa);
    const int64_t ia = plan.range_begin(p, N), ib = plan.range_begin(p + 1, N);
    pad_queries(s.qp.data(), queries, qa, nQ, D, plan.dp);
    for (int64_t q = 0; q < nQ; ++q) s.run[q] = {s.cand.data() + q * plan.cap, 0, -kInf};
    if (counts) target_scores(s, tk, plan, items, bias, targets + qa, nQ, D);
    bool my_bad = false;
    // Query q's excluded items, [first, last) of its ascending CSR row.
    auto exclusions = [&](int64_t q) -> std::pair<const int64_t*, const int64_t*> {
      if (!excl_off) return {nullptr, nullptr};
      return {excl_idx + excl_off[qa + q], excl_idx + excl_off[qa + q + 1]};
    };
    // Offers item i with score v to query q's list (a prefilter's survivor);
    // true when the list's threshold rose, which the shared one then follows.
    auto offer_to = [&](int64_t q, float v, int64_t i) {
      Running& r = s.run[q];
      const float before = r.thr;
      const auto [ex0, ex1] = exclusions(q);
      offer(r, v, i, allowed, ex0, ex1, plan.cap, K);
      if (r.thr == before) return false;
      if (shared) raise_to(shared[qa + q], r.thr);
      return true;
    };

    // The bf16 prefilter (topk_kernels.hpp): the task's queries in bf16
    // lanes, per query lane cq and aq, the top-k test's threshold th =
    // below(thr - aq) and, with a target, the rank-count bounds slo / shi
    // around the target's score (lanes past nQ: zero, never read).
    const bool use_bf16 = plan.bf16 != nullptr && nQ >= kBf16MinQueries;
    // ZQ: the scan's stride of the top / unc masks, from this task's own
    // query count (the last query block may have fewer lane groups than QL).
    const int64_t QL = plan.QL, ZQ = ceil_div(nQ, 16);
    float* const qn = s.qv.data();
    float* const cq = qn + QL;
    float* const aq = cq + QL;
    float* const th = aq + QL;
    float* const slo = th + QL;
    float* const shi = slo + QL;
    int64_t n_pairs = 0, n_exact = 0, n_bf16 = 0, n_plain = 0;
    if (use_bf16) {
      std::fill(s.qv.begin(), s.qv.end(), 0.0f);
      plan.bf16->pack_queries(nQ, D, s.qp.data(), plan.dp, s.qb.data(), qn);
      std::fill(s.tmask.begin(), s.tmask.end(), uint16_t{0});
      std::fill(s.gt.begin(), s.gt.end(), 0);
      for (int64_t q = 0; q < nQ; ++q) {
        bound.query(qn[q], &cq[q], &aq[q]);
        if (counts && targets[qa + q] >= 0) {
          s.tmask[q / 16] = static_cast<uint16_t>(s.tmask[q / 16] | (1u << (q % 16)));
          slo[q] = below(below(s.st[q]) - aq[q]);
          shi[q] = above(above(s.st[q]) + aq[q]);
        }
      }
    }
    // th[q]: skipping u < th leaves out only items scoring <= r.thr (never
    // offered) or < the shared threshold g (never in the answer).
    auto skip_below = [&](int64_t q) {
      float t = below(s.run[q].thr - aq[q]);
      if (shared) {
        const float g = shared[qa + q].load(std::memory_order_relaxed);
        t = std::max(t, below(below(g) - aq[q]));
      }
      return t;
    };
    // Items [i0, i0 + nb) through the prefilter, a strip at a time: the
    // survivors of a query's test are scored canonically and offered (for
    // each query in increasing item order), the uncertain ones of its rank
    // count scored and compared. Returns how many pairs were scored exactly.
    // The rows of the S items from item i on, within the task's range (this
    // block's or the next one's), for a prefilter's scan to prefetch while it
    // works on the strip before: their first float (null for none), count.
    auto next_strip = [&](int64_t i, int64_t S) {
      const int64_t n = std::min(S, ib - i);
      return std::make_pair(n > 0 ? items + i * D : nullptr, std::max<int64_t>(n, 0) * D);
    };

    auto bf16_block = [&](int64_t i0, int64_t nb) {
      const TopkBf16& bf = *plan.bf16;
      const int64_t S = bf.strip;
      float* nx = s.iv.data();
      float* bp = nx + S;
      float* bm = bp + S;
      for (int64_t q = 0; q < nQ; ++q) th[q] = skip_below(q);
      int64_t exact = 0;
      for (int64_t j0 = 0; j0 < nb; j0 += S) {
        const int64_t ni = std::min(S, nb - j0), i1 = i0 + j0;
        bf.pack_items(ni, D, items + i1 * D, bias ? bias + i1 : nullptr, bound.item, s.xb.data(),
                      nx, bp, bm);
        const auto pf = next_strip(i1 + ni, S);
        const uint32_t any = bf.scan(
            nQ, plan.D2, s.qb.data(), cq, th, s.xb.data(), nx, bp, bm, ni, counts ? slo : nullptr,
            shi, s.tmask.data(), s.top.data(), s.unc.data(), s.gt.data(), pf.first, pf.second);
        for (uint32_t jm = any; jm; jm &= jm - 1) {
          const int64_t j = __builtin_ctz(jm), i = i1 + j;
          const uint16_t* top = s.top.data() + j * ZQ;
          const uint16_t* unc = s.unc.data() + j * ZQ;
          // the item's exact scores for every query that needs one
          int64_t n = 0;
          for (int64_t z = 0; z < ZQ; ++z)
            for (uint32_t m = top[z] | (counts ? unc[z] : 0u); m; m &= m - 1)
              s.rq[n++] = static_cast<int32_t>(16 * z + __builtin_ctz(m));
          bf.dots(D, items + i * D, n, s.rq.data(), s.qp.data(), plan.dp, s.rv.data());
          exact += n;
          for (int64_t k = 0; k < n; ++k) {
            const int64_t q = s.rq[k];
            const uint32_t bit = 1u << (q % 16);
            const float v = bias ? s.rv[k] + bias[i] : s.rv[k];
            if (!std::isfinite(v)) my_bad = true;
            if ((top[q / 16] & bit) && offer_to(q, v, i)) th[q] = skip_below(q);
            if (counts && (unc[q / 16] & bit)) {
              s.cnt[2 * q] += v > s.st[q];
              s.cnt[2 * q + 1] += v == s.st[q];
            }
          }
        }
      }
      n_exact += exact;
      n_pairs += nQ * nb;
      return exact;
    };
    // The canonical score of query q (of the task) and item i, for a pair a
    // prefilter let through; a non-finite one is reported.
    auto exact_score = [&](int64_t q, int64_t i) {
      float v = tk.dot1(D, s.qp.data() + q * plan.dp, items + i * D);
      if (bias) v = v + bias[i];
      if (!std::isfinite(v)) my_bad = true;
      return v;
    };
    // The int8 prefilter (topk_kernels.hpp): per query its norm and the
    // scan's threshold, the higher of its own K-th best and just below the
    // shared one.
    const bool use_i8 = plan_i8 && nQ <= kInt8MaxQueries;
    const int64_t QL8 = ceil_div(nQ, 8) * 8;  // query lanes of the packed pairs
    float* const th8 = use_i8 ? s.q8f.data() + 3 * QL8 : nullptr;
    int64_t n8_pairs = 0, n8_exact = 0, n8_blocks = 0;
    if (use_i8) i16_pack_queries(nQ, D, s.qp.data(), plan.dp, QL8, s.q8v.data(), s.q8f.data());
    auto th_i8 = [&](int64_t q) {
      float t = s.run[q].thr;
      if (shared) t = std::max(t, below(shared[qa + q].load(std::memory_order_relaxed)));
      return t;
    };
    // Items [i0, i0 + nb) through the int8 scan (whole groups of 16; items
    // outside the range masked off), survivors scored canonically and
    // offered in increasing item order per query.
    auto i8_block = [&](int64_t i0, int64_t nb) {
      const int64_t g0 = i0 / 16, g1 = ceil_div(i0 + nb, 16), ng = g1 - g0;
      for (int64_t q = 0; q < nQ; ++q) th8[q] = th_i8(q);
      tk.scan8(ng, i8->D2, i8->x8.data() + g0 * 32 * i8->D2, i8->sc.data() + g0 * 16,
               i8->E.data() + g0 * 16, i8->F.data() + g0 * 16, i8->bp.data() + g0 * 16, nQ,
               s.q8v.data(), QL8, s.q8f.data(), th8, s.m8.data());
      int64_t exact = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t base = (g0 + g) * 16;
        uint32_t range = 0xFFFFu;
        if (base < i0) range &= 0xFFFFu << (i0 - base);
        if (base + 16 > i0 + nb) range &= 0xFFFFu >> (base + 16 - (i0 + nb));
        for (int64_t q = 0; q < nQ; ++q) {
          for (uint32_t mk = s.m8[g * nQ + q] & range; mk; mk &= mk - 1) {
            const int64_t i = base + __builtin_ctz(mk);
            ++exact;
            offer_to(q, exact_score(q, i), i);
          }
        }
      }
      n8_exact += exact;
      n8_pairs += nQ * nb;
      ++n8_blocks;
    };

    // The int16 prefilter (topk_kernels.hpp): the task's queries packed
    // once; per strip of items, their int16 rows and bounds, the scan, and
    // the canonical score of every surviving pair, offered in increasing
    // item order per query. th (qf16[3 QL16 + q]) follows th_i8.
    // The scan's lane stride is this task's own (the last query block may be
    // shorter than QB): QLt = nQ rounded up to 8, Z8 groups of 8.
    const bool use_i16 = plan_i16 && nQ >= kI16MinQueries;
    const int64_t Z8 = ceil_div(nQ, 8), QLt = Z8 * 8;
    int64_t n16_pairs = 0, n16_exact = 0, n16_blocks = 0, n16_plain = 0;
    if (use_i16)
      i16_pack_queries(nQ, D, s.qp.data(), plan.dp, QLt, s.q16v.data(), s.q16f.data());
    auto i16_block = [&](int64_t i0, int64_t nb) {
      const TopkI16& k16 = *plan.i16;
      const int64_t S = k16.strip;
      float* const th16 = s.q16f.data() + 3 * QLt;
      for (int64_t q = 0; q < nQ; ++q) th16[q] = th_i8(q);
      int64_t exact = 0;
      for (int64_t j0 = 0; j0 < nb; j0 += S) {
        const int64_t ni = std::min(S, nb - j0), i1 = i0 + j0;
        k16.pack_items(ni, D, items + i1 * D, bias ? bias + i1 : nullptr, c16, s.x16.data(),
                       s.iv16.data());
        const auto pf = next_strip(i1 + ni, S);
        const uint32_t any = k16.scan(nQ, plan.D2, s.q16v.data(), s.q16f.data(), s.x16.data(),
                                      s.iv16.data(), ni, s.top8.data(), pf.first, pf.second);
        for (uint32_t jm = any; jm; jm &= jm - 1) {
          const int64_t j = __builtin_ctz(jm), i = i1 + j;
          for (int64_t z = 0; z < Z8; ++z) {
            uint32_t m = s.top8[j * Z8 + z];
            if (8 * z + 8 > nQ) m &= (1u << (nQ - 8 * z)) - 1u;  // padded lanes
            for (; m; m &= m - 1) {
              const int64_t q = 8 * z + __builtin_ctz(m);
              ++exact;
              if (offer_to(q, exact_score(q, i), i)) th16[q] = th_i8(q);
            }
          }
        }
      }
      n16_exact += exact;
      n16_pairs += nQ * nb;
      return exact;
    };

    // Blocks to run without the prefilter after one where it passed too
    // many pairs on (ties, or rank-count targets in the dense middle of the
    // scores), and the next such pause.
    int64_t pause = 0, next_pause = 2;

    // Both prefilters run only once every query has a finite threshold
    // (after its first block, or from another task): with -inf everything
    // would survive.
    auto thresholds_ready = [&] {
      for (int64_t q = 0; q < nQ; ++q)
        if (!(s.run[q].thr > -kInf ||
              (shared && shared[qa + q].load(std::memory_order_relaxed) > -kInf)))
          return false;
      return true;
    };

    for (int64_t i0 = ia; i0 < ib; i0 += plan.Nb) {
      if (stop_requested(stop)) break;  // Ctrl-C: the caller discards the outputs
      const int64_t nb = std::min(plan.Nb, ib - i0);
      const float* bias0 = bias ? bias + i0 : nullptr;
      if (use_i8 && thresholds_ready()) {
        i8_block(i0, nb);
        continue;
      }
      // (use_i16 and use_bf16 never hold together: they are different levels)
      if (use_i16 || use_bf16) {
        if (thresholds_ready() && pause == 0) {
          const int64_t exact = use_i16 ? i16_block(i0, nb) : bf16_block(i0, nb);
          if (exact > nQ * nb / kBf16MaxExact) {
            pause = next_pause;
            next_pause = std::min<int64_t>(2 * next_pause, 64);
          } else {
            next_pause = 2;
          }
          ++(use_i16 ? n16_blocks : n_bf16);
          continue;
        }
        if (pause > 0) --pause;
        ++(use_i16 ? n16_plain : n_plain);
      }
      for (int64_t s0 = 0; s0 < nQ; s0 += plan.Qs) {
        const int64_t ns = std::min(plan.Qs, nQ - s0);
        tk.dots(ns, nb, D, s.qp.data() + s0 * plan.dp, plan.dp, items + i0 * D, s.tile.data(),
                plan.Nb, s.work.data());
        for (int64_t b = 0; b < ns; ++b) {
          const int64_t q = s0 + b;
          Running& r = s.run[q];
          const float* row = s.tile.data() + b * plan.Nb;
          const auto [ex0, ex1] = exclusions(q);
          if (counts && targets[qa + q] >= 0)
            tk.count(nb, row, bias0, s.st[q], &s.cnt[2 * q], &s.cnt[2 * q + 1], &my_bad);
          if (r.n == 0 && r.thr == -kInf)
            r.thr = first_threshold(nb, row, bias0, i0, allowed, ex0, ex1, K, s.sc.data());
          const int64_t m = tk.above(nb, row, bias0, r.thr, s.ci.data(), s.cv.data(), &my_bad);
          for (int64_t c = 0; c < m; ++c)
            offer(r, s.cv[c], i0 + s.ci[c], allowed, ex0, ex1, plan.cap, K);
          if (shared && r.thr > -kInf) raise_to(shared[qa + q], r.thr);
        }
      }
    }
    if (use_bf16 && counts)
      for (int64_t q = 0; q < nQ; ++q) s.cnt[2 * q] += s.gt[q];
    if (my_bad) bad.store(true, std::memory_order_relaxed);
    if (use_i8) {
      st8_pairs.fetch_add(n8_pairs, std::memory_order_relaxed);
      st8_exact.fetch_add(n8_exact, std::memory_order_relaxed);
      st8_blocks.fetch_add(n8_blocks, std::memory_order_relaxed);
    }
    if (use_i16) st_i16.add(n16_pairs, n16_exact, n16_blocks, n16_plain);
    if (use_bf16) st_bf16.add(n_pairs, n_exact, n_bf16, n_plain);
    if (counts) {
      for (int64_t q = 0; q < nQ; ++q) {
        part_cnt[(p * Q + qa + q) * 2] = s.cnt[2 * q];
        part_cnt[(p * Q + qa + q) * 2 + 1] = s.cnt[2 * q + 1];
      }
    }
    for (int64_t q = 0; q < nQ; ++q) {
      Running& r = s.run[q];
      if (P == 1) {
        finish(r, K, out_idx + (qa + q) * K, out_score + (qa + q) * K);
      } else {
        if (r.n > K) cut(r, K);
        const int64_t slot = (qa + q) * P + p;
        std::copy(r.buf, r.buf + r.n, part.begin() + slot * K);
        part_n[slot] = r.n;
      }
    }
  };
  if (!run_tasks(plan.tasks(), num_threads, plan, task)) return kTopkNoMemory;
  if (stop_requested(stop)) return kTopkStopped;
  if (counts) sum_counts(part_cnt, targets, Q, P, greater, equal);

  if (P > 1) {
    // Merge the P partial lists of every query (they cover disjoint item
    // ranges, so the best K of their union is the answer).
    std::atomic<bool> failed{false};
    const int nt = static_cast<int>(std::min<int64_t>(num_threads, Q));
    auto merge = [&](int64_t q, std::vector<Cand>& tmp) {
      tmp.clear();
      for (int64_t p = 0; p < P; ++p) {
        const int64_t slot = q * P + p;
        tmp.insert(tmp.end(), part.begin() + slot * K, part.begin() + slot * K + part_n[slot]);
      }
      Running r{tmp.data(), static_cast<int64_t>(tmp.size()), -kInf};
      finish(r, K, out_idx + q * K, out_score + q * K);
    };
    auto guarded = [&](int64_t q, std::vector<Cand>& tmp) {
      if (failed.load(std::memory_order_relaxed)) return;
      try {
        tmp.reserve(P * K);
        merge(q, tmp);
      } catch (...) {
        failed.store(true);
      }
    };
#ifdef _OPENMP
    if (nt > 1 && Q * P * K > 4096) {
#pragma omp parallel num_threads(nt)
      {
        std::vector<Cand> tmp;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < Q; ++q) guarded(q, tmp);
      }
    } else
#endif
    {
      std::vector<Cand> tmp;
      for (int64_t q = 0; q < Q; ++q) guarded(q, tmp);
    }
    if (failed.load()) return kTopkNoMemory;
  }
  return bad.load() ? kTopkNonFinite : kTopkOk;
}

int rank_counts(int64_t* greater, int64_t* equal, const float* queries, const float* items,
                const float* bias, const int64_t* targets, int64_t Q, int64_t N, int64_t D,
                int num_threads, const StopFlag* stop) {
  if (Q <= 0) return kTopkOk;
  // topk's pass with targets (the same tiles and scores), its top-1 list discarded.
  std::vector<int64_t> top_idx;
  std::vector<float> top_score;
  try {
    top_idx.resize(Q);
    top_score.resize(Q);
  } catch (...) {
    return kTopkNoMemory;
  }
  return topk(top_idx.data(), top_score.data(), queries, items, bias, Q, N, D, 1, nullptr,
              nullptr, nullptr, num_threads, targets, greater, equal, nullptr, stop);
}

int rank_counts_dense(int64_t* greater, int64_t* equal, const float* scores,
                      const int64_t* targets, int64_t R, int64_t N, int num_threads,
                      const StopFlag* stop) {
  if (R <= 0) return kTopkOk;
  const TopkKernels& tk = TK();
  std::atomic<bool> bad{false};
  auto rows = [&](int64_t r0, int64_t r1) {
    bool my_bad = false;
    for (int64_t r = r0; r < r1; ++r) {
      if (stop_requested(stop)) return;
      const float* row = scores + r * N;
      int64_t g = 0, e = 0;
      tk.count(N, row, nullptr, row[targets[r]], &g, &e, &my_bad);
      greater[r] = g;
      equal[r] = e - 1;
    }
    if (my_bad) bad.store(true, std::memory_order_relaxed);
  };
  const int64_t nt = std::min<int64_t>(num_threads, R);
#ifdef _OPENMP
  if (nt > 1 && R * N >= 65536) {
#pragma omp parallel for num_threads(static_cast<int>(nt)) schedule(static, 1)
    for (int64_t t = 0; t < nt; ++t) rows(R * t / nt, R * (t + 1) / nt);
  } else
#endif
  {
    rows(0, R);
  }
  if (stop_requested(stop)) return kTopkStopped;
  return bad.load() ? kTopkNonFinite : kTopkOk;
}

float stream_max(const float* x, int64_t n, int num_threads) {
  const TopkKernels& tk = TK();
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>({num_threads, n / 4096, 256}));
  float part[256];
  std::fill(part, part + nt, -kInf);
#ifdef _OPENMP
#pragma omp parallel for num_threads(static_cast<int>(nt)) schedule(static, 1)
#endif
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t a = n * t / nt, b = n * (t + 1) / nt;
    if (b > a) part[t] = tk.stream_max(b - a, x + a);
  }
  return *std::max_element(part, part + nt);
}

bool bf16_probe(float* U, float* L, const float* queries, const float* items, const float* bias,
                int64_t Q, int64_t N, int64_t D) {
  const TopkBf16* bf = topk_bf16_kernels();
  if (!bf || D < 1 || D > kBf16MaxD || Q < 1) return false;
  const Bf16Bound bound = bf16_bound(D);
  const int64_t dp = ceil_div(D, 8) * 8, D2 = (D + 1) / 2, S = bf->strip;
  const int64_t QL = ceil_div(Q, 16) * 16;
  std::vector<float> qp(Q * dp), qn(QL), cq(QL), aq(QL), u(Q * S), l(Q * S), iv(3 * S);
  std::vector<uint32_t> qv(bf16_qv_size(Q, D2)), xb(S * D2);
  pad_queries(qp.data(), queries, 0, Q, D, dp);
  bf->pack_queries(Q, D, qp.data(), dp, qv.data(), qn.data());
  for (int64_t q = 0; q < Q; ++q) bound.query(qn[q], &cq[q], &aq[q]);
  for (int64_t j0 = 0; j0 < N; j0 += S) {
    const int64_t ni = std::min(S, N - j0);
    bf->pack_items(ni, D, items + j0 * D, bias ? bias + j0 : nullptr, bound.item, xb.data(),
                   iv.data(), iv.data() + S, iv.data() + 2 * S);
    bf->bounds(Q, D2, qv.data(), cq.data(), xb.data(), iv.data(), iv.data() + S,
               iv.data() + 2 * S, ni, u.data(), l.data(), S);
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t j = 0; j < ni; ++j) {
        U[q * N + j0 + j] = above(u[q * S + j] + aq[q]);
        L[q * N + j0 + j] = below(l[q * S + j] - aq[q]);
      }
  }
  return true;
}

bool i16_probe(float* U, const float* queries, const float* items, const float* bias, int64_t Q,
               int64_t N, int64_t D) {
  const TopkI16* k16 = topk_i16_kernels();
  if (!k16 || D < 1 || D > kI16MaxD || Q < 1) return false;
  const I16Consts c = i16_consts(D);
  const int64_t dp = ceil_div(D, 8) * 8, D2 = (D + 1) / 2, S = k16->strip;
  const int64_t QL = ceil_div(Q, 8) * 8;
  std::vector<float> qp(Q * dp), qf(4 * QL), u(Q * S), iv(4 * S);
  std::vector<uint32_t> qv(D2 * QL), xb(S * D2);
  pad_queries(qp.data(), queries, 0, Q, D, dp);
  i16_pack_queries(Q, D, qp.data(), dp, QL, qv.data(), qf.data());
  for (int64_t j0 = 0; j0 < N; j0 += S) {
    const int64_t ni = std::min(S, N - j0);
    k16->pack_items(ni, D, items + j0 * D, bias ? bias + j0 : nullptr, c, xb.data(), iv.data());
    k16->bounds(Q, D2, qv.data(), qf.data(), xb.data(), iv.data(), ni, u.data(), S);
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t j = 0; j < ni; ++j) U[q * N + j0 + j] = u[q * S + j];
  }
  return true;
}

bool topk_int8_build(TopkInt8& t, const float* items, const float* bias, int64_t N, int64_t D,
                     int num_threads) {
  const int64_t NG = ceil_div(N, 16), D2 = (D + 1) / 2;
  try {
    t.x8.assign(NG * 32 * D2, 0);
    t.sc.assign(NG * 16, 0.0f);
    t.E.assign(NG * 16, 0.0f);
    t.F.assign(NG * 16, 0.0f);
    t.bp.assign(NG * 16, -kInf);
  } catch (...) {
    return false;
  }
  t.N = N;
  t.D = D;
  t.D2 = D2;
  t.NG = NG;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, NG / 64)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
  for (int64_t g = 0; g < NG; ++g) {
    std::vector<int8_t> row(static_cast<size_t>(std::max<int64_t>(D, 1)));
    int8_t* const xg = t.x8.data() + g * 32 * D2;
    for (int64_t l = 0; l < 16 && g * 16 + l < N; ++l) {
      const int64_t i = g * 16 + l;
      int8_item(items + i * D, bias ? bias[i] : 0.0f, bias != nullptr, D, row.data(), &t.sc[i],
                &t.E[i], &t.F[i], &t.bp[i]);
      for (int64_t k = 0; k < D; ++k) xg[(k / 2) * 32 + 2 * l + k % 2] = row[k];
    }
  }
  (void)nt;
  return true;
}

int64_t int8_probe(const float* queries, const float* scores, const TopkInt8& t, int64_t Q) {
  const TopkKernels& tk = TK();
  const int64_t N = t.N, D = t.D, D2 = t.D2, QL = 8;  // one query, 8 lanes
  const int64_t dp = std::max<int64_t>(8, ceil_div(D, 8) * 8);
  std::vector<float> qp(static_cast<size_t>(dp), 0.0f), qf(4 * QL);
  std::vector<uint32_t> qv(static_cast<size_t>(std::max<int64_t>(D2, 1) * QL));
  int64_t bad = 0;
  uint16_t m = 0;
  for (int64_t q = 0; q < Q; ++q) {
    std::copy(queries + q * D, queries + (q + 1) * D, qp.begin());
    i16_pack_queries(1, D, qp.data(), dp, QL, qv.data(), qf.data());
    for (int64_t i = 0; i < N; ++i) {
      const int64_t g = i / 16;
      const float th = scores[q * N + i];
      tk.scan8(1, D2, t.x8.data() + g * 32 * D2, t.sc.data() + g * 16, t.E.data() + g * 16,
               t.F.data() + g * 16, t.bp.data() + g * 16, 1, qv.data(), QL, qf.data(), &th, &m);
      if (!((m >> (i % 16)) & 1u)) ++bad;
    }
  }
  return bad;
}

}  // namespace grurec
