#include "core/optim.hpp"

#include <cmath>

#include "core/parallel.hpp"
#include "kernels.hpp"

namespace grurec {

void SparseOptimizer::begin_step(int64_t t) {
  if (c_.kind != kAdam) return;
  const double c1 = 1.0 - std::pow(static_cast<double>(c_.beta1), static_cast<double>(t));
  const double c2 = std::sqrt(1.0 - std::pow(static_cast<double>(c_.beta2), static_cast<double>(t)));
  lr_t_ = static_cast<float>(c_.lr * c2 / c1);
  eps_t_ = static_cast<float>(c_.adam_eps * c2);
}

// n elements of p from offset off, their gradient g.
inline void SparseOptimizer::update(int64_t n, const Param& p, int64_t off, const float* g) const {
  if (c_.kind == kAdam)
    K().adam(n, p.w + off, p.vel + off, p.acc + off, g, lr_t_, c_.beta1, c_.beta2, eps_t_);
  else
    K().adagrad(n, p.w + off, p.acc + off, p.vel ? p.vel + off : nullptr, g, c_.lr, c_.momentum,
                c_.eps, c_.nesterov);
}

void SparseOptimizer::dense(const Param& p, const float* g) const {
  update(p.rows * p.cols, p, 0, g);
}

void SparseOptimizer::rows(const Param& p, const int32_t* rows, int64_t n, const float* g,
                           int nt) const {
  const int64_t D = p.cols;
  if (D == 1 && c_.kind == kAdam) {
    for (int64_t s = 0; s < n; ++s) update(1, p, rows[s], g + s);
    return;
  }
  if (D == 1) {
    const float lr = c_.lr, mu = c_.momentum, eps = c_.eps;
    for (int64_t s = 0; s < n; ++s) {
      const int64_t r = rows[s];
      float acc = p.acc[r] + g[s] * g[s];
      p.acc[r] = acc;
      const float step = lr * (g[s] / std::sqrt(acc + eps));  // bounded by lr (kernels)
      if (mu > 0.0f) {
        const float v = mu * p.vel[r] - step;
        p.vel[r] = v;
        p.w[r] += c_.nesterov ? mu * v - step : v;
      } else {
        p.w[r] -= step;
      }
    }
    return;
  }
  split_rows(n, n * D, nt, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      if (s + kPrefetch < s1) {
        const int64_t q = static_cast<int64_t>(rows[s + kPrefetch]) * D;
        prefetch_row(p.w + q, D, true);
        prefetch_row(p.acc + q, D, true);
        if (p.vel) prefetch_row(p.vel + q, D, true);
      }
      update(D, p, static_cast<int64_t>(rows[s]) * D, g + s * D);
    }
  });
}

}  // namespace grurec
