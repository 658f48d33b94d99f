#include "core/epoch.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace grurec {

EpochPlan plan_epoch(int workers, int num_threads, int64_t n_sequences) {
  int64_t W = std::max(1, std::min(workers, num_threads));
#ifndef _OPENMP
  W = 1;
#endif
  W = std::min<int64_t>(W, n_sequences);
  EpochPlan p;
  p.streams = W;
  p.kernel_threads = W > 1 ? 1 : num_threads;
  return p;
}

EpochStats run_epoch(const std::vector<std::unique_ptr<Stream>>& streams,
                     const Progress& progress) {
  EpochStats st;
  const int64_t W = static_cast<int64_t>(streams.size());
  std::atomic<int64_t> events{0}, batches{0}, bad_batch{-1};
  std::atomic<int> stop{EpochStats::kDone};
  std::atomic<int64_t> running{W};
  auto last_report = std::chrono::steady_clock::now();

  // Stream w's loop; stream 0 also reports progress until every stream is done.
  auto body = [&](int64_t w) {
    Stream& s = *streams[w];
    while (s.batch() > 0 && stop.load(std::memory_order_relaxed) == EpochStats::kDone) {
      if (!s.step()) {
        int expected = EpochStats::kDone;
        if (stop.compare_exchange_strong(expected, EpochStats::kNonFinite))
          bad_batch.store(batches.load());
        break;
      }
      events.fetch_add(s.last_events, std::memory_order_relaxed);
      batches.fetch_add(1, std::memory_order_relaxed);
      if (w == 0 && progress) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_report > std::chrono::milliseconds(200)) {
          last_report = now;
          double ls = 0.0;  // a racy read of the other streams' sums: display only
          for (auto& o : streams) ls += o->loss_sum;
          if (!progress(events.load(), ls, batches.load())) {
            int expected = EpochStats::kDone;
            stop.compare_exchange_strong(expected, EpochStats::kStopped);
          }
        }
      }
    }
    running.fetch_sub(1);
    if (w == 0) {
      while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto now = std::chrono::steady_clock::now();
        if (progress && now - last_report > std::chrono::milliseconds(200)) {
          last_report = now;
          if (!progress(events.load(), 0.0, batches.load())) {
            int expected = EpochStats::kDone;
            stop.compare_exchange_strong(expected, EpochStats::kStopped);
          }
        }
      }
    }
  };
#ifdef _OPENMP
  if (W > 1) {
#pragma omp parallel num_threads(static_cast<int>(W))
    body(omp_get_thread_num());
  } else {
    body(0);
  }
#else
  body(0);
#endif
  double loss_sum = 0.0;
  for (auto& s : streams) loss_sum += s->loss_sum;
  st.status = stop.load();
  st.events = events.load();
  st.batches = st.status == EpochStats::kNonFinite ? bad_batch.load() : batches.load();
  st.loss_sum = loss_sum;
  if (progress && st.status == EpochStats::kDone) progress(st.events, st.loss_sum, st.batches);
  return st;
}

}  // namespace grurec
