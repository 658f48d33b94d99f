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

// Adagrad + momentum (kernels.hpp):
//   acc += g^2;  s = lr * g / sqrt(acc + eps);  heavy ball: vel = mu vel - s, w += vel;
//   Nesterov: vel = mu vel - s, w += mu vel - s;  mu = 0: w -= s.
class SparseOptimizer {
 public:
  SparseOptimizer(float lr, float momentum, float eps, int nesterov)
      : lr_(lr), mu_(momentum), eps_(eps), nesterov_(nesterov) {}

  // Every element of p; g has p's shape.
  void dense(const Param& p, const float* g) const;
  // Rows rows[0..n) of p, the gradient of rows[s] at g[s * p.cols]; rows
  // distinct. Rows of D > 1 go through the kernel, split among up to nt
  // threads; a bias vector (D = 1) runs the same update per element, in
  // scalar code (acc + g * g unfused, as the recorded weights were trained).
  void rows(const Param& p, const int32_t* rows, int64_t n, const float* g, int nt) const;
  void rows(const Param& p, const SparseGrad& sg, int nt) const {
    rows(p, sg.rows.data(), sg.n, sg.g.data(), nt);
  }

 private:
  float lr_, mu_, eps_;
  int nesterov_;
};

}  // namespace grurec
