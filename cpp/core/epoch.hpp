// The epoch runner: streams of mini-batches, run one after another's
// mini-batch on one thread (sync: kernels use all threads) or one stream per
// thread (Hogwild: lock-free updates of the shared weights); progress
// reports from the calling thread and a stop status.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace grurec {

struct EpochStats {
  enum Status { kDone = 0, kStopped = 1, kNonFinite = 2 };
  int status = kDone;
  int64_t batches = 0;
  int64_t events = 0;   // (input, target) pairs trained
  double loss_sum = 0;  // sum of per-event losses
};

// progress(events, loss_sum, batches) is called every ~0.2 s; returning
// false stops the epoch after the current mini-batch (status kStopped).
// With status kNonFinite the batch with a non-finite loss was not applied:
// batches is its index.
using Progress = std::function<bool(int64_t, double, int64_t)>;

// One stream of mini-batches with its own buffers and random stream.
class Stream {
 public:
  virtual ~Stream() = default;
  // Slots of the next mini-batch; 0 when the stream is done.
  virtual int64_t batch() const = 0;
  // Trains one mini-batch. False: its loss was not finite, nothing applied.
  // Never throws.
  virtual bool step() = 0;
  double loss_sum = 0.0;  // sum of the per-event losses so far
  int64_t last_events = 0;  // (input, target) pairs the last step() trained
};

// How many streams an epoch over n_sequences runs (workers capped by the
// thread count and the sequences; 1 without OpenMP), and the threads each
// stream's kernels use.
struct EpochPlan {
  int64_t streams = 1;
  int kernel_threads = 1;
};
EpochPlan plan_epoch(int workers, int num_threads, int64_t n_sequences);

// Stream w's seed; stream 0 keeps the epoch seed, so one stream reproduces
// one-worker training.
inline uint64_t stream_seed(uint64_t seed, int64_t w) {
  return seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(w);
}

// Runs every stream to its end (or a stop). Stream 0 runs on the calling
// thread, the only one that calls progress.
EpochStats run_epoch(const std::vector<std::unique_ptr<Stream>>& streams,
                     const Progress& progress);

}  // namespace grurec
