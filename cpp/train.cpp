#include "train.hpp"

#include <memory>
#include <vector>

#include "core/epoch.hpp"
#include "core/sampler.hpp"
#include "kernels.hpp"
#include "models/gru4rec.hpp"

namespace grurec {

EpochStats train_epoch(Net& net, const TrainConfig& cfg, const int64_t* offsets,
                       int64_t n_sessions, const int32_t* items, const float* pop,
                       const Progress& progress) {
  if (n_sessions <= 0) return EpochStats{};
  const NegativeSampler sampler(pop, net.n_items, cfg.sample_alpha, cfg.n_sample > 0,
                                cfg.loss == kCrossEntropy ? cfg.logq : 0.0f);
  // W independent streams (Hogwild) with single-threaded kernels, or one
  // stream whose kernels use all threads.
  const EpochPlan plan = plan_epoch(cfg.workers, cfg.num_threads, n_sessions);
  std::vector<std::unique_ptr<Stream>> streams;
  for (int64_t w = 0; w < plan.streams; ++w)
    streams.push_back(make_gru4rec_stream(net, cfg, offsets, n_sessions, items, sampler, w,
                                          plan.streams, stream_seed(cfg.seed, w),
                                          plan.kernel_threads));
  return run_epoch(streams, progress);
}

void sample_popularity(int32_t* out, int64_t n, const float* pop, int64_t n_items,
                       float alpha, uint64_t seed) {
  Alias a;
  a.build(sample_weights(pop, n_items, alpha));
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) out[i] = a.draw(rng);
}

}  // namespace grurec
