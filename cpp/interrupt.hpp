// Ctrl-C inside long native calls (recommend, evaluate, top-k).
//
// A kernel that can run for seconds takes `const StopFlag* stop` (null: never
// stops) and polls it once per block of work, returning early when it is
// set; its outputs are then incomplete and the caller discards them. The
// flag is set by a C-level SIGINT handler that bindings.cpp installs for the
// duration of a call (cpp/sigint.hpp); kernels know nothing about signals.
#pragma once

#include <atomic>

namespace grurec {

using StopFlag = std::atomic<bool>;

inline bool stop_requested(const StopFlag* stop) {
  return stop != nullptr && stop->load(std::memory_order_relaxed);
}

}  // namespace grurec
