// GRU4Rec as a composition of the core parts (train.hpp has the algorithm):
// windows of T = bptt steps of session-parallel slots (T = 1: GRU4Rec; T > 1:
// UserGRU over user histories), an id item tower by input mode,
// a GRU stack encoder, the sampled head and the sparse optimizer.
#pragma once

#include <cstdint>
#include <memory>

#include "core/epoch.hpp"
#include "core/sampler.hpp"
#include "train.hpp"

namespace grurec {

// Stream `first` of `stride` over the sessions, seeded with seed, kernels on kt
// threads. net, cfg, the sessions and sampler must outlive it.
std::unique_ptr<Stream> make_gru4rec_stream(Net& net, const TrainConfig& cfg,
                                            const int64_t* offsets, int64_t n_sessions,
                                            const int32_t* items,
                                            const NegativeSampler& sampler, int64_t first,
                                            int64_t stride, uint64_t seed, int kt);

}  // namespace grurec
