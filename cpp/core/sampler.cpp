#include "core/sampler.hpp"

#include <algorithm>
#include <cmath>

namespace grurec {

void Alias::build(const std::vector<double>& w) {
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

std::vector<double> sample_weights(const float* pop, int64_t n, float alpha) {
  std::vector<double> w(n);
  for (int64_t i = 0; i < n; ++i)
    w[i] = pop[i] > 0 ? std::pow(static_cast<double>(pop[i]), alpha) : 0.0;
  return w;
}

NegativeSampler::NegativeSampler(const float* pop, int64_t n_items, float alpha, bool draws,
                                 float logq) {
  const std::vector<double> w = sample_weights(pop, n_items, alpha);
  if (draws) alias_.build(w);
  if (logq > 0) {
    // A common constant per group would shift the two groups against each
    // other, so neither is normalised.
    lq_in_.resize(n_items);
    lq_s_.resize(n_items);
    for (int64_t i = 0; i < n_items; ++i) {
      lq_in_[i] = static_cast<float>(logq * std::log(std::max<double>(pop[i], 1e-12)));
      lq_s_[i] = static_cast<float>(logq * std::log(std::max(w[i], 1e-12)));
    }
  }
}

}  // namespace grurec
