// Negative sampling: items drawn with probability proportional to
// popularity^alpha (Walker/Vose alias table, O(1) per draw), and the logQ
// correction tables of the sampled cross-entropy (see train.hpp).
//
// N items. Built once per epoch, read-only (shared by every stream).
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.hpp"

namespace grurec {

// Alias table over weights w[N] (sum > 0).
struct Alias {
  std::vector<double> prob;     // [N]
  std::vector<int32_t> alias;   // [N]
  void build(const std::vector<double>& w);
  int32_t draw(Rng& rng) const {
    const double u = rng.uniform() * static_cast<double>(prob.size());
    const int64_t i = static_cast<int64_t>(u);
    return (u - i < prob[i]) ? static_cast<int32_t>(i) : alias[i];
  }
};

// Sampling weights pop^alpha [N]; items never seen (pop 0) are never drawn,
// also for alpha = 0 (where pow(0, 0) would be 1).
std::vector<double> sample_weights(const float* pop, int64_t n, float alpha);

class NegativeSampler {
 public:
  // pop [N]: training counts. draws: build the alias table (n_sample > 0).
  // logq > 0: build the logQ tables (logq * log count for in-batch columns,
  // logq * log count^alpha for sampled ones, both unnormalised).
  NegativeSampler(const float* pop, int64_t n_items, float alpha, bool draws, float logq);

  int32_t draw(Rng& rng) const { return alias_.draw(rng); }
  // [N] each, null without logQ correction.
  const float* logq_in() const { return lq_in_.empty() ? nullptr : lq_in_.data(); }
  const float* logq_sampled() const { return lq_s_.empty() ? nullptr : lq_s_.data(); }

 private:
  Alias alias_;
  std::vector<float> lq_in_, lq_s_;  // [N] or empty
};

}  // namespace grurec
