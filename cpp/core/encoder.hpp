// The sequence encoder: per slot state carried across windows, a forward
// pass over a window of T steps from the item tower's rows to query vectors,
// its backward pass and its optimizer step. Every method is called once per
// mini-batch (never per element).
//
// T steps, B slots, I input width (the item tower's dim()), D query width.
#pragma once

#include <cstdint>

#include "core/optim.hpp"
#include "core/rng.hpp"
#include "core/slots.hpp"

namespace grurec {

class Encoder {
 public:
  virtual ~Encoder() = default;
  // Query vectors q [T, B, D] (owned by the encoder, valid until carry())
  // from the gathered rows x [T, B, I]; dropout masks are drawn from rng.
  virtual const float* forward(const Window& w, const float* x, Rng& rng, int nt) = 0;
  // From dq [T, B, D] (consumed: overwritten), the weight gradients (kept for
  // apply) and dx [T, B, I] (overwritten).
  virtual void backward(const Window& w, float* dq, float* dx, int nt) = 0;
  virtual void apply(const SparseOptimizer& opt, int nt) = 0;
  // After a window: the state reached becomes the next window's initial
  // state, then the slot moves and resets of u are applied to it.
  virtual void carry(const SlotUpdate& u) = 0;
};

}  // namespace grurec
