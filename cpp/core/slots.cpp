#include "core/slots.hpp"

namespace grurec {

void SlotScheduler::init(const int64_t* offsets, const int32_t* items, int64_t first,
                         int64_t stride, int64_t n_local, int64_t Bmax, int64_t T) {
  offsets_ = offsets;
  items_ = items;
  first_ = first;
  stride_ = stride;
  n_local_ = n_local;
  T_ = T;
  B_ = Bmax;
  local_.resize(Bmax);
  pos_.resize(Bmax);
  in_.resize(T * Bmax);
  target_.resize(T * Bmax);
  tpos_.resize(T * Bmax);
  reset_.assign(Bmax, 1);
  from_.resize(Bmax);
  to_.resize(Bmax);
  seq_.resize(Bmax);
  for (int64_t b = 0; b < Bmax; ++b) {
    local_[b] = b;
    pos_[b] = offsets_[seq(b)];
  }
  next_ = Bmax;
}

const Window& SlotScheduler::window() {
  const int64_t B = B_, T = T_;
  if (T == 1) {  // every live slot has an input and a target
    for (int64_t b = 0; b < B; ++b) {
      in_[b] = items_[pos_[b]];
      target_[b] = items_[pos_[b] + 1];
      tpos_[b] = pos_[b] + 1;
    }
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t end = offsets_[seq(local_[b]) + 1];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t p = pos_[b] + t;
        const bool ok = p + 1 < end;
        in_[t * B + b] = ok ? items_[p] : -1;
        target_[t * B + b] = ok ? items_[p + 1] : -1;
        tpos_[t * B + b] = ok ? p + 1 : -1;
      }
    }
  }
  win_ = Window{T, B, in_.data(), target_.data(), reset_.data(), tpos_.data()};
  return win_;
}

const SlotUpdate& SlotScheduler::advance() {
  int64_t B = B_, n_moves = 0;
  for (int64_t b = 0; b < B;) {
    pos_[b] += T_;
    bool live = pos_[b] + 1 < offsets_[seq(local_[b]) + 1];
    bool reset = false;
    if (!live && next_ < n_local_) {
      local_[b] = next_++;
      pos_[b] = offsets_[seq(local_[b])];
      live = reset = true;
    }
    reset_[b] = reset;
    if (live) {
      ++b;
      continue;
    }
    // Retire slot b: the last live slot moves into it (it has not advanced
    // yet unless it is b itself, so the loop visits b again).
    --B;
    if (b == B) break;
    local_[b] = local_[B];
    pos_[b] = pos_[B];
    from_[n_moves] = B;
    to_[n_moves] = b;
    ++n_moves;
  }
  B_ = B;
  for (int64_t b = 0; b < B; ++b) seq_[b] = seq(local_[b]);
  upd_ = SlotUpdate{B, n_moves, from_.data(), to_.data(), reset_.data(), seq_.data()};
  return upd_;
}

}  // namespace grurec
