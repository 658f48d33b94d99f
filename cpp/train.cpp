#include "train.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "gru.hpp"
#include "kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace grurec {
namespace {

// xoshiro256** seeded through splitmix64: fast, and a fixed seed gives a
// fixed stream on every platform.
struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (auto& x : s) {
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      x = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

// Walker/Vose alias table: O(1) draws from a discrete distribution.
struct Alias {
  std::vector<double> prob;
  std::vector<int32_t> alias;
  void build(const std::vector<double>& w) {
    const int64_t n = static_cast<int64_t>(w.size());
    double total = 0;
    for (double x : w) total += x;
    prob.assign(n, 0.0);
    alias.assign(n, 0);
    std::vector<int32_t> small, large;
    std::vector<double> p(n);
    for (int64_t i = 0; i < n; ++i) {
      p[i] = w[i] * n / total;
      (p[i] < 1.0 ? small : large).push_back(static_cast<int32_t>(i));
    }
    while (!small.empty() && !large.empty()) {
      const int32_t s = small.back(), l = large.back();
      small.pop_back();
      prob[s] = p[s];
      alias[s] = l;
      p[l] -= 1.0 - p[s];
      if (p[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (int32_t i : large) prob[i] = 1.0;
    for (int32_t i : small) prob[i] = 1.0;  // rounding leftovers
  }
  int32_t draw(Rng& rng) const {
    const double u = rng.uniform() * static_cast<double>(prob.size());
    const int64_t i = static_cast<int64_t>(u);
    return (u - i < prob[i]) ? static_cast<int32_t>(i) : alias[i];
  }
};

// Sums the gradient rows of a mini-batch that hit the same row of an input
// table (one-hot W_ih of layer 0, or a separate embedding), so every touched
// row is updated once.
struct RowAgg {
  int64_t D = 0;
  std::vector<int32_t> slot;  // [N], -1 when untouched
  std::vector<int32_t> rows;  // touched rows in first-touch order
  std::vector<float> g;       // [rows, D]
  void init(int64_t n_items, int64_t d) {
    D = d;
    slot.assign(n_items, -1);
  }
  float* touch(int32_t row) {
    int32_t s = slot[row];
    if (s < 0) {
      s = slot[row] = static_cast<int32_t>(rows.size());
      rows.push_back(row);
      g.resize(rows.size() * D, 0.0f);
    }
    return &g[static_cast<size_t>(s) * D];
  }
  void clear() {
    for (int32_t r : rows) slot[r] = -1;
    rows.clear();
    g.clear();
  }
};

// Rows ahead to prefetch when walking scattered rows of an item table: the
// tables are larger than the caches, so a row update waits on memory
// otherwise.
constexpr int64_t kPrefetch = 4;

inline void prefetch_row(const float* p, int64_t D, bool write) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < D * 4; off += 64) {
    if (write)
      __builtin_prefetch(c + off, 1, 1);
    else
      __builtin_prefetch(c + off, 0, 1);
  }
}

template <class F>
void split_rows(int64_t n, int64_t work, int nt, F f) {
  int64_t t = nt;
  if (work < 16384 || n < 2) t = 1;
  t = std::min<int64_t>(t, n);
#ifdef _OPENMP
  if (t > 1) {
#pragma omp parallel for num_threads(static_cast<int>(t)) schedule(static, 1)
    for (int64_t i = 0; i < t; ++i) f(n * i / t, n * (i + 1) / t);
    return;
  }
#endif
  f(0, n);
}

void adagrad_dense(const Param& p, const float* g, const TrainConfig& c) {
  K().adagrad(p.rows * p.cols, p.w, p.acc, p.vel, g, c.lr, c.momentum, c.eps, c.nesterov);
}

// Adagrad(+momentum) on rows[0..n) of table p, gradient row s in g[s*D..].
void adagrad_rows(const Param& p, const int32_t* rows, int64_t n, const float* g,
                  const TrainConfig& c, int nt) {
  const Kernels& k = K();
  const int64_t D = p.cols;
  split_rows(n, n * D, nt, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      if (s + kPrefetch < s1) {
        const int64_t q = static_cast<int64_t>(rows[s + kPrefetch]) * D;
        prefetch_row(p.w + q, D, true);
        prefetch_row(p.acc + q, D, true);
        if (p.vel) prefetch_row(p.vel + q, D, true);
      }
      const int64_t r = static_cast<int64_t>(rows[s]) * D;
      k.adagrad(D, p.w + r, p.acc + r, p.vel ? p.vel + r : nullptr, g + s * D, c.lr,
                c.momentum, c.eps, c.nesterov);
    }
  });
}

// The same for a bias vector (one value per row): a plain loop, same math.
void adagrad_bias(const Param& p, const int32_t* rows, int64_t n, const float* g,
                  const TrainConfig& c) {
  for (int64_t s = 0; s < n; ++s) {
    const int64_t r = rows[s];
    float acc = p.acc[r] + g[s] * g[s];
    p.acc[r] = acc;
    const float step = c.lr * (g[s] / std::sqrt(acc + c.eps));  // bounded by lr (kernels)
    if (c.momentum > 0.0f) {
      const float v = c.momentum * p.vel[r] - step;
      p.vel[r] = v;
      p.w[r] += c.nesterov ? c.momentum * v - step : v;
    } else {
      p.w[r] -= step;
    }
  }
}

// Sampling weights pop^alpha; items never seen (pop 0) are never drawn, also
// for alpha = 0 (where pow(0, 0) would be 1).
std::vector<double> sample_weights(const float* pop, int64_t n, float alpha) {
  std::vector<double> w(n);
  for (int64_t i = 0; i < n; ++i) w[i] = pop[i] > 0 ? std::pow(static_cast<double>(pop[i]), alpha) : 0.0;
  return w;
}

// Dropout mask: 0 with probability p, else 1 / (1 - p). Two draws from
// each 64-bit output, compared as integers against p * 2^32.
void draw_mask(Rng& rng, float p, float* m, int64_t n) {
  const float keep = 1.0f / (1.0f - p);
  const uint64_t thr = static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const uint64_t r = rng.next();
    m[i] = (r & 0xFFFFFFFFull) < thr ? 0.0f : keep;
    m[i + 1] = (r >> 32) < thr ? 0.0f : keep;
  }
  if (i < n) m[i] = (rng.next() >> 32) < thr ? 0.0f : keep;
}

void mul_into(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

// What every worker of an epoch reads (and the counters they share).
struct Epoch {
  Net& net;
  const TrainConfig& cfg;
  const int64_t* offsets;
  int64_t n_sessions;
  const int32_t* items;
  Alias sampler;
  std::vector<float> lq_in, lq_s;  // logq * log q_j, in-batch and sampled
  std::atomic<int64_t> events{0}, batches{0};
  std::atomic<int> stop{EpochStats::kDone};
  std::atomic<int64_t> bad_batch{-1};
  Epoch(Net& n, const TrainConfig& c, const int64_t* o, int64_t s, const int32_t* i)
      : net(n), cfg(c), offsets(o), n_sessions(s), items(i) {}
};

// One stream of session-parallel mini-batches over the sessions
// first, first + stride, first + 2 stride, ... (all of them for one worker),
// with its own buffers and random stream. Kernels inside use kt threads.
class Worker {
 public:
  Worker(Epoch& e, int64_t first, int64_t stride, uint64_t seed, int kt)
      : e_(e), net_(e.net), cfg_(e.cfg), first_(first), stride_(stride), kt_(kt), rng_(seed) {
    const int64_t n_mine = first < e.n_sessions ? (e.n_sessions - first + stride - 1) / stride : 0;
    n_mine_ = n_mine;
    L_ = static_cast<int64_t>(net_.layers.size());
    N_ = net_.n_items;
    HL_ = net_.layers.back();
    S_ = cfg_.n_sample;
    Bmax_ = std::min<int64_t>(cfg_.batch_size, n_mine);
    I0_ = cfg_.mode == 1 ? net_.emb.cols : (cfg_.mode == 2 ? HL_ : 0);
    if (Bmax_ <= 0) return;
    const int64_t Cmax = Bmax_ + S_, Rmax = Cmax + Bmax_;
    state_.resize(L_);
    out_.resize(L_);
    gates_.resize(L_);
    rh_.resize(L_);
    mask_h_.resize(L_);
    y_.resize(L_);
    dy_.resize(L_);
    dW_ih_.resize(L_);
    dW_hh_.resize(L_);
    db_.resize(L_);
    dbh_.resize(L_);
    for (int64_t l = 0; l < L_; ++l) {
      const int64_t H = net_.layers[l];
      state_[l].assign(Bmax_ * H, 0.0f);
      out_[l].resize(Bmax_ * H);
      gates_[l].resize(Bmax_ * 3 * H);
      rh_[l].resize(Bmax_ * H);
      mask_h_[l].resize(Bmax_ * H);
      y_[l].resize(Bmax_ * H);
      dy_[l].resize(Bmax_ * H);
      if (!(l == 0 && cfg_.mode == 0)) dW_ih_[l].resize(net_.W_ih[l].rows * net_.W_ih[l].cols);
      dW_hh_[l].resize(H * 3 * H);
      db_[l].resize(3 * H);
      if (net_.b_hh[l].w) dbh_[l].resize(3 * H);
    }
    const int64_t I0 = std::max<int64_t>(I0_, 1);
    x0_.resize(Bmax_ * I0);
    mask_e_.resize(Bmax_ * I0);
    dx0_.resize(Bmax_ * I0);
    if (cfg_.mode == 0) dA0_.resize(Bmax_ * 3 * net_.layers[0]);
    in_.resize(Bmax_);
    cand_.resize(Cmax);
    col_.resize(Cmax);
    uniq_.resize(Rmax);
    slot_.assign(N_, -1);
    Wu_.resize(Rmax * HL_);
    dWu_.resize(Rmax * HL_);
    bu_.resize(Cmax);
    dbu_.resize(Cmax);
    bc_.resize(Cmax);
    qc_.resize(Cmax);
    Ru_.resize(Bmax_ * Cmax);
    dRu_.resize(Bmax_ * Cmax);
    R_.resize(Bmax_ * Cmax);
    dR_.resize(Bmax_ * Cmax);
    if (cfg_.mode == 0) agg_in_.init(N_, 3 * net_.layers[0]);
    if (cfg_.mode == 1) agg_in_.init(N_, net_.emb.cols);
    sess_.resize(Bmax_);
    pos_.resize(Bmax_);
    for (int64_t b = 0; b < Bmax_; ++b) {
      sess_[b] = b;
      pos_[b] = e.offsets[session(b)];
    }
    next_ = Bmax_;
    B_ = Bmax_;
  }

  bool done() const { return B_ <= 0; }
  double loss_sum = 0.0;

  // One mini-batch. Returns false if its loss was not finite (then nothing
  // was applied).
  bool step() {
    const int64_t B = B_, S = S_, C = B + S, HL = HL_, I0 = I0_;
    const Kernels& k = K();
    const int kt = kt_;
    for (int64_t b = 0; b < B; ++b) {
      in_[b] = e_.items[pos_[b]];
      cand_[b] = e_.items[pos_[b] + 1];
    }
    for (int64_t s = 0; s < S; ++s) cand_[B + s] = e_.sampler.draw(rng_);

    // Distinct candidate rows: duplicate columns (a popular item sampled
    // twice, a target also sampled) share one gathered row, one score
    // computation and one summed gradient row.
    int64_t U = 0;
    for (int64_t j = 0; j < C; ++j) {
      const int32_t it = cand_[j];
      int32_t u = slot_[it];
      if (u < 0) {
        u = slot_[it] = static_cast<int32_t>(U);
        uniq_[U++] = it;
      }
      col_[j] = u;
    }
    const int64_t Uo = U;  // rows with an output (score) gradient

    // ---- forward --------------------------------------------------------
    const float* x_in = nullptr;
    if (cfg_.mode == 0) {
      const int64_t H3 = 3 * net_.layers[0];
      if (cfg_.dropout_embed > 0) draw_mask(rng_, cfg_.dropout_embed, mask_e_.data(), B);
      const float* W0 = net_.W_ih[0].w;
      const float* b0 = net_.b[0].w;
      for (int64_t b = 0; b < B; ++b) {
        float* g = gates_[0].data() + b * H3;
        const float m = cfg_.dropout_embed > 0 ? mask_e_[b] : 1.0f;
        const float* row = W0 + static_cast<int64_t>(in_[b]) * H3;
        for (int64_t j = 0; j < H3; ++j) g[j] = b0[j] + m * row[j];
      }
    } else {
      const float* table = cfg_.mode == 1 ? net_.emb.w : net_.W_y.w;
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&x0_[b * I0], table + static_cast<int64_t>(in_[b]) * I0, I0 * sizeof(float));
      if (cfg_.dropout_embed > 0) {
        draw_mask(rng_, cfg_.dropout_embed, mask_e_.data(), B * I0);
        mul_into(x0_.data(), mask_e_.data(), x0_.data(), B * I0);
      }
      x_in = x0_.data();
    }
    for (int64_t l = 0; l < L_; ++l) {
      const int64_t H = net_.layers[l];
      const int64_t I = l == 0 ? (cfg_.mode == 0 ? 0 : I0) : net_.layers[l - 1];
      const float* x = l == 0 ? x_in : y_[l - 1].data();
      gru_forward(out_[l].data(), gates_[l].data(), rh_[l].data(), x, state_[l].data(),
                  net_.W_ih[l].w, net_.W_hh[l].w, net_.b[l].w, net_.b_hh[l].w, 1, B, I, H, kt);
      if (cfg_.dropout_hidden > 0) {
        draw_mask(rng_, cfg_.dropout_hidden, mask_h_[l].data(), B * H);
        mul_into(out_[l].data(), mask_h_[l].data(), y_[l].data(), B * H);
      } else {
        std::memcpy(y_[l].data(), out_[l].data(), B * H * sizeof(float));
      }
    }
    const float* yL = y_[L_ - 1].data();

    // A ranking loss compares the target with the other columns; with
    // n_sample = 0 a batch that has shrunk to one session (the end of an
    // epoch, or fewer sessions than batch_size) has none, and the loss would
    // be 0/0. Such a step only advances the hidden state.
    if (cfg_.loss != kCrossEntropy && C < 2) {
      for (int64_t u = 0; u < U; ++u) slot_[uniq_[u]] = -1;
      advance();
      return true;
    }

    // Scores of the distinct rows, Ru[B, Uo] = y_L W_y[uniq]^T, then every
    // column: R[b, j] = Ru[b, col_j] + b_y[cand_j] (- logQ).
    for (int64_t u = 0; u < Uo; ++u) {
      if (u + kPrefetch < Uo) prefetch_row(net_.W_y.w + int64_t(uniq_[u + kPrefetch]) * HL, HL, false);
      std::memcpy(&Wu_[u * HL], net_.W_y.w + static_cast<int64_t>(uniq_[u]) * HL, HL * sizeof(float));
      bu_[u] = net_.b_y.w[uniq_[u]];
    }
    k.sgemm(B, Uo, HL, 1.0f, yL, HL, 1, Wu_.data(), 1, HL, 0.0f, Ru_.data(), Uo, kt);
    for (int64_t j = 0; j < C; ++j) bc_[j] = bu_[col_[j]];
    for (int64_t b = 0; b < B; ++b) {
      const float* ru = &Ru_[b * Uo];
      float* r = &R_[b * C];
      for (int64_t j = 0; j < C; ++j) r[j] = ru[col_[j]] + bc_[j];
    }
    // logQ goes to the loss kernel, which subtracts it after the final
    // activation (cross-entropy only).
    const float* q = nullptr;
    if (!e_.lq_in.empty()) {
      for (int64_t j = 0; j < C; ++j) qc_[j] = j < B ? e_.lq_in[cand_[j]] : e_.lq_s[cand_[j]];
      q = qc_.data();
    }
    double total = 0.0;
    const float scale = 1.0f / static_cast<float>(B);
    const int lnt = B >= 8 ? kt : 1;
#pragma omp parallel for num_threads(lnt) reduction(+ : total) schedule(static) if (lnt > 1)
    for (int64_t t = 0; t < lnt; ++t)
      total += k.loss(cfg_.loss, B * t / lnt, B * (t + 1) / lnt, C, R_.data(), q, cfg_.elu,
                      cfg_.bpreg, scale, dR_.data());
    if (!std::isfinite(total)) return false;

    // ---- backward -------------------------------------------------------
    // Column gradients summed per distinct row: dRu[b, u] = sum_{j: col_j = u} dR[b, j]
    std::fill(dRu_.begin(), dRu_.begin() + B * Uo, 0.0f);
    for (int64_t b = 0; b < B; ++b) {
      const float* d = &dR_[b * C];
      float* du = &dRu_[b * Uo];
      for (int64_t j = 0; j < C; ++j) du[col_[j]] += d[j];
    }
    float* dyL = dy_[L_ - 1].data();
    k.sgemm(B, HL, Uo, 1.0f, dRu_.data(), Uo, 1, Wu_.data(), HL, 1, 0.0f, dyL, HL, kt);
    k.sgemm(Uo, HL, B, 1.0f, dRu_.data(), 1, Uo, yL, HL, 1, 0.0f, dWu_.data(), HL, kt);
    std::fill(dbu_.begin(), dbu_.begin() + Uo, 0.0f);
    k.colsum_add(B, 0, Uo, dRu_.data(), Uo, dbu_.data());

    for (int64_t l = L_ - 1; l >= 0; --l) {
      const int64_t H = net_.layers[l];
      const bool onehot = (l == 0 && cfg_.mode == 0);
      const int64_t I = l == 0 ? (onehot ? 0 : I0) : net_.layers[l - 1];
      if (cfg_.dropout_hidden > 0) mul_into(dy_[l].data(), mask_h_[l].data(), dy_[l].data(), B * H);
      float* dx = l > 0 ? dy_[l - 1].data() : (onehot ? nullptr : dx0_.data());
      if (dx) std::fill(dx, dx + B * I, 0.0f);
      if (!onehot) std::fill(dW_ih_[l].begin(), dW_ih_[l].end(), 0.0f);
      std::fill(dW_hh_[l].begin(), dW_hh_[l].end(), 0.0f);
      std::fill(db_[l].begin(), db_[l].end(), 0.0f);
      std::fill(dbh_[l].begin(), dbh_[l].end(), 0.0f);
      const float* x = l == 0 ? x_in : y_[l - 1].data();
      gru_backward(dx, nullptr, onehot ? nullptr : dW_ih_[l].data(), dW_hh_[l].data(),
                   db_[l].data(), net_.b_hh[l].w ? dbh_[l].data() : nullptr,
                   onehot ? dA0_.data() : nullptr, dy_[l].data(), gates_[l].data(),
                   rh_[l].data(), x, state_[l].data(), out_[l].data(),
                   onehot ? nullptr : net_.W_ih[l].w, net_.W_hh[l].w, 1, B, I, H, kt);
    }

    // ---- input-side gradients of the item tables --------------------------
    if (cfg_.dropout_embed > 0 && cfg_.mode != 0)
      mul_into(dx0_.data(), mask_e_.data(), dx0_.data(), B * I0);
    if (cfg_.mode == 2) {
      // Shared table: an input row adds to its output row when the item is
      // also a candidate, else it becomes a touched row of its own.
      for (int64_t b = 0; b < B; ++b) {
        const int32_t it = in_[b];
        int32_t u = slot_[it];
        if (u < 0) {
          u = slot_[it] = static_cast<int32_t>(U);
          uniq_[U++] = it;
          std::fill(&dWu_[u * HL], &dWu_[u * HL] + HL, 0.0f);
        }
        k.add(HL, &dx0_[b * HL], &dWu_[u * HL]);
      }
    } else if (cfg_.mode == 1) {
      for (int64_t b = 0; b < B; ++b) k.add(I0, &dx0_[b * I0], agg_in_.touch(in_[b]));
    } else {
      const int64_t H3 = 3 * net_.layers[0];
      for (int64_t b = 0; b < B; ++b) {
        const float m = cfg_.dropout_embed > 0 ? mask_e_[b] : 1.0f;
        if (m == 0.0f) continue;
        float* g = agg_in_.touch(in_[b]);
        const float* d = &dA0_[b * H3];
        for (int64_t j = 0; j < H3; ++j) g[j] += m * d[j];
      }
    }

    // ---- optimizer --------------------------------------------------------
    for (int64_t l = 0; l < L_; ++l) {
      if (!(l == 0 && cfg_.mode == 0)) adagrad_dense(net_.W_ih[l], dW_ih_[l].data(), cfg_);
      adagrad_dense(net_.W_hh[l], dW_hh_[l].data(), cfg_);
      adagrad_dense(net_.b[l], db_[l].data(), cfg_);
      if (net_.b_hh[l].w) adagrad_dense(net_.b_hh[l], dbh_[l].data(), cfg_);
    }
    adagrad_rows(net_.W_y, uniq_.data(), U, dWu_.data(), cfg_, kt);
    adagrad_bias(net_.b_y, uniq_.data(), Uo, dbu_.data(), cfg_);
    for (int64_t u = 0; u < U; ++u) slot_[uniq_[u]] = -1;
    if (cfg_.mode == 0)
      adagrad_rows(net_.W_ih[0], agg_in_.rows.data(), static_cast<int64_t>(agg_in_.rows.size()),
                   agg_in_.g.data(), cfg_, kt);
    if (cfg_.mode == 1)
      adagrad_rows(net_.emb, agg_in_.rows.data(), static_cast<int64_t>(agg_in_.rows.size()),
                   agg_in_.g.data(), cfg_, kt);
    agg_in_.clear();

    loss_sum += total;
    advance();
    return true;
  }

  int64_t batch() const { return B_; }

 private:
  int64_t session(int64_t local) const { return first_ + local * stride_; }

  // Slots move one event on; a finished session's slot takes this worker's
  // next session (hidden state reset to zero) or retires. The next state is
  // each layer's output after dropout (y_; a copy of out_ without dropout).
  void advance() {
    for (int64_t l = 0; l < L_; ++l) std::swap(state_[l], y_[l]);
    int64_t B = B_;
    for (int64_t b = 0; b < B;) {
      ++pos_[b];
      bool live = pos_[b] + 1 < e_.offsets[session(sess_[b]) + 1];
      bool reset = false;
      if (!live && next_ < n_mine_) {
        sess_[b] = next_++;
        pos_[b] = e_.offsets[session(sess_[b])];
        live = reset = true;
      }
      if (reset) {
        for (int64_t l = 0; l < L_; ++l) {
          const int64_t H = net_.layers[l];
          std::fill(state_[l].begin() + b * H, state_[l].begin() + (b + 1) * H, 0.0f);
        }
      }
      if (live) {
        ++b;
        continue;
      }
      // Retire slot b: the last live slot moves into it (it has not advanced
      // yet unless it is b itself, so the loop visits b again).
      --B;
      if (b == B) break;
      sess_[b] = sess_[B];
      pos_[b] = pos_[B];
      for (int64_t l = 0; l < L_; ++l) {
        const int64_t H = net_.layers[l];
        std::copy(state_[l].begin() + B * H, state_[l].begin() + (B + 1) * H,
                  state_[l].begin() + b * H);
      }
    }
    B_ = B;
  }

  Epoch& e_;
  Net& net_;
  const TrainConfig& cfg_;
  int64_t first_, stride_, n_mine_ = 0;
  int kt_;
  Rng rng_;
  int64_t L_ = 0, N_ = 0, HL_ = 0, S_ = 0, Bmax_ = 0, I0_ = 0, B_ = 0, next_ = 0;
  // Per layer, [Bmax, H] or [Bmax, 3H] / weight-gradient shapes.
  std::vector<std::vector<float>> state_, out_, gates_, rh_, mask_h_, y_, dy_;
  std::vector<std::vector<float>> dW_ih_, dW_hh_, db_, dbh_;
  std::vector<float> x0_, mask_e_, dx0_, dA0_;  // [Bmax, I0], dA0: [Bmax, 3H0]
  std::vector<int32_t> in_, cand_, col_;        // [Bmax], [C], [C]
  std::vector<int32_t> uniq_, slot_;            // [C + Bmax] distinct rows, [N] row -> slot
  std::vector<float> Wu_, dWu_;                 // [C + Bmax, HL]
  std::vector<float> bu_, dbu_, bc_, qc_;       // [C]: row bias, its gradient, column bias, logQ
  std::vector<float> Ru_, dRu_, R_, dR_;        // [Bmax, C]
  RowAgg agg_in_;
  std::vector<int64_t> sess_, pos_;
};

}  // namespace

EpochStats train_epoch(Net& net, const TrainConfig& cfg, const int64_t* offsets,
                       int64_t n_sessions, const int32_t* items, const float* pop,
                       const Progress& progress) {
  EpochStats st;
  const int64_t N = net.n_items;
  if (n_sessions <= 0) return st;
  Epoch e(net, cfg, offsets, n_sessions, items);
  {
    const std::vector<double> w = sample_weights(pop, N, cfg.sample_alpha);
    if (cfg.n_sample > 0) e.sampler.build(w);
    if (cfg.loss == kCrossEntropy && cfg.logq > 0) {
      // Unnormalised: log count for in-batch columns, alpha * log count for
      // sampled ones (see the header). A common constant per group would
      // shift the two groups against each other.
      e.lq_in.resize(N);
      e.lq_s.resize(N);
      for (int64_t i = 0; i < N; ++i) {
        e.lq_in[i] = static_cast<float>(cfg.logq * std::log(std::max<double>(pop[i], 1e-12)));
        e.lq_s[i] = static_cast<float>(cfg.logq * std::log(std::max(w[i], 1e-12)));
      }
    }
  }

  // Workers: W independent streams (Hogwild) with single-threaded kernels,
  // or one stream whose kernels use all threads.
  int64_t W = std::max(1, std::min(cfg.workers, cfg.num_threads));
#ifndef _OPENMP
  W = 1;
#endif
  W = std::min<int64_t>(W, n_sessions);
  const int kt = W > 1 ? 1 : cfg.num_threads;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int64_t w = 0; w < W; ++w) {
    // Worker 0 keeps the epoch seed, so one worker reproduces one stream.
    const uint64_t seed = cfg.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(w);
    workers.emplace_back(new Worker(e, w, W, seed, kt));
  }
  std::atomic<int64_t> running{W};
  double loss_sum = 0.0;
  auto last_report = std::chrono::steady_clock::now();

  // Worker w's loop; worker 0 also reports progress (it is the calling
  // thread, the only one that may take the GIL) until every worker is done.
  auto body = [&](int64_t w) {
    Worker& wk = *workers[w];
    while (!wk.done() && e.stop.load(std::memory_order_relaxed) == EpochStats::kDone) {
      const int64_t B = wk.batch();
      if (!wk.step()) {
        int expected = EpochStats::kDone;
        if (e.stop.compare_exchange_strong(expected, EpochStats::kNonFinite))
          e.bad_batch.store(e.batches.load());
        break;
      }
      e.events.fetch_add(B, std::memory_order_relaxed);
      e.batches.fetch_add(1, std::memory_order_relaxed);
      if (w == 0 && progress) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_report > std::chrono::milliseconds(200)) {
          last_report = now;
          double ls = 0.0;  // a racy read of the other workers' sums: display only
          for (auto& o : workers) ls += o->loss_sum;
          if (!progress(e.events.load(), ls, e.batches.load())) {
            int expected = EpochStats::kDone;
            e.stop.compare_exchange_strong(expected, EpochStats::kStopped);
          }
        }
      }
    }
    running.fetch_sub(1);
    if (w == 0) {
      while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto now = std::chrono::steady_clock::now();
        if (progress && now - last_report > std::chrono::milliseconds(200)) {
          last_report = now;
          if (!progress(e.events.load(), 0.0, e.batches.load())) {
            int expected = EpochStats::kDone;
            e.stop.compare_exchange_strong(expected, EpochStats::kStopped);
          }
        }
      }
    }
  };
#ifdef _OPENMP
  if (W > 1) {
#pragma omp parallel num_threads(static_cast<int>(W))
    body(omp_get_thread_num());
  } else {
    body(0);
  }
#else
  body(0);
#endif
  for (auto& wk : workers) loss_sum += wk->loss_sum;
  st.status = e.stop.load();
  st.events = e.events.load();
  st.batches = st.status == EpochStats::kNonFinite ? e.bad_batch.load() : e.batches.load();
  st.loss_sum = loss_sum;
  if (progress && st.status == EpochStats::kDone) progress(st.events, st.loss_sum, st.batches);
  return st;
}

void sample_popularity(int32_t* out, int64_t n, const float* pop, int64_t n_items,
                       float alpha, uint64_t seed) {
  Alias a;
  a.build(sample_weights(pop, n_items, alpha));
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) out[i] = a.draw(rng);
}

}  // namespace grurec
