// A stack of GRU layers (gru.hpp) as an encoder over windows of T steps,
// trained with truncated back-propagation through time: gradients flow
// through every step of a window (and between layers) but not into the
// state carried in from the previous window. T = 1 is GRU4Rec's one-step
// training.
//
// Dropout: dropout_hidden on every layer's output at every step; the dropped
// output is both what the next layer (or the head) reads and the state the
// layer continues from at the next step, as in the official GRU4Rec. The
// state carried to the next window is the last step's. A slot's state is
// zero after a reset.
//
// Steps past the end of a slot's sequence (a window's -1 padding) are
// computed from whatever input the caller put there (zeros) and must get a
// zero gradient in dq: nothing flows back from them, and the slot's carried
// state is unused (a slot whose sequence ended is reset or retired).
//
// Layer l: H_l units, input width I_l (I_0 = the tower's width; a projected
// tower gives layer 0's input pre-activations, so W_ih0 is not multiplied
// here and its rows are updated by the tower).
#pragma once

#include <cstdint>
#include <vector>

#include "core/encoder.hpp"

namespace grurec {

struct GruStackWeights {
  std::vector<int64_t> layers;  // H_l
  std::vector<Param> W_ih;      // [I_l, 3H_l]
  std::vector<Param> W_hh;      // [H_l, 3H_l]
  std::vector<Param> b;         // [1, 3H_l]
  std::vector<Param> b_hh;      // [1, 3H_l] reset-after; w null: reset-before
};

class GruStack final : public Encoder {
 public:
  // I0: input width; projected: x of forward is layer 0's x W_ih0 [T, B, 3H_0].
  // Windows of up to Tmax steps and Bmax slots.
  GruStack(const GruStackWeights& w, int64_t I0, bool projected, float dropout_hidden,
           int64_t Bmax, int64_t Tmax = 1);
  const float* forward(const Window& w, const float* x, Rng& rng, int nt) override;
  void backward(const Window& w, float* dq, float* dx, int nt) override;
  void apply(const SparseOptimizer& opt, int nt) override;
  void carry(const SlotUpdate& u) override;

 private:
  GruStackWeights w_;
  int64_t L_ = 0, I0_ = 0, T_ = 1, B_ = 0;  // T_, B_: the last forward's window
  bool projected_;
  float dropout_;
  const float* x_ = nullptr;  // forward's x (layer 0 input; null when projected)
  // Per layer: state_ [Bmax, H] (the carried state), and [T, Bmax, H] or
  // [T, Bmax, 3H] caches of every step; y_ the (dropped) outputs, dy_ their
  // gradients; the weight gradients.
  std::vector<std::vector<float>> state_, out_, gates_, rh_, mask_h_, y_, dy_;
  std::vector<std::vector<float>> dW_ih_, dW_hh_, db_, dbh_;
  // [T, B, 3H] per layer with an input product: the input pre-activations'
  // gradients of the window's steps, for dW_ih and dx in one product each.
  std::vector<std::vector<float>> dA_;
};

}  // namespace grurec
