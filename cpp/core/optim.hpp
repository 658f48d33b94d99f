// The sparse optimizer: Adagrad with heavy-ball or Nesterov momentum
// (Kernels::adagrad) on dense weights and on the touched rows of item tables,
// and the row-gradient accumulator that collects those rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace grurec {

// A parameter and its optimizer state, all float32 [rows, cols], owned by
// Python. vel is null when momentum == 0.
struct Param {
  float* w = nullptr;
  float* acc = nullptr;
  float* vel = nullptr;
  int64_t rows = 0, cols = 0;
};

// Touched rows of an [N, D] table and their gradients, in first-touch order:
// rows[i] has its gradient at g[i * D]. At most cap rows between clears.
struct SparseGrad {
  int64_t D = 0, n = 0;
  std::vector<int32_t> slot;  // [N] row -> index into rows, -1 untouched
  std::vector<int32_t> rows;  // [cap]
  std::vector<float> g;       // [cap, D]

  void init(int64_t n_rows, int64_t d, int64_t cap) {
    D = d;
    n = 0;
    slot.assign(n_rows, -1);
    rows.resize(cap);
    g.resize(cap * d);
  }
  // Index of row, added when untouched (its gradient row then is whatever
  // the buffer holds: the caller overwrites it).
  int64_t index(int32_t row) {
    int32_t s = slot[row];
    if (s < 0) {
      s = slot[row] = static_cast<int32_t>(n);
      rows[n++] = row;
    }
    return s;
  }
  // The gradient row of row, zero when newly touched (for adding into).
  float* touch(int32_t row) {
    int32_t s = slot[row];
    if (s < 0) {
      s = slot[row] = static_cast<int32_t>(n);
      rows[n++] = row;
      std::fill(&g[s * D], &g[s * D] + D, 0.0f);
    }
    return &g[static_cast<int64_t>(s) * D];
  }
  void clear() {
    for (int64_t i = 0; i < n; ++i) slot[rows[i]] = -1;
    n = 0;
  }
};

// The optimizer of every weight (kernels.hpp):
//  Adagrad + momentum (the official GRU4Rec's):
//   acc += g^2;  s = lr * g / sqrt(acc + eps);  heavy ball: vel = mu vel - s, w += vel;
//   Nesterov: vel = mu vel - s, w += mu vel - s;  mu = 0: w -= s.
//  Adam: acc holds the second moment v, vel the first moment m; the item
//   tables' untouched rows keep their moments (lazy, as torch's SparseAdam),
//   and step t's bias corrections are set by begin_step(t) before the
//   updates of that mini-batch.
enum OptimizerKind { kAdagrad = 0, kAdam = 1 };

struct OptimizerConfig {
  int kind = kAdagrad;
  float lr = 0.1f, momentum = 0.0f, eps = 1e-6f;  // Adagrad (lr: both)
  int nesterov = 0;
  float beta1 = 0.9f, beta2 = 0.999f, adam_eps = 1e-8f;  // Adam
};

class SparseOptimizer {
 public:
  explicit SparseOptimizer(const OptimizerConfig& c) : c_(c) {}

  // Adam: the bias corrections of step t >= 1 (1-based, counted over every
  // mini-batch of every worker and epoch). No effect for Adagrad.
  void begin_step(int64_t t);

  // Every element of p; g has p's shape.
  void dense(const Param& p, const float* g) const;
  // Rows rows[0..n) of p, the gradient of rows[s] at g[s * p.cols]; rows
  // distinct. Rows of D > 1 go through the kernel, split among up to nt
  // threads; a bias vector (D = 1) runs the same update per element, in
  // scalar code (Adagrad: acc + g * g unfused, as the recorded weights were
  // trained).
  void rows(const Param& p, const int32_t* rows, int64_t n, const float* g, int nt) const;
  void rows(const Param& p, const SparseGrad& sg, int nt) const {
    rows(p, sg.rows.data(), sg.n, sg.g.data(), nt);
  }

 private:
  void update(int64_t n, const Param& p, int64_t off, const float* g) const;

  OptimizerConfig c_;
  float lr_t_ = 0.0f, eps_t_ = 0.0f;  // Adam's step-t learning rate and epsilon
};

}  // namespace grurec
