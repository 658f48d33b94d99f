// Session-parallel slots (Hidasi et al. 2016): B slots each walk one
// sequence, T events per window. A slot whose sequence has no event left to
// predict takes the stream's next sequence (its state is reset) or, when none
// is left, retires: the last slot moves into it and the batch shrinks, so
// every event of the epoch is used. GRU4Rec is T = 1.
//
// Sequences: offsets [S+1] into items [E], each of length >= 2. A stream owns
// sequences first, first + stride, first + 2 stride, ...
#pragma once

#include <cstdint>
#include <vector>

namespace grurec {

// One window of T steps for B slots, [T, B] row-major; -1 = no event (a
// sequence that ends inside the window). reset[b] = 1: slot b's sequence
// starts with this window.
struct Window {
  int64_t T = 1, B = 0;
  const int32_t* in = nullptr;      // [T, B] input items
  const int32_t* target = nullptr;  // [T, B] items to predict
  const uint8_t* reset = nullptr;   // [B]
  const int64_t* tpos = nullptr;    // [T, B] position of each target in items (-1: padding)
};

// How the slots changed between two windows, for state kept per slot: first
// the moves, in order (state[to[i]] = state[from[i]]; every from is a slot
// not written before), then the resets (state[b] = initial where reset[b]).
// B: the new batch size; seq[b]: the global index of slot b's sequence.
struct SlotUpdate {
  int64_t B = 0, n_moves = 0;
  const int64_t* from = nullptr;  // [n_moves]
  const int64_t* to = nullptr;    // [n_moves]
  const uint8_t* reset = nullptr; // [B]
  const int64_t* seq = nullptr;   // [B]
};

class SlotScheduler {
 public:
  // Up to Bmax slots over this stream's n_local sequences.
  void init(const int64_t* offsets, const int32_t* items, int64_t first, int64_t stride,
            int64_t n_local, int64_t Bmax, int64_t T);
  int64_t batch() const { return B_; }
  // The window of the current slots (valid until the next call).
  const Window& window();
  // Every slot moves T events on; finished slots take a new sequence or retire.
  const SlotUpdate& advance();

 private:
  int64_t seq(int64_t local) const { return first_ + local * stride_; }

  const int64_t* offsets_ = nullptr;
  const int32_t* items_ = nullptr;
  int64_t first_ = 0, stride_ = 1, n_local_ = 0, T_ = 1, B_ = 0, next_ = 0;
  std::vector<int64_t> local_, pos_;     // [Bmax] sequence (local index), next input event
  std::vector<int32_t> in_, target_;     // [T, Bmax]
  std::vector<int64_t> tpos_;            // [T, Bmax]
  std::vector<uint8_t> reset_;           // [Bmax]
  std::vector<int64_t> from_, to_, seq_; // [Bmax]
  Window win_;
  SlotUpdate upd_;
};

}  // namespace grurec
