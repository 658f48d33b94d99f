#include "train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "gru.hpp"
#include "kernels.hpp"

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

// Sums the gradient rows of a mini-batch that hit the same item, so every
// touched row of an item table is updated once.
struct RowAgg {
  int64_t D = 0;
  std::vector<int32_t> slot;  // [N], -1 when untouched
  std::vector<int32_t> rows;  // touched rows in first-touch order
  std::vector<float> g;       // [rows, D]
  std::vector<float> gb;      // [rows] (bias, when the table has one)
  void init(int64_t n_items, int64_t d) {
    D = d;
    slot.assign(n_items, -1);
  }
  float* touch(int32_t row, float** bias = nullptr) {
    int32_t s = slot[row];
    if (s < 0) {
      s = slot[row] = static_cast<int32_t>(rows.size());
      rows.push_back(row);
      g.resize(rows.size() * D, 0.0f);
      gb.resize(rows.size(), 0.0f);
    }
    if (bias) *bias = &gb[s];
    return &g[static_cast<size_t>(s) * D];
  }
  void clear() {
    for (int32_t r : rows) slot[r] = -1;
    rows.clear();
    g.clear();
    gb.clear();
  }
};

void adagrad_dense(const Param& p, const float* g, const TrainConfig& c) {
  K().adagrad(p.rows * p.cols, p.w, p.acc, p.vel, g, c.lr, c.momentum, c.eps);
}

// Updates the touched rows of table p (and of its bias pb, if given).
void adagrad_rows(const Param& p, const Param* pb, const RowAgg& a, const TrainConfig& c) {
  const Kernels& k = K();
  const int64_t n = static_cast<int64_t>(a.rows.size()), D = p.cols;
#pragma omp parallel for num_threads(c.num_threads) schedule(static) if (n * D > 16384)
  for (int64_t s = 0; s < n; ++s) {
    const int64_t r = a.rows[s];
    k.adagrad(D, p.w + r * D, p.acc + r * D, p.vel ? p.vel + r * D : nullptr,
              a.g.data() + s * D, c.lr, c.momentum, c.eps);
    if (pb)
      k.adagrad(1, pb->w + r, pb->acc + r, pb->vel ? pb->vel + r : nullptr, &a.gb[s], c.lr,
                c.momentum, c.eps);
  }
}

// Sampling weights pop^alpha; items never seen (pop 0) are never drawn, also
// for alpha = 0 (where pow(0, 0) would be 1).
std::vector<double> sample_weights(const float* pop, int64_t n, float alpha) {
  std::vector<double> w(n);
  for (int64_t i = 0; i < n; ++i) w[i] = pop[i] > 0 ? std::pow(static_cast<double>(pop[i]), alpha) : 0.0;
  return w;
}

// Dropout mask: 0 with probability p, else 1 / (1 - p).
void draw_mask(Rng& rng, float p, float* m, int64_t n) {
  const float keep = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) m[i] = rng.uniform() < p ? 0.0f : keep;
}

void mul_into(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

}  // namespace

EpochStats train_epoch(Net& net, const TrainConfig& cfg, const int64_t* offsets,
                       int64_t n_sessions, const int32_t* items, const float* pop,
                       const Progress& progress) {
  const Kernels& k = K();
  const int nt = cfg.num_threads;
  const int64_t L = static_cast<int64_t>(net.layers.size());
  const int64_t N = net.n_items, HL = net.layers.back(), S = cfg.n_sample;
  const int64_t Bmax = std::min<int64_t>(cfg.batch_size, n_sessions);
  const int64_t Cmax = Bmax + S;
  const int64_t I0 = cfg.mode == 1 ? net.emb.cols : (cfg.mode == 2 ? HL : 0);
  EpochStats st;
  if (Bmax <= 0) return st;

  Rng rng(cfg.seed);
  Alias sampler;
  std::vector<float> lq_in, lq_s;  // logq * log q_j, in-batch and sampled
  {
    const std::vector<double> w = sample_weights(pop, N, cfg.sample_alpha);
    if (S > 0) sampler.build(w);
    if (cfg.loss == kCrossEntropy && cfg.logq > 0) {
      // Unnormalised: log count for in-batch columns, alpha * log count for
      // sampled ones (see the header). A common constant per group would
      // shift the two groups against each other.
      lq_in.resize(N);
      lq_s.resize(N);
      for (int64_t i = 0; i < N; ++i) {
        lq_in[i] = static_cast<float>(cfg.logq * std::log(std::max<double>(pop[i], 1e-12)));
        lq_s[i] = static_cast<float>(cfg.logq * std::log(std::max(w[i], 1e-12)));
      }
    }
  }

  // Per-layer buffers, [Bmax, ...] each.
  std::vector<std::vector<float>> state(L), out(L), gates(L), rh(L), mask_h(L), y(L), dy(L);
  std::vector<std::vector<float>> dW_ih(L), dW_hh(L), db(L);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = net.layers[l];
    state[l].assign(Bmax * H, 0.0f);
    out[l].resize(Bmax * H);
    gates[l].resize(Bmax * 3 * H);
    rh[l].resize(Bmax * H);
    mask_h[l].resize(Bmax * H);
    y[l].resize(Bmax * H);
    dy[l].resize(Bmax * H);
    if (!(l == 0 && cfg.mode == 0)) dW_ih[l].resize(net.W_ih[l].rows * net.W_ih[l].cols);
    dW_hh[l].resize(H * 3 * H);
    db[l].resize(3 * H);
  }
  std::vector<float> x0(Bmax * std::max<int64_t>(I0, 1)), mask_e(Bmax * std::max<int64_t>(I0, 1));
  std::vector<float> dx0(x0.size()), dA0(cfg.mode == 0 ? Bmax * 3 * net.layers[0] : 0);
  std::vector<int32_t> in(Bmax), cand(Cmax);
  std::vector<float> Wc(Cmax * HL), dWc(Cmax * HL), R(Bmax * Cmax), dR(Bmax * Cmax);
  std::vector<float> dbc(Cmax), qc(Cmax);
  RowAgg agg_y, agg_in;
  agg_y.init(N, HL);
  if (cfg.mode == 0) agg_in.init(N, 3 * net.layers[0]);
  if (cfg.mode == 1) agg_in.init(N, net.emb.cols);

  // Slots: session index and position of the current input event.
  std::vector<int64_t> sess(Bmax), pos(Bmax);
  for (int64_t b = 0; b < Bmax; ++b) {
    sess[b] = b;
    pos[b] = offsets[b];
  }
  int64_t next_session = Bmax, B = Bmax;
  auto last_report = std::chrono::steady_clock::now();

  while (B > 0) {
    const int64_t C = B + S;
    for (int64_t b = 0; b < B; ++b) {
      in[b] = items[pos[b]];
      cand[b] = items[pos[b] + 1];
    }
    for (int64_t s = 0; s < S; ++s) cand[B + s] = sampler.draw(rng);

    // ---- forward --------------------------------------------------------
    const float* x_in = nullptr;
    if (cfg.mode == 0) {
      const int64_t H3 = 3 * net.layers[0];
      if (cfg.dropout_embed > 0) draw_mask(rng, cfg.dropout_embed, mask_e.data(), B);
      const float* W0 = net.W_ih[0].w;
      const float* b0 = net.b[0].w;
      for (int64_t b = 0; b < B; ++b) {
        float* g = gates[0].data() + b * H3;
        const float m = cfg.dropout_embed > 0 ? mask_e[b] : 1.0f;
        const float* row = W0 + static_cast<int64_t>(in[b]) * H3;
        for (int64_t j = 0; j < H3; ++j) g[j] = b0[j] + m * row[j];
      }
    } else {
      const float* table = cfg.mode == 1 ? net.emb.w : net.W_y.w;
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&x0[b * I0], table + static_cast<int64_t>(in[b]) * I0, I0 * sizeof(float));
      if (cfg.dropout_embed > 0) {
        draw_mask(rng, cfg.dropout_embed, mask_e.data(), B * I0);
        mul_into(x0.data(), mask_e.data(), x0.data(), B * I0);
      }
      x_in = x0.data();
    }
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = net.layers[l];
      const int64_t I = l == 0 ? (cfg.mode == 0 ? 0 : I0) : net.layers[l - 1];
      const float* x = l == 0 ? x_in : y[l - 1].data();
      gru_forward(out[l].data(), gates[l].data(), rh[l].data(), x, state[l].data(),
                  net.W_ih[l].w, net.W_hh[l].w, net.b[l].w, 1, B, I, H, nt);
      if (cfg.dropout_hidden > 0) {
        draw_mask(rng, cfg.dropout_hidden, mask_h[l].data(), B * H);
        mul_into(out[l].data(), mask_h[l].data(), y[l].data(), B * H);
      } else {
        std::memcpy(y[l].data(), out[l].data(), B * H * sizeof(float));
      }
    }
    // Scores R[B, C] = y_L W_y[cand]^T + b_y[cand]
    for (int64_t j = 0; j < C; ++j)
      std::memcpy(&Wc[j * HL], net.W_y.w + static_cast<int64_t>(cand[j]) * HL, HL * sizeof(float));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < C; ++j) R[b * C + j] = net.b_y.w[cand[j]];
    k.sgemm(B, C, HL, 1.0f, y[L - 1].data(), HL, 1, Wc.data(), 1, HL, 1.0f, R.data(), C, nt);

    const float* q = nullptr;
    if (!lq_in.empty()) {
      for (int64_t j = 0; j < C; ++j) qc[j] = j < B ? lq_in[cand[j]] : lq_s[cand[j]];
      q = qc.data();
    }
    double total = 0.0;
    const float scale = 1.0f / static_cast<float>(B);
    const int lnt = B >= 8 ? nt : 1;
#pragma omp parallel for num_threads(lnt) reduction(+ : total) schedule(static)
    for (int64_t t = 0; t < lnt; ++t)
      total += k.loss(cfg.loss, B * t / lnt, B * (t + 1) / lnt, C, R.data(), q, cfg.elu,
                      cfg.bpreg, scale, dR.data());
    if (!std::isfinite(total)) {
      st.status = EpochStats::kNonFinite;
      return st;
    }

    // ---- backward -------------------------------------------------------
    float* dyL = dy[L - 1].data();
    k.sgemm(B, HL, C, 1.0f, dR.data(), C, 1, Wc.data(), HL, 1, 0.0f, dyL, HL, nt);
    k.sgemm(C, HL, B, 1.0f, dR.data(), 1, C, y[L - 1].data(), HL, 1, 0.0f, dWc.data(), HL, nt);
    std::fill(dbc.begin(), dbc.begin() + C, 0.0f);
    k.colsum_add(B, 0, C, dR.data(), C, dbc.data());

    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t H = net.layers[l];
      const bool onehot = (l == 0 && cfg.mode == 0);
      const int64_t I = l == 0 ? (onehot ? 0 : I0) : net.layers[l - 1];
      if (cfg.dropout_hidden > 0) mul_into(dy[l].data(), mask_h[l].data(), dy[l].data(), B * H);
      float* dx = l > 0 ? dy[l - 1].data() : (onehot ? nullptr : dx0.data());
      if (dx) std::fill(dx, dx + B * I, 0.0f);
      if (!onehot) std::fill(dW_ih[l].begin(), dW_ih[l].end(), 0.0f);
      std::fill(dW_hh[l].begin(), dW_hh[l].end(), 0.0f);
      std::fill(db[l].begin(), db[l].end(), 0.0f);
      const float* x = l == 0 ? x_in : y[l - 1].data();
      gru_backward(dx, nullptr, onehot ? nullptr : dW_ih[l].data(), dW_hh[l].data(),
                   db[l].data(), onehot ? dA0.data() : nullptr, dy[l].data(), gates[l].data(),
                   rh[l].data(), x, state[l].data(), out[l].data(),
                   onehot ? nullptr : net.W_ih[l].w, net.W_hh[l].w, 1, B, I, H, nt);
    }

    // ---- item-table gradients, summed per touched row ---------------------
    for (int64_t j = 0; j < C; ++j) {
      float* gbias;
      float* g = agg_y.touch(cand[j], &gbias);
      k.add(HL, &dWc[j * HL], g);
      *gbias += dbc[j];
    }
    if (cfg.mode == 2 || cfg.mode == 1) {
      if (cfg.dropout_embed > 0) mul_into(dx0.data(), mask_e.data(), dx0.data(), B * I0);
      RowAgg& a = cfg.mode == 2 ? agg_y : agg_in;
      for (int64_t b = 0; b < B; ++b) k.add(I0, &dx0[b * I0], a.touch(in[b]));
    } else {
      const int64_t H3 = 3 * net.layers[0];
      for (int64_t b = 0; b < B; ++b) {
        const float m = cfg.dropout_embed > 0 ? mask_e[b] : 1.0f;
        if (m == 0.0f) continue;
        float* g = agg_in.touch(in[b]);
        const float* d = &dA0[b * H3];
        for (int64_t j = 0; j < H3; ++j) g[j] += m * d[j];
      }
    }

    // ---- optimizer --------------------------------------------------------
    for (int64_t l = 0; l < L; ++l) {
      if (!(l == 0 && cfg.mode == 0)) adagrad_dense(net.W_ih[l], dW_ih[l].data(), cfg);
      adagrad_dense(net.W_hh[l], dW_hh[l].data(), cfg);
      adagrad_dense(net.b[l], db[l].data(), cfg);
    }
    adagrad_rows(net.W_y, &net.b_y, agg_y, cfg);
    agg_y.clear();
    if (cfg.mode == 0) adagrad_rows(net.W_ih[0], nullptr, agg_in, cfg);
    if (cfg.mode == 1) adagrad_rows(net.emb, nullptr, agg_in, cfg);
    agg_in.clear();

    st.loss_sum += total;
    st.events += B;
    st.batches += 1;

    // ---- advance the slots ------------------------------------------------
    for (int64_t l = 0; l < L; ++l) std::swap(state[l], out[l]);
    for (int64_t b = 0; b < B;) {
      ++pos[b];
      bool live = pos[b] + 1 < offsets[sess[b] + 1];
      bool reset = false;
      if (!live && next_session < n_sessions) {
        sess[b] = next_session++;
        pos[b] = offsets[sess[b]];
        live = reset = true;
      }
      if (reset) {
        for (int64_t l = 0; l < L; ++l) {
          const int64_t H = net.layers[l];
          std::fill(state[l].begin() + b * H, state[l].begin() + (b + 1) * H, 0.0f);
        }
      }
      if (live) {
        ++b;
        continue;
      }
      // Retire slot b: the last live slot moves into it (it has already
      // advanced unless it is b itself).
      --B;
      if (b == B) break;
      sess[b] = sess[B];
      pos[b] = pos[B];  // not advanced yet: the loop visits b again
      for (int64_t l = 0; l < L; ++l) {
        const int64_t H = net.layers[l];
        std::copy(state[l].begin() + B * H, state[l].begin() + (B + 1) * H,
                  state[l].begin() + b * H);
      }
    }

    const auto now = std::chrono::steady_clock::now();
    if (progress && now - last_report > std::chrono::milliseconds(200)) {
      last_report = now;
      if (!progress(st.events, st.loss_sum, st.batches)) {
        st.status = EpochStats::kStopped;
        return st;
      }
    }
  }
  if (progress) progress(st.events, st.loss_sum, st.batches);
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
