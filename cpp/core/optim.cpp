#include "core/optim.hpp"

#include <cmath>

#include "core/parallel.hpp"
#include "kernels.hpp"

namespace grurec {

void SparseOptimizer::dense(const Param& p, const float* g) const {
  K().adagrad(p.rows * p.cols, p.w, p.acc, p.vel, g, lr_, mu_, eps_, nesterov_);
}

void SparseOptimizer::rows(const Param& p, const int32_t* rows, int64_t n, const float* g,
                           int nt) const {
  const int64_t D = p.cols;
  if (D == 1) {
    for (int64_t s = 0; s < n; ++s) {
      const int64_t r = rows[s];
      float acc = p.acc[r] + g[s] * g[s];
      p.acc[r] = acc;
      const float step = lr_ * (g[s] / std::sqrt(acc + eps_));  // bounded by lr (kernels)
      if (mu_ > 0.0f) {
        const float v = mu_ * p.vel[r] - step;
        p.vel[r] = v;
        p.w[r] += nesterov_ ? mu_ * v - step : v;
      } else {
        p.w[r] -= step;
      }
    }
    return;
  }
  const Kernels& k = K();
  split_rows(n, n * D, nt, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      if (s + kPrefetch < s1) {
        const int64_t q = static_cast<int64_t>(rows[s + kPrefetch]) * D;
        prefetch_row(p.w + q, D, true);
        prefetch_row(p.acc + q, D, true);
        if (p.vel) prefetch_row(p.vel + q, D, true);
      }
      const int64_t r = static_cast<int64_t>(rows[s]) * D;
      k.adagrad(D, p.w + r, p.acc + r, p.vel ? p.vel + r : nullptr, g + s * D, lr_, mu_, eps_,
                nesterov_);
    }
  });
}

}  // namespace grurec
